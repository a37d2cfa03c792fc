import { constantTimeEqualText } from "../../core/encoding.js";
import { LatchError } from "../../core/errors.js";
import type { Clock } from "../../core/runtime.js";
import type { CachedSessionStore, Session, SessionCacheStats, SessionWithUser, Stores } from "../../core/store.js";
import type { Invalidation, RevocationChannel } from "../revocation-channel.js";

export type { Invalidation } from "../revocation-channel.js";

export interface SessionCacheOptions {
  clock: Clock;
  /**
   * Most sessions kept; past it, one not served since the eviction hand
   * last passed is dropped (CLOCK). Default 250,000 (SESSION_CACHE_SIZE).
   */
  maxEntries?: number;
  /**
   * How long an entry may be served before it is re-read, even with a healthy
   * invalidation channel. Default: no limit. Every channel reports its own
   * loss (Redis and PostgreSQL by a heartbeat that must come back within a
   * second, SQLite's data_version cannot miss a commit), and the cache
   * empties itself when it does, so a forced re-read would buy nothing but
   * load: with 100,000 sessions a 30 s bound was 3,300 store reads a second
   * through the slow path (docs/performance.md).
   */
  maxAgeMs?: number;
  /**
   * Renewals (idle-expiry slides) of cached sessions are applied to the entry
   * at once and written to the store in one batch at most this often, in ms.
   * Default 1,000. 0 writes each one through.
   */
  writeBehindMs?: number;
}

/** The stores with the cache in front: `sessions` can also answer from memory. */
export type CachedStores = Stores & { sessions: CachedSessionStore };

export interface SessionCache {
  /**
   * The stores with sessions served from memory while the channel is up.
   * Closing them closes the channel, then the inner stores.
   */
  stores: CachedStores;
  /** Applies an invalidation made in this process (the channel's own are applied as they arrive). */
  apply(invalidation: Invalidation): void;
  /** Entries and hit/miss counters, for metrics and tests. */
  stats(): SessionCacheStats;
  /** Writes every pending renewal to the store now (closing the stores does too). */
  flush(): Promise<void>;
}

interface Entry {
  value: SessionWithUser;
  cachedAt: number;
  /** Served since the evictor last passed it: the CLOCK algorithm's reference bit. */
  used: boolean;
  /**
   * The secret once `peekVerified` checked it against this entry's hash (a
   * flat copy), compared in constant time on later hits instead of hashing
   * again. Kept on the entry rather than in a WeakMap beside it: with
   * 100,000 sessions a WeakMap lookup is a cache miss of its own on every
   * hit (docs/performance.md). A renewal keeps it (same session, same hash);
   * a re-read from the store makes a new entry, which checks again.
   */
  secret: string | undefined;
}

/** A renewal applied to an entry and not yet written to the store. */
interface PendingTouch {
  lastSeenAt: number;
  idleExpiresAt: number;
}

/** Most hot entries the eviction hand passes over before it drops one anyway. */
const CLOCK_SPARES = 64;

function isUnavailable(error: unknown): boolean {
  return error instanceof LatchError && error.code === "unavailable";
}

/** Most renewals held back at once; past it they are written at once. */
const MAX_PENDING_TOUCHES = 100_000;

/** Renewals written per store call; the event loop runs between slices. */
const FLUSH_SLICE = 256;

/**
 * An in-process cache in front of a session store, kept correct across
 * processes by pushed invalidations. The hot path (a valid cookie, again)
 * becomes a Map lookup: no network round trip and no store read.
 *
 * Correctness rules:
 * - A read that started before an invalidation must not put its (possibly
 *   revoked) result in the cache: every invalidation bumps an epoch, and a
 *   read only fills the cache if the epoch did not move while it ran.
 * - Entries are checked against both expiries on every hit; an entry that
 *   looks expired is re-read from the store (another process may have renewed
 *   it), never answered from memory.
 * - Revoke-all for a user ("user-sessions") also records a valid-after time
 *   for that user, so an entry created before it is refused even if it was
 *   filled concurrently.
 *
 * - While the channel is down it serves nothing from memory (every
 *   validation goes to the store: fails closed); going up again starts from
 *   an empty cache, since anything may have changed while announcements
 *   could not arrive.
 *
 * @example
 * const cache = createSessionCache(stores, createRedisRevocationChannel({ redis, prefix }), { clock });
 * buildServer({ stores: cache.stores, ... });
 */
export function createSessionCache(inner: Stores, channel: RevocationChannel, options: SessionCacheOptions): SessionCache {
  const maxEntries = options.maxEntries ?? 250_000;
  const maxAgeMs = options.maxAgeMs ?? Number.POSITIVE_INFINITY;
  const writeBehindMs = options.writeBehindMs ?? 1_000;
  const { clock } = options;
  const entries = new Map<string, Entry>();
  const byUser = new Map<string, Set<string>>();
  const validAfter = new Map<string, { before: number; exceptId: string | null }>();
  let epoch = 0;
  let channelUp = false;
  let hits = 0;
  let misses = 0;
  let writes = 0;
  const pending = new Map<string, PendingTouch>();
  let flushTimer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> | null = null;

  function drop(sessionId: string): void {
    // A renewal of a session that is gone need not reach the store (nor could
    // it revive it: a touch never matches a deleted or expired row).
    pending.delete(sessionId);
    const entry = entries.get(sessionId);
    if (entry === undefined) return;
    entries.delete(sessionId);
    const ids = byUser.get(entry.value.session.userId);
    ids?.delete(sessionId);
    if (ids?.size === 0) byUser.delete(entry.value.session.userId);
  }

  function dropUser(userId: string): void {
    for (const id of byUser.get(userId) ?? []) {
      entries.delete(id);
      pending.delete(id);
    }
    byUser.delete(userId);
  }

  function clear(): void {
    // Pending renewals stay: they are writes this process owes the store, and
    // a touch cannot revive a session that was ended meanwhile.
    entries.clear();
    byUser.clear();
    validAfter.clear();
  }

  function apply(invalidation: Invalidation): void {
    epoch += 1;
    switch (invalidation.kind) {
      case "session":
        drop(invalidation.sessionId);
        break;
      case "user-sessions":
        // Bounded: past the limit, forgetting every mark is safe because the
        // entries go too and later reads come from the store.
        if (validAfter.size >= maxEntries) clear();
        validAfter.set(invalidation.userId, { before: invalidation.before, exceptId: invalidation.exceptId });
        dropUser(invalidation.userId);
        break;
      case "user":
        dropUser(invalidation.userId);
        break;
      case "flush":
        clear();
        break;
    }
  }

  function revokedByUser(session: Session): boolean {
    // Most of the time no mark exists: no lookup (and no read of the user id) then.
    if (validAfter.size === 0) return false;
    const mark = validAfter.get(session.userId);
    return mark !== undefined && session.createdAt < mark.before && session.id !== mark.exceptId;
  }

  function put(value: SessionWithUser, readEpoch: number): void {
    if (!channelUp || readEpoch !== epoch) return;
    if (entries.size >= maxEntries) evictOne();
    entries.set(value.session.id, { value, cachedAt: clock.now(), used: false, secret: undefined });
    let ids = byUser.get(value.session.userId);
    if (ids === undefined) {
      ids = new Set();
      byUser.set(value.session.userId, ids);
    }
    ids.add(value.session.id);
  }

  /**
   * CLOCK (second chance). The hand is a live iterator over the Map (which
   * iterates in insertion order and tolerates deletes while iterating): an
   * entry served since the hand last passed has its bit cleared and is
   * spared, the first one not served is dropped. Hot sessions stay however
   * old they are, and a hit costs one boolean write (no reordering on the
   * hot path). The hand spares at most {@link CLOCK_SPARES} entries per
   * eviction, so one eviction never walks the whole cache (a stall) when
   * everything is hot.
   */
  let hand: IterableIterator<[string, Entry]> = entries.entries();
  function evictOne(): void {
    for (let spared = 0; ; ) {
      let next = hand.next();
      if (next.done === true) {
        hand = entries.entries();
        next = hand.next();
        if (next.done === true) return;
      }
      const [id, entry] = next.value;
      if (!entry.used || spared >= CLOCK_SPARES) {
        drop(id);
        return;
      }
      entry.used = false;
      spared += 1;
    }
  }

  const poll = channel.poll?.bind(channel);

  /** A servable entry's session and user, or undefined (dropping an entry that is not). */
  function hit(id: string, now: number): SessionWithUser | undefined {
    return servable(id, now)?.value;
  }

  /** The servable entry for the id, or undefined (dropping an entry that is not). */
  function servable(id: string, now: number): Entry | undefined {
    if (!channelUp) return undefined;
    const entry = entries.get(id);
    if (entry === undefined) return undefined;
    const { session } = entry.value;
    if (session.idleExpiresAt > now && session.absoluteExpiresAt > now && now - entry.cachedAt < maxAgeMs && !revokedByUser(session)) {
      hits += 1;
      entry.used = true;
      return entry;
    }
    drop(id);
    return undefined;
  }

  function stats(): SessionCacheStats {
    return { serving: channelUp, entries: entries.size, hits, misses, writes };
  }

  /**
   * Writes the pending renewals. A renewal the store refuses (the session
   * ended or expired meanwhile) drops the entry, so the next request reads
   * the store; one that fails (store down) is kept for the next flush unless
   * a newer one replaced it, so nothing is extended that the store did not
   * agree to for longer than the outage.
   */
  async function flush(): Promise<void> {
    // One batch at a time; a caller that arrives meanwhile (shutdown) waits
    // for it and then writes what came after.
    while (flushing !== null) await flushing;
    if (flushTimer !== null) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
    if (pending.size === 0) return;
    const batch = [...pending];
    pending.clear();
    flushing = (async () => {
      let written = 0;
      const touch = sessions.touchSessions;
      try {
        // In slices, with the event loop free between them: SQLite's write
        // is synchronous, and 1,800 renewals in one transaction held the
        // loop for 14–22 ms (docs/performance.md, "Many sessions").
        for (let start = 0; start < batch.length; start += FLUSH_SLICE) {
          if (start > 0) await new Promise<void>((resolve) => setImmediate(resolve));
          const slice = batch.slice(start, start + FLUSH_SLICE);
          const results =
            touch !== undefined
              ? await touch(slice.map(([id, t]) => ({ id, lastSeenAt: t.lastSeenAt, idleExpiresAt: t.idleExpiresAt })))
              : await Promise.all(slice.map(([id, t]) => sessions.touchSession(id, t.lastSeenAt, t.idleExpiresAt)));
          writes += slice.length;
          written += slice.length;
          slice.forEach(([id], i) => {
            if (results[i] !== true) drop(id);
          });
        }
      } catch {
        // The slice that failed and every one after it are kept for the next
        // flush; a newer renewal of the same session keeps this one's
        // lastSeenAt, the first of the unwritten chain: the store's guard
        // ("not expired by lastSeenAt") must be checked against the moment
        // the store last knew of, not against the newest slide, or a session
        // kept alive through an outage longer than its idle timeout is ended
        // the moment the store returns.
        for (const [id, t] of batch.slice(written)) {
          const newer = pending.get(id);
          pending.set(id, newer === undefined ? t : { lastSeenAt: t.lastSeenAt, idleExpiresAt: newer.idleExpiresAt });
        }
      } finally {
        flushing = null;
        if (pending.size > 0) schedule();
      }
    })();
    await flushing;
  }

  function schedule(): void {
    if (flushTimer !== null) return;
    flushTimer = setTimeout(() => void flush(), writeBehindMs);
    flushTimer.unref();
  }

  const sync = channel.sync?.bind(channel);
  // Local writes invalidate after the store call, so that a read that ran
  // concurrently with the write cannot have re-filled the cache. All but a
  // session's own revocation also invalidate before it: this process stops
  // serving a user's sessions (or its copy of the user) at once.
  //
  // A session's own revocation (sign-out, rotation) keeps serving its entry
  // while the write is in flight. Dropping it first bought nothing, since a
  // request concurrent with the write may be answered either way (the store
  // read it made instead saw the row until the commit). It cost a wrong 401
  // during a database outage: a session kept alive by renewals held here
  // (its Redis copy not renewed) was read from Redis, expired, while its
  // refused sign-out ran (test/database-outage-redis.test.ts). A write the
  // store refuses as unavailable changed nothing, so nothing changes here
  // either: the entry and its unwritten renewals stay.
  async function revoking<T>(invalidation: Invalidation, write: () => Promise<T>): Promise<T> {
    const own = invalidation.kind === "session";
    if (!own) apply(invalidation);
    let result: T;
    try {
      result = await write();
    } catch (error) {
      // Any other failure may or may not have reached the store: fail closed.
      if (!own || !isUnavailable(error)) apply(invalidation);
      throw error;
    }
    apply(invalidation);
    await sync?.();
    return result;
  }

  /**
   * Write-behind: a live cached session slides in memory at once and in the
   * store with the next batch. Other processes read the store's older expiry
   * until then (at most writeBehindMs), which ends a session earlier, never
   * later; a crash loses only the slide.
   */
  function renewInMemory(id: string, lastSeenAt: number, idleExpiresAt: number): Session | undefined {
    if (writeBehindMs <= 0 || !channelUp || pending.size >= MAX_PENDING_TOUCHES) return undefined;
    const entry = entries.get(id);
    if (entry === undefined) return undefined;
    const current = entry.value.session;
    if (current.idleExpiresAt <= lastSeenAt || current.absoluteExpiresAt <= lastSeenAt) return undefined;
    const session = { ...current, lastSeenAt, idleExpiresAt: Math.min(idleExpiresAt, current.absoluteExpiresAt) };
    entry.value = { session, user: entry.value.user };
    // An unwritten renewal before this one keeps its lastSeenAt (see flush).
    pending.set(id, { lastSeenAt: pending.get(id)?.lastSeenAt ?? lastSeenAt, idleExpiresAt: session.idleExpiresAt });
    schedule();
    return session;
  }

  const sessions = inner.sessions;
  const factors = inner.secondFactors;
  // The writes that change a user's mfa flag drop their cached sessions' user copies, as a role change does.
  const userChange = (userId: string): Invalidation => ({ kind: "user", userId });
  const wrapped: CachedStores = {
    ...inner,
    async close() {
      await flush();
      await channel.close();
      await inner.close();
    },
    users: {
      ...inner.users,
      updateUserRoles: (id, roles, updatedAt) =>
        revoking({ kind: "user", userId: id }, () => inner.users.updateUserRoles(id, roles, updatedAt)),
      updateUserEmail: (id, email, updatedAt) =>
        revoking({ kind: "user", userId: id }, () => inner.users.updateUserEmail(id, email, updatedAt)),
      verifyEmail: (id, tokenHash, now) => revoking({ kind: "user", userId: id }, () => inner.users.verifyEmail(id, tokenHash, now)),
      deleteUser: (id) => revoking({ kind: "user", userId: id }, () => inner.users.deleteUser(id)),
    },
    secondFactors: {
      ...factors,
      confirmTotp: (userId, ...rest) => revoking(userChange(userId), () => factors.confirmTotp(userId, ...rest)),
      deleteTotp: (userId) => revoking(userChange(userId), () => factors.deleteTotp(userId)),
      createPasskey: (passkey) => revoking(userChange(passkey.userId), () => factors.createPasskey(passkey)),
      deletePasskey: (userId, id) => revoking(userChange(userId), () => factors.deletePasskey(userId, id)),
      deleteSecondFactors: (userId) => revoking(userChange(userId), () => factors.deleteSecondFactors(userId)),
    },
    sessions: {
      ...sessions,
      cacheStats: stats,
      peekSession(id, now) {
        poll?.(now);
        return hit(id, now);
      },
      peekVerified(id, now, secret, verify) {
        poll?.(now);
        const entry = servable(id, now);
        if (entry === undefined) return undefined;
        if (entry.secret !== undefined) return constantTimeEqualText(secret, entry.secret) ? entry.value : null;
        if (!verify(secret, entry.value.session)) return null;
        // A copy, not the slice: a slice of the cookie value would keep the
        // whole Cookie header (every other cookie of that request) alive.
        entry.secret = Buffer.from(secret, "latin1").toString("latin1");
        return entry.value;
      },
      async findSession(id, now) {
        poll?.(now);
        const cached = hit(id, now);
        if (cached !== undefined) return cached;
        misses += 1;
        const readEpoch = epoch;
        const found = await sessions.findSession(id, now);
        if (found === null || revokedByUser(found.session)) return null;
        put(found, readEpoch);
        return found;
      },
      renewCached: renewInMemory,
      // Through the cache, so its entries follow (never the inner batch alone).
      touchSessions: (touches) => Promise.all(touches.map((t) => wrapped.sessions.touchSession(t.id, t.lastSeenAt, t.idleExpiresAt))),
      async touchSession(id, lastSeenAt, idleExpiresAt) {
        if (renewInMemory(id, lastSeenAt, idleExpiresAt) !== undefined) return true;
        const touched = await sessions.touchSession(id, lastSeenAt, idleExpiresAt);
        writes += 1;
        const entry = entries.get(id);
        if (entry !== undefined) {
          if (touched) {
            const session = {
              ...entry.value.session,
              lastSeenAt,
              idleExpiresAt: Math.min(idleExpiresAt, entry.value.session.absoluteExpiresAt),
            };
            entry.value = { session, user: entry.value.user };
          } else {
            drop(id);
          }
        }
        return touched;
      },
      deleteSession: (id) => revoking({ kind: "session", sessionId: id }, () => sessions.deleteSession(id)),
      rotateSession: (oldId, next) => revoking({ kind: "session", sessionId: oldId }, () => sessions.rotateSession(oldId, next)),
      deleteUserSessions: (userId, deleteOptions) =>
        revoking({ kind: "user-sessions", userId, before: clock.now() + 1, exceptId: deleteOptions?.exceptId ?? null }, () =>
          sessions.deleteUserSessions(userId, deleteOptions),
        ),
    },
  };

  function setChannelUp(up: boolean): void {
    if (up === channelUp) return;
    channelUp = up;
    epoch += 1;
    clear();
  }
  channel.onEvent(apply);
  channel.onStatus((status) => setChannelUp(status === "up"));
  setChannelUp(channel.up);

  return { stores: wrapped, apply, stats, flush };
}
