/** Batches of calls, each drained before the next (about 35 ms in all). */
const ROUNDS = 50;
const CALLS_PER_ROUND = 1_000;

/**
 * Warms Node's `process.nextTick` before anything else of the server loads.
 *
 * Why: Node's http and stream internals call `process.nextTick` six or seven
 * times per request, and each call builds a tick object from a literal with
 * computed symbol keys (`{ [async_id_symbol]: …, [trigger_async_id_symbol]:
 * …, callback, args }`, lib/internal/process/task_queues.js). V8 optimises
 * `nextTick` once, early, from the type feedback gathered so far; when that
 * feedback comes from the varied calls made while Fastify, pino, the stores
 * and their dependencies load, the optimised code keeps building the object
 * through the runtime's slow paths (`DefineKeyedOwnPropertyInLiteral`, map
 * migrations) and is never re-optimised. Measured (docs/performance.md,
 * "The tick queue"): on one VM a server started cold spent 310–650 ns per
 * call against 55–63 ns after this warm-up, 20–25% less CPU per request
 * under load with 100,000 sessions; on another the cold start was already
 * fast (40–100 ns) and the warm-up changed nothing measurable (41.9 vs
 * 42.7 µs per request, three interleaved rounds). Which code V8 picks
 * depends on timing (compilation runs in the background), so the warm-up is
 * kept to make the good case the only case, for about 35 ms at start.
 *
 * How: many calls of one shape (a function and one argument, as the stream
 * internals make), each batch drained by the event loop, so the feedback V8
 * optimises from is the hot path's. This module imports nothing: it runs
 * before any other module of the process is loaded.
 */
export async function warmTickQueue(): Promise<void> {
  const noop = (_value: number): void => {};
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < CALLS_PER_ROUND; i++) process.nextTick(noop, i);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
