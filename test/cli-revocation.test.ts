import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, describe, it } from "node:test";
import { startRedisServer } from "../src/stores/redis/redis-test-support.js";
import type { RedisServer } from "../src/stores/redis/redis-test-support.js";
import { serviceSkip } from "../src/testing/services.js";
import { freePort, runLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";
import { createTestDatabase } from "./support/postgres-database.js";
import type { TestDatabase } from "./support/postgres-database.js";
import {
  call,
  latchEnv,
  PASSWORD,
  redisBinariesSkip,
  signIn,
  signUp,
  sleep,
  startTracked,
  stopLatch,
  uniqueName,
} from "./support/several-latches.js";
import type { Session } from "./support/several-latches.js";

/**
 * The admin CLI is a writer like any server: a revocation it reports as done
 * is refused by a running server within one second, on SQLite + Redis and
 * PostgreSQL + Redis; and when it cannot reach Redis it says so (exit 1, one
 * line) while the servers fail closed anyway. Real processes, a private
 * redis-server each, real databases.
 */
const redisSkip = redisBinariesSkip();
const postgresSkip = redisSkip || (await serviceSkip("postgres"));

interface Cli {
  code: number | null;
  stdout: string;
  stderr: string;
  /** performance.now() when the process had exited. */
  exitedAt: number;
}

function cli(args: string[], env: Record<string, string>): Promise<Cli> {
  const child = runLatch(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr, exitedAt: performance.now() })));
}

/**
 * Polls `path` with the session until it answers `expected` and stays so;
 * returns how long after `since` that was. Fails on any other status than
 * 200 or `expected`, or after two seconds.
 */
async function refusedWithin(base: string, session: Session, path: string, expected: number, since: number): Promise<number> {
  for (;;) {
    const answer = await call(base, "GET", path, { session });
    const at = performance.now();
    if (answer.status === expected) {
      for (let i = 0; i < 3; i += 1) assert.equal((await call(base, "GET", path, { session })).status, expected, "the refusal sticks");
      return at - since;
    }
    assert.equal(answer.status, 200, `GET ${path} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    if (at - since > 2000) assert.fail(`GET ${path} still 200 ${Math.round(at - since)} ms after the CLI exited`);
    await sleep(10);
  }
}

/** Makes the cache on the server warm for the session: the state a running server is in. */
async function warm(base: string, session: Session, path: string): Promise<void> {
  for (let i = 0; i < 5; i += 1) assert.equal((await call(base, "GET", path, { session })).status, 200);
}

function oneLine(result: Cli): void {
  assert.notEqual(result.code, 0, `the CLI reported success: ${result.stdout}`);
  assert.equal(result.stderr.trimEnd().split("\n").length, 1, `one line: ${result.stderr}`);
  assert.match(result.stderr, /^latch: /);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
}

interface Backend {
  name: string;
  skip: string | false;
  database(): Promise<{ url: string; drop(): Promise<void> }>;
}

const dir = mkdtempSync(join(tmpdir(), "latch-cli-revocation-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const backends: Backend[] = [
  {
    name: "SQLite + Redis",
    skip: redisSkip,
    database: async () => ({ url: `sqlite:${join(dir, `${uniqueName("db")}.db`)}`, drop: async () => {} }),
  },
  {
    name: "PostgreSQL + Redis",
    skip: postgresSkip,
    async database() {
      const db: TestDatabase = await createTestDatabase("latch_cli_rev");
      return { url: db.url, drop: () => db.drop() };
    },
  },
];

for (const backend of backends) {
  describe(`revocations by the admin CLI reach a running server (${backend.name})`, { skip: backend.skip, timeout: 120_000 }, () => {
    let redis: RedisServer;
    let server: LatchProcess;
    let env: Record<string, string>;
    let drop: () => Promise<void> = async () => {};

    const start = async (): Promise<void> => {
      redis = await startRedisServer();
      const database = await backend.database();
      drop = database.drop;
      env = latchEnv(database.url, redis.url);
      server = await startTracked({ ...env, PORT: String(await freePort()) });
    };
    after(async () => {
      await stopLatch(server);
      await redis?.kill();
      await drop();
    });

    it("demotes an admin (403 within a second), ends a user's sessions, every user's, and a deleted user's (401 within a second)", async () => {
      await start();
      const boss = uniqueName("boss");
      const created = await cli(["users", "create", boss, "--admin"], { ...env, LATCH_PASSWORD: PASSWORD });
      assert.equal(created.code, 0, created.stderr);
      const session = await signIn(server.url, boss);
      await warm(server.url, session, "/admin");

      const demoted = await cli(["users", "roles", boss, "user"], env);
      assert.equal(demoted.code, 0, demoted.stderr);
      assert.match(demoted.stdout, /now has roles user$/m);
      const demotedMs = await refusedWithin(server.url, session, "/admin", 403, demoted.exitedAt);
      assert.ok(demotedMs < 1000, `403 ${demotedMs} ms after the CLI exited`);
      assert.deepEqual((await call(server.url, "GET", "/me", { session })).body.user.roles, ["user"]);

      await warm(server.url, session, "/protected");
      const revoked = await cli(["users", "revoke-sessions", boss], env);
      assert.equal(revoked.code, 0, revoked.stderr);
      assert.match(revoked.stdout, /revoked 1 session\(s\)/);
      assert.ok((await refusedWithin(server.url, session, "/protected", 401, revoked.exitedAt)) < 1000);

      const one = await signIn(server.url, boss);
      const two = await signUp(server.url);
      await warm(server.url, one, "/protected");
      await warm(server.url, two, "/protected");
      const everyone = await cli(["sessions", "revoke-all"], env);
      assert.equal(everyone.code, 0, everyone.stderr);
      for (const ended of [one, two]) assert.ok((await refusedWithin(server.url, ended, "/protected", 401, everyone.exitedAt)) < 1000);

      const doomed = await signUp(server.url);
      await warm(server.url, doomed, "/protected");
      const deleted = await cli(["users", "delete", doomed.username], env);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.ok((await refusedWithin(server.url, doomed, "/protected", 401, deleted.exitedAt)) < 1000);
    });

    it("when the CLI cannot reach Redis but the server can: exit 1 with one line, and the server refuses within a second", async () => {
      const victim = await signUp(server.url);
      const admin = uniqueName("boss");
      assert.equal((await cli(["users", "create", admin, "--admin"], { ...env, LATCH_PASSWORD: PASSWORD })).code, 0);
      const adminSession = await signIn(server.url, admin);
      await warm(server.url, victim, "/protected");
      await warm(server.url, adminSession, "/admin");
      // A Redis the CLI cannot reach: nothing listens on this port.
      const cutOff = { ...env, REDIS_URL: `redis://127.0.0.1:${await freePort()}` };

      const revoked = await cli(["users", "revoke-sessions", victim.username], cutOff);
      oneLine(revoked);
      assert.match(revoked.stderr, /revoked 1 session\(s\) .* in the database; Redis did not take the change/);
      assert.ok((await refusedWithin(server.url, victim, "/protected", 401, revoked.exitedAt)) < 1000);

      const demoted = await cli(["users", "roles", admin, "user"], cutOff);
      oneLine(demoted);
      assert.ok((await refusedWithin(server.url, adminSession, "/admin", 403, demoted.exitedAt)) < 1000);
      // The server keeps using Redis for everything else.
      assert.equal((await call(server.url, "GET", "/readyz")).body.stores.redis, "ok");
    });

    it("when Redis is down for everyone: the CLI exits 1 with one line, the server refuses at once, and still does once Redis is back", async () => {
      const victim = await signUp(server.url);
      await warm(server.url, victim, "/protected");
      await redis.kill();
      const revoked = await cli(["users", "revoke-sessions", victim.username], env);
      oneLine(revoked);
      assert.ok((await refusedWithin(server.url, victim, "/protected", 401, revoked.exitedAt)) < 1000);
      await redis.restart();
      for (let i = 0; i < 50 && (await call(server.url, "GET", "/readyz")).body?.stores?.redis !== "ok"; i += 1) await sleep(100);
      assert.equal((await call(server.url, "GET", "/readyz")).body.stores.redis, "ok");
      assert.equal((await call(server.url, "GET", "/protected", { session: victim })).status, 401);
    });
  });
}
