/**
 * Fills a Latch store with many live sessions, fast, through Latch's own
 * library (the store's `createUser` and `createSessionManager().create`),
 * never by signing in: 1,000,000 argon2id sign-ins would take hours and
 * measure the hash, not the session path.
 *
 * - Users: one per `sessionsPerUser` sessions, all with the same precomputed
 *   password hash (nobody signs in with them).
 * - Sessions: created "in the past", with last-seen times spread uniformly
 *   over one renewal interval, so the renewals of a steady state are due at
 *   a steady rate from the first second, as in a server that has run for a
 *   while.
 * - The cookie values go to `outFile`, one per line, in creation order (the
 *   Zipf rank is the line number).
 *
 * Run as a child process (its own event loop and memory):
 *   node --import tsx bench/lib/seed-sessions.ts <DATABASE_URL> <REDIS_URL|-> <count> <outFile> <renewIntervalMs>
 */
import { createWriteStream } from "node:fs";
import { randomBytes, randomFillSync } from "node:crypto";
import { loadConfig } from "../../src/core/config.js";
import { createSessionManager } from "../../src/core/sessions.js";
import type { UserRecord } from "../../src/core/store.js";
import { openStores } from "../../src/stores/open-stores.js";

const SESSIONS_PER_USER = 2;
// A real argon2id PHC string (of a random password nobody knows): the stores
// only check its shape.
const PASSWORD_HASH = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hzZWVkc2FsdA$K9c2dN0sYq1u2b3G4m5o6p7r8s9t0u1v2w3x4y5z6A7";

export async function seedSessions(options: {
  databaseUrl: string;
  redisUrl: string | null;
  count: number;
  outFile: string;
  renewIntervalMs: number;
  idleTimeoutMs: number;
}): Promise<void> {
  const env: Record<string, string> = { DATABASE_URL: options.databaseUrl, SESSION_IDLE_TIMEOUT: String(options.idleTimeoutMs / 1000) };
  if (options.redisUrl !== null) env.REDIS_URL = options.redisUrl;
  const config = loadConfig(env);
  let now = Date.now();
  const clock = { now: () => now };
  const stores = await openStores(config, { clock });
  const runtime = { clock, random: (bytes: Uint8Array) => void randomFillSync(bytes) };
  const manager = createSessionManager({ store: stores.sessions, runtime, policy: config.session });
  const out = createWriteStream(options.outFile);
  const started = Date.now();
  const tag = randomBytes(4).toString("hex");
  const userCount = Math.ceil(options.count / SESSIONS_PER_USER);
  // Several writes in flight for the network stores; SQLite is synchronous anyway.
  const parallel = config.database.kind === "sqlite" && options.redisUrl === null ? 1 : 32;
  const users: string[] = [];
  for (let i = 0; i < userCount; i += parallel) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(userCount, i + parallel); j += 1) {
      const id = `00000000-0000-7000-8000-${j.toString(16).padStart(12, "0")}`;
      const username = `many.${tag}.${j}`;
      const user: UserRecord = {
        id,
        username,
        usernameKey: username,
        email: null,
        emailKey: null,
        emailVerified: false,
        roles: ["user"],
        mfa: false,
        passwordHash: PASSWORD_HASH,
        createdAt: started - 3_600_000,
        updatedAt: started - 3_600_000,
      };
      users.push(id);
      batch.push(stores.users.createUser(user));
    }
    await Promise.all(batch);
  }
  const lines: string[] = [];
  for (let i = 0; i < options.count; i += parallel) {
    const batch: Promise<string>[] = [];
    for (let j = i; j < Math.min(options.count, i + parallel); j += 1) {
      // Last seen somewhere in the last renewal interval, signed in a little before.
      now = started - Math.floor(Math.random() * options.renewIntervalMs);
      batch.push(manager.create(users[j % userCount]!, { userAgent: "bench", ipAddress: "127.0.0.0" }).then((created) => created.token));
    }
    lines.push(...(await Promise.all(batch)));
    if (lines.length >= 50_000 || i + parallel >= options.count) {
      out.write(`${lines.join("\n")}\n`);
      lines.length = 0;
    }
  }
  now = Date.now();
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  await stores.close();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [databaseUrl, redisUrl, count, outFile, renewIntervalMs, idleTimeoutMs] = process.argv.slice(2);
  const begun = Date.now();
  await seedSessions({
    databaseUrl: databaseUrl!,
    redisUrl: redisUrl === "-" ? null : redisUrl!,
    count: Number(count),
    outFile: outFile!,
    renewIntervalMs: Number(renewIntervalMs),
    idleTimeoutMs: Number(idleTimeoutMs ?? 1_800_000),
  });
  process.stdout.write(`BENCH_JSON ${JSON.stringify({ seconds: (Date.now() - begun) / 1000 })}\n`);
}
