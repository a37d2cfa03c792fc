/**
 * How long after `latch users revoke-sessions` exits a running server
 * refuses the revoked session (issue 11, item 1), over N runs (default 100).
 *
 * A real server on SQLite (or PostgreSQL with `postgres`) and a private
 * redis-server; each run signs in, warms the server's cache with five
 * requests, runs the real CLI process, and polls GET /protected every 2 ms
 * from the CLI's exit until the first 401. Prints p50, p90 and max, and how
 * many requests were still accepted after the exit.
 *
 *   node --import tsx bench/issue-11/cli-revocation.ts [runs] [sqlite|postgres]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { startRedisServer } from "../../src/stores/redis/redis-test-support.js";
import { freePort, runLatch } from "../../test/support/latch-process.js";
import { createTestDatabase } from "../../test/support/postgres-database.js";
import { call, latchEnv, PASSWORD, signIn, startTracked, stopLatch, uniqueName } from "../../test/support/several-latches.js";

const runs = Number(process.argv[2] ?? 100);
const kind = process.argv[3] ?? "sqlite";
const dir = mkdtempSync(join(tmpdir(), "latch-cli-delay-"));
const redis = await startRedisServer();
const db = kind === "postgres" ? await createTestDatabase("latch_cli_delay") : undefined;
const env = latchEnv(db?.url ?? `sqlite:${join(dir, "cli.db")}`, redis.url);
const server = await startTracked({ ...env, PORT: String(await freePort()) });

function cli(args: string[]): Promise<{ code: number | null; stderr: string; exitedAt: number }> {
  const child = runLatch(args, env);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stderr, exitedAt: performance.now() })));
}

try {
  const name = uniqueName("delay");
  const created = await new Promise<number | null>((resolve) =>
    runLatch(["users", "create", name], { ...env, LATCH_PASSWORD: PASSWORD }).once("exit", resolve),
  );
  if (created !== 0) throw new Error("could not create the user");
  const delays: number[] = [];
  let accepted = 0;
  for (let run = 0; run < runs; run += 1) {
    const session = await signIn(server.url, name);
    for (let i = 0; i < 5; i += 1)
      if ((await call(server.url, "GET", "/protected", { session })).status !== 200) throw new Error("not valid before");
    const result = await cli(["users", "revoke-sessions", name]);
    if (result.code !== 0) throw new Error(`CLI failed: ${result.stderr}`);
    for (;;) {
      const status = (await call(server.url, "GET", "/protected", { session })).status;
      const at = performance.now();
      if (status === 401) {
        delays.push(Math.max(0, at - result.exitedAt));
        break;
      }
      accepted += 1;
      if (at - result.exitedAt > 5000) throw new Error("not refused within 5 s");
      await sleep(2);
    }
  }
  const sorted = [...delays].sort((a, b) => a - b);
  const pick = (q: number): string => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))]!.toFixed(1);
  console.log(
    JSON.stringify({
      store: `${kind} + Redis`,
      runs,
      p50Ms: pick(0.5),
      p90Ms: pick(0.9),
      maxMs: sorted.at(-1)!.toFixed(1),
      acceptedAfterExit: accepted,
    }),
  );
} finally {
  await stopLatch(server);
  await redis.kill();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
}
