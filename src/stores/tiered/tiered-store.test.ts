import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import { Redis } from "ioredis";
import { pino } from "pino";
import type { Session, Stores, UserRecord } from "../../core/store.js";
import { POSTGRES_URL, REDIS_URL, serviceSkip } from "../../testing/services.js";
import { createMemoryStores } from "../memory/memory-store.js";
import { createPostgresStores } from "../postgres/index.js";
import { connectRedis } from "../redis/redis-connection.js";
import { deleteKeysUnder, startRedisServer, testPrefix, waitFor } from "../redis/redis-test-support.js";
import type { RedisServer } from "../redis/redis-test-support.js";
import { runStoreConformance } from "../store-conformance.js";
import { testSession, testUser } from "../test-fixtures.js";
import { dropTestSchema, testSchemaName } from "../postgres/postgres-test-support.js";
import { createTieredStores } from "./tiered-store.js";
import type { TieredLogger } from "./tiered-store.js";
import { startTcpProxy } from "../../testing/tcp-proxy.js";

const skip = await serviceSkip("redis");
const postgresSkip = skip || (await serviceSkip("postgres"));
const minute = 60_000;

interface Logs extends TieredLogger {
  warnings: string[];
  infos: string[];
}

function captureLogs(): Logs {
  const warnings: string[] = [];
  const infos: string[] = [];
  return { warnings, infos, warn: (_, message) => void warnings.push(message), info: (_, message) => void infos.push(message) };
}

async function redisInUse(stores: Stores): Promise<boolean> {
  return (await stores.health()).redis === "ok";
}

runStoreConformance(
  "tiered over memory",
  async () => {
    const prefix = testPrefix();
    const stores = createTieredStores({ database: createMemoryStores(), redis: connectRedis(REDIS_URL), prefix, logger: captureLogs() });
    await waitFor("Redis in use", () => redisInUse(stores));
    return { stores, cleanup: () => deleteKeysUnder(prefix) };
  },
  { skip },
);

runStoreConformance(
  "tiered over postgres",
  async () => {
    const prefix = testPrefix();
    const schema = testSchemaName();
    const database = await createPostgresStores({ url: POSTGRES_URL, schema });
    const stores = createTieredStores({ database, redis: connectRedis(REDIS_URL), prefix, logger: captureLogs() });
    await waitFor("Redis in use", () => redisInUse(stores));
    async function cleanup(): Promise<void> {
      await deleteKeysUnder(prefix);
      await dropTestSchema(schema);
    }
    return { stores, cleanup };
  },
  { skip: postgresSkip },
);

const newUser = (): UserRecord => testUser();
const newSession = (userId: string): Session => testSession(userId, { userAgent: "fault-test/1.0" });

describe("tiered store while Redis fails", { skip }, () => {
  const prefix = "latch-fault:";
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });

  async function setup(): Promise<{
    server: RedisServer;
    stores: Stores;
    database: Stores;
    logs: Logs;
    cached(session: Session): Promise<boolean>;
  }> {
    const server = await startRedisServer();
    cleanups.push(() => server.kill());
    const database = createMemoryStores();
    const logs = captureLogs();
    const stores = createTieredStores({ database, redis: connectRedis(server.url), prefix, logger: logs, probeIntervalMs: 50 });
    cleanups.push(() => stores.close());
    const admin = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 100 });
    admin.on("error", () => {});
    cleanups.push(async () => admin.disconnect());
    await waitFor("Redis in use", () => redisInUse(stores));
    const cached = async (session: Session): Promise<boolean> =>
      (await admin.hexists(`${prefix}{${session.id.slice(0, 8)}}`, session.id.slice(8))) === 1;
    return { server, stores, database, logs, cached };
  }

  async function signedIn(stores: Stores): Promise<{ user: UserRecord; session: Session }> {
    const user = newUser();
    await stores.users.createUser(user);
    const session = newSession(user.id);
    await stores.sessions.createSession(session);
    return { user, session };
  }

  it("keeps validating sessions made before Redis died, from the database, and logs it once", async () => {
    const { server, stores, logs, cached } = await setup();
    const { session } = await signedIn(stores);
    assert.equal(await cached(session), true);
    await server.kill();
    const startedAt = Date.now();
    for (let i = 0; i < 20; i += 1) assert.equal((await stores.sessions.findSession(session.id, Date.now()))?.session.id, session.id);
    assert.ok(Date.now() - startedAt < 1000, `took ${Date.now() - startedAt} ms`);
    assert.equal((await stores.health()).redis, "down");
    assert.equal(logs.warnings.length, 1, logs.warnings.join("; "));
  });

  it("signs in, counts attempts and signs out while Redis is down", async () => {
    const { server, stores } = await setup();
    await server.kill();
    const { user, session } = await signedIn(stores);
    assert.equal((await stores.sessions.findSession(session.id, Date.now()))?.user.id, user.id);
    const key = `login:${randomUUID()}`;
    assert.equal((await stores.limits.hit(key, minute, Date.now())).count, 1);
    assert.equal((await stores.limits.hit(key, minute, Date.now())).count, 2);
    assert.equal(await stores.sessions.deleteSession(session.id), user.id);
    assert.equal(await stores.sessions.findSession(session.id, Date.now()), null);
  });

  it("keeps a session deleted while Redis was down deleted once it restarts, and uses Redis again", async () => {
    const { server, stores, logs, cached } = await setup();
    const { user, session } = await signedIn(stores);
    await server.kill();
    assert.equal(await stores.sessions.deleteSession(session.id), user.id);
    await server.restart();
    await waitFor("Redis in use again", () => redisInUse(stores));
    assert.equal(await stores.sessions.findSession(session.id, Date.now()), null);
    const fresh = newSession(user.id);
    await stores.sessions.createSession(fresh);
    assert.equal(await cached(fresh), true);
    assert.equal((await stores.sessions.findSession(fresh.id, Date.now()))?.session.id, fresh.id);
    assert.deepEqual([logs.warnings.length, logs.infos.length], [1, 1]);
  });

  it("refuses a session deleted while Redis was paused, after it resumes", async () => {
    const { server, stores, cached } = await setup();
    const { user, session } = await signedIn(stores);
    assert.equal(await cached(session), true);
    server.pause();
    try {
      const startedAt = Date.now();
      assert.equal(await stores.sessions.deleteSession(session.id), user.id);
      assert.ok(Date.now() - startedAt < 1500, `delete took ${Date.now() - startedAt} ms`);
      assert.equal(await stores.sessions.findSession(session.id, Date.now()), null);
    } finally {
      server.resume();
    }
    await waitFor("Redis in use again", () => redisInUse(stores));
    assert.equal(await stores.sessions.findSession(session.id, Date.now()), null);
  });

  it("drops a copy another process revoked while it alone could not reach Redis", async () => {
    const { server, stores: direct, database, cached } = await setup();
    const proxy = await startTcpProxy(server.port);
    cleanups.push(() => proxy.close());
    const cutOff = createTieredStores({
      database,
      redis: connectRedis(`redis://127.0.0.1:${proxy.port}`),
      prefix,
      logger: captureLogs(),
      probeIntervalMs: 50,
    });
    cleanups.push(() => cutOff.close());
    await waitFor("Redis in use through the proxy", () => redisInUse(cutOff));

    const { user, session } = await signedIn(direct);
    proxy.cut();
    await waitFor("the cut-off process to notice", async () => (await cutOff.health()).redis === "down");
    assert.equal(await cutOff.sessions.deleteSession(session.id), user.id);
    // The hazard: Redis still holds the copy the database no longer has.
    assert.equal(await cached(session), true);
    proxy.restore();
    await waitFor("Redis in use again through the proxy", () => redisInUse(cutOff));
    await waitFor(
      "the other process to refuse the copy",
      async () => (await direct.sessions.findSession(session.id, Date.now())) === null,
      2000,
    );
    assert.equal(await cached(session), false);
    assert.equal(await cutOff.sessions.findSession(session.id, Date.now()), null);
  });
});

describe("tiered store logging a Redis error reply", { skip }, () => {
  it("logs a WRONGTYPE reply without the command or its arguments (session handle, hashes, user agent)", async () => {
    const prefix = testPrefix();
    const lines: string[] = [];
    // The server's real logger: pino with its standard error serializer, which
    // copies every enumerable property of the error (ioredis attaches `command`).
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const stores = createTieredStores({ database: createMemoryStores(), redis: connectRedis(REDIS_URL), prefix, logger });
    const admin = new Redis(REDIS_URL);
    try {
      await waitFor("Redis in use", () => redisInUse(stores));
      const user = newUser();
      await stores.users.createUser(user);
      const session = newSession(user.id);
      await stores.sessions.createSession(session);
      // The user's hash replaced by a string: every script on it now fails with WRONGTYPE.
      const key = `${prefix}{${session.id.slice(0, 8)}}`;
      await admin.del(key);
      await admin.set(key, "not a hash");
      assert.equal((await stores.sessions.findSession(session.id, Date.now()))?.session.id, session.id, "the database still answers");
      const logged = lines.join("\n");
      assert.match(logged, /WRONGTYPE/, "the reply itself is logged");
      for (const secret of [
        session.id,
        session.id.slice(8),
        Buffer.from(session.secretHash).toString("hex"),
        Buffer.from(session.secretHash).toString("base64"),
        "fault-test/1.0",
        user.id,
        key,
      ]) {
        assert.equal(logged.includes(secret), false, `the log holds ${secret}: ${logged}`);
      }
      assert.doesNotMatch(logged, /"command"|"args"|evalsha/i);
    } finally {
      admin.disconnect();
      await stores.close();
      await deleteKeysUnder(prefix);
    }
  });
});
