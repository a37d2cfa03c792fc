import { spawn } from "node:child_process";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Every process the harness starts goes through here, so that every one of
 * them dies with the harness: each child leads its own process group (a
 * server and anything it forks are killed together), the groups are killed
 * on exit, on SIGINT/SIGTERM and on an uncaught error, and their PIDs are
 * written to a file so that a harness killed with SIGKILL has its leftovers
 * killed by the next run (after checking the PID still runs the same command).
 */
export interface Tracked {
  child: ChildProcess;
  pid: number;
  name: string;
  /** stdout and stderr so far, capped at 64 KiB. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
}

const PID_FILE = join(tmpdir(), "latch-bench-pids.json");
const live = new Map<number, Tracked>();
let handlersInstalled = false;

interface PidRecord {
  pid: number;
  cmdline: string;
}

function cmdlineOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return null;
  }
}

function savePids(): void {
  const records: PidRecord[] = [];
  for (const pid of live.keys()) {
    const cmdline = cmdlineOf(pid);
    if (cmdline !== null) records.push({ pid, cmdline });
  }
  try {
    if (records.length === 0) rmSync(PID_FILE, { force: true });
    else writeFileSync(PID_FILE, JSON.stringify(records));
  } catch {
    // Best effort: the in-process handlers are the main line of defence.
  }
}

/** Kills what a previous, SIGKILLed run left behind (only PIDs that still run the recorded command). */
export function reapLeftovers(): number {
  if (!existsSync(PID_FILE)) return 0;
  let reaped = 0;
  try {
    const records = JSON.parse(readFileSync(PID_FILE, "utf8")) as PidRecord[];
    for (const { pid, cmdline } of records) {
      if (cmdlineOf(pid) !== cmdline) continue;
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          continue;
        }
      }
      reaped += 1;
    }
  } catch {
    // A corrupt file: nothing we can trust in it.
  }
  rmSync(PID_FILE, { force: true });
  return reaped;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** Kills every live child's process group at once (synchronous, so it works in an exit handler). */
export function killAll(signal: NodeJS.Signals = "SIGKILL"): void {
  for (const pid of live.keys()) killGroup(pid, signal);
  if (signal === "SIGKILL") {
    live.clear();
    savePids();
  }
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", () => killAll("SIGKILL"));
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping every process it started\n`);
      killAll("SIGKILL");
      process.exit(130);
    });
  }
  process.on("uncaughtException", (error) => {
    process.stderr.write(`bench: ${error.stack ?? String(error)}\n`);
    killAll("SIGKILL");
    process.exit(1);
  });
  process.on("unhandledRejection", (error) => {
    process.stderr.write(`bench: unhandled rejection: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    killAll("SIGKILL");
    process.exit(1);
  });
}

/**
 * Spawns a command in its own process group and tracks it until it exits.
 *
 * @example
 * const server = start("ceiling", "taskset", ["-c", "0", process.execPath, "bench/baselines/ceiling.mjs"], { env });
 */
export function start(name: string, command: string, args: string[], options: SpawnOptions = {}): Tracked {
  installHandlers();
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options, detached: true });
  if (child.pid === undefined) throw new Error(`could not start ${name}: ${command}`);
  const pid = child.pid;
  let output = "";
  const append = (chunk: Buffer): void => {
    output += chunk.toString();
    if (output.length > 65_536) output = output.slice(-65_536);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(pid);
      savePids();
      resolve(code ?? signal ?? "unknown");
    });
    child.once("error", (error) => {
      append(Buffer.from(String(error)));
      live.delete(pid);
      resolve("error");
    });
  });
  const tracked: Tracked = { child, pid, name, output: () => output, exited };
  live.set(pid, tracked);
  savePids();
  return tracked;
}

export function isRunning(tracked: Tracked): boolean {
  return tracked.child.exitCode === null && tracked.child.signalCode === null && live.has(tracked.pid);
}

/** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stop(tracked: Tracked, graceMs = 5_000): Promise<void> {
  if (!isRunning(tracked)) return;
  killGroup(tracked.pid, "SIGTERM");
  const timer = setTimeout(() => killGroup(tracked.pid, "SIGKILL"), graceMs);
  await tracked.exited;
  clearTimeout(timer);
  // Anything the leader forked and left behind in its group.
  killGroup(tracked.pid, "SIGKILL");
}

/** Runs a command to completion with a hard time limit; resolves with its output and exit code. */
export async function run(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions & { timeoutMs: number },
): Promise<{ code: number | string; output: string; stdout: string }> {
  const { timeoutMs, ...spawnOptions } = options;
  const tracked = start(name, command, args, spawnOptions);
  let stdout = "";
  tracked.child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  const timer = setTimeout(() => killGroup(tracked.pid, "SIGKILL"), timeoutMs);
  const code = await tracked.exited;
  clearTimeout(timer);
  return { code, output: tracked.output(), stdout };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `url` answers any HTTP status, the process exits (rejects with
 * its last output line), or `timeoutMs` passes.
 */
export async function waitForHttp(tracked: Tracked, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isRunning(tracked)) throw new Error(lastLine(tracked.output()) || `${tracked.name} exited during start-up`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline)
      throw new Error(`${tracked.name} did not answer ${url} within ${timeoutMs / 1000} s: ${lastLine(tracked.output())}`);
    await sleep(100);
  }
}

export function lastLine(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  // A start-up refusal is one "latch: …" line; prefer it over a stack trace's last frame.
  return lines.find((l) => l.startsWith("latch:")) ?? lines.at(-1) ?? "";
}

/** User + system CPU time of a process (all its threads), in microseconds, or null when unreadable. */
export function cpuMicros(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1_000_000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Busy and stolen time of one CPU since boot, in microseconds (from /proc/stat), or null. */
export function coreMicros(core: string): { busy: number; steal: number } | null {
  try {
    const line = readFileSync("/proc/stat", "utf8")
      .split("\n")
      .find((l) => l.startsWith(`cpu${core} `));
    if (line === undefined) return null;
    // user nice system idle iowait irq softirq steal …
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
    const toMicros = (ticks: number): number => (ticks * 1_000_000) / CLOCK_TICKS;
    return { busy: toMicros(user! + nice! + system! + irq! + softirq!), steal: toMicros(steal ?? 0) };
  } catch {
    return null;
  }
}

/**
 * Waits (at most `maxWaitMs`) until CPU `core` is quiet: less than
 * `threshold` of it busy over half a second, before a server is started
 * there. On a shared machine other people's test runs come in bursts; this
 * lets a burst pass instead of measuring it. Returns how long it waited and
 * the last busy share seen.
 */
export async function waitForQuietCore(
  core: string,
  options: { maxWaitMs: number; threshold?: number },
): Promise<{ waitedMs: number; busy: number }> {
  const threshold = options.threshold ?? 0.1;
  const started = performance.now();
  let busy = 0;
  for (;;) {
    const before = coreMicros(core);
    const t0 = performance.now();
    await sleep(500);
    const after = coreMicros(core);
    if (before === null || after === null) return { waitedMs: 0, busy: 0 };
    busy = (after.busy - before.busy + after.steal - before.steal) / ((performance.now() - t0) * 1000);
    const waitedMs = performance.now() - started;
    if (busy < threshold || waitedMs >= options.maxWaitMs) return { waitedMs, busy };
  }
}

/** Resident set size in bytes, or null. */
export function rssBytes(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

// sysconf(_SC_CLK_TCK) is 100 on every Linux this runs on; getconf would confirm it.
const CLOCK_TICKS = 100;
