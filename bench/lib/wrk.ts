import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { run } from "./processes.js";

const SCRIPT = fileURLToPath(new URL("../wrk/bench.lua", import.meta.url));

/** The CPU wrk (and every load generator) is pinned to; servers get the other one. */
export const LOAD_CPU = "1";
export const SERVER_CPU = "0";

export interface WrkOptions {
  url: string;
  connections: number;
  durationS: number;
  method?: "GET" | "POST";
  body?: string;
  cookie?: string;
  /** Per-request timeout; wrk's default of 2 s would count slow sign-ins as errors. */
  timeoutS?: number;
  /** Another Lua script than bench.lua (the many-sessions scenario's many.lua), and its environment. */
  script?: string;
  scriptEnv?: NodeJS.ProcessEnv;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Responses that were not 2xx/3xx. */
  non2xx: number;
  /** Socket errors: connect, read, write, timeout. */
  socketErrors: number;
}

/** Installs wrk from Debian when it is missing. Returns its version line. */
export function ensureWrk(): string {
  const probe = spawnSync("wrk", ["--version"], { encoding: "utf8" });
  if (probe.error !== undefined) {
    process.stderr.write("bench: wrk is missing; installing it (apt-get install -y wrk)\n");
    let install = spawnSync("apt-get", ["install", "-y", "wrk"], { stdio: "inherit", timeout: 300_000 });
    if (install.status !== 0) {
      spawnSync("apt-get", ["update"], { stdio: "inherit", timeout: 300_000 });
      install = spawnSync("apt-get", ["install", "-y", "wrk"], { stdio: "inherit", timeout: 300_000 });
    }
    if (install.status !== 0) throw new Error("could not install wrk with apt-get; install it and run again");
  }
  const version = spawnSync("wrk", ["--version"], { encoding: "utf8" });
  return (version.stdout + version.stderr).split("\n")[0]?.trim() ?? "wrk";
}

/**
 * One wrk run pinned to {@link LOAD_CPU}, one thread. Rejects when wrk fails
 * or prints no result; the run is killed if it overruns its duration by 30 s.
 */
export async function wrk(options: WrkOptions): Promise<WrkResult> {
  const args = [
    "-c",
    LOAD_CPU,
    "wrk",
    "-t1",
    `-c${options.connections}`,
    `-d${options.durationS}s`,
    `--timeout`,
    `${options.timeoutS ?? 5}s`,
    "-s",
    options.script ?? SCRIPT,
    options.url,
  ];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    BENCH_METHOD: options.method ?? "GET",
    BENCH_BODY: options.body ?? "",
    BENCH_COOKIE: options.cookie ?? "",
    ...options.scriptEnv,
  };
  const result = await run("wrk", "taskset", args, { env, timeoutMs: (options.durationS + 30) * 1000 });
  const line = result.stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (line === undefined) throw new Error(`wrk printed no result (exit ${result.code}): ${result.output.slice(-500)}`);
  const raw = JSON.parse(line.slice("BENCH_JSON ".length)) as Record<string, number>;
  const seconds = raw.duration_us! / 1e6;
  return {
    requests: raw.requests!,
    seconds,
    rps: raw.requests! / seconds,
    p50Ms: raw.p50_us! / 1000,
    p90Ms: raw.p90_us! / 1000,
    p99Ms: raw.p99_us! / 1000,
    maxMs: raw.max_us! / 1000,
    non2xx: raw.status!,
    socketErrors: raw.connect! + raw.read! + raw.write! + raw.timeout!,
  };
}
