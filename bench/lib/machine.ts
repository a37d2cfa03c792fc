import { execFileSync } from "node:child_process";
import { cpus, loadavg, totalmem } from "node:os";

export interface Machine {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  redis: string;
  postgres: string;
  wrk: string;
  kernel: string;
  /** 1-minute load average when the run started. */
  loadAtStart: number;
  /** Processes using CPU when the run started that the harness did not start (noise). */
  otherBusyProcesses: string[];
}

function tryRun(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

/** Processes above 5% CPU right now (a one-second `top` sample), excluding this one. */
function busyProcesses(): string[] {
  const out = tryRun("top", ["-b", "-n", "2", "-d", "1", "-w", "200"]);
  // The second iteration is the one measured over the interval.
  const last = out.split(/^top - /m).at(-1) ?? "";
  const rows = last.split("\n").filter((l) => /^\s*\d+\s/.test(l));
  const busy: string[] = [];
  for (const row of rows) {
    const cols = row.trim().split(/\s+/);
    const pid = Number(cols[0]);
    const cpu = Number(cols[8]);
    if (pid === process.pid || !(cpu >= 5)) continue;
    busy.push(`${cols.slice(11).join(" ")} (pid ${pid}, ${cpu}% CPU)`);
  }
  return busy;
}

export function describeMachine(wrkVersion: string, redisVersion: string, postgresVersion: string): Machine {
  return {
    // `nproc` alone would count only the CPUs this (pinned) process may use.
    nproc: Number(tryRun("nproc", ["--all"])) || cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    redis: redisVersion,
    postgres: postgresVersion,
    wrk: wrkVersion,
    kernel: tryRun("uname", ["-r"]),
    loadAtStart: loadavg()[0] ?? 0,
    otherBusyProcesses: busyProcesses(),
  };
}
