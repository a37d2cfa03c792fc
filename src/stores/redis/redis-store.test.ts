import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { isLatchError } from "../../core/errors.js";
import type { Session, Stores, UserRecord } from "../../core/store.js";
import { REDIS_URL, serviceSkip } from "../../testing/services.js";
import { createMemoryStores } from "../memory/memory-store.js";
import { runStoreConformance } from "../store-conformance.js";
import { connectRedis } from "./redis-connection.js";
import { deleteKeysUnder, keysUnder, redisBinariesAvailable, startRedisCluster, testPrefix } from "./redis-test-support.js";
import { createRedisSessionCache } from "./redis-session-cache.js";
import { createRedisStores } from "./redis-store.js";
import { subscribeRevocations } from "./revocations.js";
import { testSession, testUser } from "../test-fixtures.js";
import type { RevocationEvent } from "./revocations.js";

const skip = await serviceSkip("redis");
const minute = 60_000;

runStoreConformance(
  "redis",
  async () => {
    const prefix = testPrefix();
    return {
      stores: await createRedisStores({ redis: connectRedis(REDIS_URL), database: createMemoryStores(), prefix }),
      cleanup: () => deleteKeysUnder(prefix),
    };
  },
  { skip },
);

// Every script must touch one hash slot only: a cluster refuses anything else (CROSSSLOT).
runStoreConformance(
  "redis cluster",
  async () => {
    const cluster = await startRedisCluster();
    return { stores: await createRedisStores({ url: cluster.url, database: createMemoryStores() }), cleanup: () => cluster.stop() };
  },
  { skip: redisBinariesAvailable() ? false : "redis-server and redis-cli are not installed" },
);

describe("redis session store", { skip }, () => {
  const prefix = testPrefix();
  let stores: Stores;
  let admin: Redis;

  before(async () => {
    stores = await createRedisStores({ redis: connectRedis(REDIS_URL), database: createMemoryStores(), prefix });
    admin = new Redis(REDIS_URL);
  });
  after(async () => {
    await stores?.close();
    await deleteKeysUnder(prefix);
    admin?.disconnect();
  });

  const newUser = (): UserRecord => testUser();
  const newSession = (userId: string, overrides: Partial<Session> = {}): Session =>
    testSession(userId, { userAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", ...overrides });

  async function userWithSessions(n: number): Promise<{ user: UserRecord; sessions: Session[] }> {
    const user = newUser();
    await stores.users.createUser(user);
    const sessions = [];
    for (let i = 0; i < n; i += 1) {
      const session = newSession(user.id);
      await stores.sessions.createSession(session);
      sessions.push(session);
    }
    return { user, sessions };
  }

  it("leaves no key without an expiry after create, touch, rotate and revoke", async () => {
    const { user, sessions } = await userWithSessions(3);
    const now = Date.now();
    await stores.sessions.touchSession(sessions[0]!.id, now + 1000, now + 31 * minute);
    await stores.sessions.rotateSession(sessions[1]!.id, newSession(user.id));
    await stores.sessions.deleteSession(sessions[2]!.id);
    await stores.users.updateUserRoles(user.id, ["user", "admin"], now);
    await stores.limits.hit(`ttl:${randomUUID()}`, minute, now);
    const { user: other } = await userWithSessions(1);
    await stores.sessions.deleteUserSessions(other.id);
    const keys = await keysUnder(admin, prefix);
    assert.ok(keys.length >= 3, `found ${keys.length} keys`);
    for (const key of keys) {
      const ttl = await admin.pttl(key);
      assert.ok(ttl > 0, `${key} has PTTL ${ttl}`);
    }
  });

  it("keeps a session deleted while touches race the delete", async () => {
    for (let round = 0; round < 20; round += 1) {
      const { sessions } = await userWithSessions(1);
      const id = sessions[0]!.id;
      const now = Date.now();
      const racing = Array.from({ length: 20 }, (_, i) => stores.sessions.touchSession(id, now + i, now + i + 30 * minute));
      await Promise.all([...racing.slice(0, 10), stores.sessions.deleteSession(id), ...racing.slice(10)]);
      assert.equal(await stores.sessions.findSession(id, now + 50), null);
      assert.equal(await stores.sessions.touchSession(id, now + 60, now + 60 + 30 * minute), false);
      assert.equal(await stores.sessions.findSession(id, now + 70), null);
    }
  });

  it("never keeps a revoked or rotated id in the user's index", async () => {
    const { user, sessions } = await userWithSessions(4);
    const [a, b, c, d] = sessions as [Session, Session, Session, Session];
    const next = newSession(user.id);
    await stores.sessions.deleteSession(a.id);
    await stores.sessions.rotateSession(b.id, next);
    await stores.sessions.deleteUserSessions(user.id, { exceptId: c.id });
    const key = `${prefix}{${c.id.slice(0, 8)}}`;
    const fields = (await admin.hkeys(key)).filter((f) => f.length === 22 && !f.includes(":"));
    assert.deepEqual(fields, [c.id.slice(8)]);
    for (const gone of [a, b, d, next]) assert.equal(await stores.sessions.findSession(gone.id, Date.now()), null);
  });

  it("shares one user-agent text between sessions and frees it with the last one", async () => {
    const { user, sessions } = await userWithSessions(3);
    const key = `${prefix}{${sessions[0]!.id.slice(0, 8)}}`;
    const agents = async (): Promise<string[]> =>
      (await admin.hkeys(key)).filter((f) => f.startsWith("a") && Buffer.byteLength(f, "latin1") <= 7);
    assert.equal((await admin.hvals(key)).filter((v) => v === sessions[0]!.userAgent).length, 1);
    await stores.sessions.deleteUserSessions(user.id, { exceptId: sessions[0]!.id });
    assert.equal((await stores.sessions.listUserSessions(user.id, Date.now()))[0]?.userAgent, sessions[0]!.userAgent);
    await stores.sessions.deleteSession(sessions[0]!.id);
    assert.equal(await admin.hexists(key, "u"), 0);
    assert.deepEqual(await agents(), []);
  });

  it("keeps each user's sessions apart when two users share a slot tag", async () => {
    const [first, second] = [newUser(), newUser()];
    await stores.users.createUser(first);
    await stores.users.createUser(second);
    // Forge a tag collision (48 bits: too rare to find by search in a test):
    // the second user's session gets the first user's tag. Only operations
    // by session id are meaningful then; by-user ones look under the real tag.
    const tag = newSession(first.id).id.slice(0, 8);
    const mine = newSession(first.id);
    const theirs = { ...newSession(second.id), id: tag + newSession(second.id).id.slice(8) };
    await stores.sessions.createSession(mine);
    await stores.sessions.createSession(theirs);
    assert.equal((await stores.sessions.findSession(mine.id, Date.now()))?.user.id, first.id);
    assert.equal((await stores.sessions.findSession(theirs.id, Date.now()))?.user.id, second.id);
    const now = Date.now();
    assert.equal(await stores.sessions.touchSession(theirs.id, now + 1000, now + 31 * minute), true);
    assert.equal((await stores.sessions.findSession(theirs.id, now + 2000))?.session.lastSeenAt, now + 1000);
    assert.equal(await stores.sessions.deleteSession(theirs.id), second.id);
    assert.equal(await stores.sessions.deleteSession(mine.id), first.id);
  });

  it("refuses a copy of the user read before a role change", async () => {
    const { user, sessions } = await userWithSessions(1);
    const cache = createRedisSessionCache({ redis: admin, prefix });
    const read = await cache.read(sessions[0]!.id);
    await stores.users.updateUserRoles(user.id, ["user", "admin"], Date.now());
    // A reader that fetched the user before the change must not write it back.
    assert.equal(
      await cache.refillUser(
        { id: user.id, username: user.username, email: null, emailVerified: false, roles: ["user"], mfa: false, createdAt: user.createdAt },
        read.at,
      ),
      false,
    );
    assert.deepEqual((await stores.sessions.findSession(sessions[0]!.id, Date.now()))?.user.roles, ["user", "admin"]);
  });

  it("refuses to refill a session read from the database before it was revoked", async () => {
    const { user, sessions } = await userWithSessions(1);
    const session = sessions[0]!;
    const cache = createRedisSessionCache({ redis: admin, prefix });
    await stores.sessions.deleteSession(session.id);
    const profile = {
      id: user.id,
      username: user.username,
      email: null,
      emailVerified: false,
      roles: user.roles,
      mfa: false,
      createdAt: user.createdAt,
    };
    // A reader missed in Redis, read the session from the database, and was
    // overtaken by the revocation before writing it back.
    const staleReadAt = Date.now() - 5_000;
    assert.equal(await cache.write(session, { mode: "refill", user: profile, readAt: staleReadAt, epoch: 0 }), "raced");
    assert.equal(await stores.sessions.findSession(session.id, Date.now()), null);
    // A read that started after the revocation may refill. Times are whole
    // milliseconds and a read in the revocation's own millisecond counts as
    // racing it, so let one pass.
    await new Promise((resolve) => setTimeout(resolve, 2));
    const { at } = await cache.read(session.id);
    assert.equal(await cache.write(session, { mode: "refill", user: profile, readAt: at, epoch: 0 }), "ok");
  });

  it("drops entries cached before the epoch", async () => {
    const { sessions } = await userWithSessions(1);
    const session = sessions[0]!;
    const cache = createRedisSessionCache({ redis: admin, prefix });
    const { at } = await cache.read(newSession(randomUUID()).id);
    assert.equal(await cache.write(session, { mode: "refill", user: null, readAt: at, epoch: 0 }), "ok");
    assert.notEqual((await cache.read(session.id, { epoch: 0 })).session, null);
    const epoch = await cache.bumpEpoch();
    assert.ok(epoch >= at);
    await new Promise((resolve) => setTimeout(resolve, 2));
    assert.equal((await cache.read(session.id, { epoch: epoch + 1 })).session, null);
    assert.equal(await admin.hexists(`${prefix}{${session.id.slice(0, 8)}}`, session.id.slice(8)), 0);
  });

  it("announces revocations on the channel", async () => {
    const events: RevocationEvent[] = [];
    let up: () => void = () => {};
    const subscribed = new Promise<void>((resolve) => (up = resolve));
    const subscription = subscribeRevocations({
      redis: admin,
      prefix,
      onEvent: (e) => events.push(e),
      onStatus: (s) => s === "up" && up(),
    });
    try {
      await subscribed;
      const { user, sessions } = await userWithSessions(3);
      const next = newSession(user.id);
      await stores.sessions.deleteSession(sessions[0]!.id);
      await stores.sessions.rotateSession(sessions[1]!.id, next);
      await stores.sessions.deleteUserSessions(user.id, { exceptId: next.id });
      await stores.users.updateUserRoles(user.id, ["user", "admin"], Date.now());
      await stores.users.deleteUser(user.id);
      for (let i = 0; i < 50 && events.length < 6; i += 1) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        events.map((e) => e.kind),
        ["session", "session", "user-sessions", "user", "user-sessions", "user"],
      );
      assert.deepEqual(events[0], { kind: "session", sessionId: sessions[0]!.id });
      assert.deepEqual(events[1], { kind: "session", sessionId: sessions[1]!.id });
      assert.equal(events[2]?.kind === "user-sessions" && events[2].exceptId, next.id);
    } finally {
      await subscription.close();
    }
  });

  it("fails fast with unavailable when Redis cannot be reached", async () => {
    const down = await createRedisStores({ url: "redis://127.0.0.1:1", database: createMemoryStores(), prefix });
    try {
      const started = Date.now();
      await assert.rejects(down.sessions.findSession(newSession(randomUUID()).id, Date.now()), (e) => isLatchError(e, "unavailable"));
      await assert.rejects(down.limits.hit("x", 1000, Date.now()), (e) => isLatchError(e, "unavailable"));
      assert.ok(Date.now() - started < 1000);
      assert.equal((await down.health()).redis, "down");
    } finally {
      await down.close();
    }
  });
});
