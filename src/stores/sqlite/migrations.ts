import type { Database } from "better-sqlite3";

/**
 * Versioned schema changes, applied in order inside one transaction each and
 * recorded in `PRAGMA user_version`. Never edit a released migration: add one.
 *
 * Times are INTEGER milliseconds since the epoch. The seed tutorial's
 * `users` and `sessions` tables are extended: sessions keep a hash of the
 * secret (never the cookie value), both expiries, and request metadata.
 */
export const migrations: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: "users, sessions, events, rate limits, signing keys",
    sql: `
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        email TEXT,
        email_key TEXT UNIQUE,
        password_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      -- One row per way to sign in (username or email), so that a username can
      -- never equal another user's email: uniqueness across both columns is a
      -- single primary key, enforced atomically by the database.
      CREATE TABLE logins (
        login_key TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX logins_user_id ON logins(user_id);

      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        secret_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        idle_expires_at INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL,
        user_agent TEXT,
        ip_address TEXT
      ) STRICT;
      CREATE INDEX sessions_user_id ON sessions(user_id, created_at);
      CREATE INDEX sessions_idle_expires_at ON sessions(idle_expires_at);
      CREATE INDEX sessions_absolute_expires_at ON sessions(absolute_expires_at);

      CREATE TABLE security_events (
        id TEXT PRIMARY KEY,
        user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        at INTEGER NOT NULL,
        ip_address TEXT,
        user_agent TEXT,
        detail TEXT
      ) STRICT;
      CREATE INDEX security_events_user_at ON security_events(user_id, at);
      CREATE INDEX security_events_at ON security_events(at);

      CREATE TABLE rate_limits (
        key TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        reset_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX rate_limits_reset_at ON rate_limits(reset_at);

      CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        private_jwk TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        retired_at INTEGER
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: "flush mark",
    // One row per named counter; "flush" is the mark a writer raises when a
    // revocation it wrote may not have reached Redis (see FlushMarkStore).
    sql: `
      CREATE TABLE store_marks (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    // Version 3 (2 and 4-5 belong to other changes; migrate() applies what is missing in order).
    version: 3,
    name: "verified email, account tokens, mail outbox",
    sql: `
      ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;

      -- Single-use tokens mailed to users: only the SHA-256 of each token.
      CREATE TABLE account_tokens (
        hash BLOB PRIMARY KEY,
        purpose TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email_key TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX account_tokens_user ON account_tokens(user_id, purpose);
      CREATE INDEX account_tokens_expires_at ON account_tokens(expires_at);

      -- The durable outbox. A queued message is due at next_attempt_at; a
      -- sender that takes it sets lease_owner and moves next_attempt_at to
      -- the end of its lease, so no other sender takes it meanwhile. Bodies
      -- are dropped once a message is sent or failed (a body may hold a link).
      CREATE TABLE mail_outbox (
        id TEXT PRIMARY KEY,
        user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        text_body TEXT,
        html_body TEXT,
        status TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_owner TEXT,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        sent_at INTEGER
      ) STRICT;
      CREATE INDEX mail_outbox_due ON mail_outbox(next_attempt_at) WHERE status = 'queued';
      CREATE INDEX mail_outbox_user ON mail_outbox(user_id, created_at);
      CREATE INDEX mail_outbox_done ON mail_outbox(created_at) WHERE status <> 'queued';
    `,
  },
  {
    version: 4,
    name: "second factors: amr and pending sign-ins on sessions, TOTP, recovery codes, passkeys, WebAuthn challenges",
    sql: `
      -- Existing sessions were password sign-ins.
      ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
      ALTER TABLE sessions ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
      -- Kept by the second-factor writes in the same transaction, so a
      -- session's user (one joined read) says whether the account has one.
      ALTER TABLE users ADD COLUMN mfa INTEGER NOT NULL DEFAULT 0;

      CREATE TABLE totp_credentials (
        user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        secret TEXT,
        last_used_step INTEGER NOT NULL DEFAULT 0,
        pending_secret TEXT,
        confirmed_at INTEGER,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        PRIMARY KEY (user_id, code_hash)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE passkeys (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        credential_id TEXT NOT NULL UNIQUE,
        public_key BLOB NOT NULL,
        counter INTEGER NOT NULL,
        transports TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
      ) STRICT;
      CREATE INDEX passkeys_user_id ON passkeys(user_id, created_at);

      CREATE TABLE webauthn_challenges (
        id TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
        secret_hash BLOB NOT NULL,
        challenge TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX webauthn_challenges_expires_at ON webauthn_challenges(expires_at);
    `,
  },
  {
    // A renewal changes idle_expires_at; with this index every renewal also
    // rewrote a random index page (half a batched renewal's cost, measured in
    // docs/performance.md). The sweeper scans by rowid range instead.
    version: 5,
    name: "no index on idle_expires_at (renewals change it)",
    sql: "DROP INDEX IF EXISTS sessions_idle_expires_at;",
  },
  {
    version: 6,
    name: "a log of ended sessions and changed users, written by triggers",
    // What another process's cache must forget, so that it can drop just
    // those entries when the file changes instead of all of them: with
    // several processes on one file (WORKERS, a resource server), every
    // commit of another process (a renewal batch each second) used to empty
    // the whole cache. From triggers, as PostgreSQL's NOTIFYs are, so every
    // writer logs: Latch, the admin CLI, an operator with the sqlite3 shell,
    // ON DELETE CASCADE. Renewals (idle expiry only moving later) log
    // nothing. `at` (real time, days) is for pruning only; a reader that
    // fell behind what was pruned empties its cache
    // (src/stores/sqlite/data-version-channel.ts).
    sql: `
      CREATE TABLE invalidations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('session', 'user')),
        target TEXT NOT NULL,
        at REAL NOT NULL DEFAULT (julianday('now'))
      ) STRICT;
      CREATE TABLE invalidations_pruned (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        upto INTEGER NOT NULL
      ) STRICT;
      INSERT INTO invalidations_pruned (id, upto) VALUES (1, 0);

      CREATE TRIGGER sessions_log_end AFTER DELETE ON sessions
      BEGIN
        INSERT INTO invalidations (kind, target) VALUES ('session', OLD.id);
      END;
      CREATE TRIGGER sessions_log_change AFTER UPDATE ON sessions
      WHEN NEW.id IS NOT OLD.id OR NEW.user_id IS NOT OLD.user_id OR NEW.secret_hash IS NOT OLD.secret_hash
        OR NEW.idle_expires_at < OLD.idle_expires_at OR NEW.absolute_expires_at < OLD.absolute_expires_at
        OR NEW.amr IS NOT OLD.amr OR NEW.pending IS NOT OLD.pending
      BEGIN
        INSERT INTO invalidations (kind, target) VALUES ('session', OLD.id);
      END;
      -- The columns a cached session's user carries.
      CREATE TRIGGER users_log_change AFTER UPDATE OF id, username, email, email_verified, roles, created_at, mfa ON users
      BEGIN
        INSERT INTO invalidations (kind, target) VALUES ('user', OLD.id);
      END;
      CREATE TRIGGER users_log_end AFTER DELETE ON users
      BEGIN
        INSERT INTO invalidations (kind, target) VALUES ('user', OLD.id);
      END;
    `,
  },
];

/** Brings the database to the latest version. Safe to call on every start. */
export function migrate(db: Database): number {
  // BEGIN IMMEDIATE takes the write lock up front, so two processes opening a
  // fresh file at once cannot both apply version 1.
  const apply = db.transaction(() => {
    let version = db.pragma("user_version", { simple: true }) as number;
    for (const migration of migrations) {
      if (migration.version <= version) continue;
      db.exec(migration.sql);
      db.pragma(`user_version = ${migration.version}`);
      version = migration.version;
    }
    return version;
  });
  return apply.immediate();
}
