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
  /** True once the person proved they read mail at `email` (a verification link); false for no email. */
  emailVerified: boolean;
  /** Always contains "user". */
  roles: string[];
  /** The account has a second factor: a confirmed TOTP or at least one passkey. Kept by the {@link SecondFactorStore} methods that change it. */
  mfa: boolean;
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
  /** How the holder signed in, in RFC 8176 terms: `["pwd"]`, `["pwd", "otp", "mfa"]`, `["hwk", "mfa"]`. */
  amr: AuthMethod[];
  /**
   * A sign-in waiting for its second factor: the password was right, the
   * code is still owed. It authenticates nothing but POST /login/mfa
   * (src/auth/request-auth.ts `sessionKind` is the one place that reads
   * this). Lives 5 minutes; never promoted: success starts a new session.
   */
  pending: boolean;
}

/** RFC 8176 authentication method references that Latch issues. */
export type AuthMethod = "pwd" | "otp" | "hwk" | "mfa";

export const AUTH_METHODS: readonly AuthMethod[] = ["pwd", "otp", "hwk", "mfa"];

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
  /** Deletes the user and, atomically with it, every session, security event and second factor of theirs. */
  /**
   * Replaces the email (null removes it) and marks it unverified, and voids
   * every verification token of the user, atomically. Returns the updated
   * user, or null when it does not exist. Rejects with
   * `LatchError("conflict")` when `emailKey` belongs to another user (or is
   * this user's username). Like {@link updateUserRoles}, stores that keep a
   * copy of the user next to sessions refresh or drop it.
   */
  updateUserEmail(id: string, email: { email: string; emailKey: string } | null, updatedAt: number): Promise<UserRecord | null>;
  /**
   * Consumes the user's verification token with this hash and marks the
   * email verified, atomically: only a token that is unexpired at `now`,
   * belongs to `id` and was issued for the user's current email counts.
   * Returns the updated user, or null (and nothing changed) otherwise. The
   * token is gone afterwards either way it was found.
   */
  verifyEmail(id: string, tokenHash: Uint8Array, now: number): Promise<UserRecord | null>;
  /**
   * Consumes the user's reset token with this hash, replaces the password
   * hash, voids every other reset token of the user and queues `notice`, all
   * in one transaction. Returns the updated user, or null (and nothing
   * changed) when no such token is unexpired at `now`. Ending the user's
   * sessions is the caller's next step, through the session store.
   */
  resetPassword(
    id: string,
    tokenHash: Uint8Array,
    passwordHash: string,
    now: number,
    notice: OutboxMessage | null,
  ): Promise<UserRecord | null>;
  /** Deletes the user and, atomically with it, every session, security event, token and queued message of theirs. */
  deleteUser(id: string): Promise<boolean>;
  /** Users ordered by id, ascending. */
  listUsers(options: ListUsersOptions): Promise<UserRecord[]>;
}

export interface CreateSessionOptions {
  /**
   * Create the session only if this is still the user's password hash,
   * checked atomically with the insert: a sign-in that verified the old
   * password must not get a session once a password change has replaced it
   * (and ended the user's sessions). A password change that commits while
   * the insert runs either makes it fail or comes after it, so the change's
   * own `deleteUserSessions` ends the new session.
   */
  ifPasswordHash?: string | undefined;
}

export interface SessionStore {
  /**
   * Inserts a session. Ids are unique by construction (128 random bits).
   * True when it was created; false, and nothing written, when
   * `options.ifPasswordHash` is given and the user does not exist or their
   * hash is another.
   */
  createSession(session: Session, options?: CreateSessionOptions): Promise<boolean>;
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
  | "token_issued"
  | "totp_setup_started"
  | "totp_enabled"
  | "totp_disabled"
  | "recovery_codes_generated"
  | "recovery_code_used"
  | "mfa_failed"
  | "passkey_added"
  | "passkey_renamed"
  | "passkey_removed"
  | "mfa_reset"
  | "password_reset_requested"
  | "password_reset"
  | "email_verified"
  | "email_changed"
  | "mail_failed";

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

/**
 * A user's TOTP (RFC 6238) credential. Secrets are stored sealed
 * (src/core/second-factor-sealing.ts), never as the base32 text.
 */
export interface TotpCredential {
  userId: string;
  /** The confirmed secret, sealed; null while only a setup is pending. */
  secret: string | null;
  /** The highest time step a code was accepted for; a code of this step or an earlier one is refused (replay). 0 before any. */
  lastUsedStep: number;
  /** A setup waiting for its first code, sealed; the confirmed secret (if any) stays in force meanwhile. */
  pendingSecret: string | null;
  confirmedAt: number | null;
  updatedAt: number;
}

/** A WebAuthn credential (a passkey) registered to a user. */
export interface Passkey {
  /** Public handle (what the API calls `id`); not the credential id. */
  id: string;
  userId: string;
  /** The WebAuthn credential id, base64url; unique across users. */
  credentialId: string;
  /** COSE public key. */
  publicKey: Uint8Array;
  /** The signature counter last seen; 0 for authenticators that keep none. */
  counter: number;
  transports: string[];
  /** 1 to 64 characters, chosen by the user. */
  name: string;
  createdAt: number;
  lastUsedAt: number | null;
}

/**
 * A WebAuthn challenge waiting for its answer: single use, short-lived, and
 * bound to the browser that asked (the browser holds a random secret in a
 * cookie; only its hash is here).
 */
export interface WebAuthnChallenge {
  id: string;
  purpose: "register" | "sign_in";
  /** The user registering a passkey; null for a sign-in (anyone may ask). */
  userId: string | null;
  /** SHA-256 of the browser's secret, 32 bytes. */
  secretHash: Uint8Array;
  /** The challenge, base64url, as the options carried it. */
  challenge: string;
  expiresAt: number;
}

/**
 * Second factors: TOTP with recovery codes, passkeys, and WebAuthn
 * challenges. Every method that changes whether a user has a second factor
 * (confirming or removing TOTP, adding or removing a passkey, removing them
 * all) sets the user's `mfa` flag in the same atomic write; stores that keep
 * a copy of the user next to sessions refresh or drop that copy, as for a
 * role change.
 */
export interface SecondFactorStore {
  /** The user's TOTP row (confirmed, pending, or both), or null. */
  findTotp(userId: string): Promise<TotpCredential | null>;
  /** Records a setup (a new pending secret, replacing an earlier pending one). False when the user does not exist. */
  beginTotp(userId: string, pendingSecret: string, now: number): Promise<boolean>;
  /**
   * Atomically: the pending secret becomes the confirmed one, `step` becomes
   * the last used step, the user's recovery codes are replaced by
   * `recoveryCodeHashes`, and `mfa` is set. False, and nothing written, when
   * the pending secret is no longer `pendingSecret` (a newer setup, or none).
   */
  confirmTotp(userId: string, pendingSecret: string, step: number, recoveryCodeHashes: string[], now: number): Promise<boolean>;
  /**
   * Accepts a code's time step once: atomically sets the last used step to
   * `step` when a confirmed secret exists and its last used step is lower.
   * False otherwise (a replayed or older code, or no TOTP). Concurrent
   * callers with the same step: exactly one gets true.
   */
  useTotpStep(userId: string, step: number): Promise<boolean>;
  /** Removes TOTP (confirmed and pending) and every recovery code; updates `mfa`. False when there was no TOTP row. */
  deleteTotp(userId: string): Promise<boolean>;
  /** Replaces every recovery code of the user with these hashes (hex SHA-256). */
  replaceRecoveryCodes(userId: string, hashes: string[]): Promise<void>;
  /** Deletes the user's recovery code with this hash: true once, then false. */
  useRecoveryCode(userId: string, hash: string): Promise<boolean>;
  /** How many unused recovery codes the user has. */
  countRecoveryCodes(userId: string): Promise<number>;
  /** Adds a passkey and sets `mfa`. Rejects with `LatchError("conflict")` when the credential id is registered already. */
  createPasskey(passkey: Passkey): Promise<void>;
  /** The user's passkeys, oldest first. */
  listPasskeys(userId: string): Promise<Passkey[]>;
  /** The passkey with this WebAuthn credential id, whoever's it is, or null. */
  findPasskeyByCredentialId(credentialId: string): Promise<Passkey | null>;
  /**
   * Records a sign-in with the passkey: counter and last use set, only if the
   * stored counter still equals `expectedCounter` (so two concurrent uses of
   * one assertion cannot both pass). False otherwise, or when it is gone.
   */
  recordPasskeyUse(id: string, expectedCounter: number, counter: number, at: number): Promise<boolean>;
  /** Renames the user's passkey; false when it is not theirs or unknown. */
  renamePasskey(userId: string, id: string, name: string): Promise<boolean>;
  /** Deletes the user's passkey and updates `mfa`; false when it is not theirs or unknown. */
  deletePasskey(userId: string, id: string): Promise<boolean>;
  /** Removes TOTP, recovery codes and passkeys (a lost device); `mfa` off. Returns whether anything was removed. */
  deleteSecondFactors(userId: string): Promise<boolean>;
  putChallenge(challenge: WebAuthnChallenge): Promise<void>;
  /** Removes the challenge and returns it: once. Null when unknown or expired at `now`. */
  takeChallenge(id: string, now: number): Promise<WebAuthnChallenge | null>;
  /** Deletes up to `limit` challenges expired at `now`; returns how many. */
  deleteExpiredChallenges(now: number, limit: number): Promise<number>;
}

/**
 * A counter kept in the system of record (the database) that says "a
 * revoking write may not have reached the copies other processes keep":
 * raised by a process that wrote a revocation to the database but could not
 * announce it (the admin CLI while Redis is unreachable, a server shutting
 * down cut off from Redis). Servers read it regularly and, when it moved,
 * drop every cached copy (the tiered store's epoch flush).
 */
export interface FlushMarkStore {
  /** Raises the mark by one, atomically; returns the new value. */
  raiseFlushMark(): Promise<number>;
  /** The current value, 0 when it was never raised. */
  readFlushMark(): Promise<number>;
}

/** What an account token proves: a reset (of the password) or a verification (of the email). */
export type AccountTokenPurpose = "reset" | "verify";

/**
 * A single-use token mailed to a user. Only its SHA-256 is stored, so a copy
 * of the database cannot be turned into working links.
 */
export interface AccountToken {
  /** SHA-256 of the token text, 32 bytes: the primary key. */
  hash: Uint8Array;
  purpose: AccountTokenPurpose;
  userId: string;
  /** For "verify": the email key it was sent to (it dies when the email changes). Null for "reset". */
  emailKey: string | null;
  createdAt: number;
  expiresAt: number;
}

export type MailKind = "verify_email" | "password_reset" | "password_changed" | "email_changed";

/** A message as queued: already rendered, so the sender needs nothing else. */
export interface OutboxMessage {
  /** A UUIDv7; also the Message-ID's local part, so a receiver can spot a resend. */
  id: string;
  /** The account it concerns; null only for mail to no account. Deleting the user deletes it. */
  userId: string | null;
  kind: MailKind;
  to: string;
  subject: string;
  text: string;
  html: string;
  createdAt: number;
}

export type OutboxStatus = "queued" | "sent" | "failed";

/** A message taken by a sender, with its delivery state. */
export interface OutboxEntry extends OutboxMessage {
  status: OutboxStatus;
  /** Hand-over attempts so far, this one included. */
  attempts: number;
}

/** What `/me/export` shows of a message: metadata only, never the body (a body may hold a link). */
export interface OutboxSummary {
  id: string;
  kind: MailKind;
  to: string;
  status: OutboxStatus;
  attempts: number;
  createdAt: number;
  sentAt: number | null;
}

export interface QueueMessageOptions {
  /** The token the message carries: inserted in the same transaction. */
  token?: AccountToken | undefined;
  /** Voids the user's earlier tokens of this purpose first, in the same transaction (a newer reset voids older ones). */
  voidTokens?: AccountTokenPurpose | undefined;
}

export interface ClaimOptions {
  /** How long the claim holds: another sender may take the message after it. */
  leaseMs: number;
  /** At most this many messages. */
  limit: number;
}

/**
 * The durable outbox and the account tokens its messages carry. A request
 * only queues (one insert, or one transaction with the token); senders in
 * every process take due messages under a lease, so several processes do not
 * hand the same message over twice while each finishes within its lease.
 */
export interface MailStore {
  /** Queues a message (status "queued", due now), with its token where given, atomically. */
  queueMessage(message: OutboxMessage, options?: QueueMessageOptions): Promise<void>;
  /** The token with this hash while it is unexpired at `now`, or null. Consumes nothing. */
  findToken(hash: Uint8Array, now: number): Promise<AccountToken | null>;
  /**
   * Takes up to `limit` queued messages that are due at `now` and not leased
   * by anyone (or whose lease has run out), marks them leased by `owner`
   * until `now + leaseMs` and counts an attempt, atomically: concurrent
   * callers, in any process, never get the same message while its lease runs.
   */
  claimMessages(owner: string, now: number, options: ClaimOptions): Promise<OutboxEntry[]>;
  /** Marks a message handed over and drops its body. False when `owner` no longer holds its lease. */
  markSent(id: string, owner: string, now: number): Promise<boolean>;
  /** Releases the lease and makes the message due again at `nextAttemptAt`. False when `owner` no longer holds it. */
  markRetry(id: string, owner: string, nextAttemptAt: number, error: string): Promise<boolean>;
  /** Gives up on the message and drops its body. False when `owner` no longer holds it. */
  markFailed(id: string, owner: string, now: number, error: string): Promise<boolean>;
  /**
   * Makes every queued message that is waiting out a retry backoff (not
   * leased) due at `now`: the transport answers again. Returns how many.
   */
  retryNow(now: number): Promise<number>;
  /** Messages still queued (leased or not). */
  queueDepth(): Promise<number>;
  /** When the next queued message is due, or null when none is queued. */
  nextDueAt(): Promise<number | null>;
  /** The user's messages, newest first, metadata only. */
  listUserMessages(userId: string, limit: number): Promise<OutboxSummary[]>;
  deleteUserMessages(userId: string): Promise<number>;
  /** Deletes up to `limit` sent or failed messages created before `before`; returns how many. */
  deleteMessagesBefore(before: number, limit: number): Promise<number>;
  /** Deletes up to `limit` tokens expired at `now`; returns how many. */
  deleteExpiredTokens(now: number, limit: number): Promise<number>;
}

export type StoreHealth = "ok" | "degraded" | "down";

/** Everything a Latch server is handed: one object per concern, often the same backend. */
export interface Stores {
  users: UserStore;
  sessions: SessionStore;
  events: SecurityEventStore;
  limits: RateLimitStore;
  keys: SigningKeyStore;
  secondFactors: SecondFactorStore;
  /** The outbox and account tokens: always in the database, beside the users. */
  mail: MailStore;
  /** Each backend's health by name, e.g. `{ database: "ok", redis: "down" }`. Never rejects. */
  health(): Promise<Record<string, StoreHealth>>;
  /** Optional: the flush mark (see {@link FlushMarkStore}); databases have it, caches pass it on. */
  marks?: FlushMarkStore;
  /**
   * Optional: resolves once every revoking write made through these stores
   * so far has reached the copies other processes serve from (the tiered
   * store: mirrored to Redis and announced). When that cannot be done it
   * raises the database's flush mark, so that every server drops its copies
   * when it next reads the mark (within a second), and rejects with
   * `LatchError("unavailable")`. Short-lived writers (the admin CLI) call it
   * before they report success; stores with nothing to settle omit it.
   */
  settle?(): Promise<void>;
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
   * {@link peekSession} for a presented secret: null when `verify(secret,
   * session)` refuses it. The first secret `verify` accepts is remembered
   * with the cached entry, and later ones are compared with it in constant
   * time instead of being verified (hashed) again.
   */
  peekVerified(
    id: string,
    now: number,
    secret: string,
    verify: (secret: string, session: Session) => boolean,
  ): SessionWithUser | null | undefined;
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
  return (
    typeof (store as Partial<CachedSessionStore>).peekSession === "function" &&
    typeof (store as Partial<CachedSessionStore>).peekVerified === "function" &&
    typeof (store as Partial<CachedSessionStore>).cacheStats === "function"
  );
}
