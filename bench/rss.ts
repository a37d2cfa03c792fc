/**
 * Memory stays flat: the RSS of one Latch process after minute 1 and at the
 * end of BENCH_SOAK_MINUTES (default 5) of GET /protected at 80% of its peak.
 * The peak is measured first with wrk (10 s); the steady load is autocannon
 * with --overallRate (Debian's wrk has no rate limit), pinned to CPU 1.
 *
 * Long: it runs under `npm run bench -- --soak`, or alone:
 *   node --import tsx bench/rss.ts            (BENCH_SOAK_VARIANT=latch-sqlite by default)
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { rssBytes, run, sleep, stop } from "./lib/processes.js";
import type { RssResult } from "./lib/results.js";
import { ROOT, VARIANTS } from "./lib/variants.js";
import type { BenchEnv } from "./lib/variants.js";
import { LOAD_CPU, wrk } from "./lib/wrk.js";

export interface SoakOptions {
  variant: string;
  minutes: number;
  connections: number;
  fraction: number;
}

export async function soak(env: BenchEnv, options: SoakOptions): Promise<RssResult> {
  const result: RssResult = {
    status: "ok",
    error: null,
    variant: options.variant,
    peakRps: Number.NaN,
    targetRps: Number.NaN,
    achievedRps: Number.NaN,
    minutes: options.minutes,
    rssAfterMinute1: Number.NaN,
    rssAtEnd: Number.NaN,
    growth: Number.NaN,
    samples: [],
  };
  const variant = VARIANTS.find((v) => v.name === options.variant);
  if (variant === undefined) return { ...result, status: "unavailable", error: `no variant ${options.variant}` };
  const reason = variant.unavailable?.(env) ?? null;
  if (reason !== null) return { ...result, status: "unavailable", error: reason };
  let running;
  try {
    running = await variant.start(env);
  } catch (error) {
    return { ...result, status: "unavailable", error: error instanceof Error ? error.message : String(error) };
  }
  const log = (line: string): void => void process.stderr.write(`[rss] ${line}\n`);
  try {
    const url = `${running.url}/protected`;
    await wrk({ url, connections: options.connections, durationS: 3, cookie: running.cookie });
    const peak = await wrk({ url, connections: options.connections, durationS: 10, cookie: running.cookie });
    result.peakRps = peak.rps;
    result.targetRps = Math.round(peak.rps * options.fraction);
    log(`peak ${Math.round(peak.rps)} req/s; holding ${result.targetRps} req/s for ${options.minutes} min`);

    const durationS = Math.round(options.minutes * 60);
    const started = performance.now();
    const load = run(
      "autocannon",
      "taskset",
      [
        "-c",
        LOAD_CPU,
        process.execPath,
        join(ROOT, "node_modules", "autocannon", "autocannon.js"),
        "-c",
        String(options.connections),
        "-d",
        String(durationS),
        "--overallRate",
        String(result.targetRps),
        "-H",
        `Cookie: ${running.cookie}`,
        "--json",
        url,
      ],
      { env: { PATH: process.env.PATH }, timeoutMs: (durationS + 60) * 1000 },
    );
    let finished = false;
    void load.then(() => (finished = true));
    const pid = running.process.pid;
    while (!finished && performance.now() - started < (durationS + 60) * 1000) {
      await sleep(5_000);
      const rss = rssBytes(pid);
      const atS = (performance.now() - started) / 1000;
      if (rss !== null && atS <= durationS + 1) result.samples.push({ atS, rssBytes: rss });
    }
    const out = await load;
    const summary = JSON.parse(out.stdout.slice(out.stdout.indexOf("{"))) as {
      requests: { average: number };
      non2xx: number;
      errors: number;
    };
    result.achievedRps = summary.requests.average;
    const afterMinute1 = result.samples.find((s) => s.atS >= 60) ?? result.samples[0];
    const last = result.samples.at(-1);
    if (afterMinute1 === undefined || last === undefined) throw new Error("no RSS samples were taken");
    result.rssAfterMinute1 = afterMinute1.rssBytes;
    result.rssAtEnd = last.rssBytes;
    result.growth = last.rssBytes / afterMinute1.rssBytes - 1;
    if (summary.non2xx + summary.errors > 0) result.error = `${summary.non2xx} non-2xx responses, ${summary.errors} errors during the soak`;
    log(
      `RSS ${(result.rssAfterMinute1 / 2 ** 20).toFixed(1)} MiB after minute 1, ${(result.rssAtEnd / 2 ** 20).toFixed(1)} MiB at the end`,
    );
  } catch (error) {
    result.status = "failed";
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    await stop(running.process);
  }
  return result;
}

const isMain = import.meta.url === pathToFileURL(process.argv[1] ?? "").href;
if (isMain) {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const tmpDir = mkdtempSync(join(tmpdir(), "latch-rss-"));
  const env: BenchEnv = {
    distDir: join(ROOT, "dist"),
    tmpDir,
    redisUrl: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379",
    redisUp: true,
    postgresUrl: process.env.BENCH_SOAK_POSTGRES_URL ?? null,
  };
  const result = await soak(env, {
    variant: process.env.BENCH_SOAK_VARIANT ?? "latch-sqlite",
    minutes: Number(process.env.BENCH_SOAK_MINUTES ?? 5),
    connections: 50,
    fraction: 0.8,
  });
  rmSync(tmpDir, { recursive: true, force: true });
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.status === "ok" ? 0 : 1);
}
