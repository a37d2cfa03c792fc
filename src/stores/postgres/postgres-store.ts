import pg from "pg";
import type {
  AuthMethod,
  Passkey,
  FlushMarkStore,
  AccountToken,
  MailKind,
  MailStore,
  OutboxEntry,
  OutboxMessage,
  OutboxStatus,
  RateLimitState,
  RateLimitStore,
  SecurityEvent,
  SecurityEventStore,
  SecurityEventType,
  Session,
  SessionStore,
  SessionWithUser,
  SigningKey,
  SigningKeyStore,
  StoreHealth,
  Stores,
  UserRecord,
  UserStore,
  SecondFactorStore,
  TotpCredential,
  WebAuthnChallenge,
} from "../../core/store.js";
import { advisoryLockKeys } from "./advisory-locks.js";
import { migrate } from "./migrations.js";
import { toLatchError } from "./postgres-errors.js";
import { assertSchemaName } from "./schema-name.js";
import { withTransaction } from "./transaction.js";

export interface PostgresStoreOptions {
  /** A `postgres://` connection URL. */
  url: string;
  /** Connections in the pool. Default 10. */
  poolSize?: number | undefined;
  /**
   * Keep every table in this schema (created when missing) instead of the
   * connection's default, e.g. to share a database or to test in a throwaway
   * schema. Lower-case letters, digits and `_`.
   */
  schema?: string | undefined;
  /** Table pages the expired-session sweeper reads per statement. Default 1,024 (8 MiB). */
  sweepSlicePages?: number | undefined;
}

export interface PostgresStores extends Stores {
  /** The connection pool the stores use; `close()` ends it. */
  pool: pg.Pool;
}

const HEALTH_TIMEOUT_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;

/**
 * The PostgreSQL stores: users, sessions, security events, rate limits and
 * signing keys in one database, safe to share between any number of
 * processes. Migrates the schema before it resolves.
 *
 * @example
 * const stores = await createPostgresStores({ url: "postgres://latch@db/latch", poolSize: 20 });
 * const found = await stores.sessions.findSession(id, Date.now());
 * await stores.close();
 */
export async function createPostgresStores(options: PostgresStoreOptions): Promise<PostgresStores> {
  const { schema, poolSize = 10 } = options;
  assertSchemaName(schema);
  if (!Number.isInteger(poolSize) || poolSize < 1) throw new TypeError("poolSize must be a positive integer.");

  const pool = new pg.Pool({
    connectionString: options.url,
    max: poolSize,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: "latch",
    // Set at connection start, so every pooled connection (and every
    // prepared statement on it) resolves table names in the one schema.
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  });
  // An idle connection that the server drops (restart, failover) is reported
  // here; without a listener Node would crash the process. The pool discards
  // the connection itself and the next query opens a fresh one.
  pool.on("error", () => {});

  try {
    await migrate(pool, { schema });
  } catch (error) {
    await pool.end().catch(() => {});
    throw toLatchError(error);
  }

  let closing: Promise<void> | undefined;
  return {
    pool,
    users: createUserStore(pool),
    sessions: createSessionStore(pool, { schema, sweepSlicePages: options.sweepSlicePages }),
    events: createSecurityEventStore(pool),
    limits: createRateLimitStore(pool),
    keys: createSigningKeyStore(pool),
    marks: createFlushMarkStore(pool),
    mail: createMailStore(pool),
    secondFactors: createSecondFactorStore(pool),
    health: () => checkHealth(pool),
    close() {
      // pg throws if a pool is ended twice; shutdown paths often call close
      // more than once.
      closing ??= pool.end();
      return closing;
    },
  };
}

function createFlushMarkStore(pool: pg.Pool): FlushMarkStore {
  return {
    async raiseFlushMark() {
      const result = await query<{ value: Int8 }>(pool, {
        name: "latch_raise_flush_mark",
        text: "INSERT INTO store_marks (name, value) VALUES ('flush', 1) ON CONFLICT (name) DO UPDATE SET value = store_marks.value + 1 RETURNING value",
      });
      return Number(result.rows[0]!.value);
    },
    async readFlushMark() {
      const result = await query<{ value: Int8 }>(pool, {
        name: "latch_read_flush_mark",
        text: "SELECT value FROM store_marks WHERE name = 'flush'",
      });
      return result.rows.length === 0 ? 0 : Number(result.rows[0]!.value);
    },
  };
}

/** `pool.query` with every failure mapped to a LatchError. */
async function query<R extends pg.QueryResultRow>(db: pg.Pool | pg.PoolClient, config: pg.QueryConfig): Promise<pg.QueryResult<R>> {
  try {
    return await db.query<R>(config);
  } catch (error) {
    throw toLatchError(error);
  }
}

async function transaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  try {
    return await withTransaction(pool, work);
  } catch (error) {
    throw toLatchError(error);
  }
}

// node-postgres returns bigint columns as strings, since not every int8 fits
// a double; millisecond timestamps do.
type Int8 = string;

interface UserRow {
  id: string;
  username: string;
  username_key: string;
  email: string | null;
  email_key: string | null;
  password_hash: string;
  roles: string[];
  email_verified: boolean;
  mfa: boolean;
  created_at: Int8;
  updated_at: Int8;
}

const USER_COLUMNS = "id, username, username_key, email, email_key, password_hash, roles, created_at, updated_at";
/** The users columns as read back; `email_verified` is left to its default on insert. */
const USER_READ_COLUMNS = `${USER_COLUMNS}, email_verified, mfa`;

function toUserRecord(row: UserRow): UserRecord {
  return {
    id: row.id,
    username: row.username,
    usernameKey: row.username_key,
    email: row.email,
    emailKey: row.email_key,
    emailVerified: row.email_verified,
    passwordHash: row.password_hash,
    mfa: row.mfa,
    roles: row.roles,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function createUserStore(pool: pg.Pool): UserStore {
  return {
    async createUser(user) {
      // One statement, so atomic without a transaction: the user row and its
      // login keys are written together or not at all. Keys go in sorted
      // order so two registrations that cross (A's username is B's email and
      // the reverse) queue behind each other instead of deadlocking.
      await query(pool, {
        text: `
          WITH created AS (
            INSERT INTO users (${USER_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            RETURNING id
          )
          INSERT INTO logins (login_key, user_id)
          SELECT DISTINCT key, created.id
          FROM created, unnest(ARRAY[$3, $5]::text[]) AS key
          WHERE key IS NOT NULL
          ORDER BY key`,
        values: [
          user.id,
          user.username,
          user.usernameKey,
          user.email,
          user.emailKey,
          user.passwordHash,
          user.roles,
          user.createdAt,
          user.updatedAt,
        ],
      });
    },

    async findUserById(id) {
      const result = await query<UserRow>(pool, { text: `SELECT ${USER_READ_COLUMNS} FROM users WHERE id = $1`, values: [id] });
      const row = result.rows[0];
      return row ? toUserRecord(row) : null;
    },

    async findUserByLogin(key) {
      const result = await query<UserRow>(pool, {
        name: "latch_find_user_by_login",
        text: `SELECT ${USER_READ_COLUMNS} FROM users WHERE id = (SELECT user_id FROM logins WHERE login_key = $1)`,
        values: [key],
      });
      const row = result.rows[0];
      return row ? toUserRecord(row) : null;
    },

    async updateUserPassword(id, passwordHash, updatedAt) {
      const result = await query(pool, {
        text: "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1",
        values: [id, passwordHash, updatedAt],
      });
      return result.rowCount === 1;
    },

    async updateUserRoles(id, roles, updatedAt) {
      const result = await query<UserRow>(pool, {
        text: `UPDATE users SET roles = $2, updated_at = $3 WHERE id = $1 RETURNING ${USER_READ_COLUMNS}`,
        values: [id, roles, updatedAt],
      });
      const row = result.rows[0];
      return row ? toUserRecord(row) : null;
    },

    async updateUserEmail(id, email, updatedAt) {
      return transaction(pool, async (client) => {
        const current = await query<{ email_key: string | null }>(client, {
          text: "SELECT email_key FROM users WHERE id = $1 FOR UPDATE",
          values: [id],
        });
        const row = current.rows[0];
        if (row === undefined) return null;
        if (row.email_key !== null && row.email_key !== email?.emailKey) {
          await query(client, { text: "DELETE FROM logins WHERE login_key = $1 AND user_id = $2", values: [row.email_key, id] });
        }
        if (email !== null && email.emailKey !== row.email_key) {
          // A taken key is a unique violation here, mapped to conflict by toLatchError.
          await query(client, { text: "INSERT INTO logins (login_key, user_id) VALUES ($1, $2)", values: [email.emailKey, id] });
        }
        await query(client, { text: "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = 'verify'", values: [id] });
        const updated = await query<UserRow>(client, {
          text: `UPDATE users SET email = $2, email_key = $3, email_verified = false, updated_at = $4 WHERE id = $1 RETURNING ${USER_READ_COLUMNS}`,
          values: [id, email?.email ?? null, email?.emailKey ?? null, updatedAt],
        });
        return toUserRecord(updated.rows[0]!);
      });
    },

    async verifyEmail(id, tokenHash, now) {
      // One statement: the token is deleted and the user marked verified
      // together, and only for the email the token was sent to.
      const result = await query<UserRow>(pool, {
        text: `
          WITH token AS (
            DELETE FROM account_tokens WHERE hash = $2 AND purpose = 'verify' AND user_id = $1 RETURNING email_key, expires_at
          )
          UPDATE users u SET email_verified = true, updated_at = $3
          FROM token WHERE u.id = $1 AND token.expires_at > $3 AND u.email_key = token.email_key
          RETURNING ${USER_READ_COLUMNS.split(", ")
            .map((c) => `u.${c}`)
            .join(", ")}`,
        values: [id, bytes(tokenHash), now],
      });
      const row = result.rows[0];
      return row ? toUserRecord(row) : null;
    },

    async resetPassword(id, tokenHash, passwordHash, now, notice) {
      return transaction(pool, async (client) => {
        const taken = await query<{ expires_at: Int8 }>(client, {
          text: "DELETE FROM account_tokens WHERE hash = $2 AND purpose = 'reset' AND user_id = $1 RETURNING expires_at",
          values: [id, bytes(tokenHash)],
        });
        const token = taken.rows[0];
        // An expired token is deleted all the same; nothing else changes.
        if (token === undefined || Number(token.expires_at) <= now) return null;
        const updated = await query<UserRow>(client, {
          text: `UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 RETURNING ${USER_READ_COLUMNS}`,
          values: [id, passwordHash, now],
        });
        const row = updated.rows[0];
        if (row === undefined) return null;
        await query(client, { text: "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = 'reset'", values: [id] });
        if (notice !== null) await insertMessage(client, notice);
        return toUserRecord(row);
      });
    },

    async deleteUser(id) {
      // Sessions, security events, login keys, tokens and messages go with
      // the user through ON DELETE CASCADE, in the same statement.
      const result = await query(pool, { text: "DELETE FROM users WHERE id = $1", values: [id] });
      return result.rowCount === 1;
    },

    async listUsers(options) {
      const result =
        options.after === undefined
          ? await query<UserRow>(pool, { text: `SELECT ${USER_READ_COLUMNS} FROM users ORDER BY id LIMIT $1`, values: [options.limit] })
          : await query<UserRow>(pool, {
              text: `SELECT ${USER_READ_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2`,
              values: [options.after, options.limit],
            });
      return result.rows.map(toUserRecord);
    },
  };
}

interface SessionRow {
  id: string;
  user_id: string;
  secret_hash: Buffer;
  created_at: Int8;
  last_seen_at: Int8;
  idle_expires_at: Int8;
  absolute_expires_at: Int8;
  user_agent: string | null;
  ip_address: string | null;
  amr: string[];
  pending: boolean;
}

interface SessionWithUserRow extends SessionRow {
  username: string;
  email: string | null;
  roles: string[];
  email_verified: boolean;
  mfa: boolean;
  user_created_at: Int8;
}

const SESSION_COLUMNS =
  "id, user_id, secret_hash, created_at, last_seen_at, idle_expires_at, absolute_expires_at, user_agent, ip_address, amr, pending";

function toSession(row: SessionRow): Session {
  return {
    id: row.id,
    userId: row.user_id,
    secretHash: row.secret_hash,
    createdAt: Number(row.created_at),
    lastSeenAt: Number(row.last_seen_at),
    idleExpiresAt: Number(row.idle_expires_at),
    absoluteExpiresAt: Number(row.absolute_expires_at),
    userAgent: row.user_agent,
    ipAddress: row.ip_address,
    amr: row.amr as AuthMethod[],
    pending: row.pending,
  };
}

function bytes(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function createSessionStore(pool: pg.Pool, options: { schema: string | undefined; sweepSlicePages?: number | undefined }): SessionStore {
  const sweeperLock = advisoryLockKeys("sweeper", options.schema);
  // Where the sweeper's next call goes on (a page number), as in the SQLite store.
  let sweepPage = 0;
  const slicePages = options.sweepSlicePages ?? 1024;

  return {
    async createSession(session, options) {
      const values = [
        session.id,
        session.userId,
        bytes(session.secretHash),
        session.createdAt,
        session.lastSeenAt,
        session.idleExpiresAt,
        session.absoluteExpiresAt,
        session.userAgent,
        session.ipAddress,
        session.amr,
        session.pending,
      ];
      if (options?.ifPasswordHash === undefined) {
        await query(pool, {
          name: "latch_create_session",
          text: `INSERT INTO sessions (${SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          values,
        });
        return true;
      }
      // FOR SHARE makes the check hold until commit: a password change
      // (UPDATE users) waits for this insert, then its deleteUserSessions
      // sees and ends the new session; or it committed first, and the row
      // re-checked under the lock no longer matches, so nothing is inserted.
      // The foreign key's own KEY SHARE lock would not wait for an UPDATE of
      // password_hash.
      const result = await query(pool, {
        name: "latch_create_session_if_password",
        text: `INSERT INTO sessions (${SESSION_COLUMNS})
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11::boolean FROM users WHERE id = $2 AND password_hash = $12 FOR SHARE`,
        values: [...values, options.ifPasswordHash],
      });
      return result.rowCount === 1;
    },

    async findSession(id, now): Promise<SessionWithUser | null> {
      // Every authenticated request runs this: one round trip, one prepared
      // plan, and the user's roles read fresh so a role change applies at once.
      const result = await query<SessionWithUserRow>(pool, {
        name: "latch_find_session",
        text: `
          SELECT s.id, s.user_id, s.secret_hash, s.created_at, s.last_seen_at, s.idle_expires_at,
                 s.absolute_expires_at, s.user_agent, s.ip_address, s.amr, s.pending,
                 u.username, u.email, u.email_verified, u.roles, u.mfa, u.created_at AS user_created_at
          FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.id = $1 AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2`,
        values: [id, now],
      });
      const row = result.rows[0];
      if (!row) return null;
      return {
        session: toSession(row),
        user: {
          id: row.user_id,
          username: row.username,
          email: row.email,
          emailVerified: row.email_verified,
          roles: row.roles,
          mfa: row.mfa,
          createdAt: Number(row.user_created_at),
        },
      };
    },

    async touchSession(id, lastSeenAt, idleExpiresAt) {
      // The WHERE clause is the guard against revival: a row that was deleted
      // or has expired by lastSeenAt is not there to update. LEAST keeps the
      // idle expiry within the absolute one even if a caller forgets to cap it.
      const result = await query(pool, {
        name: "latch_touch_session",
        text: `
          UPDATE sessions SET last_seen_at = $2, idle_expires_at = LEAST($3::bigint, absolute_expires_at)
          WHERE id = $1 AND idle_expires_at > $2 AND absolute_expires_at > $2`,
        values: [id, lastSeenAt, idleExpiresAt],
      });
      return result.rowCount === 1;
    },

    async touchSessions(touches) {
      if (touches.length === 0) return [];
      // One statement for the whole batch (the session cache's write-behind),
      // with touchSession's guard per row.
      const result = await query<{ id: string }>(pool, {
        name: "latch_touch_sessions",
        text: `
          UPDATE sessions s SET last_seen_at = t.at, idle_expires_at = LEAST(t.idle, s.absolute_expires_at)
          FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(id, at, idle)
          WHERE s.id = t.id AND s.idle_expires_at > t.at AND s.absolute_expires_at > t.at
          RETURNING s.id`,
        values: [touches.map((t) => t.id), touches.map((t) => t.lastSeenAt), touches.map((t) => t.idleExpiresAt)],
      });
      const renewed = new Set(result.rows.map((row) => row.id));
      return touches.map((t) => renewed.has(t.id));
    },

    async deleteSession(id) {
      const result = await query<{ user_id: string }>(pool, {
        name: "latch_delete_session",
        text: "DELETE FROM sessions WHERE id = $1 RETURNING user_id",
        values: [id],
      });
      return result.rows[0]?.user_id ?? null;
    },

    async rotateSession(oldId, next) {
      // One statement, hence one transaction: the insert reads the delete's
      // output, so the new session exists only if the old one was removed.
      // Matching user_id too means a mismatched `next` writes nothing.
      const result = await query(pool, {
        text: `
          WITH old AS (DELETE FROM sessions WHERE id = $1 AND user_id = $3 RETURNING id)
          INSERT INTO sessions (${SESSION_COLUMNS})
          SELECT $2, $3, $4::bytea, $5::bigint, $6::bigint, $7::bigint, $8::bigint, $9::text, $10::text, $11::text[], $12::boolean FROM old`,
        values: [
          oldId,
          next.id,
          next.userId,
          bytes(next.secretHash),
          next.createdAt,
          next.lastSeenAt,
          next.idleExpiresAt,
          next.absoluteExpiresAt,
          next.userAgent,
          next.ipAddress,
          next.amr,
          next.pending,
        ],
      });
      return result.rowCount === 1;
    },

    async listUserSessions(userId, now) {
      const result = await query<SessionRow>(pool, {
        text: `
          SELECT ${SESSION_COLUMNS} FROM sessions
          WHERE user_id = $1 AND idle_expires_at > $2 AND absolute_expires_at > $2
          ORDER BY created_at DESC, id`,
        values: [userId, now],
      });
      return result.rows.map(toSession);
    },

    async deleteUserSessions(userId, options) {
      const result =
        options?.exceptId === undefined
          ? await query(pool, { text: "DELETE FROM sessions WHERE user_id = $1", values: [userId] })
          : await query(pool, { text: "DELETE FROM sessions WHERE user_id = $1 AND id <> $2", values: [userId, options.exceptId] });
      return result.rowCount ?? 0;
    },

    async deleteExpiredSessions(now, limit) {
      return transaction(pool, async (client) => {
        // Sweepers run on every instance; one at a time is plenty, and the
        // others should give up at once rather than queue behind it.
        const lock = await query<{ locked: boolean }>(client, {
          text: "SELECT pg_try_advisory_xact_lock($1, $2) AS locked",
          values: sweeperLock,
        });
        if (lock.rows[0]?.locked !== true) return 0;
        // For this transaction only: the revocation trigger leaves these
        // deletes unannounced (caches refuse expired sessions by themselves).
        await query(client, { text: "SELECT set_config('latch.sweeping', 'on', true)" });
        // No index on the expiry (migration 6: renewals change it), so the
        // table is read in slices of `sweepSlicePages` pages by TID range
        // (a TID Range Scan), going on from where the last call stopped.
        const size = await query<{ pages: string }>(client, {
          text: "SELECT pg_relation_size('sessions') / current_setting('block_size')::bigint AS pages",
        });
        const pages = Number(size.rows[0]?.pages ?? 0);
        let deleted = 0;
        let from = sweepPage < pages ? sweepPage : 0;
        while (from < pages) {
          // SKIP LOCKED: rows a request is touching or deleting right now are
          // left for the next round instead of stalling the sweep.
          const result = await query(client, {
            text: `
              DELETE FROM sessions WHERE id IN (
                SELECT id FROM sessions
                WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
                  AND LEAST(idle_expires_at, absolute_expires_at) <= $3
                LIMIT $4 FOR UPDATE SKIP LOCKED
              )`,
            values: [from, from + slicePages, now, limit - deleted],
          });
          deleted += result.rowCount ?? 0;
          // At the limit this slice may hold more: the next call starts with it.
          if (deleted >= limit) break;
          from += slicePages;
        }
        sweepPage = from < pages ? from : 0;
        return deleted;
      });
    },
  };
}

interface SecurityEventRow {
  id: string;
  user_id: string | null;
  type: string;
  at: Int8;
  ip_address: string | null;
  user_agent: string | null;
  detail: Record<string, string> | null;
}

function toSecurityEvent(row: SecurityEventRow): SecurityEvent {
  return {
    id: row.id,
    userId: row.user_id,
    type: row.type as SecurityEventType,
    at: Number(row.at),
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    detail: row.detail,
  };
}

function createSecurityEventStore(pool: pg.Pool): SecurityEventStore {
  return {
    async recordEvent(event) {
      await query(pool, {
        text: "INSERT INTO security_events (id, user_id, type, at, ip_address, user_agent, detail) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        // Serialised here: node-postgres would turn a JS array into a
        // PostgreSQL array rather than JSON.
        values: [
          event.id,
          event.userId,
          event.type,
          event.at,
          event.ipAddress,
          event.userAgent,
          event.detail === null ? null : JSON.stringify(event.detail),
        ],
      });
    },

    async listUserEvents(userId, limit) {
      const result = await query<SecurityEventRow>(pool, {
        text: `
          SELECT id, user_id, type, at, ip_address, user_agent, detail FROM security_events
          WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2`,
        values: [userId, limit],
      });
      return result.rows.map(toSecurityEvent);
    },

    async deleteUserEvents(userId) {
      const result = await query(pool, { text: "DELETE FROM security_events WHERE user_id = $1", values: [userId] });
      return result.rowCount ?? 0;
    },

    async deleteEventsBefore(before, limit) {
      const result = await query(pool, {
        text: `
          DELETE FROM security_events WHERE id IN (
            SELECT id FROM security_events WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED
          )`,
        values: [before, limit],
      });
      return result.rowCount ?? 0;
    },
  };
}

function toRateLimitState(row: { count: number; reset_at: Int8 }): RateLimitState {
  return { count: row.count, resetAt: Number(row.reset_at) };
}

function createRateLimitStore(pool: pg.Pool): RateLimitStore {
  return {
    async hit(key, windowMs, now) {
      // One statement, so concurrent hits from any number of processes
      // serialise on the row: each sees the previous one's count. SET
      // expressions read the old row, so both CASEs test the same window.
      const result = await query<{ count: number; reset_at: Int8 }>(pool, {
        name: "latch_rate_limit_hit",
        text: `
          INSERT INTO rate_limits AS r (key, count, reset_at) VALUES ($1, 1, $2::bigint + $3::bigint)
          ON CONFLICT (key) DO UPDATE SET
            count = CASE WHEN r.reset_at > $2::bigint THEN r.count + 1 ELSE 1 END,
            reset_at = CASE WHEN r.reset_at > $2::bigint THEN r.reset_at ELSE EXCLUDED.reset_at END
          RETURNING count, reset_at`,
        values: [key, now, windowMs],
      });
      return toRateLimitState(result.rows[0]!);
    },

    async peek(key, now) {
      const result = await query<{ count: number; reset_at: Int8 }>(pool, {
        text: "SELECT count, reset_at FROM rate_limits WHERE key = $1 AND reset_at > $2",
        values: [key, now],
      });
      const row = result.rows[0];
      return row ? toRateLimitState(row) : null;
    },

    async reset(key) {
      await query(pool, { text: "DELETE FROM rate_limits WHERE key = $1", values: [key] });
    },

    async deleteClosedWindows(now, limit) {
      const result = await query(pool, {
        text: "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE reset_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        values: [now, limit],
      });
      return result.rowCount ?? 0;
    },
  };
}

interface SigningKeyRow {
  kid: string;
  alg: string;
  public_jwk: string;
  private_jwk: string;
  created_at: Int8;
  retired_at: Int8 | null;
}

function toSigningKey(row: SigningKeyRow): SigningKey {
  return {
    kid: row.kid,
    alg: row.alg as SigningKey["alg"],
    publicJwk: row.public_jwk,
    privateJwk: row.private_jwk,
    createdAt: Number(row.created_at),
    retiredAt: row.retired_at === null ? null : Number(row.retired_at),
  };
}

function createSigningKeyStore(pool: pg.Pool): SigningKeyStore {
  return {
    async listSigningKeys() {
      const result = await query<SigningKeyRow>(pool, {
        text: "SELECT kid, alg, public_jwk, private_jwk, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid",
      });
      return result.rows.map(toSigningKey);
    },

    async addSigningKey(key) {
      await transaction(pool, async (client) => {
        // Two rotations at once must not both see the same active key and
        // leave two active ones: the table lock makes the second wait, and
        // its UPDATE then sees (and retires) the first one's new key. Readers
        // are not blocked.
        await query(client, { text: "LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE" });
        await query(client, { text: "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL", values: [key.createdAt] });
        await query(client, {
          text: "INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
          values: [key.kid, key.alg, key.publicJwk, key.privateJwk, key.createdAt, key.retiredAt],
        });
      });
    },

    async deleteSigningKeysRetiredBefore(before) {
      const result = await query(pool, { text: "DELETE FROM signing_keys WHERE retired_at < $1", values: [before] });
      return result.rowCount ?? 0;
    },
  };
}

interface TokenRow {
  hash: Buffer;
  purpose: AccountToken["purpose"];
  user_id: string;
  email_key: string | null;
  created_at: Int8;
  expires_at: Int8;
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
  created_at: Int8;
  sent_at: Int8 | null;
}

const OUTBOX_COLUMNS = "id, user_id, kind, recipient, subject, text_body, html_body, status, attempts, created_at, sent_at";

function toOutboxEntry(row: OutboxRow): OutboxEntry {
  return {
    id: row.id,
    userId: row.user_id,
    kind: row.kind,
    to: row.recipient,
    subject: row.subject,
    text: row.text_body ?? "",
    html: row.html_body ?? "",
    createdAt: Number(row.created_at),
    status: row.status,
    attempts: row.attempts,
  };
}

async function insertMessage(db: pg.Pool | pg.PoolClient, message: OutboxMessage): Promise<void> {
  await query(db, {
    name: "latch_queue_message",
    text: `
      INSERT INTO mail_outbox (id, user_id, kind, recipient, subject, text_body, html_body, status, attempts, next_attempt_at, created_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $8)`,
    values: [message.id, message.userId, message.kind, message.to, message.subject, message.text, message.html, message.createdAt],
  });
}

function createMailStore(pool: pg.Pool): MailStore {
  return {
    async queueMessage(message, options) {
      const token = options?.token;
      const voidPurpose = options?.voidTokens;
      if (token === undefined && voidPurpose === undefined) return insertMessage(pool, message);
      await transaction(pool, async (client) => {
        if (voidPurpose !== undefined && message.userId !== null) {
          await query(client, {
            text: "DELETE FROM account_tokens WHERE user_id = $1 AND purpose = $2",
            values: [message.userId, voidPurpose],
          });
        }
        if (token !== undefined) {
          await query(client, {
            text: "INSERT INTO account_tokens (hash, purpose, user_id, email_key, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            values: [bytes(token.hash), token.purpose, token.userId, token.emailKey, token.createdAt, token.expiresAt],
          });
        }
        await insertMessage(client, message);
      });
    },

    async findToken(hash, now) {
      const result = await query<TokenRow>(pool, {
        text: "SELECT hash, purpose, user_id, email_key, created_at, expires_at FROM account_tokens WHERE hash = $1 AND expires_at > $2",
        values: [bytes(hash), now],
      });
      const row = result.rows[0];
      if (!row) return null;
      return {
        hash: row.hash,
        purpose: row.purpose,
        userId: row.user_id,
        emailKey: row.email_key,
        createdAt: Number(row.created_at),
        expiresAt: Number(row.expires_at),
      };
    },

    async claimMessages(owner, now, { leaseMs, limit }) {
      // SKIP LOCKED: senders in other processes pass over the rows this one
      // is claiming instead of waiting, and never see them as due again
      // once this commits (next_attempt_at has moved to the lease's end).
      const result = await query<OutboxRow>(pool, {
        name: "latch_claim_messages",
        text: `
          WITH due AS (
            SELECT id FROM mail_outbox WHERE status = 'queued' AND next_attempt_at <= $1
            ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED
          )
          UPDATE mail_outbox m SET lease_owner = $3, next_attempt_at = $4, attempts = m.attempts + 1
          FROM due WHERE m.id = due.id
          RETURNING ${OUTBOX_COLUMNS.split(", ")
            .map((c) => `m.${c}`)
            .join(", ")}`,
        values: [now, limit, owner, now + leaseMs],
      });
      return result.rows.map(toOutboxEntry);
    },

    async markSent(id, owner, now) {
      const result = await query(pool, {
        text: `
          UPDATE mail_outbox SET status = 'sent', sent_at = $3, text_body = NULL, html_body = NULL, lease_owner = NULL, last_error = NULL
          WHERE id = $1 AND lease_owner = $2 AND status = 'queued'`,
        values: [id, owner, now],
      });
      return result.rowCount === 1;
    },

    async markRetry(id, owner, nextAttemptAt, error) {
      const result = await query(pool, {
        text: "UPDATE mail_outbox SET next_attempt_at = $3, last_error = $4, lease_owner = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'queued'",
        values: [id, owner, nextAttemptAt, error],
      });
      return result.rowCount === 1;
    },

    async markFailed(id, owner, now, error) {
      const result = await query(pool, {
        text: `
          UPDATE mail_outbox SET status = 'failed', last_error = $4, text_body = NULL, html_body = NULL, lease_owner = NULL, next_attempt_at = $3
          WHERE id = $1 AND lease_owner = $2 AND status = 'queued'`,
        values: [id, owner, now, error],
      });
      return result.rowCount === 1;
    },

    async retryNow(now) {
      const result = await query(pool, {
        text: "UPDATE mail_outbox SET next_attempt_at = $1 WHERE status = 'queued' AND lease_owner IS NULL AND attempts > 0 AND next_attempt_at > $1",
        values: [now],
      });
      return result.rowCount ?? 0;
    },

    async queueDepth() {
      const result = await query<{ n: string }>(pool, { text: "SELECT count(*) AS n FROM mail_outbox WHERE status = 'queued'" });
      return Number(result.rows[0]!.n);
    },

    async nextDueAt() {
      const result = await query<{ at: Int8 | null }>(pool, {
        text: "SELECT min(next_attempt_at) AS at FROM mail_outbox WHERE status = 'queued'",
      });
      const at = result.rows[0]!.at;
      return at === null ? null : Number(at);
    },

    async listUserMessages(userId, limit) {
      const result = await query<OutboxRow>(pool, {
        text: `SELECT ${OUTBOX_COLUMNS} FROM mail_outbox WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`,
        values: [userId, limit],
      });
      return result.rows.map((row) => ({
        id: row.id,
        kind: row.kind,
        to: row.recipient,
        status: row.status,
        attempts: row.attempts,
        createdAt: Number(row.created_at),
        sentAt: row.sent_at === null ? null : Number(row.sent_at),
      }));
    },

    async deleteUserMessages(userId) {
      const result = await query(pool, { text: "DELETE FROM mail_outbox WHERE user_id = $1", values: [userId] });
      return result.rowCount ?? 0;
    },

    async deleteMessagesBefore(before, limit) {
      const result = await query(pool, {
        text: `
          DELETE FROM mail_outbox WHERE id IN (
            SELECT id FROM mail_outbox WHERE status <> 'queued' AND created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED
          )`,
        values: [before, limit],
      });
      return result.rowCount ?? 0;
    },

    async deleteExpiredTokens(now, limit) {
      const result = await query(pool, {
        text: "DELETE FROM account_tokens WHERE hash IN (SELECT hash FROM account_tokens WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        values: [now, limit],
      });
      return result.rowCount ?? 0;
    },
  };
}

interface TotpRow {
  user_id: string;
  secret: string | null;
  last_used_step: Int8;
  pending_secret: string | null;
  confirmed_at: Int8 | null;
  updated_at: Int8;
}

interface PasskeyRow {
  id: string;
  user_id: string;
  credential_id: string;
  public_key: Buffer;
  counter: Int8;
  transports: string[];
  name: string;
  created_at: Int8;
  last_used_at: Int8 | null;
}

const PASSKEY_COLUMNS = "id, user_id, credential_id, public_key, counter, transports, name, created_at, last_used_at";

function toPasskey(row: PasskeyRow): Passkey {
  return {
    id: row.id,
    userId: row.user_id,
    credentialId: row.credential_id,
    publicKey: row.public_key,
    counter: Number(row.counter),
    transports: row.transports,
    name: row.name,
    createdAt: Number(row.created_at),
    lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
  };
}

// The user's mfa flag from what they have, as a statement to run last in
// each second-factor write's transaction. The trigger of migration 5
// announces a change of it to every process's session cache.
const REFRESH_MFA = `
  UPDATE users SET mfa = (EXISTS (SELECT 1 FROM totp_credentials WHERE user_id = $1 AND secret IS NOT NULL)
                          OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1))
  WHERE id = $1`;

function createSecondFactorStore(pool: pg.Pool): SecondFactorStore {
  const refreshMfa = (client: pg.PoolClient, userId: string): Promise<unknown> => query(client, { text: REFRESH_MFA, values: [userId] });
  return {
    async findTotp(userId) {
      const result = await query<TotpRow>(pool, {
        text: "SELECT user_id, secret, last_used_step, pending_secret, confirmed_at, updated_at FROM totp_credentials WHERE user_id = $1",
        values: [userId],
      });
      const row = result.rows[0];
      if (!row) return null;
      const credential: TotpCredential = {
        userId: row.user_id,
        secret: row.secret,
        lastUsedStep: Number(row.last_used_step),
        pendingSecret: row.pending_secret,
        confirmedAt: row.confirmed_at === null ? null : Number(row.confirmed_at),
        updatedAt: Number(row.updated_at),
      };
      return credential;
    },

    async beginTotp(userId, pendingSecret, now) {
      const result = await query(pool, {
        text: `
          INSERT INTO totp_credentials (user_id, pending_secret, updated_at)
          SELECT $1, $2, $3 FROM users WHERE id = $1
          ON CONFLICT (user_id) DO UPDATE SET pending_secret = EXCLUDED.pending_secret, updated_at = EXCLUDED.updated_at`,
        values: [userId, pendingSecret, now],
      });
      return result.rowCount === 1;
    },

    confirmTotp(userId, pendingSecret, step, hashes, now) {
      return transaction(pool, async (client) => {
        const confirmed = await query(client, {
          text: `
            UPDATE totp_credentials SET secret = pending_secret, pending_secret = NULL, last_used_step = $3, confirmed_at = $4, updated_at = $4
            WHERE user_id = $1 AND pending_secret = $2`,
          values: [userId, pendingSecret, step, now],
        });
        if (confirmed.rowCount !== 1) return false;
        await query(client, { text: "DELETE FROM recovery_codes WHERE user_id = $1", values: [userId] });
        await query(client, {
          text: "INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
          values: [userId, hashes],
        });
        await refreshMfa(client, userId);
        return true;
      });
    },

    async useTotpStep(userId, step) {
      // One statement: concurrent uses of one code serialise on the row, and
      // the second sees the first's step.
      const result = await query(pool, {
        text: "UPDATE totp_credentials SET last_used_step = $2 WHERE user_id = $1 AND secret IS NOT NULL AND last_used_step < $2",
        values: [userId, step],
      });
      return result.rowCount === 1;
    },

    deleteTotp(userId) {
      return transaction(pool, async (client) => {
        const removed = await query(client, { text: "DELETE FROM totp_credentials WHERE user_id = $1", values: [userId] });
        await query(client, { text: "DELETE FROM recovery_codes WHERE user_id = $1", values: [userId] });
        await refreshMfa(client, userId);
        return removed.rowCount === 1;
      });
    },

    async replaceRecoveryCodes(userId, hashes) {
      await transaction(pool, async (client) => {
        await query(client, { text: "DELETE FROM recovery_codes WHERE user_id = $1", values: [userId] });
        await query(client, {
          text: "INSERT INTO recovery_codes (user_id, code_hash) SELECT id, unnest($2::text[]) FROM users WHERE id = $1 ON CONFLICT DO NOTHING",
          values: [userId, hashes],
        });
      });
    },

    async useRecoveryCode(userId, hash) {
      const result = await query(pool, {
        text: "DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2",
        values: [userId, hash],
      });
      return result.rowCount === 1;
    },

    async countRecoveryCodes(userId) {
      const result = await query<{ n: number }>(pool, {
        text: "SELECT count(*)::int AS n FROM recovery_codes WHERE user_id = $1",
        values: [userId],
      });
      return result.rows[0]?.n ?? 0;
    },

    async createPasskey(passkey) {
      await transaction(pool, async (client) => {
        await query(client, {
          text: `INSERT INTO passkeys (${PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          values: [
            passkey.id,
            passkey.userId,
            passkey.credentialId,
            bytes(passkey.publicKey),
            passkey.counter,
            passkey.transports,
            passkey.name,
            passkey.createdAt,
            passkey.lastUsedAt,
          ],
        });
        await refreshMfa(client, passkey.userId);
      });
    },

    async listPasskeys(userId) {
      const result = await query<PasskeyRow>(pool, {
        text: `SELECT ${PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id`,
        values: [userId],
      });
      return result.rows.map(toPasskey);
    },

    async findPasskeyByCredentialId(credentialId) {
      const result = await query<PasskeyRow>(pool, {
        text: `SELECT ${PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1`,
        values: [credentialId],
      });
      const row = result.rows[0];
      return row ? toPasskey(row) : null;
    },

    async recordPasskeyUse(id, expectedCounter, counter, at) {
      const result = await query(pool, {
        text: "UPDATE passkeys SET counter = $3, last_used_at = $4 WHERE id = $1 AND counter = $2",
        values: [id, expectedCounter, counter, at],
      });
      return result.rowCount === 1;
    },

    async renamePasskey(userId, id, name) {
      const result = await query(pool, {
        text: "UPDATE passkeys SET name = $3 WHERE id = $2 AND user_id = $1",
        values: [userId, id, name],
      });
      return result.rowCount === 1;
    },

    deletePasskey(userId, id) {
      return transaction(pool, async (client) => {
        const removed = await query(client, { text: "DELETE FROM passkeys WHERE id = $2 AND user_id = $1", values: [userId, id] });
        await refreshMfa(client, userId);
        return removed.rowCount === 1;
      });
    },

    deleteSecondFactors(userId) {
      return transaction(pool, async (client) => {
        let removed = 0;
        for (const table of ["totp_credentials", "recovery_codes", "passkeys", "webauthn_challenges"]) {
          const result = await query(client, { text: `DELETE FROM ${table} WHERE user_id = $1`, values: [userId] });
          if (table !== "webauthn_challenges") removed += result.rowCount ?? 0;
        }
        await refreshMfa(client, userId);
        return removed > 0;
      });
    },

    async putChallenge(challenge) {
      await query(pool, {
        text: "INSERT INTO webauthn_challenges (id, purpose, user_id, secret_hash, challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        values: [challenge.id, challenge.purpose, challenge.userId, bytes(challenge.secretHash), challenge.challenge, challenge.expiresAt],
      });
    },

    async takeChallenge(id, now) {
      const result = await query<{
        id: string;
        purpose: WebAuthnChallenge["purpose"];
        user_id: string | null;
        secret_hash: Buffer;
        challenge: string;
        expires_at: Int8;
      }>(pool, {
        text: "DELETE FROM webauthn_challenges WHERE id = $1 RETURNING id, purpose, user_id, secret_hash, challenge, expires_at",
        values: [id],
      });
      const row = result.rows[0];
      if (!row || Number(row.expires_at) <= now) return null;
      return {
        id: row.id,
        purpose: row.purpose,
        userId: row.user_id,
        secretHash: row.secret_hash,
        challenge: row.challenge,
        expiresAt: Number(row.expires_at),
      };
    },

    async deleteExpiredChallenges(now, limit) {
      const result = await query(pool, {
        text: "DELETE FROM webauthn_challenges WHERE id IN (SELECT id FROM webauthn_challenges WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        values: [now, limit],
      });
      return result.rowCount ?? 0;
    },
  };
}

async function checkHealth(pool: pg.Pool): Promise<Record<string, StoreHealth>> {
  // Bounded by a timer rather than the driver: a full pool would otherwise
  // keep the check waiting for a connection for CONNECT_TIMEOUT_MS.
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("health check timed out")), HEALTH_TIMEOUT_MS);
  });
  try {
    await Promise.race([pool.query("SELECT 1"), timeout]);
    return { database: "ok" };
  } catch {
    return { database: "down" };
  } finally {
    clearTimeout(timer);
  }
}
