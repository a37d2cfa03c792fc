/**
 * Store-level figures, in-process (no HTTP): for each store, sessions created
 * per second and session validation latency (findSession + the secret check,
 * i.e. SessionManager.validate) as p50/p99 in microseconds. Also PostgreSQL
 * validation with 1,000,000 session rows in the table.
 *
 * Run: node --import tsx bench/stores.ts [--rows=1000000]
 * Needs PostgreSQL at 127.0.0.1:5432 (trust) and Redis at 127.0.0.1:6379.
 */
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { createSessionManager } from "../src/core/sessions.js";
import type { Stores } from "../src/core/store.js";
import { createSessionCache } from "../src/stores/cached/session-cache.js";
import { createMemoryStores } from "../src/stores/memory/index.js";
import { createPostgresStores } from "../src/stores/postgres/index.js";
import { connectRedis, createRedisRevocationChannel, createRedisStores } from "../src/stores/redis/index.js";
import { openSqliteStores } from "../src/stores/sqlite/index.js";
import { createTieredStores } from "../src/stores/tiered/index.js";

const rowsArg = process.argv.find((a) => a.startsWith("--rows="));
const bigRows = rowsArg ? Number(rowsArg.split("=")[1]) : 1_000_000;
const runtime = { clock: { now: () => Date.now() }, random: (b: Uint8Array) => void randomFillSync(b) };
const policy = { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 };
const dir = mkdtempSync(join(tmpdir(), "latch-stores-bench-"));
const admin = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres", max: 1 });
const databases: string[] = [];

async function freshPostgres(): Promise<string> {
  const name = `latch_bench_${Date.now().toString(36)}_${databases.length}`;
  await admin.query(`CREATE DATABASE ${name}`);
  databases.push(name);
  return `postgres://postgres@127.0.0.1:5432/${name}`;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Row {
  store: string;
  createsPerSecond: number;
  p50: number;
  p99: number;
}

async function measure(name: string, stores: Stores, options: { creates?: number; validations?: number } = {}): Promise<Row> {
  const sessions = createSessionManager({ store: stores.sessions, runtime, policy });
  const userId = `00000000-0000-7000-8000-${Date.now().toString(16).padStart(12, "0").slice(-12)}`;
  const now = Date.now();
  await stores.users.createUser({
    id: userId,
    username: `bench${now}`,
    usernameKey: `bench${now}`,
    email: null,
    emailKey: null,
    emailVerified: false,
    passwordHash: "x",
    roles: ["user"],
    mfa: false,
    createdAt: now,
    updatedAt: now,
  });
  const creates = options.creates ?? 2000;
  const tokens: string[] = [];
  const started = process.hrtime.bigint();
  for (let i = 0; i < creates; i += 1) tokens.push((await sessions.create(userId, { userAgent: null, ipAddress: null })).token);
  const createsPerSecond = creates / (Number(process.hrtime.bigint() - started) / 1e9);
  const validations = options.validations ?? 20_000;
  const samples: number[] = [];
  for (let i = 0; i < validations; i += 1) {
    const token = tokens[i % tokens.length]!;
    const t0 = process.hrtime.bigint();
    const valid = await sessions.validate(token);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (valid === null) throw new Error(`${name}: a valid session was refused`);
  }
  const measured = samples.slice(validations / 5).sort((a, b) => a - b);
  const row = { store: name, createsPerSecond, p50: pct(measured, 50), p99: pct(measured, 99) };
  console.log(
    `${name.padEnd(34)} ${createsPerSecond.toFixed(0).padStart(8)} creates/s   validate p50 ${row.p50.toFixed(1).padStart(7)} µs   p99 ${row.p99.toFixed(1).padStart(8)} µs`,
  );
  return row;
}

const rows: Row[] = [];
try {
  rows.push(await measure("memory", createMemoryStores()));
  const sqlite = openSqliteStores({ path: join(dir, "bench.db") });
  rows.push(await measure("sqlite", sqlite));
  await sqlite.close();

  const postgres = await createPostgresStores({ url: await freshPostgres() });
  rows.push(await measure("postgres", postgres));
  await postgres.close();

  const redisStores = await createRedisStores({
    url: "redis://127.0.0.1:6379",
    database: createMemoryStores(),
    prefix: `bench:${Date.now()}:`,
  });
  rows.push(await measure("redis (sessions in Redis)", redisStores));
  await redisStores.close();

  const tieredUrl = await freshPostgres();
  const tiered = createTieredStores({
    database: await createPostgresStores({ url: tieredUrl }),
    redis: connectRedis("redis://127.0.0.1:6379"),
    prefix: `bench:${Date.now()}:`,
    logger: { warn: () => {}, info: () => {} },
  });
  await new Promise((r) => setTimeout(r, 500));
  rows.push(await measure("tiered (PostgreSQL + Redis)", tiered));

  const redis = connectRedis("redis://127.0.0.1:6379");
  const channel = createRedisRevocationChannel({ redis, prefix: "bench:" });
  const cache = createSessionCache(tiered, channel, { clock: runtime.clock });
  for (let i = 0; i < 50 && !channel.up; i += 1) await new Promise((r) => setTimeout(r, 100));
  rows.push(await measure("tiered + in-process cache", cache.stores));
  await cache.stores.close();
  redis.disconnect();

  // PostgreSQL with a large sessions table: the validation is an index probe.
  const bigUrl = await freshPostgres();
  const big = await createPostgresStores({ url: bigUrl });
  const filler = new pg.Pool({ connectionString: bigUrl, max: 1 });
  const t0 = Date.now();
  await filler
    .query(`INSERT INTO users (id, username, username_key, email, email_key, password_hash, roles, created_at, updated_at)
                      VALUES ('filler', 'filler', 'filler', NULL, NULL, 'x', '{user}', 0, 0)`)
    .catch(() => undefined);
  await filler.query(`INSERT INTO logins (login_key, user_id) VALUES ('filler', 'filler')`).catch(() => undefined);
  await filler.query(
    `INSERT INTO sessions (id, user_id, secret_hash, created_at, last_seen_at, idle_expires_at, absolute_expires_at, user_agent, ip_address)
     SELECT 'f' || lpad(g::text, 29, '0'), 'filler', sha256(g::text::bytea), $1, $1, $2, $2, NULL, NULL FROM generate_series(1, $3) g`,
    [Date.now(), Date.now() + 86_400_000, bigRows],
  );
  await filler.query("ANALYZE sessions");
  await filler.end();
  console.log(`(filled ${bigRows.toLocaleString()} session rows in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  rows.push(await measure(`postgres, ${bigRows.toLocaleString()} rows`, big, { creates: 500 }));
  await big.close();
} finally {
  for (const name of databases) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(rows));
