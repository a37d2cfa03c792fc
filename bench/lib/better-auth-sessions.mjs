// better-auth for the bench: the options its baseline server runs with
// (bench/baselines/better-auth.mjs), its own schema migration, and
// seedBetterAuthSessions(), which fills its SQLite tables with many live
// sessions in seconds instead of signing in once per session.
//
// Plain JavaScript (with better-auth-sessions.d.mts for the harness's types)
// because the baseline server runs under plain `node`, without tsx.
// A devDependency-only baseline: nothing in src/ imports this.
//
// Why the sessions are written by hand rather than through better-auth:
// better-auth has no bulk or offline session API; internalAdapter.createSession
// runs inside an endpoint context, one INSERT (and its hooks) per session,
// and signing in costs a scrypt hash each. The rows below are exactly the
// ones createSession writes on SQLite (checked against a real sign-in: dates
// as ISO strings, booleans as 0/1, 32-character alphanumeric IDs and tokens),
// and the cookie value is exactly what better-call's setSignedCookie sets.
import { createHmac, randomBytes } from "node:crypto";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import Database from "better-sqlite3";
import { getMigrations } from "better-auth/db/migration";

/** The cookie better-auth reads the session token from (no __Secure- prefix over plain http). */
export const BETTER_AUTH_COOKIE = "better-auth.session_token";

/** A fixed bench secret (44 characters of base64) so cookies written by the seeder verify in the server. */
export const BETTER_AUTH_BENCH_SECRET = "kE3u9b1Zq7VwR2yXcT5nL8mA0dF4hJ6sPgQiUoWzYtM=";

/** The account the server signs in with on POST /login (created at start when missing). */
export const BETTER_AUTH_LOGIN = { email: "bench.user@example.com", password: "bench password, not a common one 7391" };

/** better-auth's defaults, spelled out because the seeder must match them. */
const EXPIRES_IN_S = 60 * 60 * 24 * 7; // session.expiresIn: 7 days
const UPDATE_AGE_S = 60 * 60 * 24; // session.updateAge: refreshed once a day

/**
 * The options of the bench's better-auth instance: SQLite through
 * better-sqlite3 (as better-auth's SQLite page shows it, no pragmas),
 * email and password on, the cookie cache off (its default, stated so the
 * bench is sure every getSession reads the database), the rate limiter off
 * so the bench's own sign-ins are never refused (Latch runs with its
 * throttles raised to 1,000,000 for the same reason), telemetry off.
 *
 * @param {{ db: import("better-sqlite3").Database, secret?: string, baseURL?: string }} o
 */
export function betterAuthOptions({ db, secret = BETTER_AUTH_BENCH_SECRET, baseURL = "http://127.0.0.1" }) {
  return {
    database: db,
    secret,
    baseURL,
    emailAndPassword: { enabled: true },
    session: { expiresIn: EXPIRES_IN_S, updateAge: UPDATE_AGE_S, cookieCache: { enabled: false } },
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    logger: { level: "error" },
  };
}

/**
 * Creates or updates better-auth's tables in `db` with its own migration
 * API (what `npx auth migrate` runs).
 *
 * @param {import("better-sqlite3").Database} db
 */
export async function migrateBetterAuth(db) {
  const { runMigrations } = await getMigrations(betterAuthOptions({ db }));
  await runMigrations();
}

const ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** A 32-character alphanumeric ID like better-auth's generateId(32), from a pool of random bytes. */
function idMaker() {
  let pool = Buffer.alloc(0);
  let at = 0;
  return () => {
    let id = "";
    while (id.length < 32) {
      if (at === pool.length) {
        pool = randomBytes(65536);
        at = 0;
      }
      const byte = pool[at++];
      if (byte < 248) id += ALPHANUMERIC[byte % 62]; // 248 = 4 × 62: no bias
    }
    return id;
  };
}

/**
 * The value of the better-auth.session_token cookie for `token`, as
 * better-call's signCookieValue makes it: encodeURIComponent(token + "." +
 * standard base64, padded, of HMAC-SHA256(key = the secret's UTF-8 bytes,
 * message = token)). The signature is always 44 characters ending in "=",
 * which getSignedCookie checks before verifying.
 *
 * @param {string} token
 * @param {string} [secret]
 */
export function betterAuthCookieValue(token, secret = BETTER_AUTH_BENCH_SECRET) {
  const signature = createHmac("sha256", secret).update(token).digest("base64");
  return encodeURIComponent(`${token}.${signature}`);
}

/**
 * Fills better-auth's SQLite tables (migrating them first) with `count` live
 * sessions over `users` users (default: two sessions per user), all in one
 * transaction, and writes one cookie value per line to `outFile`: send it
 * as `Cookie: better-auth.session_token=<line>`.
 *
 * Sessions look like ones made over the past half renewal interval:
 * updatedAt is spread uniformly over the last updateAge / 2 (12 hours), and
 * expiresAt = updatedAt + expiresIn, so none falls due for getSession's
 * daily refresh during a bench run, as with real traffic.
 *
 * Returns the number of sessions and users written.
 *
 * @param {{ dbPath: string, count: number, outFile: string, users?: number, secret?: string, now?: number }} o
 */
export async function seedBetterAuthSessions({ dbPath, count, outFile, users, secret = BETTER_AUTH_BENCH_SECRET, now = Date.now() }) {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`count must be a positive integer, got ${count}`);
  const userCount = users ?? Math.max(1, Math.ceil(count / 2));
  if (!Number.isInteger(userCount) || userCount < 1 || userCount > count)
    throw new RangeError(`users must be an integer from 1 to count, got ${users}`);
  const db = new Database(dbPath);
  const out = openSync(outFile, "w");
  try {
    await migrateBetterAuth(db);
    const newId = idMaker();
    const insertUser = db.prepare(
      'INSERT INTO "user" ("id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt") VALUES (?, ?, ?, 0, NULL, ?, ?)',
    );
    const insertSession = db.prepare(
      'INSERT INTO "session" ("id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const created = new Date(now - UPDATE_AGE_S * 1000).toISOString();
    const userIds = [];
    const batch = [];
    const flush = () => {
      if (batch.length === 0) return;
      writeSync(out, batch.join(""));
      batch.length = 0;
    };
    db.transaction(() => {
      // A prefix unique to this call, so seeding the same file twice adds users rather than colliding on email.
      const run = newId().slice(0, 8);
      for (let u = 0; u < userCount; u++) {
        const id = newId();
        insertUser.run(id, `Bench User ${u}`, `bench.many.${run}.${u}@example.com`, created, created);
        userIds.push(id);
      }
      for (let s = 0; s < count; s++) {
        const updated = now - Math.floor(Math.random() * (UPDATE_AGE_S / 2) * 1000);
        const token = newId();
        insertSession.run(
          newId(),
          new Date(updated + EXPIRES_IN_S * 1000).toISOString(),
          token,
          new Date(updated).toISOString(),
          new Date(updated).toISOString(),
          "127.0.0.1",
          "latch-bench",
          userIds[s % userCount],
        );
        batch.push(`${betterAuthCookieValue(token, secret)}\n`);
        if (batch.length === 10_000) flush();
      }
    })();
    flush();
  } catch (error) {
    ftruncateSync(out, 0); // the transaction rolled back: leave no cookies for sessions that do not exist
    throw error;
  } finally {
    closeSync(out);
    db.close();
  }
  return { sessions: count, users: userCount };
}
