import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import pg from "pg";
import { isLatchError } from "../../core/errors.js";
import type { Session, UserRecord } from "../../core/store.js";
import { POSTGRES_URL, serviceSkip } from "../../testing/services.js";
import { runStoreConformance } from "../store-conformance.js";
import { advisoryLockKeys } from "./advisory-locks.js";
import { migrate, migrations } from "./migrations.js";
import { createPostgresStores } from "./postgres-store.js";
import { dropTestSchema, testSchemaName } from "./postgres-test-support.js";
import type { PostgresStores } from "./postgres-store.js";

const skip = await serviceSkip("postgres");

runStoreConformance(
  "postgres",
  async () => {
    const schema = testSchemaName();
    return { stores: await createPostgresStores({ url: POSTGRES_URL, schema }), cleanup: () => dropTestSchema(schema) };
  },
  { skip },
);

function newUser(overrides: Partial<UserRecord> = {}): UserRecord {
  const tag = randomBytes(6).toString("hex");
  const now = Date.now();
  return {
    id: randomUUID(),
    username: `User_${tag}`,
    usernameKey: `user_${tag}`,
    email: `mail_${tag}@example.com`,
    emailKey: `mail_${tag}@example.com`,
    emailVerified: false,
    passwordHash: `$argon2id$v=19$m=19456,t=2,p=1$${randomBytes(8).toString("base64")}$${randomBytes(16).toString("base64")}`,
    roles: ["user"],
    mfa: false,
    createdAt: now,
    updatedAt: now,
    ...overrides,
  };
}

function newSession(userId: string, overrides: Partial<Session> = {}): Session {
  const now = Date.now();
  return {
    id: randomBytes(16).toString("base64url"),
    userId,
    secretHash: randomBytes(32),
    createdAt: now,
    lastSeenAt: now,
    idleExpiresAt: now + 60_000,
    absoluteExpiresAt: now + 3_600_000,
    userAgent: null,
    ipAddress: null,
    amr: ["pwd"],
    pending: false,
    ...overrides,
  };
}

describe("postgres store", { skip }, () => {
  const schemas: string[] = [];
  const opened: PostgresStores[] = [];
  let stores: PostgresStores;
  let schema: string;

  async function open(name: string): Promise<PostgresStores> {
    if (!schemas.includes(name)) schemas.push(name);
    const created = await createPostgresStores({ url: POSTGRES_URL, schema: name, poolSize: 4 });
    opened.push(created);
    return created;
  }

  async function migrationCount(target: PostgresStores): Promise<number> {
    const result = await target.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM latch_migrations");
    return result.rows[0]!.n;
  }

  before(async () => {
    schema = testSchemaName();
    stores = await open(schema);
  });

  after(async () => {
    for (const target of opened) await target.close();
    for (const name of schemas) await dropTestSchema(name);
  });

  it("does nothing when the migrations run a second time", async () => {
    assert.deepEqual(await migrate(stores.pool, { schema }), []);
    assert.equal(await migrationCount(stores), migrations.length);
  });

  it("migrates once when two processes start at the same time on a fresh schema", async () => {
    const shared = testSchemaName();
    const [first, second] = await Promise.all([open(shared), open(shared)]);
    assert.equal(await migrationCount(first), migrations.length);
    const user = newUser();
    await first.users.createUser(user);
    assert.deepEqual(await second.users.findUserById(user.id), user);
  });

  it("keeps the tables in the schema it was given", async () => {
    const result = await stores.pool.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'sessions' AND table_schema = $1", [
      schema,
    ]);
    assert.equal(result.rowCount, 1);
  });

  it("indexes no column a renewal changes, so a renewal is a HOT update (migration 6)", async () => {
    const indexes = await stores.pool.query<{ indexdef: string }>(
      "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'sessions'",
      [schema],
    );
    assert.ok(indexes.rowCount! >= 2, "the primary key and the per-user index are there");
    for (const { indexdef } of indexes.rows) assert.doesNotMatch(indexdef, /idle_expires_at|last_seen_at/);
    const user = newUser();
    await stores.users.createUser(user);
    const session = newSession(user.id);
    await stores.sessions.createSession(session);
    // pg_stat_xact_user_tables counts this transaction's own updates at once.
    const client = await stores.pool.connect();
    try {
      await client.query("BEGIN");
      for (let i = 1; i <= 5; i += 1) {
        const at = session.lastSeenAt + i * 1000;
        await client.query("UPDATE sessions SET last_seen_at = $2, idle_expires_at = $3 WHERE id = $1", [session.id, at, at + 60_000]);
      }
      const counted = await client.query<{ upd: string; hot: string }>(
        "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_xact_user_tables WHERE relid = 'sessions'::regclass",
      );
      assert.equal(Number(counted.rows[0]!.upd), 5);
      assert.equal(Number(counted.rows[0]!.hot), 5, "every renewal stayed on its page");
      await client.query("ROLLBACK");
    } finally {
      client.release();
    }
  });

  it("sweeps in TID-range slices: every expired session goes, none that lives, and a call at its limit goes on from there", async () => {
    const sliced = await open(testSchemaName());
    const sliceSchema = schemas[schemas.length - 1]!;
    const smallSlices = await createPostgresStores({ url: POSTGRES_URL, schema: sliceSchema, poolSize: 2, sweepSlicePages: 1 });
    opened.push(smallSlices);
    const now = Date.now();
    const user = newUser();
    await sliced.users.createUser(user);
    const live: string[] = [];
    for (let i = 0; i < 600; i += 1) {
      const session = newSession(user.id, i % 3 === 0 ? { idleExpiresAt: now - 1000 } : { idleExpiresAt: now + 3_600_000 });
      await sliced.sessions.createSession(session);
      if (i % 3 !== 0) live.push(session.id);
    }
    const pages = await sliced.pool.query<{ pages: string }>(
      "SELECT pg_relation_size('sessions') / current_setting('block_size')::bigint AS pages",
    );
    assert.ok(Number(pages.rows[0]!.pages) > 3, `the table spans several pages (${pages.rows[0]!.pages})`);
    let total = 0;
    const first = await smallSlices.sessions.deleteExpiredSessions(now, 50);
    assert.equal(first, 50, "a call stops at its limit");
    total += first;
    for (let round = 0; round < 20; round += 1) {
      const removed = await smallSlices.sessions.deleteExpiredSessions(now, 50);
      total += removed;
      if (removed < 50) break;
    }
    assert.equal(total, 200);
    const left = await sliced.pool.query<{ id: string }>("SELECT id FROM sessions ORDER BY id");
    assert.deepEqual(
      left.rows.map((r) => r.id),
      [...live].sort(),
    );
  });

  it("lets exactly one of several concurrent registrations of one username succeed", async () => {
    for (let round = 0; round < 5; round += 1) {
      const usernameKey = `racer_${randomBytes(6).toString("hex")}`;
      const attempts = Array.from({ length: 4 }, () => stores.users.createUser(newUser({ usernameKey })));
      const results = await Promise.allSettled(attempts);
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      for (const r of results) if (r.status === "rejected") assert.ok(isLatchError(r.reason, "conflict"), inspect(r.reason));
    }
  });

  it("lets only one of two crossing registrations succeed when each username is the other's email", async () => {
    for (let round = 0; round < 5; round += 1) {
      const a = `a_${randomBytes(6).toString("hex")}@example.com`;
      const b = `b_${randomBytes(6).toString("hex")}@example.com`;
      const results = await Promise.allSettled([
        stores.users.createUser(newUser({ usernameKey: a, emailKey: b })),
        stores.users.createUser(newUser({ usernameKey: b, emailKey: a })),
      ]);
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      const failure = results.find((r) => r.status === "rejected");
      assert.ok(failure && isLatchError(failure.reason, "conflict"), inspect(failure));
    }
  });

  it("allows a user whose username key equals their own email key", async () => {
    const user = newUser({ usernameKey: `same_${randomBytes(6).toString("hex")}` });
    user.emailKey = user.usernameKey;
    await stores.users.createUser(user);
    assert.deepEqual(await stores.users.findUserByLogin(user.usernameKey), user);
  });

  it("sweeps nothing while another connection holds the sweeper lock", async () => {
    const user = newUser();
    await stores.users.createUser(user);
    const now = Date.now();
    await stores.sessions.createSession(newSession(user.id, { idleExpiresAt: now + 1 }));
    const other = new pg.Client({ connectionString: POSTGRES_URL });
    await other.connect();
    try {
      await other.query("BEGIN");
      await other.query("SELECT pg_advisory_xact_lock($1, $2)", advisoryLockKeys("sweeper", schema));
      assert.equal(await stores.sessions.deleteExpiredSessions(now + 10, 100), 0);
      await other.query("COMMIT");
    } finally {
      await other.end();
    }
    assert.ok((await stores.sessions.deleteExpiredSessions(now + 10, 100)) >= 1);
  });

  it("returns the secret hash as a Buffer", async () => {
    const user = newUser();
    await stores.users.createUser(user);
    const session = newSession(user.id);
    await stores.sessions.createSession(session);
    const found = await stores.sessions.findSession(session.id, Date.now());
    assert.ok(Buffer.isBuffer(found?.session.secretHash));
    assert.ok(Buffer.isBuffer((await stores.sessions.listUserSessions(user.id, Date.now()))[0]?.secretHash));
  });

  it("never carries a row's values, such as the password hash, in an error", async () => {
    // A NOT NULL violation makes the server describe the whole failing row.
    const user = newUser({ username: null as unknown as string });
    const error = await stores.users.createUser(user).then(
      () => assert.fail("a user without a username was stored"),
      (e: unknown) => e,
    );
    assert.ok(isLatchError(error, "internal"), inspect(error));
    assert.ok(!inspect(error, { depth: 10 }).includes(user.passwordHash), inspect(error, { depth: 10 }));

    const taken = newUser();
    await stores.users.createUser(taken);
    const clash = await stores.users.createUser(newUser({ usernameKey: taken.usernameKey })).then(
      () => assert.fail("a taken username was stored"),
      (e: unknown) => e,
    );
    assert.ok(isLatchError(clash, "conflict"));
    assert.ok(!inspect(clash, { depth: 10 }).includes(taken.usernameKey));
  });

  it("refuses a session for a user that no longer exists with conflict", async () => {
    const user = newUser();
    await stores.users.createUser(user);
    await stores.users.deleteUser(user.id);
    await assert.rejects(stores.sessions.createSession(newSession(user.id)), (e) => isLatchError(e, "conflict"));
  });

  it("rejects with unavailable when the database cannot be reached", async () => {
    const url = new URL(POSTGRES_URL);
    url.port = "1";
    await assert.rejects(createPostgresStores({ url: url.toString() }), (e) => isLatchError(e, "unavailable"));
  });

  it("reports the database as down once closed, without rejecting, and closes twice", async () => {
    const target = await open(schema);
    assert.deepEqual(await target.health(), { database: "ok" });
    await target.close();
    await target.close();
    assert.deepEqual(await target.health(), { database: "down" });
    await assert.rejects(target.users.findUserById(randomUUID()), (e) => isLatchError(e, "unavailable"));
  });
});
