import pg from "pg";
import { advisoryLockKeys } from "./advisory-locks.js";
import { toLatchError } from "./postgres-errors.js";
import { revocationChannelSql } from "./revocations.js";
import { withTransaction } from "./transaction.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Versioned schema changes, applied in order and recorded in
 * `latch_migrations`. Never edit a released migration: add one.
 *
 * Times are bigint milliseconds since the epoch. Ids and keys are
 * `COLLATE "C"`: byte order, so `ORDER BY id` agrees with JavaScript's string
 * order for the ASCII ids Latch issues (and comparisons skip the locale).
 */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "users, logins, sessions, security events, rate limits, signing keys",
    sql: `
      CREATE TABLE users (
        id text COLLATE "C" PRIMARY KEY,
        username text NOT NULL,
        username_key text COLLATE "C" NOT NULL UNIQUE,
        email text,
        email_key text COLLATE "C" UNIQUE,
        password_hash text NOT NULL,
        roles text[] NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
      );

      -- One row per way to sign in (username key, email key), so that a
      -- username can never equal another user's email: uniqueness across both
      -- columns becomes one primary key, which the database enforces
      -- atomically even between concurrent registrations.
      CREATE TABLE logins (
        login_key text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE
      );
      CREATE INDEX logins_user_id ON logins (user_id);

      CREATE TABLE sessions (
        id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        secret_hash bytea NOT NULL,
        created_at bigint NOT NULL,
        last_seen_at bigint NOT NULL,
        idle_expires_at bigint NOT NULL,
        absolute_expires_at bigint NOT NULL,
        user_agent text,
        ip_address text
      );
      CREATE INDEX sessions_user_id ON sessions (user_id, created_at DESC);
      -- The sweeper's predicate, verbatim: a session is expired once either
      -- expiry has passed.
      CREATE INDEX sessions_expires_at ON sessions ((LEAST(idle_expires_at, absolute_expires_at)));

      CREATE TABLE security_events (
        id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
        type text NOT NULL,
        at bigint NOT NULL,
        ip_address text,
        user_agent text,
        detail jsonb
      );
      CREATE INDEX security_events_user_at ON security_events (user_id, at DESC, id DESC);
      CREATE INDEX security_events_at ON security_events (at);

      CREATE TABLE rate_limits (
        key text COLLATE "C" PRIMARY KEY,
        count integer NOT NULL,
        reset_at bigint NOT NULL
      );
      CREATE INDEX rate_limits_reset_at ON rate_limits (reset_at);

      CREATE TABLE signing_keys (
        kid text COLLATE "C" PRIMARY KEY,
        alg text NOT NULL,
        public_jwk text NOT NULL,
        private_jwk text NOT NULL,
        created_at bigint NOT NULL,
        retired_at bigint
      );
      -- At most one active key, whatever a caller does.
      CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE retired_at IS NULL;
    `,
  },
  {
    version: 2,
    name: "announce ended sessions and changed users with NOTIFY",
    // From triggers rather than from the store's code, so every writer
    // announces: Latch servers, the admin CLI, an operator with psql, and
    // ON DELETE CASCADE from a deleted user. NOTIFY is transactional: it is
    // delivered when, and only if, the change commits. The channel is the
    // one revocationChannelSql (src/stores/postgres/revocations.ts) names;
    // only pg_catalog functions are called, so the triggers work whatever
    // search_path the writing session has.
    sql: `
      CREATE FUNCTION latch_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        -- The expired-session sweeper's deletes are not announced: every
        -- cache refuses an expired entry by itself.
        IF TG_OP = 'DELETE' AND current_setting('latch.sweeping', true) = 'on' THEN
          RETURN NULL;
        END IF;
        PERFORM pg_notify(${revocationChannelSql("TG_TABLE_SCHEMA")}, json_build_object('kind', 'session', 'sessionId', OLD.id)::text);
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER sessions_announce_end AFTER DELETE ON sessions
        FOR EACH ROW EXECUTE FUNCTION latch_notify_session();
      -- Latch itself never updates these (rotation is a delete and an
      -- insert; a renewal only extends the idle expiry), but an operator may.
      CREATE TRIGGER sessions_announce_change AFTER UPDATE ON sessions
        FOR EACH ROW
        WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.user_id IS DISTINCT FROM OLD.user_id
              OR NEW.secret_hash IS DISTINCT FROM OLD.secret_hash
              OR NEW.idle_expires_at < OLD.idle_expires_at OR NEW.absolute_expires_at < OLD.absolute_expires_at)
        EXECUTE FUNCTION latch_notify_session();

      CREATE FUNCTION latch_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify(${revocationChannelSql("TG_TABLE_SCHEMA")}, json_build_object('kind', 'user', 'userId', OLD.id)::text);
        RETURN NULL;
      END
      $$;
      -- The columns a cached session's user carries.
      CREATE TRIGGER users_announce_change AFTER UPDATE OF id, username, email, roles, created_at OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION latch_notify_user();

      -- TRUNCATE fires no row triggers: announce that everything is suspect.
      CREATE FUNCTION latch_notify_flush() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify(${revocationChannelSql("TG_TABLE_SCHEMA")}, '{"kind":"flush"}');
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER sessions_announce_truncate AFTER TRUNCATE ON sessions
        FOR EACH STATEMENT EXECUTE FUNCTION latch_notify_flush();
      CREATE TRIGGER users_announce_truncate AFTER TRUNCATE ON users
        FOR EACH STATEMENT EXECUTE FUNCTION latch_notify_flush();
    `,
  },
  {
    version: 3,
    name: "flush mark",
    // One row per named counter; "flush" is the mark a writer raises when a
    // revocation it wrote may not have reached Redis (see FlushMarkStore).
    sql: `
      CREATE TABLE store_marks (
        name text PRIMARY KEY,
        value bigint NOT NULL
      );
    `,
  },
  {
    // Version 4 (3 and 5-6 belong to other changes; every missing version is applied, in order).
    version: 4,
    name: "verified email, account tokens, mail outbox",
    sql: `
      ALTER TABLE users ADD COLUMN email_verified boolean NOT NULL DEFAULT false;
      -- A cached session carries email_verified too: announce its changes.
      DROP TRIGGER users_announce_change ON users;
      CREATE TRIGGER users_announce_change AFTER UPDATE OF id, username, email, email_verified, roles, created_at OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION latch_notify_user();

      -- Single-use tokens mailed to users: only the SHA-256 of each token.
      CREATE TABLE account_tokens (
        hash bytea PRIMARY KEY,
        purpose text NOT NULL,
        user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        email_key text COLLATE "C",
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL
      );
      CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
      CREATE INDEX account_tokens_expires_at ON account_tokens (expires_at);

      -- The durable outbox. A queued message is due at next_attempt_at; a
      -- sender takes it with FOR UPDATE SKIP LOCKED, sets lease_owner and
      -- moves next_attempt_at to the end of its lease, so no other sender
      -- takes it meanwhile. Bodies are dropped once sent or failed.
      CREATE TABLE mail_outbox (
        id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
        kind text NOT NULL,
        recipient text NOT NULL,
        subject text NOT NULL,
        text_body text,
        html_body text,
        status text NOT NULL DEFAULT 'queued',
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at bigint NOT NULL,
        lease_owner text,
        last_error text,
        created_at bigint NOT NULL,
        sent_at bigint
      );
      CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'queued';
      CREATE INDEX mail_outbox_user ON mail_outbox (user_id, created_at DESC);
      CREATE INDEX mail_outbox_done ON mail_outbox (created_at) WHERE status <> 'queued';
    `,
  },
  {
    version: 5,
    name: "second factors: amr and pending sign-ins on sessions, TOTP, recovery codes, passkeys, WebAuthn challenges",
    sql: `
      -- Existing sessions were password sign-ins.
      ALTER TABLE sessions ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';
      ALTER TABLE sessions ADD COLUMN pending boolean NOT NULL DEFAULT false;
      -- Kept by the second-factor writes in the same statement, so a
      -- session's user (one joined read) says whether the account has one.
      ALTER TABLE users ADD COLUMN mfa boolean NOT NULL DEFAULT false;
      -- A cached session carries its user's mfa flag: announce its changes
      -- like a role change. A trigger of its own, so the one of version 2
      -- stays as released.
      CREATE TRIGGER users_announce_mfa AFTER UPDATE OF mfa ON users
        FOR EACH ROW WHEN (NEW.mfa IS DISTINCT FROM OLD.mfa) EXECUTE FUNCTION latch_notify_user();

      CREATE TABLE totp_credentials (
        user_id text COLLATE "C" PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
        secret text,
        last_used_step bigint NOT NULL DEFAULT 0,
        pending_secret text,
        confirmed_at bigint,
        updated_at bigint NOT NULL
      );

      CREATE TABLE recovery_codes (
        user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        code_hash text COLLATE "C" NOT NULL,
        PRIMARY KEY (user_id, code_hash)
      );

      CREATE TABLE passkeys (
        id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        credential_id text COLLATE "C" NOT NULL UNIQUE,
        public_key bytea NOT NULL,
        counter bigint NOT NULL,
        transports text[] NOT NULL,
        name text NOT NULL,
        created_at bigint NOT NULL,
        last_used_at bigint
      );
      CREATE INDEX passkeys_user_id ON passkeys (user_id, created_at);

      CREATE TABLE webauthn_challenges (
        id text COLLATE "C" PRIMARY KEY,
        purpose text NOT NULL,
        user_id text COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
        secret_hash bytea NOT NULL,
        challenge text NOT NULL,
        expires_at bigint NOT NULL
      );
      CREATE INDEX webauthn_challenges_expires_at ON webauthn_challenges (expires_at);
    `,
  },
  {
    version: 6,
    name: "no index on a column a renewal changes (HOT renewals), room on each page for them",
    // A renewal sets last_seen_at and idle_expires_at. The sweeper's index
    // on LEAST(idle_expires_at, absolute_expires_at) made every renewal a
    // non-HOT update: a new index entry in every index of the table, and the
    // page's old version left for VACUUM. Without it no index covers a
    // column a renewal changes, and with room left on each page (fillfactor
    // 85) the new row version stays on its page (a HOT update). The sweeper
    // scans the table in TID-range slices instead (postgres-store.ts).
    // The fillfactor applies to pages written from now on.
    sql: `
      DROP INDEX IF EXISTS sessions_expires_at;
      ALTER TABLE sessions SET (fillfactor = 85);
    `,
  },
];

/**
 * Brings the schema to the latest version and returns the versions it
 * applied (empty when there was nothing to do). Safe to call on every start,
 * from several processes at once: everything runs in one transaction under an
 * advisory lock scoped to the schema, so the first process migrates and the
 * others wait, then find nothing left to apply.
 *
 * `schema` should be the schema the pool's connections have as their
 * `search_path` (see `createPostgresStores`); it is created when missing.
 *
 * @example
 * const applied = await migrate(pool, { schema: "latch" }); // [1] on a fresh database, then []
 */
export async function migrate(pool: pg.Pool, options: { schema?: string | undefined } = {}): Promise<number[]> {
  const { schema } = options;
  try {
    return await withTransaction(pool, (client) => apply(client, schema));
  } catch (error) {
    throw toLatchError(error);
  }
}

async function apply(client: pg.PoolClient, schema: string | undefined): Promise<number[]> {
  await client.query("SELECT pg_advisory_xact_lock($1, $2)", advisoryLockKeys("migrations", schema));
  // Look before creating: CREATE … IF NOT EXISTS still demands the CREATE
  // privilege, and an already migrated database should start under a role
  // that has none.
  if (schema !== undefined) {
    const found = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema]);
    if (found.rowCount === 0) await client.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`);
    // The pool should already point here; this makes sure the tables land in
    // the schema even when it does not.
    await client.query(`SET LOCAL search_path TO ${pg.escapeIdentifier(schema)}`);
  }
  const table = await client.query<{ present: boolean }>("SELECT to_regclass('latch_migrations') IS NOT NULL AS present");
  if (table.rows[0]?.present !== true) {
    await client.query(`
      CREATE TABLE latch_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )
    `);
  }
  const done = await client.query<{ version: number }>("SELECT version FROM latch_migrations");
  const present = new Set(done.rows.map((row) => row.version));
  const applied: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    if (present.has(migration.version)) continue;
    await client.query(migration.sql);
    await client.query("INSERT INTO latch_migrations (version, name) VALUES ($1, $2)", [migration.version, migration.name]);
    applied.push(migration.version);
  }
  return applied;
}
