import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type { Database } from "better-sqlite3";
import { LatchError } from "../../core/errors.js";
import type {
  AuthMethod,
  Passkey,
  TotpCredential,
  WebAuthnChallenge,
  AccountToken,
  MailKind,
  OutboxEntry,
  OutboxMessage,
  OutboxStatus,
  OutboxSummary,
  SecurityEvent,
  Session,
  SessionWithUser,
  SigningKey,
  StoreHealth,
  Stores,
  UserRecord,
} from "../../core/store.js";
import { startCheckpointer } from "./checkpointer.js";
import { migrate } from "./migrations.js";

export interface SqliteStores extends Stores {
  db: Database;
  /**
   * SQLite's `PRAGMA data_version`: it changes when another connection (another
   * process: a resource server, the admin CLI) commits to the file, and not
   * for this connection's own writes. A cache in front of this store can
   * compare it before each read to learn of writes it did not see.
   */
  dataVersion(): number;
  /**
   * The invalidation log (migration 6) after `seq`: at most `limit` rows in
   * order, the newest seq, and the seq up to which rows were pruned, read in
   * one snapshot. A cache uses it to drop just what another process ended.
   */
  invalidationsSince(seq: number, limit: number): InvalidationBatch;
}

export interface InvalidationBatch {
  rows: Array<{ seq: number; kind: "session" | "user"; target: string }>;
  latest: number;
  pruned: number;
}

/** How long the invalidation log keeps a row: a reader further behind empties its cache. */
const INVALIDATION_LOG_DAYS = 10 / 1440;

/** Log rows deleted per statement when pruning. */
const PRUNE_SLICE_ROWS = 4096;

interface UserRow {
  id: string;
  username: string;
  username_key: string;
  email: string | null;
  email_key: string | null;
  password_hash: string;
  roles: string;
  email_verified: number;
  mfa: number;
  created_at: number;
  updated_at: number;
}

interface TokenRow {
  hash: Buffer;
  purpose: AccountToken["purpose"];
  user_id: string;
  email_key: string | null;
  created_at: number;
  expires_at: number;
}

interface OutboxRow {
  id: string;
  user_id: string | null;
  kind: MailKind;
  recipient: string;
  subject: string;
  text_body: string | null;
  html_body: string | null;
  status: OutboxStatus;
  attempts: number;
  created_at: number;
  sent_at: number | null;
}

interface SessionRow {
  id: string;
  user_id: string;
  secret_hash: Buffer;
  created_at: number;
  last_seen_at: number;
  idle_expires_at: number;
  absolute_expires_at: number;
  user_agent: string | null;
  ip_address: string | null;
  amr: string;
  pending: number;
}

interface SessionUserRow extends SessionRow {
  u_username: string;
  u_email: string | null;
  u_email_verified: number;
  u_mfa: number;
  u_roles: string;
  u_created_at: number;
}

interface EventRow {
  id: string;
  user_id: string | null;
  type: SecurityEvent["type"];
  at: number;
  ip_address: string | null;
  user_agent: string | null;
  detail: string | null;
}

interface KeyRow {
  kid: string;
  alg: SigningKey["alg"];
  public_jwk: string;
  private_jwk: string;
  created_at: number;
  retired_at: number | null;
}

// Roles are stored comma-joined: role names cannot contain commas
// (ROLE_PATTERN), and splitting is cheaper than JSON.parse on the hot path.
const joinRoles = (roles: string[]): string => roles.join(",");
const splitRoles = (roles: string): string[] => (roles === "" ? [] : roles.split(","));

function toUser(row: UserRow): UserRecord {
  return {
    id: row.id,
    username: row.username,
    usernameKey: row.username_key,
    email: row.email,
    emailKey: row.email_key,
    emailVerified: row.email_verified === 1,
    mfa: row.mfa === 1,
    passwordHash: row.password_hash,
    roles: splitRoles(row.roles),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toSession(row: SessionRow): Session {
  return {
    id: row.id,
    userId: row.user_id,
    secretHash: row.secret_hash,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    idleExpiresAt: row.idle_expires_at,
    absoluteExpiresAt: row.absolute_expires_at,
    userAgent: row.user_agent,
    ipAddress: row.ip_address,
    amr: row.amr.split(",") as AuthMethod[],
    pending: row.pending === 1,
  };
}

interface TotpRow {
  user_id: string;
  secret: string | null;
  last_used_step: number;
  pending_secret: string | null;
  confirmed_at: number | null;
  updated_at: number;
}

interface PasskeyRow {
  id: string;
  user_id: string;
  credential_id: string;
  public_key: Buffer;
  counter: number;
  transports: string;
  name: string;
  created_at: number;
  last_used_at: number | null;
}

interface ChallengeRow {
  id: string;
  purpose: WebAuthnChallenge["purpose"];
  user_id: string | null;
  secret_hash: Buffer;
  challenge: string;
  expires_at: number;
}

function toTotp(row: TotpRow): TotpCredential {
  return {
    userId: row.user_id,
    secret: row.secret,
    lastUsedStep: row.last_used_step,
    pendingSecret: row.pending_secret,
    confirmedAt: row.confirmed_at,
    updatedAt: row.updated_at,
  };
}

function toPasskey(row: PasskeyRow): Passkey {
  return {
    id: row.id,
    userId: row.user_id,
    credentialId: row.credential_id,
    publicKey: row.public_key,
    counter: row.counter,
    transports: row.transports === "" ? [] : row.transports.split(","),
    name: row.name,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
  };
}

function toEvent(row: EventRow): SecurityEvent {
  return {
    id: row.id,
    userId: row.user_id,
    type: row.type,
    at: row.at,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    detail: row.detail === null ? null : (JSON.parse(row.detail) as Record<string, string>),
  };
}

function toToken(row: TokenRow): AccountToken {
  return {
    hash: row.hash,
    purpose: row.purpose,
    userId: row.user_id,
    emailKey: row.email_key,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
  };
}

function toOutboxEntry(row: OutboxRow): OutboxEntry {
  return {
    id: row.id,
    userId: row.user_id,
    kind: row.kind,
    to: row.recipient,
    subject: row.subject,
    text: row.text_body ?? "",
    html: row.html_body ?? "",
    createdAt: row.created_at,
    status: row.status,
    attempts: row.attempts,
  };
}

function toOutboxSummary(row: OutboxRow): OutboxSummary {
  return {
    id: row.id,
    kind: row.kind,
    to: row.recipient,
    status: row.status,
    attempts: row.attempts,
    createdAt: row.created_at,
    sentAt: row.sent_at,
  };
}

function toKey(row: KeyRow): SigningKey {
  return {
    kid: row.kid,
    alg: row.alg,
    publicJwk: row.public_jwk,
    privateJwk: row.private_jwk,
    createdAt: row.created_at,
    retiredAt: row.retired_at,
  };
}

function isUniqueViolation(error: unknown): boolean {
  return (
    error instanceof Error &&
    "code" in error &&
    (error.code === "SQLITE_CONSTRAINT_PRIMARYKEY" || error.code === "SQLITE_CONSTRAINT_UNIQUE")
  );
}

/** Rows of the sessions table the sweeper reads per step. */
const SWEEP_SLICE_ROWS = 4096;

/** Runs a synchronous database call, mapping driver failures to `unavailable`. */
function guard<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (error) {
    if (error instanceof LatchError) return Promise.reject(error);
    return Promise.reject(new LatchError("unavailable", "The database is unavailable.", { cause: error, backend: "database" }));
  }
}

/**
 * The embedded default store: one SQLite file in WAL mode, every statement
 * prepared once. better-sqlite3 is synchronous, and that is the fast choice
 * here: an indexed point read takes a few microseconds, far less than a
 * thread-pool hop would cost.
 *
 * @example
 * const stores = openSqliteStores({ path: "./data/latch.db" });
 */
export function openSqliteStores(options: { path: string }): SqliteStores {
  if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
  const db = new BetterSqlite3(options.path);
  db.pragma("journal_mode = WAL");
  // NORMAL is durable across process crashes in WAL mode (only an OS crash or
  // power loss can drop the last transactions), the usual trade-off for WAL.
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  // Checkpoints on a thread of their own, never in a commit on the event loop.
  const checkpointer = options.path === ":memory:" ? null : startCheckpointer(db, options.path);

  const q = {
    insertUser: db.prepare(
      `INSERT INTO users (id, username, username_key, email, email_key, password_hash, roles, created_at, updated_at)
       VALUES (@id, @username, @usernameKey, @email, @emailKey, @passwordHash, @roles, @createdAt, @updatedAt)`,
    ),
    insertLogin: db.prepare("INSERT INTO logins (login_key, user_id) VALUES (?, ?)"),
    userById: db.prepare<[string], UserRow>("SELECT * FROM users WHERE id = ?"),
    userByLogin: db.prepare<[string], UserRow>("SELECT u.* FROM logins l JOIN users u ON u.id = l.user_id WHERE l.login_key = ?"),
    updatePassword: db.prepare("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?"),
    updateRoles: db.prepare<[string, number, string], UserRow>("UPDATE users SET roles = ?, updated_at = ? WHERE id = ? RETURNING *"),
    deleteUser: db.prepare("DELETE FROM users WHERE id = ?"),
    listUsers: db.prepare<[string, number], UserRow>("SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?"),

    insertSession: db.prepare(
      `INSERT INTO sessions (id, user_id, secret_hash, created_at, last_seen_at, idle_expires_at, absolute_expires_at, user_agent, ip_address, amr, pending)
       VALUES (@id, @userId, @secretHash, @createdAt, @lastSeenAt, @idleExpiresAt, @absoluteExpiresAt, @userAgent, @ipAddress, @amrText, @pendingFlag)`,
    ),
    // The insert and the password check are one statement, so no password
    // change can land between them (SQLite runs one writer at a time).
    insertSessionIfPassword: db.prepare(
      `INSERT INTO sessions (id, user_id, secret_hash, created_at, last_seen_at, idle_expires_at, absolute_expires_at, user_agent, ip_address, amr, pending)
       SELECT @id, @userId, @secretHash, @createdAt, @lastSeenAt, @idleExpiresAt, @absoluteExpiresAt, @userAgent, @ipAddress, @amrText, @pendingFlag
       WHERE EXISTS (SELECT 1 FROM users WHERE id = @userId AND password_hash = @passwordHash)`,
    ),
    raiseMark: db.prepare<[], { value: number }>(
      "INSERT INTO store_marks (name, value) VALUES ('flush', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
    ),
    readMark: db.prepare<[], { value: number }>("SELECT value FROM store_marks WHERE name = 'flush'"),
    findSession: db.prepare<[string, number, number], SessionUserRow>(
      `SELECT s.*, u.username AS u_username, u.email AS u_email, u.email_verified AS u_email_verified, u.roles AS u_roles, u.mfa AS u_mfa, u.created_at AS u_created_at
       FROM sessions s JOIN users u ON u.id = s.user_id
       WHERE s.id = ? AND s.idle_expires_at > ? AND s.absolute_expires_at > ?`,
    ),
    touchSession: db.prepare(
      `UPDATE sessions SET last_seen_at = @at, idle_expires_at = min(@idle, absolute_expires_at)
       WHERE id = @id AND idle_expires_at > @at AND absolute_expires_at > @at`,
    ),
    deleteSession: db.prepare<[string], { user_id: string }>("DELETE FROM sessions WHERE id = ? RETURNING user_id"),
    listUserSessions: db.prepare<[string, number, number], SessionRow>(
      `SELECT * FROM sessions WHERE user_id = ? AND idle_expires_at > ? AND absolute_expires_at > ?
       ORDER BY created_at DESC, id`,
    ),
    deleteUserSessions: db.prepare("DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?"),
    // By rowid range (no index on idle_expires_at: renewals change it), so
    // each step reads a bounded slice of the table.
    deleteExpiredRange: db.prepare(
      `DELETE FROM sessions WHERE rowid IN (
         SELECT rowid FROM sessions
         WHERE rowid > @after AND rowid <= @upto AND (idle_expires_at <= @now OR absolute_expires_at <= @now)
         LIMIT @limit)`,
    ),
    maxSessionRowid: db.prepare<[], number | null>("SELECT max(rowid) FROM sessions").pluck(),

    insertEvent: db.prepare(
      `INSERT INTO security_events (id, user_id, type, at, ip_address, user_agent, detail)
       VALUES (@id, @userId, @type, @at, @ipAddress, @userAgent, @detail)`,
    ),
    listEvents: db.prepare<[string, number], EventRow>("SELECT * FROM security_events WHERE user_id = ? ORDER BY at DESC LIMIT ?"),
    deleteUserEvents: db.prepare("DELETE FROM security_events WHERE user_id = ?"),
    deleteOldEvents: db.prepare("DELETE FROM security_events WHERE id IN (SELECT id FROM security_events WHERE at < ? LIMIT ?)"),

    hit: db.prepare<[{ key: string; now: number; windowMs: number }], { count: number; reset_at: number }>(
      `INSERT INTO rate_limits (key, count, reset_at) VALUES (@key, 1, @now + @windowMs)
       ON CONFLICT (key) DO UPDATE SET
         count = CASE WHEN reset_at > @now THEN count + 1 ELSE 1 END,
         reset_at = CASE WHEN reset_at > @now THEN reset_at ELSE @now + @windowMs END
       RETURNING count, reset_at`,
    ),
    peek: db.prepare<[string, number], { count: number; reset_at: number }>(
      "SELECT count, reset_at FROM rate_limits WHERE key = ? AND reset_at > ?",
    ),
    resetLimit: db.prepare("DELETE FROM rate_limits WHERE key = ?"),
    deleteOldLimits: db.prepare("DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE reset_at <= ? LIMIT ?)"),

    listKeys: db.prepare<[], KeyRow>("SELECT * FROM signing_keys ORDER BY created_at DESC"),
    retireKeys: db.prepare("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL"),
    insertKey: db.prepare(
      `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, retired_at)
       VALUES (@kid, @alg, @publicJwk, @privateJwk, @createdAt, @retiredAt)`,
    ),
    deleteRetiredKeys: db.prepare("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?"),
    dataVersion: db.prepare<[], number>("PRAGMA data_version").pluck(),
    invalidationsSince: db.prepare<[number, number], { seq: number; kind: "session" | "user"; target: string }>(
      "SELECT seq, kind, target FROM invalidations WHERE seq > ? ORDER BY seq LIMIT ?",
    ),
    // The log's high-water mark (AUTOINCREMENT's counter), not max(seq): once
    // every row is pruned, max(seq) would fall below the pruning mark and
    // every reader would empty its cache on every foreign commit.
    latestInvalidation: db
      .prepare<[], number>("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'invalidations'), 0)")
      .pluck(),
    invalidationsPruned: db.prepare<[], number>("SELECT upto FROM invalidations_pruned WHERE id = 1").pluck(),
    lastPrunable: db.prepare<[number], number | null>("SELECT max(seq) FROM invalidations WHERE at < julianday('now') - ?").pluck(),
    pruneInvalidations: db.prepare<[number, number]>(
      "DELETE FROM invalidations WHERE seq IN (SELECT seq FROM invalidations WHERE seq <= ? ORDER BY seq LIMIT ?)",
    ),
    unlogAfter: db.prepare<[number]>("DELETE FROM invalidations WHERE seq > ?"),
    markPruned: db.prepare<[number]>("UPDATE invalidations_pruned SET upto = max(upto, ?) WHERE id = 1"),

    // The user's mfa flag from what they have; run in each second-factor write's transaction.
    refreshMfa: db.prepare(
      `UPDATE users SET mfa = (EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = @id AND secret IS NOT NULL)
                               OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = @id)) WHERE id = @id`,
    ),
    findTotp: db.prepare<[string], TotpRow>("SELECT * FROM totp_credentials WHERE user_id = ?"),
    beginTotp: db.prepare(
      `INSERT INTO totp_credentials (user_id, pending_secret, updated_at) SELECT @userId, @pendingSecret, @now WHERE EXISTS (SELECT 1 FROM users WHERE id = @userId)
       ON CONFLICT (user_id) DO UPDATE SET pending_secret = excluded.pending_secret, updated_at = excluded.updated_at`,
    ),
    confirmTotp: db.prepare(
      `UPDATE totp_credentials SET secret = pending_secret, pending_secret = NULL, last_used_step = @step, confirmed_at = @now, updated_at = @now
       WHERE user_id = @userId AND pending_secret = @pendingSecret`,
    ),
    useTotpStep: db.prepare(
      "UPDATE totp_credentials SET last_used_step = @step WHERE user_id = @userId AND secret IS NOT NULL AND last_used_step < @step",
    ),
    deleteTotp: db.prepare("DELETE FROM totp_credentials WHERE user_id = ?"),
    deleteRecoveryCodes: db.prepare("DELETE FROM recovery_codes WHERE user_id = ?"),
    insertRecoveryCode: db.prepare(
      "INSERT OR IGNORE INTO recovery_codes (user_id, code_hash) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE id = ?)",
    ),
    useRecoveryCode: db.prepare("DELETE FROM recovery_codes WHERE user_id = ? AND code_hash = ?"),
    countRecoveryCodes: db.prepare<[string], number>("SELECT count(*) FROM recovery_codes WHERE user_id = ?").pluck(),
    insertPasskey: db.prepare(
      `INSERT INTO passkeys (id, user_id, credential_id, public_key, counter, transports, name, created_at, last_used_at)
       VALUES (@id, @userId, @credentialId, @publicKey, @counter, @transportsText, @name, @createdAt, @lastUsedAt)`,
    ),
    listPasskeys: db.prepare<[string], PasskeyRow>("SELECT * FROM passkeys WHERE user_id = ? ORDER BY created_at, id"),
    passkeyByCredential: db.prepare<[string], PasskeyRow>("SELECT * FROM passkeys WHERE credential_id = ?"),
    recordPasskeyUse: db.prepare("UPDATE passkeys SET counter = @counter, last_used_at = @at WHERE id = @id AND counter = @expected"),
    renamePasskey: db.prepare("UPDATE passkeys SET name = ? WHERE id = ? AND user_id = ?"),
    deletePasskey: db.prepare("DELETE FROM passkeys WHERE id = ? AND user_id = ?"),
    deletePasskeys: db.prepare("DELETE FROM passkeys WHERE user_id = ?"),
    insertChallenge: db.prepare(
      `INSERT INTO webauthn_challenges (id, purpose, user_id, secret_hash, challenge, expires_at)
       VALUES (@id, @purpose, @userId, @secretHash, @challenge, @expiresAt)`,
    ),
    takeChallenge: db.prepare<[string], ChallengeRow>("DELETE FROM webauthn_challenges WHERE id = ? RETURNING *"),
    deleteUserChallenges: db.prepare("DELETE FROM webauthn_challenges WHERE user_id = ?"),
    deleteExpiredChallenges: db.prepare(
      "DELETE FROM webauthn_challenges WHERE id IN (SELECT id FROM webauthn_challenges WHERE expires_at <= ? LIMIT ?)",
    ),

    deleteLogin: db.prepare("DELETE FROM logins WHERE login_key = ? AND user_id = ?"),
    updateEmail: db.prepare<[string | null, string | null, number, string], UserRow>(
      "UPDATE users SET email = ?, email_key = ?, email_verified = 0, updated_at = ? WHERE id = ? RETURNING *",
    ),
    markVerified: db.prepare<[number, string, string], UserRow>(
      "UPDATE users SET email_verified = 1, updated_at = ? WHERE id = ? AND email_key = ? RETURNING *",
    ),
    takeToken: db.prepare<[Buffer, string, string], TokenRow>(
      "DELETE FROM account_tokens WHERE hash = ? AND purpose = ? AND user_id = ? RETURNING *",
    ),
    findToken: db.prepare<[Buffer, number], TokenRow>("SELECT * FROM account_tokens WHERE hash = ? AND expires_at > ?"),
    insertToken: db.prepare(
      `INSERT INTO account_tokens (hash, purpose, user_id, email_key, created_at, expires_at)
       VALUES (@hash, @purpose, @userId, @emailKey, @createdAt, @expiresAt)`,
    ),
    voidTokens: db.prepare("DELETE FROM account_tokens WHERE user_id = ? AND purpose = ?"),
    deleteExpiredTokens: db.prepare(
      "DELETE FROM account_tokens WHERE hash IN (SELECT hash FROM account_tokens WHERE expires_at <= ? LIMIT ?)",
    ),

    insertMessage: db.prepare(
      `INSERT INTO mail_outbox (id, user_id, kind, recipient, subject, text_body, html_body, status, attempts, next_attempt_at, created_at)
       VALUES (@id, @userId, @kind, @to, @subject, @text, @html, 'queued', 0, @createdAt, @createdAt)`,
    ),
    // One statement, so one write transaction: two senders (processes on one
    // file) cannot both take a message; the lease is next_attempt_at itself.
    claimMessages: db.prepare<[{ owner: string; now: number; until: number; limit: number }], OutboxRow>(
      `UPDATE mail_outbox SET lease_owner = @owner, next_attempt_at = @until, attempts = attempts + 1
       WHERE id IN (SELECT id FROM mail_outbox WHERE status = 'queued' AND next_attempt_at <= @now ORDER BY next_attempt_at LIMIT @limit)
       RETURNING *`,
    ),
    markSent: db.prepare(
      `UPDATE mail_outbox SET status = 'sent', sent_at = ?, text_body = NULL, html_body = NULL, lease_owner = NULL, last_error = NULL
       WHERE id = ? AND lease_owner = ? AND status = 'queued'`,
    ),
    markRetry: db.prepare(
      "UPDATE mail_outbox SET next_attempt_at = ?, last_error = ?, lease_owner = NULL WHERE id = ? AND lease_owner = ? AND status = 'queued'",
    ),
    markFailed: db.prepare(
      `UPDATE mail_outbox SET status = 'failed', last_error = ?, text_body = NULL, html_body = NULL, lease_owner = NULL, sent_at = NULL, next_attempt_at = ?
       WHERE id = ? AND lease_owner = ? AND status = 'queued'`,
    ),
    retryNow: db.prepare(
      "UPDATE mail_outbox SET next_attempt_at = ? WHERE status = 'queued' AND lease_owner IS NULL AND attempts > 0 AND next_attempt_at > ?",
    ),
    queueDepth: db.prepare<[], number>("SELECT count(*) FROM mail_outbox WHERE status = 'queued'").pluck(),
    nextDue: db.prepare<[], number | null>("SELECT min(next_attempt_at) FROM mail_outbox WHERE status = 'queued'").pluck(),
    listMessages: db.prepare<[string, number], OutboxRow>(
      "SELECT * FROM mail_outbox WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
    ),
    deleteUserMessages: db.prepare("DELETE FROM mail_outbox WHERE user_id = ?"),
    deleteOldMessages: db.prepare(
      "DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox WHERE status <> 'queued' AND created_at < ? LIMIT ?)",
    ),
  };

  const queueMessage = db.transaction(
    (message: OutboxMessage, token: AccountToken | undefined, voidPurpose: AccountToken["purpose"] | undefined) => {
      if (voidPurpose !== undefined && message.userId !== null) q.voidTokens.run(message.userId, voidPurpose);
      if (token !== undefined) q.insertToken.run({ ...token, hash: Buffer.from(token.hash) });
      q.insertMessage.run(message);
    },
  );
  const updateUserEmail = db.transaction(
    (id: string, email: { email: string; emailKey: string } | null, updatedAt: number): UserRecord | null => {
      const current = q.userById.get(id);
      if (current === undefined) return null;
      if (current.email_key !== null && current.email_key !== email?.emailKey) q.deleteLogin.run(current.email_key, id);
      if (email !== null && email.emailKey !== current.email_key) q.insertLogin.run(email.emailKey, id);
      q.voidTokens.run(id, "verify");
      return toUser(q.updateEmail.get(email?.email ?? null, email?.emailKey ?? null, updatedAt, id)!);
    },
  );
  const verifyEmail = db.transaction((id: string, tokenHash: Uint8Array, now: number): UserRecord | null => {
    const token = q.takeToken.get(Buffer.from(tokenHash), "verify", id);
    if (token === undefined || token.expires_at <= now || token.email_key === null) return null;
    const row = q.markVerified.get(now, id, token.email_key);
    return row ? toUser(row) : null;
  });
  const resetPassword = db.transaction(
    (id: string, tokenHash: Uint8Array, passwordHash: string, now: number, notice: OutboxMessage | null) => {
      const token = q.takeToken.get(Buffer.from(tokenHash), "reset", id);
      // An expired token is deleted all the same (it could never work again); nothing else changes.
      if (token === undefined || token.expires_at <= now) return null;
      if (q.updatePassword.run(passwordHash, now, id).changes !== 1) return null;
      q.voidTokens.run(id, "reset");
      if (notice !== null) q.insertMessage.run(notice);
      return toUser(q.userById.get(id)!);
    },
  );

  const createUser = db.transaction((user: UserRecord) => {
    q.insertUser.run({ ...user, roles: joinRoles(user.roles) });
    q.insertLogin.run(user.usernameKey, user.id);
    if (user.emailKey !== null) q.insertLogin.run(user.emailKey, user.id);
  });

  const sessionParams = (session: Session): Record<string, unknown> => ({
    ...session,
    amrText: session.amr.join(","),
    pendingFlag: session.pending ? 1 : 0,
  });
  const confirmTotp = db.transaction((userId: string, pendingSecret: string, step: number, hashes: string[], now: number) => {
    if (q.confirmTotp.run({ userId, pendingSecret, step, now }).changes !== 1) return false;
    q.deleteRecoveryCodes.run(userId);
    for (const hash of hashes) q.insertRecoveryCode.run(userId, hash, userId);
    q.refreshMfa.run({ id: userId });
    return true;
  });
  const deleteTotp = db.transaction((userId: string) => {
    const removed = q.deleteTotp.run(userId).changes === 1;
    q.deleteRecoveryCodes.run(userId);
    q.refreshMfa.run({ id: userId });
    return removed;
  });
  const replaceRecoveryCodes = db.transaction((userId: string, hashes: string[]) => {
    q.deleteRecoveryCodes.run(userId);
    for (const hash of hashes) q.insertRecoveryCode.run(userId, hash, userId);
  });
  const createPasskey = db.transaction((passkey: Passkey) => {
    q.insertPasskey.run({ ...passkey, publicKey: Buffer.from(passkey.publicKey), transportsText: passkey.transports.join(",") });
    q.refreshMfa.run({ id: passkey.userId });
  });
  const deletePasskey = db.transaction((userId: string, id: string) => {
    const removed = q.deletePasskey.run(id, userId).changes === 1;
    q.refreshMfa.run({ id: userId });
    return removed;
  });
  const deleteSecondFactors = db.transaction((userId: string) => {
    let removed = q.deleteTotp.run(userId).changes;
    removed += q.deleteRecoveryCodes.run(userId).changes;
    removed += q.deletePasskeys.run(userId).changes;
    q.deleteUserChallenges.run(userId);
    q.refreshMfa.run({ id: userId });
    return removed > 0;
  });

  const rotateSession = db.transaction((oldId: string, next: Session) => {
    if (q.deleteSession.get(oldId) === undefined) return false;
    q.insertSession.run(sessionParams(next));
    return true;
  });
  const touchMany = db.transaction((touches: ReadonlyArray<{ id: string; lastSeenAt: number; idleExpiresAt: number }>) =>
    touches.map((t) => q.touchSession.run({ id: t.id, at: t.lastSeenAt, idle: t.idleExpiresAt }).changes === 1),
  );
  const addSigningKey = db.transaction((key: SigningKey) => {
    q.retireKeys.run(key.createdAt);
    q.insertKey.run(key);
  });

  /**
   * Deletes expired sessions one rowid slice at a time, with the event loop
   * free between slices, until `limit` rows are gone or the table is done:
   * one pass over a million rows never holds the loop for more than a slice.
   * A call that stops at `limit` leaves a cursor, so the next one (the
   * sweeper drains in rounds) goes on from there instead of from the start.
   */
  let sweepCursor = 0;
  async function deleteExpiredSessions(now: number, limit: number): Promise<number> {
    const upto = (await guard(() => q.maxSessionRowid.get())) ?? 0;
    let deleted = 0;
    let after = sweepCursor < upto ? sweepCursor : 0;
    for (let slices = 0; after < upto; slices += 1) {
      if (slices > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const from = after;
      const wanted = limit - deleted;
      const removed = await guard(() => sweepSlice({ after: from, upto: from + SWEEP_SLICE_ROWS, now, limit: wanted }));
      deleted += removed;
      // At the limit this slice may hold more: the next call starts with it.
      if (removed >= wanted) break;
      after += SWEEP_SLICE_ROWS;
    }
    sweepCursor = after < upto ? after : 0;
    // The invalidation log's old rows go with the sweep (every reader has
    // had minutes to read them; one that has not empties its cache).
    await pruneLog();
    return deleted;
  }

  // The sweeper's deletes leave no log rows (as PostgreSQL's sweeper sends
  // no NOTIFY): in the same transaction, the rows its delete logged are
  // removed again, so no other process ever sees them. Nothing is lost: a
  // cache refuses an expired entry by itself, and a session another process
  // renewed in memory is nowhere near expiry in the file (a renewal comes
  // after a tenth of the idle timeout, the file's copy is good for the rest).
  const sweepSlice = db.transaction((range: { after: number; upto: number; now: number; limit: number }): number => {
    const before = q.latestInvalidation.get()!;
    const removed = q.deleteExpiredRange.run(range).changes;
    if (removed > 0) q.unlogAfter.run(before);
    return removed;
  });

  // In slices, with the event loop free between them: a mass revocation
  // (every session of many users) can leave tens of thousands of rows.
  async function pruneLog(): Promise<void> {
    const last = await guard(() => q.lastPrunable.get(INVALIDATION_LOG_DAYS));
    if (last === null || last === undefined) return;
    for (;;) {
      const removed = await guard(() => pruneSlice(last));
      if (removed < PRUNE_SLICE_ROWS) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  const pruneSlice = db.transaction((upto: number): number => {
    const removed = q.pruneInvalidations.run(upto, PRUNE_SLICE_ROWS).changes;
    q.markPruned.run(upto);
    return removed;
  });

  // One read transaction: the rows, the newest seq and the pruning mark from the same snapshot.
  const readInvalidations = db.transaction(
    (seq: number, limit: number): InvalidationBatch => ({
      rows: limit > 0 ? q.invalidationsSince.all(seq, limit) : [],
      latest: q.latestInvalidation.get()!,
      pruned: q.invalidationsPruned.get()!,
    }),
  );

  return {
    db,
    dataVersion: () => q.dataVersion.get()!,
    invalidationsSince: (seq, limit) => readInvalidations(seq, limit),
    users: {
      createUser: (user) =>
        guard(() => {
          try {
            createUser(user);
          } catch (error) {
            if (isUniqueViolation(error))
              throw new LatchError("conflict", "That username or email is already registered.", { cause: error });
            throw error;
          }
        }),
      findUserById: (id) =>
        guard(() => {
          const row = q.userById.get(id);
          return row ? toUser(row) : null;
        }),
      findUserByLogin: (key) =>
        guard(() => {
          const row = q.userByLogin.get(key);
          return row ? toUser(row) : null;
        }),
      updateUserPassword: (id, passwordHash, updatedAt) => guard(() => q.updatePassword.run(passwordHash, updatedAt, id).changes === 1),
      updateUserRoles: (id, roles, updatedAt) =>
        guard(() => {
          const row = q.updateRoles.get(joinRoles(roles), updatedAt, id);
          return row ? toUser(row) : null;
        }),
      updateUserEmail: (id, email, updatedAt) =>
        guard(() => {
          try {
            return updateUserEmail(id, email, updatedAt);
          } catch (error) {
            if (isUniqueViolation(error)) throw new LatchError("conflict", "That email is already registered.", { cause: error });
            throw error;
          }
        }),
      verifyEmail: (id, tokenHash, now) => guard(() => verifyEmail(id, tokenHash, now)),
      resetPassword: (id, tokenHash, passwordHash, now, notice) => guard(() => resetPassword(id, tokenHash, passwordHash, now, notice)),
      // Sessions, logins, events, tokens and messages go with the user through ON DELETE CASCADE, in one statement.
      deleteUser: (id) => guard(() => q.deleteUser.run(id).changes === 1),
      listUsers: ({ limit, after }) => guard(() => q.listUsers.all(after ?? "", limit).map(toUser)),
    },

    sessions: {
      createSession: (session, options) =>
        guard(() => {
          if (options?.ifPasswordHash === undefined) return q.insertSession.run(sessionParams(session)).changes === 1;
          return q.insertSessionIfPassword.run({ ...sessionParams(session), passwordHash: options.ifPasswordHash }).changes === 1;
        }),
      findSession: (id, now) =>
        guard((): SessionWithUser | null => {
          const row = q.findSession.get(id, now, now);
          if (!row) return null;
          return {
            session: toSession(row),
            user: {
              id: row.user_id,
              username: row.u_username,
              email: row.u_email,
              emailVerified: row.u_email_verified === 1,
              roles: splitRoles(row.u_roles),
              mfa: row.u_mfa === 1,
              createdAt: row.u_created_at,
            },
          };
        }),
      touchSession: (id, at, idle) => guard(() => q.touchSession.run({ id, at, idle }).changes === 1),
      // One commit for the whole batch: a commit, not the UPDATE, is most of a touch's cost.
      touchSessions: (touches) => guard(() => touchMany(touches)),
      deleteSession: (id) => guard(() => q.deleteSession.get(id)?.user_id ?? null),
      rotateSession: (oldId, next) => guard(() => rotateSession(oldId, next)),
      listUserSessions: (userId, now) => guard(() => q.listUserSessions.all(userId, now, now).map(toSession)),
      deleteUserSessions: (userId, options) => guard(() => q.deleteUserSessions.run(userId, options?.exceptId ?? null).changes),
      deleteExpiredSessions: (now, limit) => deleteExpiredSessions(now, limit),
    },

    events: {
      recordEvent: (event) =>
        guard(() => void q.insertEvent.run({ ...event, detail: event.detail === null ? null : JSON.stringify(event.detail) })),
      listUserEvents: (userId, limit) => guard(() => q.listEvents.all(userId, limit).map(toEvent)),
      deleteUserEvents: (userId) => guard(() => q.deleteUserEvents.run(userId).changes),
      deleteEventsBefore: (before, limit) => guard(() => q.deleteOldEvents.run(before, limit).changes),
    },

    limits: {
      hit: (key, windowMs, now) =>
        guard(() => {
          const row = q.hit.get({ key, now, windowMs })!;
          return { count: row.count, resetAt: row.reset_at };
        }),
      peek: (key, now) =>
        guard(() => {
          const row = q.peek.get(key, now);
          return row ? { count: row.count, resetAt: row.reset_at } : null;
        }),
      reset: (key) => guard(() => void q.resetLimit.run(key)),
      deleteClosedWindows: (now, limit) => guard(() => q.deleteOldLimits.run(now, limit).changes),
    },

    keys: {
      listSigningKeys: () => guard(() => q.listKeys.all().map(toKey)),
      addSigningKey: (key) => guard(() => addSigningKey(key)),
      deleteSigningKeysRetiredBefore: (before) => guard(() => q.deleteRetiredKeys.run(before).changes),
    },

    marks: {
      raiseFlushMark: () => guard(() => q.raiseMark.get()!.value),
      readFlushMark: () => guard(() => q.readMark.get()?.value ?? 0),
    },

    mail: {
      queueMessage: (message, options) => guard(() => queueMessage(message, options?.token, options?.voidTokens)),
      findToken: (hash, now) =>
        guard(() => {
          const row = q.findToken.get(Buffer.from(hash), now);
          return row ? toToken(row) : null;
        }),
      claimMessages: (owner, now, { leaseMs, limit }) =>
        guard(() => q.claimMessages.all({ owner, now, until: now + leaseMs, limit }).map(toOutboxEntry)),
      markSent: (id, owner, now) => guard(() => q.markSent.run(now, id, owner).changes === 1),
      markRetry: (id, owner, nextAttemptAt, error) => guard(() => q.markRetry.run(nextAttemptAt, error, id, owner).changes === 1),
      markFailed: (id, owner, now, error) => guard(() => q.markFailed.run(error, now, id, owner).changes === 1),
      retryNow: (now) => guard(() => q.retryNow.run(now, now).changes),
      queueDepth: () => guard(() => q.queueDepth.get()!),
      nextDueAt: () => guard(() => q.nextDue.get() ?? null),
      listUserMessages: (userId, limit) => guard(() => q.listMessages.all(userId, limit).map(toOutboxSummary)),
      deleteUserMessages: (userId) => guard(() => q.deleteUserMessages.run(userId).changes),
      deleteMessagesBefore: (before, limit) => guard(() => q.deleteOldMessages.run(before, limit).changes),
      deleteExpiredTokens: (now, limit) => guard(() => q.deleteExpiredTokens.run(now, limit).changes),
    },

    secondFactors: {
      findTotp: (userId) =>
        guard(() => {
          const row = q.findTotp.get(userId);
          return row ? toTotp(row) : null;
        }),
      beginTotp: (userId, pendingSecret, now) => guard(() => q.beginTotp.run({ userId, pendingSecret, now }).changes === 1),
      confirmTotp: (userId, pendingSecret, step, hashes, now) => guard(() => confirmTotp(userId, pendingSecret, step, hashes, now)),
      useTotpStep: (userId, step) => guard(() => q.useTotpStep.run({ userId, step }).changes === 1),
      deleteTotp: (userId) => guard(() => deleteTotp(userId)),
      replaceRecoveryCodes: (userId, hashes) => guard(() => replaceRecoveryCodes(userId, hashes)),
      useRecoveryCode: (userId, hash) => guard(() => q.useRecoveryCode.run(userId, hash).changes === 1),
      countRecoveryCodes: (userId) => guard(() => q.countRecoveryCodes.get(userId)!),
      createPasskey: (passkey) =>
        guard(() => {
          try {
            createPasskey(passkey);
          } catch (error) {
            if (isUniqueViolation(error)) throw new LatchError("conflict", "That passkey is registered already.", { cause: error });
            if (error instanceof Error && "code" in error && error.code === "SQLITE_CONSTRAINT_FOREIGNKEY")
              throw new LatchError("not_found", "No such user.", { cause: error });
            throw error;
          }
        }),
      listPasskeys: (userId) => guard(() => q.listPasskeys.all(userId).map(toPasskey)),
      findPasskeyByCredentialId: (credentialId) =>
        guard(() => {
          const row = q.passkeyByCredential.get(credentialId);
          return row ? toPasskey(row) : null;
        }),
      recordPasskeyUse: (id, expected, counter, at) => guard(() => q.recordPasskeyUse.run({ id, expected, counter, at }).changes === 1),
      renamePasskey: (userId, id, name) => guard(() => q.renamePasskey.run(name, id, userId).changes === 1),
      deletePasskey: (userId, id) => guard(() => deletePasskey(userId, id)),
      deleteSecondFactors: (userId) => guard(() => deleteSecondFactors(userId)),
      putChallenge: (challenge) => guard(() => void q.insertChallenge.run({ ...challenge, secretHash: Buffer.from(challenge.secretHash) })),
      takeChallenge: (id, now) =>
        guard(() => {
          const row = q.takeChallenge.get(id);
          if (!row || row.expires_at <= now) return null;
          return {
            id: row.id,
            purpose: row.purpose,
            userId: row.user_id,
            secretHash: row.secret_hash,
            challenge: row.challenge,
            expiresAt: row.expires_at,
          };
        }),
      deleteExpiredChallenges: (now, limit) => guard(() => q.deleteExpiredChallenges.run(now, limit).changes),
    },

    async health(): Promise<Record<string, StoreHealth>> {
      try {
        db.prepare("SELECT 1").get();
        return { database: "ok" };
      } catch {
        return { database: "down" };
      }
    },

    async close() {
      await checkpointer?.stop();
      if (db.open) db.close();
    },
  };
}
