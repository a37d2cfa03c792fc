/**
 * The store interfaces, in the domain's words. Every store (memory, SQLite,
 * PostgreSQL, Redis, tiered) implements these and passes the conformance
 * suite in `src/stores/store-conformance.ts`.
 *
 * Units: every time is milliseconds since the Unix epoch (a `number`); every
 * duration is milliseconds unless its name says otherwise. Methods are async
 * even where an implementation could be synchronous, so callers cannot come to
 * depend on a store being in-process.
 *
 * Failures: a store that cannot reach its backend rejects with a
 * `LatchError("unavailable", …, { cause })`. A miss is never an error: it is
 * `null`, `false` or `0`.
 */

import type { TokenAlgorithm } from "./tokens.js";

/** The public view of a user: what responses carry. Never the hash. */
export interface User {
  id: string;
  /** As registered, NFKC-normalised, original case kept for display. */
  username: string;
  email: string | null;
  /** Always contains "user". */
  roles: string[];
  createdAt: number;
}

export interface UserRecord extends User {
  /** NFKC + lower-case username: the uniqueness key. */
  usernameKey: string;
  /** NFKC + lower-case email: unique when not null. */
  emailKey: string | null;
  /** An argon2id PHC string, or a legacy bcrypt hash awaiting upgrade. */
  passwordHash: string;
  updatedAt: number;
}

export interface Session {
  /** Public handle and lookup key (see `session-token.ts`). */
  id: string;
  userId: string;
  /** SHA-256 of the session secret, 32 bytes. The secret itself is never stored. */
  secretHash: Uint8Array;
  createdAt: number;
  /** Last request seen; updated at most once per renewal interval. */
  lastSeenAt: number;
  /** Slides with activity; never beyond `absoluteExpiresAt`. */
  idleExpiresAt: number;
  /** Fixed at creation; never moves. */
  absoluteExpiresAt: number;
  userAgent: string | null;
  /** The client address, truncated (/24 IPv4, /48 IPv6) before it reaches the store. */
  ipAddress: string | null;
}

export interface SessionWithUser {
  session: Session;
  user: User;
}

export interface ListUsersOptions {
  /** 1..100. */
  limit: number;
  /** Return users whose id sorts after this one (the previous page's last id). */
  after?: string | undefined;
}

export interface UserStore {
  /**
   * Inserts a user. Atomic: either the user exists afterwards or nothing was
   * written. Rejects with `LatchError("conflict")` when `usernameKey` or
   * `emailKey` belongs to another user.
   */
  createUser(user: UserRecord): Promise<void>;
  /** The user, or null. */
  findUserById(id: string): Promise<UserRecord | null>;
  /** The user whose `usernameKey` or `emailKey` equals `key`, or null. */
  findUserByLogin(key: string): Promise<UserRecord | null>;
  /** Replaces the password hash. False when the user does not exist. */
  updateUserPassword(id: string, passwordHash: string, updatedAt: number): Promise<boolean>;
  /**
   * Replaces the roles. Returns the updated user, or null when it does not
   * exist. Stores that keep a copy of the user next to sessions must refresh
   * or drop that copy here, so live sessions see the new roles at once.
   */
  updateUserRoles(id: string, roles: string[], updatedAt: number): Promise<UserRecord | null>;
  /** Deletes the user and, atomically with it, every session and security event of theirs. */
  deleteUser(id: string): Promise<boolean>;
  /** Users ordered by id, ascending. */
  listUsers(options: ListUsersOptions): Promise<UserRecord[]>;
}

export interface SessionStore {
  /** Inserts a session. Ids are unique by construction (128 random bits). */
  createSession(session: Session): Promise<void>;
  /**
   * The session with its user, or null when there is none or when it has
   * expired at `now` (idle or absolute). Expired sessions are never returned,
   * whether or not they were swept yet.
   */
  findSession(id: string, now: number): Promise<SessionWithUser | null>;
  /**
   * Slides the idle expiry. Only touches a session that still exists and has
   * not expired at `lastSeenAt`: a late renewal racing a revocation must never
   * bring the session back. `idleExpiresAt` is capped at the absolute expiry
   * by the caller. Returns whether a session was renewed.
   */
  touchSession(id: string, lastSeenAt: number, idleExpiresAt: number): Promise<boolean>;
  /**
   * {@link touchSession} for many sessions at once, in one transaction where
   * the store has them (the session cache's write-behind batches renewals).
   * Returns one result per touch, in order. Optional: without it, each is a
   * `touchSession`.
   */
  touchSessions?(touches: ReadonlyArray<{ id: string; lastSeenAt: number; idleExpiresAt: number }>): Promise<boolean[]>;
  /** Removes a session. Returns the removed session's user id, or null if there was none. */
  deleteSession(id: string): Promise<string | null>;
  /**
   * Atomically replaces session `oldId` with `next` (same user): used when a
   * password change gives the current session a new id. False, and nothing
   * written, when `oldId` no longer exists.
   */
  rotateSession(oldId: string, next: Session): Promise<boolean>;
  /** The user's unexpired sessions at `now`, newest first. */
  listUserSessions(userId: string, now: number): Promise<Session[]>;
  /** Removes every session of the user except `exceptId`. Returns how many were removed. */
  deleteUserSessions(userId: string, options?: { exceptId?: string | undefined }): Promise<number>;
  /** Deletes up to `limit` sessions expired at `now`; returns how many. Sweepers call it in a loop. */
  deleteExpiredSessions(now: number, limit: number): Promise<number>;
}

export type SecurityEventType =
  | "sign_in"
  | "sign_in_failed"
  | "sign_out"
  | "register"
  | "password_changed"
  | "session_revoked"
  | "sessions_revoked"
  | "roles_changed"
  | "throttled"
  | "user_deleted"
  | "token_issued";

export interface SecurityEvent {
  id: string;
  /** Null when the attempt named no known user. */
  userId: string | null;
  type: SecurityEventType;
  at: number;
  ipAddress: string | null;
  userAgent: string | null;
  /** Non-secret detail (a session handle, the new roles). Never a password, token or hash. */
  detail: Record<string, string> | null;
}

export interface SecurityEventStore {
  recordEvent(event: SecurityEvent): Promise<void>;
  /** The user's events, newest first. */
  listUserEvents(userId: string, limit: number): Promise<SecurityEvent[]>;
  deleteUserEvents(userId: string): Promise<number>;
  /** Deletes up to `limit` events older than `before`; returns how many. */
  deleteEventsBefore(before: number, limit: number): Promise<number>;
}

export interface RateLimitState {
  /** Hits in the current window, including this one. */
  count: number;
  /** When the window ends. */
  resetAt: number;
}

export interface RateLimitStore {
  /**
   * Atomically counts one hit on `key` in a fixed window of `windowMs` that
   * starts at the key's first hit. Concurrent hits from several processes
   * are all counted.
   */
  hit(key: string, windowMs: number, now: number): Promise<RateLimitState>;
  /** The current window's state without counting, or null when no window is open at `now`. */
  peek(key: string, now: number): Promise<RateLimitState | null>;
  /** Closes the key's window. */
  reset(key: string): Promise<void>;
  /**
   * Deletes up to `limit` windows closed at `now`; returns how many. Stores
   * whose keys expire natively (Redis) return 0.
   */
  deleteClosedWindows(now: number, limit: number): Promise<number>;
}

export interface SigningKey {
  /** Key id, the JWT header's `kid`. */
  kid: string;
  /** TOKEN_ALG when it was made; must agree with `publicJwk` (see `jwkAlgorithm`). */
  alg: TokenAlgorithm;
  /** Public JWK as JSON. */
  publicJwk: string;
  /** Private JWK as JSON. */
  privateJwk: string;
  createdAt: number;
  /** When it stopped signing; null for the active key. */
  retiredAt: number | null;
}

export interface SigningKeyStore {
  /** Every key, newest first. */
  listSigningKeys(): Promise<SigningKey[]>;
  /** Adds `key` as the active key and retires the previous active key at `key.createdAt`, atomically. */
  addSigningKey(key: SigningKey): Promise<void>;
  /** Deletes keys retired before `before`; returns how many. */
  deleteSigningKeysRetiredBefore(before: number): Promise<number>;
}

export type StoreHealth = "ok" | "degraded" | "down";

/** Everything a Latch server is handed: one object per concern, often the same backend. */
export interface Stores {
  users: UserStore;
  sessions: SessionStore;
  events: SecurityEventStore;
  limits: RateLimitStore;
  keys: SigningKeyStore;
  /** Each backend's health by name, e.g. `{ database: "ok", redis: "down" }`. Never rejects. */
  health(): Promise<Record<string, StoreHealth>>;
  /** Stops timers and closes connections. */
  close(): Promise<void>;
}

export interface SessionCacheStats {
  serving: boolean;
  entries: number;
  /** Validations answered from memory since the process started. */
  hits: number;
  /** Validations that had to read the store. */
  misses: number;
  /** Session renewals written to the store (each row of a batch counts). */
  writes: number;
}

/**
 * What an in-process cache in front of a session store adds
 * (src/stores/cached/session-cache.ts). Not part of the store contract: no
 * store implements it, and code that can use it asks with
 * {@link isCachedSessionStore}.
 */
export interface CachedSessionStore extends SessionStore {
  /**
   * Synchronous: what {@link SessionStore.findSession} would answer, when it
   * can be told from memory with no I/O (a cache hit), under the same rules;
   * undefined when only `findSession` can tell (including every miss). Lets
   * the hot path skip the promise machinery.
   */
  peekSession(id: string, now: number): SessionWithUser | undefined;
  /**
   * Synchronous: {@link SessionStore.touchSession} applied to a session held
   * in memory, its write to the store deferred (write-behind). Returns the
   * renewed session, or undefined when only `touchSession` can do it (not
   * held, or the write cannot be deferred). Lets the hot path renew without
   * the promise machinery.
   */
  renewCached(id: string, lastSeenAt: number, idleExpiresAt: number): Session | undefined;
  /** The cache's counters (for /metrics). `serving` is false while it fails closed (its channel is down). */
  cacheStats(): SessionCacheStats;
}

/**
 * True when `store` has an in-process cache in front (see {@link CachedSessionStore}).
 *
 * @example
 * const peek = isCachedSessionStore(stores.sessions) ? stores.sessions.peekSession : null;
 */
export function isCachedSessionStore(store: SessionStore): store is CachedSessionStore {
  return typeof (store as Partial<CachedSessionStore>).peekSession === "function" && typeof (store as Partial<CachedSessionStore>).cacheStats === "function";
}
