import { publicUser } from "../../core/accounts.js";
import { LatchError } from "../../core/errors.js";
import { isSessionId } from "../../core/session-token.js";
import type { Clock } from "../../core/runtime.js";
import type {
  FlushMarkStore,
  RateLimitStore,
  SecondFactorStore,
  Session,
  SessionStore,
  SessionWithUser,
  StoreHealth,
  Stores,
  User,
  UserRecord,
  UserStore,
} from "../../core/store.js";
import { redisCall } from "../redis/redis-connection.js";
import type { RedisClient } from "../redis/redis-connection.js";
import { EPOCH_TTL_MS, createRedisSessionCache } from "../redis/redis-session-cache.js";
import type { WriteOptions } from "../redis/redis-session-cache.js";
import { DEFAULT_REDIS_PREFIX, closeRedis, createRedisRateLimitStore, whenReady } from "../redis/redis-store.js";
import { publishRevocation, subscribeRevocations } from "../redis/revocations.js";
import type { RevocationEvent } from "../redis/revocations.js";

/** What the tiered store logs: a pino or Fastify logger fits. */
export interface TieredLogger {
  warn(details: Record<string, unknown>, message: string): void;
  info(details: Record<string, unknown>, message: string): void;
}

export interface TieredStoresOptions {
  /** The system of record: users, events, keys, and every session. */
  database: Stores;
  /** The fast path for sessions and the home of rate-limit counters. The stores own it and close it. */
  redis: RedisClient;
  prefix?: string | undefined;
  logger?: TieredLogger | undefined;
  /** How often a Redis that is down is probed. Default 250 ms. */
  probeIntervalMs?: number | undefined;
  /** How often the database's flush mark is read (see {@link FlushMarkStore}). Default 250 ms. */
  markPollMs?: number | undefined;
  /** The times revoke-all announces (`before`); defaults to the system clock. */
  clock?: Clock | undefined;
}

const consoleLogger: TieredLogger = {
  warn: (details, message) => console.warn(message, details),
  info: (details, message) => console.info(message, details),
};

function live(session: Session, now: number): boolean {
  return session.idleExpiresAt > now && session.absoluteExpiresAt > now;
}

/**
 * The database as the system of record with Redis in front of it for
 * sessions, and Redis (or, while it is down, the database) for rate limits.
 *
 * Writes go to the database first, then Redis; reads try Redis, then the
 * database (refilling Redis). A Redis failure is logged once, the stores
 * keep serving from the database, and a probe puts Redis back in use when
 * it answers again.
 *
 * Staying correct across an outage. A cached session is only dangerous if
 * it outlives a revocation (or role change) that Redis never heard of:
 * one made while this process could not reach Redis. Such copies are
 * neutralised with an epoch rather than by remembering what to delete:
 *
 * 1. Every cached entry records (field `w`) the Redis time of the database
 *    read it came from.
 * 2. A process that lost Redis, or wrote a revocation it could not mirror,
 *    does not use Redis again until it has raised `<prefix>epoch` to
 *    Redis's current time and announced it on the revocation channel.
 * 3. Every script is given the epoch its caller knows and drops entries
 *    stamped before it (a miss, so the database answers and the entry is
 *    refilled). Each process reads the epoch whenever it (re)connects and
 *    follows announcements.
 *
 * That is one small key and no replay list: it needs no memory of what was
 * deleted (which a crash would lose), holds for a restarted Redis (empty)
 * and a paused one (full of old entries) alike, and costs a cold cache
 * once per outage.
 *
 * A process that cannot announce a revocation itself (cut off from Redis
 * while the others are not, or the admin CLI started while Redis is down)
 * also raises the database's flush mark. Every process reads the mark every
 * `markPollMs` and, when it moved past the value recorded in
 * `<prefix>flush-mark`, raises the epoch and announces a flush: so within
 * about a quarter of a second no process serves a copy the cut-off one
 * revoked. `settle()` tells a short-lived writer whether everything it
 * revoked was announced. Races in normal operation (a refill read from the
 * database just before a revocation) are refused by the per-user marker
 * `d` instead: see `redis-scripts.ts`.
 *
 * @example
 * const stores = createTieredStores({ database: await createPostgresStores({ url }), redis: connectRedis(redisUrl), logger: app.log });
 */
export function createTieredStores(options: TieredStoresOptions): Stores {
  const { database, redis } = options;
  const prefix = options.prefix ?? DEFAULT_REDIS_PREFIX;
  const logger = options.logger ?? consoleLogger;
  const probeIntervalMs = options.probeIntervalMs ?? 250;
  const clock = options.clock ?? { now: () => Date.now() };
  const cache = createRedisSessionCache({ redis, prefix });
  const redisLimits = createRedisRateLimitStore({ redis, prefix });

  let state: "starting" | "ok" | "down" = "starting";
  let epoch = 0;
  /** Raised when this process may have left Redis with entries it should have changed. */
  let dirty = 0;
  let flushedDirty = 0;
  /** Revoking writes whose mirror failed since the last successful flush (what `settle` reports). */
  let unannounced = 0;
  let probing = false;
  let probeTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const marks: FlushMarkStore | undefined = database.marks;
  const markKey = `${prefix}flush-mark`;
  /** The highest database flush mark this process has seen applied in Redis. */
  let appliedMark = -1;

  function scheduleProbe(delay = probeIntervalMs): void {
    if (closed || probing || probeTimer !== undefined) return;
    probeTimer = setTimeout(() => {
      probeTimer = undefined;
      void probe();
    }, delay);
    probeTimer.unref();
  }

  function lost(cause: unknown): void {
    if (closed) return;
    if (state === "ok") {
      logger.warn({ err: cause }, "Redis is unreachable: serving sessions from the database until it returns");
      // Other processes may have revoked sessions they could not remove from
      // Redis meanwhile; flush before trusting it again.
      dirty += 1;
    } else if (state === "starting") {
      logger.warn({ err: cause }, "Redis is unreachable at start: serving sessions from the database until it answers");
    }
    state = "down";
    scheduleProbe();
  }

  /** Raises the epoch and announces a flush: every entry cached before now is stale for every process. */
  async function flush(): Promise<void> {
    const bumped = await cache.bumpEpoch();
    epoch = Math.max(epoch, bumped);
    await publishRevocation(redis, prefix, { kind: "flush", before: bumped });
  }

  /** Flushes until no write is left that Redis may have missed. Rejects if Redis fails meanwhile. */
  async function flushDirty(): Promise<void> {
    for (;;) {
      const target = dirty;
      const pending = unannounced;
      if (flushedDirty < target) await flush();
      epoch = Math.max(epoch, await cache.readEpoch());
      flushedDirty = target;
      unannounced -= pending;
      // A revocation written to the database while this ran was not
      // mirrored either: flush again before going back to Redis.
      if (dirty === target) break;
    }
  }

  /** The probe under way, so that a caller waiting for "the" probe waits for the one that runs. */
  let running: Promise<void> = Promise.resolve();

  function probe(): Promise<void> {
    if (closed || probing) return running;
    probing = true;
    running = (async () => {
      try {
        await redisCall(() => redis.ping());
        await flushDirty();
        if (state === "down") logger.info({}, "Redis answers again: using it for sessions");
        state = "ok";
      } catch (error) {
        lost(error);
        probing = false;
        scheduleProbe();
        return;
      }
      probing = false;
    })();
    return running;
  }

  redis.on("error", () => {});
  redis.on("close", () => {
    if (state === "ok") lost(new Error("connection to Redis closed"));
  });
  redis.on("ready", () => {
    if (state !== "ok") void probe();
  });

  const subscription = subscribeRevocations({
    redis,
    prefix,
    onEvent(event: RevocationEvent) {
      if (event.kind === "flush") epoch = Math.max(epoch, event.before);
    },
    onStatus(status) {
      // The subscription's heartbeat stopped coming back: Redis hangs (or the
      // network to it drops packets) though no command has failed yet. Go to
      // the database now rather than wait for each request's command timeout.
      if (status === "down" && state === "ok") {
        lost(new Error("revocation channel heartbeat lost"));
        return;
      }
      // Announcements may have been missed while unsubscribed.
      if (status === "up" && state === "ok") {
        cache.readEpoch().then(
          (current) => (epoch = Math.max(epoch, current)),
          (error: unknown) => lost(error),
        );
      }
    },
  });

  // The first probe waits for the first connection attempt to end: a client
  // still connecting would fail it (no offline queue) and log a false alarm.
  // Revoking writes wait for it too (at most whenReady's 5 s and a ping's
  // timeout), so that a process that has only just started, such as the
  // admin CLI, mirrors them instead of skipping Redis.
  const firstProbe = whenReady(redis).then(probe);

  /**
   * Reads the database's flush mark; when it moved past what Redis records
   * as applied, flushes and records it. Only while Redis is in use: during
   * an outage this process serves from the database, and its own return
   * flushes anyway.
   */
  let checkingMark = false;
  async function checkMark(): Promise<void> {
    if (marks === undefined || checkingMark || closed || state !== "ok") return;
    checkingMark = true;
    let mark: number;
    try {
      mark = await marks.readFlushMark();
    } catch {
      // A database that does not answer is the requests' problem, and shows there.
      checkingMark = false;
      return;
    }
    try {
      if (mark <= appliedMark) return;
      const applied = Number((await redisCall(() => redis.get(markKey))) ?? 0);
      if (applied < mark) {
        await flush();
        await redisCall(() => redis.set(markKey, String(mark), "PX", EPOCH_TTL_MS));
        logger.info({ mark }, "A writer could not announce a revocation: flushed every cached session");
      }
      appliedMark = mark;
    } catch (error) {
      lost(error);
    } finally {
      checkingMark = false;
    }
  }
  const markTimer = marks === undefined ? undefined : setInterval(() => void checkMark(), options.markPollMs ?? 250);
  markTimer?.unref();

  /** Runs a Redis operation if Redis is in use; undefined when it is not or it failed (Redis then counts as down). */
  async function attempt<T>(operation: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (state !== "ok") return undefined;
    try {
      return { value: await operation() };
    } catch (error) {
      lost(error);
      return undefined;
    }
  }

  /** Mirrors a change already made in the database; if it cannot, Redis is flushed before it is used again. */
  async function mirror(operation: () => Promise<unknown>): Promise<void> {
    if ((await attempt(operation)) === undefined) dirty += 1;
  }

  /**
   * Mirrors and announces a revocation already made in the database. If it
   * cannot, Redis is flushed before this process uses it again, and the
   * database's flush mark is raised before the write answers, so that the
   * processes that can still reach Redis drop their copies too.
   */
  async function mirrorRevocation(operation: () => Promise<unknown>): Promise<void> {
    if (state === "starting") await firstProbe;
    if ((await attempt(operation)) !== undefined) return;
    dirty += 1;
    unannounced += 1;
    // If the database cannot take the mark either, the write itself has
    // most likely failed too; settle() tries again.
    await marks?.raiseFlushMark().catch(() => {});
  }

  async function cacheSession(session: Session, write: Omit<WriteOptions, "epoch">): Promise<"ok" | "raced" | "gone" | undefined> {
    const first = await attempt(() => cache.write(session, { ...write, epoch }));
    if (first === undefined) return undefined;
    const outcome = first.value;
    if (typeof outcome === "string") return outcome;
    let user: User | null;
    try {
      const record = await database.users.findUserById(session.userId);
      user = record === null ? null : publicUser(record);
    } catch {
      // The session is in the database; a later read refills Redis.
      return undefined;
    }
    const second = await attempt(() => cache.write(session, { ...write, user, readAt: outcome.at, epoch }));
    return second === undefined || typeof second.value !== "string" ? undefined : second.value;
  }

  async function publish(event: RevocationEvent): Promise<void> {
    await publishRevocation(redis, prefix, event);
  }

  const sessions: SessionStore = {
    async createSession(session, createOptions) {
      if (createOptions?.ifPasswordHash === undefined) {
        await database.sessions.createSession(session);
        await cacheSession(session, { mode: "create" });
        return true;
      }
      // A sign-in that checked a password: the copy is written as a refill
      // of a read made before the database insert, so the user's revocation
      // marker refuses it if a password change (which ends the user's
      // sessions) came in between. Written unconditionally, the copy could
      // land after that change had removed the user's sessions from Redis,
      // and outlive the database row. Refused, the first read refills it.
      const before = await attempt(() => cache.read(session.id, { epoch }));
      if (!(await database.sessions.createSession(session, createOptions))) return false;
      if (before !== undefined) {
        const readAt = before.value.at;
        const first = await attempt(() => cache.write(session, { mode: "refill", readAt, epoch }));
        if (first !== undefined && typeof first.value !== "string") {
          const record = await database.users.findUserById(session.userId).catch(() => null);
          if (record !== null) await attempt(() => cache.write(session, { mode: "refill", readAt, user: publicUser(record), epoch }));
        }
      }
      return true;
    },

    async findSession(id, now): Promise<SessionWithUser | null> {
      if (!isSessionId(id)) return null;
      const read = await attempt(() => cache.read(id, { epoch }));
      if (read === undefined) return database.sessions.findSession(id, now);
      const { session, user, at } = read.value;
      if (session !== null && live(session, now)) {
        if (user !== null) return { session, user };
        const record = await database.users.findUserById(session.userId);
        if (record === null) return null;
        const fresh = publicUser(record);
        await attempt(() => cache.refillUser(fresh, at));
        return { session, user: fresh };
      }
      // A miss, or a copy that looks expired but may only have missed a
      // renewal made while Redis was unreachable: the database decides.
      // While the database is down, Redis's answer stands (the contract's
      // database-down rule): a session it does not know, or holds expired,
      // is refused (401), never a 503 for a read. Safe because every
      // revoking write goes through Redis and its channel, and none can be
      // acknowledged while the database is down (docs/stores.md).
      let found: SessionWithUser | null;
      try {
        found = await database.sessions.findSession(id, now);
      } catch (error) {
        if (error instanceof LatchError && error.code === "unavailable") return null;
        throw error;
      }
      if (found !== null) await attempt(() => cache.write(found.session, { mode: "refill", user: found.user, readAt: at, epoch }));
      return found;
    },

    async touchSession(id, lastSeenAt, idleExpiresAt) {
      // The database first: Redis is only extended when the system of record
      // was, so a copy never outlives the session it copies. Both writes
      // only extend a session that still exists, so neither can revive one
      // revoked in between.
      const renewed = await database.sessions.touchSession(id, lastSeenAt, idleExpiresAt);
      if (!isSessionId(id)) return renewed;
      if (renewed) await attempt(() => cache.touch(id, lastSeenAt, idleExpiresAt, { epoch }));
      // Gone or expired in the database: make sure no copy says otherwise.
      else await mirror(() => cache.remove(id));
      return renewed;
    },

    async touchSessions(touches) {
      // As touchSession, for a batch: the database first (in one statement
      // where it can), then the copies of what it renewed.
      const renewed = database.sessions.touchSessions
        ? await database.sessions.touchSessions(touches)
        : await Promise.all(touches.map((t) => database.sessions.touchSession(t.id, t.lastSeenAt, t.idleExpiresAt)));
      await Promise.all(
        touches.map((t, i) => {
          if (!isSessionId(t.id)) return undefined;
          return renewed[i] ? attempt(() => cache.touch(t.id, t.lastSeenAt, t.idleExpiresAt, { epoch })) : mirror(() => cache.remove(t.id));
        }),
      );
      return renewed;
    },

    async deleteSession(id) {
      const userId = await database.sessions.deleteSession(id);
      if (isSessionId(id)) {
        await mirrorRevocation(async () => {
          await cache.remove(id);
          await publish({ kind: "session", sessionId: id });
        });
      }
      return userId;
    },

    async rotateSession(oldId, next) {
      const rotated = await database.sessions.rotateSession(oldId, next);
      if (!isSessionId(oldId)) return rotated;
      await mirrorRevocation(async () => {
        if (!rotated) {
          await cache.remove(oldId);
          return;
        }
        const outcome = await cacheSession(next, { mode: "create", replaces: oldId });
        // The old session was not cached: nothing to replace, cache the new one on its own.
        if (outcome === "gone") await cacheSession(next, { mode: "create" });
        await cache.remove(oldId);
        await publish({ kind: "session", sessionId: oldId });
      });
      return rotated;
    },

    listUserSessions: (userId, now) => database.sessions.listUserSessions(userId, now),

    async deleteUserSessions(userId, deleteOptions) {
      const exceptId = deleteOptions?.exceptId;
      const before = clock.now();
      const removed = await database.sessions.deleteUserSessions(userId, deleteOptions);
      await mirrorRevocation(async () => {
        await cache.removeUserSessions(userId, { exceptId });
        await publish({ kind: "user-sessions", userId, before, exceptId: exceptId ?? null });
      });
      return removed;
    },

    async deleteExpiredSessions(now, limit) {
      const removed = await database.sessions.deleteExpiredSessions(now, limit);
      // Redis expires keys natively; this only reclaims expired fields early.
      await attempt(() => cache.sweep(now, limit));
      return removed;
    },
  };

  /** A database write to fields the copy of the user in Redis carries (roles, email), mirrored. */
  async function refreshUser(id: string, write: () => Promise<UserRecord | null>): Promise<UserRecord | null> {
    const updated = await write();
    if (updated !== null) {
      // A role change is a revocation as much as a sign-out: announced, or the flush mark is raised.
      await mirrorRevocation(async () => {
        await cache.setUser(publicUser(updated), "set");
        await publish({ kind: "user", userId: id });
      });
    }
    return updated;
  }

  const users: UserStore = {
    // Users live in the database alone; only the changes that copies in
    // Redis must follow are wrapped.
    ...database.users,

    updateUserRoles: (id, roles, updatedAt) => refreshUser(id, () => database.users.updateUserRoles(id, roles, updatedAt)),
    updateUserEmail: (id, email, updatedAt) => refreshUser(id, () => database.users.updateUserEmail(id, email, updatedAt)),
    verifyEmail: (id, tokenHash, now) => refreshUser(id, () => database.users.verifyEmail(id, tokenHash, now)),
    // The password hash is not in the copy next to sessions; the caller ends
    // the sessions next, through `sessions`.
    resetPassword: (id, tokenHash, passwordHash, now, notice) => database.users.resetPassword(id, tokenHash, passwordHash, now, notice),

    async deleteUser(id) {
      const deleted = await database.users.deleteUser(id);
      await mirrorRevocation(async () => {
        await cache.removeUserSessions(id, { dropUser: true });
        await publish({ kind: "user-sessions", userId: id, before: clock.now(), exceptId: null });
        await publish({ kind: "user", userId: id });
      });
      return deleted;
    },
  };

  // Counters follow Redis while it is up; during an outage the database
  // keeps them (a window restarts when the store switches, at worst
  // allowing one extra window of attempts).
  const limits: RateLimitStore = {
    async hit(key, windowMs, now) {
      return (await attempt(() => redisLimits.hit(key, windowMs, now)))?.value ?? database.limits.hit(key, windowMs, now);
    },
    async peek(key, now) {
      const cached = await attempt(() => redisLimits.peek(key, now));
      return cached === undefined ? database.limits.peek(key, now) : cached.value;
    },
    async reset(key) {
      await attempt(() => redisLimits.reset(key));
      await database.limits.reset(key);
    },
    deleteClosedWindows: (now, limit) => database.limits.deleteClosedWindows(now, limit),
  };

  // Second factors live in the database. The writes that change a user's
  // mfa flag refresh the user's copy in Redis like a role change, so a
  // session's user says whether the account has a second factor.
  async function userChanged<T>(userId: string, write: () => Promise<T>): Promise<T> {
    const result = await write();
    await mirror(async () => {
      await cache.setUser({ id: userId }, "stale");
      await publish({ kind: "user", userId });
    });
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
    sessions,
    events: database.events,
    secondFactors,
    limits,
    keys: database.keys,
    ...(marks === undefined ? {} : { marks }),
    // The outbox and its tokens stay in the system of record: a message
    // must survive a Redis restart.
    mail: database.mail,

    async health(): Promise<Record<string, StoreHealth>> {
      const base = await database.health().catch((): Record<string, StoreHealth> => ({ database: "down" }));
      let redisHealth: StoreHealth = "down";
      if (state === "ok") {
        try {
          await redisCall(() => redis.ping());
          // Without the subscription, flushes announced by other processes
          // could be missed: usable, but not fully.
          redisHealth = subscription.up ? "ok" : "degraded";
        } catch (error) {
          lost(error);
        }
      }
      return { ...base, redis: redisHealth };
    },

    async settle() {
      if (state === "starting") await firstProbe;
      if (unannounced === 0) return;
      if (state === "ok") {
        try {
          await flushDirty();
        } catch (error) {
          lost(error);
        }
      }
      if (unannounced === 0) return;
      // The mark was raised with each write; raise it once more in case one of those failed.
      if (marks === undefined)
        throw new LatchError(
          "unavailable",
          "Redis did not take the change, and this database keeps no flush mark: restart the servers to be sure they drop what they cached.",
        );
      await marks.raiseFlushMark();
      throw new LatchError(
        "unavailable",
        "Redis did not take the change: every server drops its cached sessions when it reads the mark left in the database (within a second).",
      );
    },

    async close() {
      closed = true;
      if (markTimer !== undefined) clearInterval(markTimer);
      if (probeTimer !== undefined) clearTimeout(probeTimer);
      await subscription.close();
      await closeRedis(redis);
      await database.close();
    },
  };
}
