import { LatchError } from "../../core/errors.js";
import { SLOT_TAG_LENGTH, slotTagFor } from "../../core/session-token.js";
import type { Session, User } from "../../core/store.js";
import { globEscape, redisCall, scanNodes } from "./redis-connection.js";
import { latchScripts } from "./redis-scripts.js";
import type { RedisClient } from "./redis-scripts.js";
import { ownerBytes, packSession, packUser, sessionField, unpackSession, unpackUser } from "./session-codec.js";

/** Lifetime of the epoch key: longer than any session can live. */
export const EPOCH_TTL_MS = 400 * 86_400_000;

export interface SessionRead {
  /** Redis time of the read (ms). A refill of what the database says next must carry it. */
  at: number;
  /** Null on a miss, including a copy dropped as older than `epoch`. */
  session: Session | null;
  /** The owner, or null when the copy is missing or may be stale: read the user from the database. */
  user: User | null;
}

export type WriteOutcome =
  | "ok"
  /** A refill refused: the key saw a revocation after the refill's database read. */
  | "raced"
  /** A rotation refused: the replaced session no longer exists. */
  | "gone"
  /** No copy of the owner is cached next to the session yet: write again with `user` and `readAt: at`. */
  | { needsUser: true; at: number };

export interface WriteOptions {
  /** "create": a new session, written unconditionally. "refill": a copy of the database's, refused if it may be stale. */
  mode: "create" | "refill";
  /** The owner, read from the database at `readAt` (Redis time, from a {@link SessionRead} or a `needsUser` outcome). */
  user?: User | null | undefined;
  readAt?: number | undefined;
  /** Replace this session atomically (rotation); "gone" if it does not exist. */
  replaces?: string | undefined;
  /** Cached entries stamped before this Redis time are dropped (tiered store); 0 disables the check. */
  epoch?: number | undefined;
}

/**
 * The Redis session keys and the operations on them, shared by the
 * Redis-only session store and the tiered store. Every method rejects with
 * `LatchError("unavailable")` when Redis cannot be reached.
 */
export interface RedisSessionCache {
  readonly prefix: string;
  /** The hash holding every session of users whose slot tag is `tag`. */
  keyForTag(tag: string): string;
  read(id: string, options?: { epoch?: number | undefined }): Promise<SessionRead>;
  write(session: Session, options: WriteOptions): Promise<WriteOutcome>;
  /** Slides the idle expiry of a live cached session; false when absent, expired at `lastSeenAt` or dropped as stale. */
  touch(id: string, lastSeenAt: number, idleExpiresAt: number, options?: { epoch?: number | undefined }): Promise<boolean>;
  /** Removes a session; the owner's id, or null when it was not there. */
  remove(id: string): Promise<string | null>;
  /** Removes the user's sessions but `exceptId`; with `dropUser`, also the cached copy of the user. */
  removeUserSessions(userId: string, options?: { exceptId?: string | undefined; dropUser?: boolean | undefined }): Promise<number>;
  /** The user's cached sessions unexpired at Redis's clock (callers filter by their own `now`). */
  list(userId: string): Promise<Session[]>;
  /** Deletes up to `limit` sessions expired at `now`, continuing a key scan across calls. */
  sweep(now: number, limit: number): Promise<number>;
  /**
   * After a role change: "stale" before the database write (readers go to
   * the database meanwhile), "set" after it. Both refuse racing refills.
   */
  setUser(user: Pick<User, "id"> & Partial<User>, mode: "set" | "stale"): Promise<void>;
  /** Replaces a stale copy of the user read from the database at `readAt`; false if that read may have raced a change. */
  refillUser(user: User, readAt: number): Promise<boolean>;
  readEpoch(): Promise<number>;
  /** Raises the epoch to Redis's current time: every entry cached before is stale. */
  bumpEpoch(): Promise<number>;
}

function asString(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString("utf8") : String(value);
}

/**
 * @example
 * const cache = createRedisSessionCache({ redis, prefix: "latch:" });
 * const { session, user } = await cache.read(id);
 */
export function createRedisSessionCache(options: { redis: RedisClient; prefix: string }): RedisSessionCache {
  const { redis, prefix } = options;
  const scripts = latchScripts(redis);
  const epochKey = `${prefix}epoch`;
  const sweepPattern = `${globEscape(prefix)}{${"?".repeat(SLOT_TAG_LENGTH)}}`;
  // Where the expiry sweep stopped on each node, so that a sweeper calling
  // in a loop makes progress instead of rescanning the first keys.
  const sweepCursors = new Map<string, string>();

  const keyForTag = (tag: string): string => `${prefix}{${tag}}`;
  const keyForSession = (id: string): string => keyForTag(id.slice(0, SLOT_TAG_LENGTH));
  const keyForUser = (userId: string): string => keyForTag(slotTagFor(userId));

  function decode(
    id: string,
    value: Buffer,
    snapshot: Buffer | null,
    agent: Buffer | null,
  ): { session: Session; user: User | null } | null {
    const unpacked = unpackSession(id, value, agent);
    const owner = snapshot === null ? null : unpackUser(snapshot);
    const userId = unpacked.ownerId ?? owner?.user.id ?? null;
    // A session whose owner is unknown cannot be attributed: a miss.
    if (userId === null) return null;
    return { session: { ...unpacked.session, userId }, user: owner?.fresh && owner.user.id === userId ? owner.user : null };
  }

  async function sweepNode(node: RedisClient, name: string, now: number, limit: number): Promise<number> {
    let removed = 0;
    let cursor = sweepCursors.get(name) ?? "0";
    // A scan resumed mid-way gets one more lap from the start, so one call
    // covers every key at least once unless it reaches the limit first.
    let laps = cursor === "0" ? 1 : 2;
    while (laps > 0) {
      const [next, keys] = await node.scan(cursor, "MATCH", sweepPattern, "COUNT", 200);
      for (const key of keys) {
        removed += Number(await scripts.sweep(key, now, limit - removed));
        if (removed >= limit) {
          sweepCursors.set(name, cursor);
          return removed;
        }
      }
      cursor = next;
      if (cursor === "0") laps -= 1;
    }
    sweepCursors.set(name, "0");
    return removed;
  }

  return {
    prefix,
    keyForTag,

    read(id, readOptions = {}) {
      return redisCall(async () => {
        const reply = (await scripts.find(keyForSession(id), sessionField(id), readOptions.epoch ?? 0)) as [
          number,
          Buffer?,
          Buffer?,
          Buffer?,
        ];
        const at = Number(reply[0]);
        if (reply[1] === undefined) return { at, session: null, user: null };
        const decoded = decode(id, reply[1], reply[2] ?? null, reply[3] ?? null);
        return decoded === null ? { at, session: null, user: null } : { at, ...decoded };
      });
    },

    async write(session, writeOptions) {
      if (writeOptions.replaces !== undefined && writeOptions.replaces.slice(0, SLOT_TAG_LENGTH) !== session.id.slice(0, SLOT_TAG_LENGTH)) {
        // Different tags would be two hash slots: no atomic rotation in a cluster.
        throw new LatchError("invalid_input", "A rotated session must keep its user's slot tag.");
      }
      const packed = packSession(session);
      const owner = ownerBytes(session.userId);
      const user = writeOptions.user;
      const snapshot =
        user === undefined
          ? ""
          : // A missing user still gets a (stale) placeholder: the key must record
            // who owns the session, and readers then find the user gone.
            packUser(user ?? { id: session.userId, username: "", email: null, emailVerified: false, roles: [], mfa: false, createdAt: 0 }, {
              fresh: user !== null,
            });
      return redisCall(async () => {
        const reply = (await scripts.put(
          keyForSession(session.id),
          packed.field,
          packed.byReference,
          packed.inline,
          packed.agentField,
          packed.agent,
          owner,
          snapshot,
          writeOptions.readAt ?? "",
          packed.expiresAt,
          writeOptions.epoch ?? 0,
          writeOptions.mode,
          writeOptions.replaces === undefined ? "" : sessionField(writeOptions.replaces),
          writeOptions.epoch === undefined ? "0" : "1",
        )) as [Buffer, number?];
        const outcome = asString(reply[0]);
        if (outcome === "user") return { needsUser: true, at: Number(reply[1]) };
        return outcome as "ok" | "raced" | "gone";
      });
    },

    touch(id, lastSeenAt, idleExpiresAt, touchOptions = {}) {
      return redisCall(
        async () =>
          Number(await scripts.touch(keyForSession(id), sessionField(id), lastSeenAt, idleExpiresAt, touchOptions.epoch ?? 0)) === 1,
      );
    },

    remove(id) {
      return redisCall(async () => {
        const reply = (await scripts.remove(keyForSession(id), sessionField(id))) as Buffer | null;
        if (reply === null) return null;
        return reply.length === 0 ? null : reply.toString("utf8", 1, 1 + reply[0]!);
      });
    },

    removeUserSessions(userId, removeOptions = {}) {
      const keep = removeOptions.exceptId === undefined ? "" : sessionField(removeOptions.exceptId);
      return redisCall(async () =>
        Number(await scripts.removeUser(keyForUser(userId), ownerBytes(userId), keep, removeOptions.dropUser === true ? "1" : "0")),
      );
    },

    list(userId) {
      return redisCall(async () => {
        const tag = slotTagFor(userId);
        const reply = (await scripts.list(keyForTag(tag), ownerBytes(userId))) as Buffer[];
        const sessions: Session[] = [];
        for (let i = 0; i + 2 < reply.length; i += 3) {
          const id = tag + asString(reply[i]);
          const agent = reply[i + 2]!;
          const unpacked = unpackSession(id, reply[i + 1]!, agent.length === 0 ? null : agent);
          sessions.push({ ...unpacked.session, userId });
        }
        return sessions;
      });
    },

    sweep(now, limit) {
      return redisCall(async () => {
        let removed = 0;
        for (const node of scanNodes(redis)) {
          if (removed >= limit) break;
          removed += await sweepNode(node, `${node.options.host ?? ""}:${node.options.port ?? ""}`, now, limit - removed);
        }
        return removed;
      });
    },

    async setUser(user, mode) {
      const snapshot = mode === "set" ? packUser(user as User, { fresh: true }) : "";
      await redisCall(() => scripts.user(keyForUser(user.id), ownerBytes(user.id), snapshot, mode, ""));
    },

    refillUser(user, readAt) {
      return redisCall(
        async () =>
          Number(await scripts.user(keyForUser(user.id), ownerBytes(user.id), packUser(user, { fresh: true }), "refill", readAt)) === 1,
      );
    },

    readEpoch() {
      return redisCall(async () => Number((await redis.get(epochKey)) ?? 0));
    },

    bumpEpoch() {
      return redisCall(async () => Number(await scripts.bumpEpoch(epochKey, EPOCH_TTL_MS)));
    },
  };
}
