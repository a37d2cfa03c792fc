import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./latch-process.js";

/**
 * A private PostgreSQL server for one test file, for fault tests that stop
 * the database under load (the shared server on 5432 must never be stopped:
 * other tests use it at the same time). `initdb` into a fresh temporary
 * directory, trust authentication, 127.0.0.1 on a free port, durability off
 * (fsync, synchronous_commit, full_page_writes: nothing here must survive a
 * crash of the machine). The `postgres` binary is this process's own child,
 * tracked by PID: stop() signals it and waits for its exit, and anything
 * still running when the test process exits is shut down immediately and
 * its directory removed.
 *
 * PostgreSQL refuses to run as root; under root the server (and initdb) run
 * as the `postgres` OS user, through spawn's uid/gid rather than runuser or
 * su, which would put a process of their own between us and the PID.
 */

const BIN_ROOT = "/usr/lib/postgresql";

/** The newest installed version's bin directory, or null. */
export function postgresBinDir(): string | null {
  if (!existsSync(BIN_ROOT)) return null;
  const versions = readdirSync(BIN_ROOT)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(BIN_ROOT, v, "bin", "postgres")) && existsSync(join(BIN_ROOT, v, "bin", "initdb")))
    .sort((x, y) => Number(y) - Number(x));
  return versions.length === 0 ? null : join(BIN_ROOT, versions[0]!, "bin");
}

/**
 * False when a throw-away server can be started (run the test), else the
 * skip reason; under CI=true their absence fails instead of skipping, like
 * redisBinariesSkip in several-latches.ts.
 */
export function throwawayPostgresSkip(): string | false {
  let reason: string | null = null;
  if (postgresBinDir() === null) reason = `no PostgreSQL server binaries (initdb, postgres) under ${BIN_ROOT}/*/bin`;
  else if (process.getuid?.() === 0 && postgresAccount() === null)
    reason = "running as root and there is no `postgres` OS user to run the server as";
  if (reason === null) return false;
  if (process.env.CI === "true" || process.env.CI === "1")
    throw new Error(`${reason}, and CI=true: the database-outage test must run in CI.`);
  console.log(`# skipping: ${reason}`);
  return reason;
}

/** uid and gid of the `postgres` OS user, from /etc/passwd. */
function postgresAccount(): { uid: number; gid: number } | null {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (line === undefined) return null;
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/** Whom the server runs as: the `postgres` user under root, else ourselves. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const account = postgresAccount();
  if (account === null) throw new Error("running as root and there is no `postgres` OS user to run PostgreSQL as");
  return account;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, "127.0.0.1", () => done(true));
  });
}

/** True once the server answers a query (listening alone is not enough: "the database system is starting up"). */
async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export interface ThrowawayPostgres {
  port: number;
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  url: string;
  /** The server's PID while it runs, else null. */
  pid(): number | null;
  /** Starts the server (initdb the first time) and waits until it answers queries. */
  start(): Promise<void>;
  /**
   * Shuts the server down and waits for its exit: "fast" (SIGINT: open
   * connections are terminated, new ones refused) or "immediate" (SIGQUIT,
   * no checkpoint). Afterwards nothing listens on the port.
   */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  /** stop() (when running), then start() on the same port and data directory. */
  restart(): Promise<void>;
  /** Stops the server (immediately) and removes its directory. */
  destroy(): Promise<void>;
  /** The server's last log lines (stderr), for failure messages. */
  log(): string;
}

/** Every server started here, shut down by PID if the test process exits first. */
const live = new Map<ChildProcess, string>();
process.on("exit", () => {
  for (const [child, dir] of live) {
    // Immediate shutdown: the postmaster ends its backends itself.
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGQUIT");
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort: the server may still be writing as it goes
    }
  }
});

/**
 * @example
 * const db = await startThrowawayPostgres();
 * after(() => db.destroy());
 * await db.stop(); // the outage
 * await db.restart();
 */
export async function startThrowawayPostgres(options: { port?: number } = {}): Promise<ThrowawayPostgres> {
  const bin = postgresBinDir();
  if (bin === null) throw new Error(`no PostgreSQL server binaries under ${BIN_ROOT}/*/bin`);
  const port = options.port ?? (await freePort());
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), "latch-pg-"));
  // The directory is ours (root, 0700): the server's user must own it.
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, "data");
  let child: ChildProcess | null = null;
  let output = "";
  let initialised = false;

  async function initdb(): Promise<void> {
    try {
      await promisify(execFile)(
        join(bin!, "initdb"),
        ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"],
        {
          ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
          cwd: dir,
          env: { PATH: process.env.PATH ?? "", LC_ALL: "C" },
          timeout: 60_000,
        },
      );
    } catch (error) {
      const failure = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`initdb failed: ${failure.message}\n${failure.stdout ?? ""}${failure.stderr ?? ""}`);
    }
    initialised = true;
  }

  async function start(): Promise<void> {
    if (child !== null) throw new Error("the throw-away PostgreSQL is already running");
    if (!initialised) await initdb();
    const args = [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir, // its Unix socket beside the data, not in /var/run/postgresql
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=100",
      "-c",
      "logging_collector=off",
    ];
    const started = spawn(join(bin!, "postgres"), args, {
      ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", LC_ALL: "C" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    child = started;
    live.set(started, dir);
    started.stderr!.on("data", (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
    });
    started.once("exit", () => {
      live.delete(started);
      if (child === started) child = null;
    });
    const deadline = Date.now() + 30_000;
    while (!(await answers(url))) {
      if (started.exitCode !== null || started.signalCode !== null)
        throw new Error(`the throw-away PostgreSQL exited at start (${started.exitCode ?? started.signalCode}):\n${output}`);
      if (Date.now() > deadline) {
        started.kill("SIGQUIT");
        throw new Error(`the throw-away PostgreSQL did not answer within 30 s:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
    const running = child;
    if (running === null) return;
    if (running.exitCode === null && running.signalCode === null) {
      const exited = new Promise((resolve) => running.once("exit", resolve));
      running.kill(mode === "fast" ? "SIGINT" : "SIGQUIT");
      const timer = setTimeout(() => running.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    child = null;
    live.delete(running);
    // Backends exit with the postmaster; make sure the port really refuses.
    const deadline = Date.now() + 5000;
    while (await accepts(port)) {
      if (Date.now() > deadline) throw new Error(`port ${port} still accepts connections after the throw-away PostgreSQL exited`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  await start();
  return {
    port,
    url,
    pid: () => child?.pid ?? null,
    start,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async destroy() {
      await stop("immediate");
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}
