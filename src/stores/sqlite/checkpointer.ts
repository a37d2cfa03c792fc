import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { Database } from "better-sqlite3";

/**
 * The thread's code: its own connection to the same file copies committed WAL
 * frames into the database every `intervalMs`, so the event loop's
 * connection never does (with auto-checkpoint on, the commit that crossed
 * 1,000 WAL pages did it in place, holding the loop for 20–35 ms: measured
 * in docs/performance.md). PASSIVE never waits for readers or writers; what
 * it cannot copy now it copies next time. Plain JavaScript, evaluated, so it
 * runs the same from dist/ and under tsx (whose loader a worker would not
 * inherit).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("busy_timeout = 5000");
function checkpoint() {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
  } catch (error) {
    parentPort.postMessage({ failed: String(error && error.message) });
  }
}
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.postMessage({ ready: true });
parentPort.on("message", (message) => {
  if (message !== "stop") return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

const DRIVER = createRequire(import.meta.url).resolve("better-sqlite3");

/** SQLite's own default auto-checkpoint, put back when the checkpointer cannot run. */
const AUTO_CHECKPOINT_PAGES = 1000;

export interface Checkpointer {
  /** Stops the thread after a last checkpoint. */
  stop(): Promise<void>;
}

/**
 * Moves WAL checkpoints off the event loop. Until the thread is up, and again
 * if it ever fails, the connection checkpoints itself as SQLite does by
 * default, so the WAL can never grow without bound. Started `delayMs` after
 * the store opens: a store that lives for less (a CLI command, a test) never
 * pays for a thread.
 */
export function startCheckpointer(db: Database, path: string, options: { intervalMs?: number; delayMs?: number } = {}): Checkpointer {
  let worker: Worker | null = null;
  let stopped = false;
  const fallBack = (): void => {
    if (db.open) db.pragma(`wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
  };
  const start = setTimeout(() => {
    if (stopped) return;
    worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver: DRIVER, path, intervalMs: options.intervalMs ?? 1_000 } });
    worker.unref();
    worker.on("message", (message: { ready?: boolean; failed?: string }) => {
      if (message.ready === true && !stopped && db.open) db.pragma("wal_autocheckpoint = 0");
      if (message.failed !== undefined) fallBack();
    });
    worker.on("error", fallBack);
    worker.on("exit", () => {
      worker = null;
      fallBack();
    });
  }, options.delayMs ?? 1_000);
  start.unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(start);
      const running = worker;
      if (running === null) return;
      fallBack();
      // Referenced while it stops: the caller awaits its last checkpoint.
      running.ref();
      const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
      running.postMessage("stop");
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2_000)))]);
      clearTimeout(timer);
      if (worker !== null) await running.terminate();
    },
  };
}
