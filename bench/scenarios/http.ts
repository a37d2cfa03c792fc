import { join } from "node:path";
import { coreMicros, cpuMicros, run, stop, waitForQuietCore } from "../lib/processes.js";
import type { Argon2Result, RunOptions, Sample, StormResult, StormSample, VariantResult } from "../lib/results.js";
import { max, median, min, ratio } from "../lib/stats.js";
import { ROOT } from "../lib/variants.js";
import type { BenchEnv, Running, Variant } from "../lib/variants.js";
import { SERVER_CPU, wrk } from "../lib/wrk.js";
import type { WrkOptions, WrkResult } from "../lib/wrk.js";

/**
 * The HTTP scenarios. Each measurement starts a fresh server process, signs
 * in, warms it up, measures, and stops it; variants are interleaved
 * (A B C … A B C …) so drift on a noisy machine hits them all alike.
 */

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");

export interface Slot {
  variant: Variant;
  result: VariantResult;
}

export function emptyResult(variant: Variant): VariantResult {
  return {
    name: variant.name,
    label: variant.label,
    status: "ok",
    error: null,
    notes: [],
    samples: [],
    rps: Number.NaN,
    rpsMin: Number.NaN,
    rpsMax: Number.NaN,
    p99Ms: Number.NaN,
    cpuUsPerRequest: null,
    serverCpuNoise: null,
    vsCeiling: null,
    vsSeed: null,
  };
}

function addNotes(target: { notes: string[] }, notes: string[]): void {
  for (const note of notes) if (!target.notes.includes(note)) target.notes.push(note);
}

/** A timed wrk run with the server's CPU time read around it. */
export async function timed(running: Running, options: WrkOptions, round: number): Promise<Sample> {
  const before = cpuMicros(running.process.pid);
  const coreBefore = coreMicros(SERVER_CPU);
  const started = performance.now();
  const result: WrkResult = await wrk(options);
  const wallMicros = (performance.now() - started) * 1000;
  const after = cpuMicros(running.process.pid);
  const coreAfter = coreMicros(SERVER_CPU);
  let serverCpuNoise: number | null = null;
  if (before !== null && after !== null && coreBefore !== null && coreAfter !== null) {
    const others = coreAfter.busy - coreBefore.busy - (after - before);
    serverCpuNoise = Math.max(0, (others + coreAfter.steal - coreBefore.steal) / wallMicros);
  }
  return {
    round,
    rps: result.rps,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    requests: result.requests,
    non2xx: result.non2xx,
    socketErrors: result.socketErrors,
    cpuUsPerRequest: before !== null && after !== null && result.requests > 0 ? (after - before) / result.requests : null,
    serverCpuNoise,
  };
}

export function summarise(result: VariantResult): void {
  const rps = result.samples.map((s) => s.rps);
  result.rps = median(rps);
  result.rpsMin = min(rps);
  result.rpsMax = max(rps);
  result.p99Ms = median(result.samples.map((s) => s.p99Ms));
  const cpu = result.samples.map((s) => s.cpuUsPerRequest).filter((c): c is number => c !== null);
  result.cpuUsPerRequest = cpu.length > 0 ? median(cpu) : null;
  const noise = result.samples.map((s) => s.serverCpuNoise).filter((c): c is number => c !== null);
  result.serverCpuNoise = noise.length > 0 ? max(noise) : null;
  const errors = result.samples.reduce((sum, s) => sum + s.non2xx + s.socketErrors, 0);
  const requests = result.samples.reduce((sum, s) => sum + s.requests, 0);
  if (requests > 0 && errors / requests > 0.001) {
    addNotes(result, [
      `${fmt(errors)} of ${fmt(requests)} responses were errors (non-2xx or socket errors): its req/s is not a success rate`,
    ]);
  }
}

/** Lets a burst of someone else's work on the server CPU pass (up to `settleS`) before a measurement. */
export async function settle(options: RunOptions): Promise<void> {
  if (options.settleS <= 0) return;
  const { waitedMs, busy } = await waitForQuietCore(SERVER_CPU, { maxWaitMs: options.settleS * 1000 });
  if (waitedMs > 1_000)
    log(
      `  (waited ${(waitedMs / 1000).toFixed(1)} s for CPU ${SERVER_CPU} to be quiet; ${(busy * 100).toFixed(0)}% busy when measuring began)`,
    );
}

/** Starts the variant; marks it unavailable (and returns null) when it cannot start. */
export async function startOrMark(slot: Slot, env: BenchEnv, options: RunOptions): Promise<Running | null> {
  if (slot.result.status !== "ok") return null;
  await settle(options);
  const reason = slot.variant.unavailable?.(env) ?? null;
  if (reason !== null) {
    slot.result.status = "unavailable";
    slot.result.error = reason;
    return null;
  }
  try {
    const running = await slot.variant.start(env);
    addNotes(slot.result, running.notes);
    return running;
  } catch (error) {
    slot.result.status = "unavailable";
    slot.result.error = error instanceof Error ? error.message : String(error);
    log(`  ${slot.variant.name}: unavailable: ${slot.result.error}`);
    return null;
  }
}

async function measureRounds(
  scenario: string,
  variants: Variant[],
  env: BenchEnv,
  options: RunOptions,
  measure: (running: Running, round: number) => Promise<Sample>,
  extra?: (round: number) => Promise<void>,
): Promise<VariantResult[]> {
  const slots: Slot[] = variants.map((variant) => ({ variant, result: emptyResult(variant) }));
  for (let round = 1; round <= options.rounds; round += 1) {
    await extra?.(round);
    for (const slot of slots) {
      const running = await startOrMark(slot, env, options);
      if (running === null) continue;
      try {
        const sample = await measure(running, round);
        slot.result.samples.push(sample);
        log(
          `[${scenario} ${round}/${options.rounds}] ${slot.variant.name}: ${fmt(sample.rps)} req/s, p99 ${sample.p99Ms.toFixed(1)} ms${sample.non2xx + sample.socketErrors > 0 ? `, ${sample.non2xx + sample.socketErrors} errors` : ""}`,
        );
      } catch (error) {
        slot.result.status = "failed";
        slot.result.error = error instanceof Error ? error.message : String(error);
        log(`[${scenario} ${round}/${options.rounds}] ${slot.variant.name}: failed: ${slot.result.error}`);
      } finally {
        await stop(running.process);
      }
    }
  }
  for (const slot of slots) summarise(slot.result);
  return slots.map((s) => s.result);
}

/** Scenario (a): GET /protected with a valid cookie, every variant. */
export async function getProtected(variants: Variant[], env: BenchEnv, options: RunOptions): Promise<VariantResult[]> {
  const results = await measureRounds("GET /protected", variants, env, options, async (running, round) => {
    const request = { url: `${running.url}/protected`, connections: options.connections, cookie: running.cookie };
    await wrk({ ...request, durationS: options.warmupS });
    return timed(running, { ...request, durationS: options.durationS }, round);
  });
  const ceiling = results.find((r) => r.name === "ceiling");
  const seed = results.find((r) => r.name === "seed");
  for (const r of results) {
    r.vsCeiling = ceiling ? ratio(r.rps, ceiling.rps) : null;
    r.vsSeed = seed ? ratio(r.rps, seed.rps) : null;
  }
  return results;
}

async function argon2Round(options: RunOptions, round: number): Promise<{ round: number; perSecond: number; cpuMsPerHash: number }> {
  const result = await run(
    "argon2-rate",
    "taskset",
    ["-c", SERVER_CPU, process.execPath, join(ROOT, "bench", "baselines", "argon2-rate.mjs")],
    {
      env: {
        PATH: process.env.PATH,
        BENCH_WARMUP: String(options.warmupS),
        BENCH_DURATION: String(options.durationS),
        HASH_CONCURRENCY: "1",
      },
      cwd: ROOT,
      timeoutMs: (options.warmupS + options.durationS + 60) * 1000,
    },
  );
  const line = result.stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (line === undefined) throw new Error(`argon2-rate printed no result: ${result.output.slice(-300)}`);
  const parsed = JSON.parse(line.slice("BENCH_JSON ".length)) as { perSecond: number; cpuMsPerHash: number };
  log(`[POST /login ${round}/${options.rounds}] raw argon2id: ${parsed.perSecond.toFixed(1)} hashes/s`);
  return { round, perSecond: parsed.perSecond, cpuMsPerHash: parsed.cpuMsPerHash };
}

/**
 * Scenario (b): POST /login with correct credentials (Latch variants and the
 * seed stack), interleaved with raw argon2id hashes/s on the same core.
 */
export async function postLogin(
  variants: Variant[],
  env: BenchEnv,
  options: RunOptions,
): Promise<{ argon2: Argon2Result; variants: VariantResult[] }> {
  const argon2: Argon2Result = { samples: [], perSecond: Number.NaN, min: Number.NaN, max: Number.NaN, concurrency: 1 };
  const results = await measureRounds(
    "POST /login",
    variants,
    env,
    options,
    async (running, round) => {
      const request = {
        url: `${running.url}/login`,
        connections: options.loginConnections,
        method: "POST" as const,
        body: running.loginBody,
        timeoutS: 30,
      };
      await wrk({ ...request, durationS: options.warmupS });
      return timed(running, { ...request, durationS: options.durationS }, round);
    },
    async (round) => {
      try {
        await settle(options);
        argon2.samples.push(await argon2Round(options, round));
      } catch (error) {
        log(`raw argon2id measurement failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    },
  );
  const rates = argon2.samples.map((s) => s.perSecond);
  argon2.perSecond = median(rates);
  argon2.min = min(rates);
  argon2.max = max(rates);
  const seed = results.find((r) => r.name === "seed");
  for (const r of results) {
    // Against raw hashes/s: the share of the hashing ceiling each server reaches.
    r.vsCeiling = r.name.startsWith("latch") ? ratio(r.rps, argon2.perSecond) : null;
    r.vsSeed = seed ? ratio(r.rps, seed.rps) : null;
  }
  return { argon2, variants: results };
}

/**
 * Scenario (c): GET /protected p99 alone, then during a storm of sign-ins
 * (a second wrk posting POST /login on `stormConnections` connections), in
 * the same server process.
 */
export async function signInStorm(variants: Variant[], env: BenchEnv, options: RunOptions): Promise<StormResult[]> {
  const results: StormResult[] = variants.map((v) => ({
    name: v.name,
    label: v.label,
    status: "ok",
    error: null,
    notes: [],
    samples: [],
    aloneRps: Number.NaN,
    aloneP99Ms: Number.NaN,
    stormRps: Number.NaN,
    stormP99Ms: Number.NaN,
    loginRps: Number.NaN,
    p99Ratio: Number.NaN,
  }));
  for (let round = 1; round <= options.rounds; round += 1) {
    for (const [i, variant] of variants.entries()) {
      const result = results[i]!;
      const slot: Slot = { variant, result: { ...emptyResult(variant), status: result.status, error: result.error } };
      const running = await startOrMark(slot, env, options);
      if (running === null) {
        result.status = slot.result.status;
        result.error = slot.result.error;
        continue;
      }
      addNotes(result, slot.result.notes);
      try {
        const get = { url: `${running.url}/protected`, connections: options.connections, cookie: running.cookie };
        await wrk({ ...get, durationS: options.warmupS });
        const alone = await timed(running, { ...get, durationS: options.durationS }, round);
        // The storm starts first and outlasts the measurement on both sides.
        const storm = wrk({
          url: `${running.url}/login`,
          connections: options.stormConnections,
          durationS: options.durationS + 2,
          method: "POST",
          body: running.loginBody,
          timeoutS: 30,
        });
        await new Promise((r) => setTimeout(r, 1_000));
        const during = await timed(running, { ...get, durationS: options.durationS }, round);
        const stormResult = await storm;
        const sample: StormSample = { round, alone, storm: during, loginRps: stormResult.rps };
        result.samples.push(sample);
        log(
          `[storm ${round}/${options.rounds}] ${variant.name}: alone ${fmt(alone.rps)} req/s p99 ${alone.p99Ms.toFixed(1)} ms; storm ${fmt(during.rps)} req/s p99 ${during.p99Ms.toFixed(1)} ms; ${stormResult.rps.toFixed(1)} logins/s`,
        );
      } catch (error) {
        result.status = "failed";
        result.error = error instanceof Error ? error.message : String(error);
        log(`[storm ${round}/${options.rounds}] ${variant.name}: failed: ${result.error}`);
      } finally {
        await stop(running.process);
      }
    }
  }
  for (const r of results) {
    r.aloneRps = median(r.samples.map((s) => s.alone.rps));
    r.aloneP99Ms = median(r.samples.map((s) => s.alone.p99Ms));
    r.stormRps = median(r.samples.map((s) => s.storm.rps));
    r.stormP99Ms = median(r.samples.map((s) => s.storm.p99Ms));
    r.loginRps = median(r.samples.map((s) => s.loginRps));
    r.p99Ratio = ratio(r.stormP99Ms, r.aloneP99Ms);
  }
  return results;
}
