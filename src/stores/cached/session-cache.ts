import type { Clock } from "../../core/runtime.js";
import type { CachedSessionStore, Session, SessionCacheStats, SessionWithUser, Stores } from "../../core/store.js";
import type { Invalidation, RevocationChannel } from "../revocation-channel.js";

export type { Invalidation } from "../revocation-channel.js";

export interface SessionCacheOptions {
  clock: Clock;
  /** Most sessions kept; the oldest are dropped first. Default 100,000 (~40 MB at worst). */
  maxEntries?: number;
  /**
   * How long an entry may be served before it is re-read, even with a healthy
   * invalidation channel: a bound on staleness should a message ever be lost
   * in a way the channel cannot report. Default 30 s.
   */
  maxAgeMs?: number;
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
}

interface Entry {
  value: SessionWithUser;
  cachedAt: number;
}

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
  const maxEntries = options.maxEntries ?? 100_000;
  const maxAgeMs = options.maxAgeMs ?? 30_000;
  const { clock } = options;
  const entries = new Map<string, Entry>();
  const byUser = new Map<string, Set<string>>();
  const validAfter = new Map<string, { before: number; exceptId: string | null }>();
  let epoch = 0;
  let channelUp = false;
  let hits = 0;
  let misses = 0;

  function drop(sessionId: string): void {
    const entry = entries.get(sessionId);
    if (entry === undefined) return;
    entries.delete(sessionId);
    const ids = byUser.get(entry.value.session.userId);
    ids?.delete(sessionId);
    if (ids?.size === 0) byUser.delete(entry.value.session.userId);
  }

  function dropUser(userId: string): void {
    for (const id of byUser.get(userId) ?? []) entries.delete(id);
    byUser.delete(userId);
  }

  function clear(): void {
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
    const mark = validAfter.get(session.userId);
    return mark !== undefined && session.createdAt < mark.before && session.id !== mark.exceptId;
  }

  function put(value: SessionWithUser, readEpoch: number): void {
    if (!channelUp || readEpoch !== epoch) return;
    if (entries.size >= maxEntries) {
      // Maps iterate in insertion order: the first key is the oldest entry.
      const oldest = entries.keys().next().value;
      if (oldest !== undefined) drop(oldest);
    }
    entries.set(value.session.id, { value, cachedAt: clock.now() });
    let ids = byUser.get(value.session.userId);
    if (ids === undefined) {
      ids = new Set();
      byUser.set(value.session.userId, ids);
    }
    ids.add(value.session.id);
  }

  const poll = channel.poll?.bind(channel);

  /** A servable entry for the id, or undefined (dropping an entry that is not). */
  function hit(id: string, now: number): SessionWithUser | undefined {
    if (!channelUp) return undefined;
    const entry = entries.get(id);
    if (entry === undefined) return undefined;
    const { session } = entry.value;
    if (session.idleExpiresAt > now && session.absoluteExpiresAt > now && now - entry.cachedAt < maxAgeMs && !revokedByUser(session)) {
      hits += 1;
      return entry.value;
    }
    drop(id);
    return undefined;
  }

  function stats(): SessionCacheStats {
    return { serving: channelUp, entries: entries.size, hits, misses };
  }

  const sync = channel.sync?.bind(channel);
  // Local writes invalidate before and after the store call: before, so this
  // process stops serving the entry at once; after, so a read that ran
  // concurrently with the write cannot have re-filled it.
  async function revoking<T>(invalidation: Invalidation, write: () => Promise<T>): Promise<T> {
    apply(invalidation);
    let result: T;
    try {
      result = await write();
    } finally {
      apply(invalidation);
    }
    await sync?.();
    return result;
  }

  const sessions = inner.sessions;
  const wrapped: CachedStores = {
    ...inner,
    async close() {
      await channel.close();
      await inner.close();
    },
    users: {
      ...inner.users,
      updateUserRoles: (id, roles, updatedAt) => revoking({ kind: "user", userId: id }, () => inner.users.updateUserRoles(id, roles, updatedAt)),
      updateUserEmail: (id, email, updatedAt) => revoking({ kind: "user", userId: id }, () => inner.users.updateUserEmail(id, email, updatedAt)),
      verifyEmail: (id, tokenHash, now) => revoking({ kind: "user", userId: id }, () => inner.users.verifyEmail(id, tokenHash, now)),
      deleteUser: (id) => revoking({ kind: "user", userId: id }, () => inner.users.deleteUser(id)),
    },
    sessions: {
      ...sessions,
      cacheStats: stats,
      peekSession(id, now) {
        poll?.(now);
        return hit(id, now);
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
      async touchSession(id, lastSeenAt, idleExpiresAt) {
        const touched = await sessions.touchSession(id, lastSeenAt, idleExpiresAt);
        const entry = entries.get(id);
        if (entry !== undefined) {
          if (touched) {
            const session = { ...entry.value.session, lastSeenAt, idleExpiresAt: Math.min(idleExpiresAt, entry.value.session.absoluteExpiresAt) };
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
        revoking({ kind: "user-sessions", userId, before: clock.now() + 1, exceptId: deleteOptions?.exceptId ?? null }, () => sessions.deleteUserSessions(userId, deleteOptions)),
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

  return { stores: wrapped, apply, stats };
}
