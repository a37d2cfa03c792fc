import { publicUser } from "../../core/accounts.js";
import { isSessionId } from "../../core/session-token.js";
import type {
  RateLimitStore,
  SecondFactorStore,
  Session,
  SessionStore,
  SessionWithUser,
  StoreHealth,
  Stores,
  UserRecord,
  UserStore,
} from "../../core/store.js";
import { connectRedis, redisCall } from "./redis-connection.js";
import { latchScripts } from "./redis-scripts.js";
import type { RedisClient } from "./redis-scripts.js";
import { createRedisSessionCache } from "./redis-session-cache.js";
import type { RedisSessionCache, WriteOptions } from "./redis-session-cache.js";
import { publishRevocation } from "./revocations.js";

/**
 * Sessions, rate-limit counters and revocation events in Redis.
 *
 * Key layout (Redis Cluster ready: every script touches one key):
 *
 * - `<prefix>{<tag>}`: a hash per slot tag (`slotTagFor(userId)`, the first 8
 *   characters of every session id of the user) holding all of the user's
 *   sessions, a copy of the user, and shared user-agent texts. Field layout
 *   and the scripts are in `redis-scripts.ts`, value layout in
 *   `session-codec.ts`.
 * - `<prefix>rl:<key>`: a rate-limit window, `resetAt:count`.
 * - `<prefix>epoch`: the tiered store's "cached before this is stale" time.
 * - channel `<prefix>revocations`: see `revocations.ts`.
 *
 * Why one hash per user rather than one key per session: Redis spends about
 * 150 bytes on every top-level key before its value (dict entry, key string,
 * value object, expiry entry, hash-table slots), so a key per session cannot
 * go below ~200 B however compact the value; a hash field costs about 75 B
 * plus its value. The hash also is the per-user index, so a session and its
 * index entry can never disagree. The cost: Redis 7.0 has no per-field TTL,
 * so the key expires when its last session would (PEXPIREAT at the largest
 * min(idle, absolute) of its sessions, never shortened), each session's own
 * expiry is checked on every read, and expired fields are pruned a few at a
 * time on each write, wholesale on listing, and by `deleteExpiredSessions`.
 *
 * Memory (INFO used_memory before and after, 100,000 sessions, Redis 7.0,
 * jemalloc): 141 B per session in `bench/memory.ts` (one user, no user agent
 * or address; connect-redis 309 B, a bare `{userId, exp}` key 229 B); 154 B
 * with a 111-character user agent and an IPv4 address (one user, or 100
 * users × 1,000); 210 B at 10 sessions per user; about 720 B for a user's
 * only session, where the key and the user copy are not shared. A key per
 * session measured 261 B before any index or user copy.
 */

export const DEFAULT_REDIS_PREFIX = "latch:";

export interface RedisSessionStoreOptions {
  redis: RedisClient;
  /** Prepended to every key and channel. Default "latch:". */
  prefix?: string | undefined;
  /** Where the users are (the database): the copy of the user kept next to the sessions is read from here. */
  users: UserStore;
}

function live(session: Session, now: number): boolean {
  return session.idleExpiresAt > now && session.absoluteExpiresAt > now;
}

function newestFirst(a: Session, b: Session): number {
  return b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1);
}

/**
 * Writes a session, supplying the owner's copy when the key does not have
 * one yet: the first write asks, the user is read from `users`, and the
 * second write carries the Redis time taken before that read so that a
 * role change in between is not overwritten by the older copy.
 */
export async function writeWithUser(
  cache: RedisSessionCache,
  users: UserStore,
  session: Session,
  options: WriteOptions,
): Promise<"ok" | "raced" | "gone"> {
  const first = await cache.write(session, options);
  if (typeof first === "string") return first;
  const record = await users.findUserById(session.userId);
  const second = await cache.write(session, { ...options, user: record === null ? null : publicUser(record), readAt: first.at });
  // The copy is there now unless the key was emptied in between; either way
  // the session is written or refused, never asked for twice.
  return typeof second === "string" ? second : "raced";
}

/**
 * A `SessionStore` whose sessions live only in Redis. Revocations are
 * announced on the revocation channel.
 *
 * @example
 * const sessions = createRedisSessionStore({ redis: connectRedis(url), users: database.users });
 * await sessions.createSession(session);
 */
export function createRedisSessionStore(options: RedisSessionStoreOptions): SessionStore {
  const prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
  const { redis, users } = options;
  const cache = createRedisSessionCache({ redis, prefix });

  return {
    async createSession(session, createOptions) {
      const expected = createOptions?.ifPasswordHash;
      if (expected === undefined) {
        await writeWithUser(cache, users, session, { mode: "create" });
        return true;
      }
      // The password lives in the database and the session in Redis, so no
      // one transaction covers both. Instead: take the Redis time of the
      // user's key, read the hash, and write as a refill of that read, which
      // the key refuses if a revocation (a password change ends every
      // session of the user) marked it since. A password change that lands
      // after the write ends the new session with the others.
      for (let attempt = 0; attempt < 3; attempt += 1) {
        const { at } = await cache.read(session.id);
        const record = await users.findUserById(session.userId);
        if (record === null || record.passwordHash !== expected) return false;
        if ((await cache.write(session, { mode: "refill", user: publicUser(record), readAt: at })) === "ok") return true;
        // "raced": some revocation or role change of this user since `at`; look at the password again.
      }
      return false;
    },

    async findSession(id, now): Promise<SessionWithUser | null> {
      if (!isSessionId(id)) return null;
      const read = await cache.read(id);
      if (read.session === null || !live(read.session, now)) return null;
      if (read.user !== null) return { session: read.session, user: read.user };
      // The cached copy of the user is missing or was marked stale by a role
      // change: the database decides, and the copy is refreshed unless that
      // read may have raced another change.
      const record = await users.findUserById(read.session.userId);
      if (record === null) return null;
      const user = publicUser(record);
      await cache.refillUser(user, read.at);
      return { session: read.session, user };
    },

    async touchSession(id, lastSeenAt, idleExpiresAt) {
      if (!isSessionId(id)) return false;
      return cache.touch(id, lastSeenAt, idleExpiresAt);
    },

    // Commands to one connection are pipelined by ioredis: the batch costs one round trip or so.
    touchSessions: (touches) =>
      Promise.all(touches.map((t) => (isSessionId(t.id) ? cache.touch(t.id, t.lastSeenAt, t.idleExpiresAt) : false))),

    async deleteSession(id) {
      if (!isSessionId(id)) return null;
      const userId = await cache.remove(id);
      await publishRevocation(redis, prefix, { kind: "session", sessionId: id });
      return userId;
    },

    async rotateSession(oldId, next) {
      if (!isSessionId(oldId)) return false;
      const outcome = await writeWithUser(cache, users, next, { mode: "create", replaces: oldId });
      if (outcome !== "ok") return false;
      await publishRevocation(redis, prefix, { kind: "session", sessionId: oldId });
      return true;
    },

    async listUserSessions(userId, now) {
      return (await cache.list(userId)).filter((s) => live(s, now)).sort(newestFirst);
    },

    async deleteUserSessions(userId, deleteOptions) {
      const exceptId = deleteOptions?.exceptId;
      const before = Date.now();
      const removed = await cache.removeUserSessions(userId, { exceptId });
      await publishRevocation(redis, prefix, { kind: "user-sessions", userId, before, exceptId: exceptId ?? null });
      return removed;
    },

    deleteExpiredSessions(now, limit) {
      return cache.sweep(now, limit);
    },
  };
}

/**
 * Fixed-window rate limits in Redis: one script counts the hit and sets the
 * window's expiry together, so concurrent processes never lose a hit and a
 * counter never outlives its window. The window is computed from the
 * caller's `now` (stored in the value), not from Redis's clock.
 *
 * @example
 * const limits = createRedisRateLimitStore({ redis });
 * const { count, resetAt } = await limits.hit("login:acct:alice", 15 * 60_000, Date.now());
 */
export function createRedisRateLimitStore(options: { redis: RedisClient; prefix?: string | undefined }): RateLimitStore {
  const prefix = `${options.prefix ?? DEFAULT_REDIS_PREFIX}rl:`;
  const { redis } = options;
  const scripts = latchScripts(redis);

  return {
    hit(key, windowMs, now) {
      return redisCall(async () => {
        const [count, resetAt] = (await scripts.rateHit(prefix + key, now, Math.max(1, Math.floor(windowMs)))) as [number, number];
        return { count: Number(count), resetAt: Number(resetAt) };
      });
    },
    peek(key, now) {
      return redisCall(async () => {
        const value = await redis.get(prefix + key);
        if (value === null) return null;
        const [resetAt, count] = value.split(":").map(Number) as [number, number];
        return resetAt > now ? { count, resetAt } : null;
      });
    },
    async reset(key) {
      await redisCall(() => redis.del(prefix + key));
    },
    // Every window key carries its own expiry.
    async deleteClosedWindows() {
      return 0;
    },
  };
}

/**
 * Resolves once the client is ready, or has failed its first connection
 * attempt, or after `timeoutMs`: either way, commands from then on answer or
 * fail fast, and the client keeps reconnecting.
 *
 * @example
 * const redis = connectRedis(url);
 * await whenReady(redis);
 */
export function whenReady(redis: RedisClient, timeoutMs = 5000): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      redis.off("ready", done);
      redis.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    redis.once("ready", done);
    redis.once("close", done);
  });
}

/**
 * Closes a client handed to a store: QUIT when possible, else drop the connection.
 *
 * @example
 * await closeRedis(redis);
 */
export async function closeRedis(redis: RedisClient): Promise<void> {
  if (redis.status === "end") return;
  try {
    await Promise.race([redis.quit(), new Promise((_, reject) => setTimeout(() => reject(new Error("quit timed out")), 1000).unref())]);
  } catch {
    redis.disconnect();
  }
}

export interface RedisStoresOptions {
  /** The client; the stores own it from now on and close it in `close()`. */
  redis?: RedisClient | undefined;
  /** Or a REDIS_URL to connect to (see `connectRedis`). */
  url?: string | undefined;
  /** The system of record: users, security events and signing keys. */
  database: Stores;
  prefix?: string | undefined;
}

/**
 * Full `Stores` with sessions and rate limits in Redis and everything else
 * in `database`. Role changes and user deletions go to both, so the copy of
 * the user kept next to the sessions never outlives a change. Waits (up to
 * 5 s) for the connection before resolving.
 *
 * @example
 * const stores = await createRedisStores({ url: "redis://127.0.0.1:6379", database: createMemoryStores() });
 */
export async function createRedisStores(options: RedisStoresOptions): Promise<Stores> {
  const { database } = options;
  const prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
  const redis = options.redis ?? (options.url !== undefined ? connectRedis(options.url) : undefined);
  if (redis === undefined) throw new TypeError("createRedisStores needs `redis` or `url`.");
  redis.on("error", () => {});
  await whenReady(redis);
  const cache = createRedisSessionCache({ redis, prefix });
  const sessions = createRedisSessionStore({ redis, prefix, users: database.users });

  /** A change to fields the copy next to the sessions carries (roles, email), as in updateUserRoles below. */
  const client = redis;
  async function refreshUser(id: string, write: () => Promise<UserRecord | null>): Promise<UserRecord | null> {
    await cache.setUser({ id }, "stale");
    const updated = await write();
    if (updated === null) return null;
    await cache.setUser(publicUser(updated), "set");
    await publishRevocation(client, prefix, { kind: "user", userId: id });
    return updated;
  }

  const users: UserStore = {
    // Users live in the database; only the changes the Redis copies must follow are wrapped.
    ...database.users,

    async updateUserRoles(id, roles, updatedAt) {
      // Mark the copy stale first: if Redis fails here nothing has changed,
      // and if it fails after the database write, readers already go to the
      // database for this user. A demotion is never hidden by a stale copy.
      await cache.setUser({ id }, "stale");
      const updated = await database.users.updateUserRoles(id, roles, updatedAt);
      if (updated === null) return null;
      await cache.setUser(publicUser(updated), "set");
      await publishRevocation(redis, prefix, { kind: "user", userId: id });
      return updated;
    },

    updateUserEmail: (id, email, updatedAt) => refreshUser(id, () => database.users.updateUserEmail(id, email, updatedAt)),
    verifyEmail: (id, tokenHash, now) => refreshUser(id, () => database.users.verifyEmail(id, tokenHash, now)),
    // Changes no field of the copy kept next to sessions; ending the
    // sessions is the caller's next call.
    resetPassword: (id, tokenHash, passwordHash, now, notice) => database.users.resetPassword(id, tokenHash, passwordHash, now, notice),

    async deleteUser(id) {
      // Sessions go first, so a Redis failure leaves the user signed out
      // rather than deleted with live sessions; and again after, for any
      // session created in between.
      await cache.removeUserSessions(id, { dropUser: true });
      const deleted = await database.users.deleteUser(id);
      await cache.removeUserSessions(id, { dropUser: true });
      await publishRevocation(redis, prefix, { kind: "user-sessions", userId: id, before: Date.now(), exceptId: null });
      await publishRevocation(redis, prefix, { kind: "user", userId: id });
      return deleted;
    },
  };

  // Second factors live in the database; the writes that change a user's
  // mfa flag mark the copy kept next to their sessions stale, first (as a
  // role change does), and announce the change.
  async function userChanged<T>(userId: string, write: () => Promise<T>): Promise<T> {
    await cache.setUser({ id: userId }, "stale");
    const result = await write();
    await cache.setUser({ id: userId }, "stale");
    await publishRevocation(redis!, prefix, { kind: "user", userId });
    return result;
  }
  const factors = database.secondFactors;
  const secondFactors: SecondFactorStore = {
    ...factors,
    confirmTotp: (userId, ...rest) => userChanged(userId, () => factors.confirmTotp(userId, ...rest)),
    deleteTotp: (userId) => userChanged(userId, () => factors.deleteTotp(userId)),
    createPasskey: (passkey) => userChanged(passkey.userId, () => factors.createPasskey(passkey)),
    deletePasskey: (userId, id) => userChanged(userId, () => factors.deletePasskey(userId, id)),
    deleteSecondFactors: (userId) => userChanged(userId, () => factors.deleteSecondFactors(userId)),
  };

  return {
    users,
    ...(database.marks === undefined ? {} : { marks: database.marks }),
    sessions,
    events: database.events,
    secondFactors,
    limits: createRedisRateLimitStore({ redis, prefix }),
    keys: database.keys,
    mail: database.mail,
    async health(): Promise<Record<string, StoreHealth>> {
      const [base, redisHealth] = await Promise.all([
        database.health().catch((): Record<string, StoreHealth> => ({ database: "down" })),
        redisCall(() => redis.ping()).then(
          (): StoreHealth => "ok",
          (): StoreHealth => "down",
        ),
      ]);
      return { ...base, redis: redisHealth };
    },
    async close() {
      await closeRedis(redis);
      await database.close();
    },
  };
}
