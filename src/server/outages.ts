import type { Counter } from "prom-client";
import { LatchError } from "../core/errors.js";
import type { StoreHealth } from "../core/store.js";

/**
 * Store outages, logged once when they start and once when they end rather
 * than once per failed request (at real traffic that would be hundreds of
 * megabytes a minute of identical stacks). Every failure is still counted
 * in `latch_store_failures_total{store}` and still answered 503 by the
 * caller. The end is noticed by polling the stores' health, not by the next
 * successful request, so it is logged even when no traffic comes.
 */
export interface OutageLog {
  /**
   * Counts a failure and logs it if it starts an outage. True when `error`
   * was a store's `unavailable` (and so was handled here); false for any
   * other error, which the caller logs itself.
   */
  failed(error: unknown, context?: Record<string, unknown>): boolean;
  /** Stops the recovery polls (server shutdown). */
  stop(): void;
}

export interface OutageLogOptions {
  /** The server's logger (pino's `error`/`info` signatures). */
  logger: { error(details: Record<string, unknown>, message: string): void; info(details: Record<string, unknown>, message: string): void };
  failures: Counter<"store">;
  health: () => Promise<Record<string, StoreHealth>>;
  /** How often a backend that is down is checked, in ms. Default 500. */
  pollMs?: number;
  now?: () => number;
}

/** The backend named by the error or the first error in its `cause` chain that names one. */
function backendOf(error: unknown): string | undefined {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth += 1) {
    if (current instanceof LatchError && current.code === "unavailable" && current.backend !== undefined) return current.backend;
  }
  return undefined;
}

/**
 * @example
 * const outages = createOutageLog({ logger: app.log, failures: metrics.storeFailures, health: () => stores.health() });
 * if (!outages.failed(error)) request.log.error({ err: error }, "unhandled error");
 */
export function createOutageLog(options: OutageLogOptions): OutageLog {
  const { logger, failures, health } = options;
  const pollMs = options.pollMs ?? 500;
  const now = options.now ?? Date.now;
  const down = new Map<string, { since: number; failures: number; timer: NodeJS.Timeout }>();
  let stopped = false;

  function watch(store: string): NodeJS.Timeout {
    let checking = false;
    const timer = setInterval(() => {
      if (checking) return;
      checking = true;
      health()
        .then((states) => {
          const outage = down.get(store);
          if (outage === undefined || states[store] !== "ok") return;
          clearInterval(outage.timer);
          down.delete(store);
          const label = store === "database" ? "The database" : store === "redis" ? "Redis" : store;
          logger.info(
            { store, failures: outage.failures, downForMs: now() - outage.since },
            `${label} answers again: ${outage.failures} request(s) failed during the outage`,
          );
        })
        .catch(() => {})
        .finally(() => (checking = false));
    }, pollMs);
    timer.unref();
    return timer;
  }

  return {
    failed(error, context = {}) {
      const store = backendOf(error);
      if (store === undefined) return false;
      failures.inc({ store });
      const outage = down.get(store);
      if (outage !== undefined) {
        outage.failures += 1;
        return true;
      }
      if (stopped) return true;
      down.set(store, { since: now(), failures: 1, timer: watch(store) });
      const label = store === "database" ? "The database" : store === "redis" ? "Redis" : store;
      logger.error(
        { ...context, store, err: error },
        `${label} is unavailable: answering 503 until it is back (logged once; see latch_store_failures_total)`,
      );
      return true;
    },
    stop() {
      stopped = true;
      for (const outage of down.values()) clearInterval(outage.timer);
      down.clear();
    },
  };
}
