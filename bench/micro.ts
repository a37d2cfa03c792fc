/**
 * Micro-benchmarks for the foundation's figures, in-process, no HTTP:
 *   - microseconds per session validation on SQLite (SessionManager.validate,
 *     which parses the cookie, reads the row joined with its user, and checks
 *     the secret's hash in constant time);
 *   - milliseconds per argon2id hash (m=19456 KiB, t=2, p=1) on one thread;
 *   - timing of sign-in for an unknown user vs a wrong password.
 * Run: node --import tsx bench/micro.ts   (pin it: taskset -c 0 node --import tsx bench/micro.ts)
 */
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccounts } from "../src/core/accounts.js";
import { createPasswordHasher } from "../src/core/passwords.js";
import { createSessionManager } from "../src/core/sessions.js";
import { openSqliteStores } from "../src/stores/sqlite/index.js";

const runtime = { clock: { now: () => Date.now() }, random: (b: Uint8Array) => void randomFillSync(b) };
const dir = mkdtempSync(join(tmpdir(), "latch-micro-"));
const stores = openSqliteStores({ path: join(dir, "micro.db") });
const hasher = createPasswordHasher({ concurrency: 1 });
const accounts = createAccounts({ users: stores.users, hasher, runtime });
const sessions = createSessionManager({
  store: stores.sessions,
  runtime,
  policy: { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 },
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const user = await accounts.register({ username: "micro.user", password: "micro benchmark password" });
// Fill the table so the lookup is a real index probe, not a one-row scan.
for (let i = 0; i < 10_000; i += 1) await sessions.create(user.id, { userAgent: "bench", ipAddress: null });
const { token } = await sessions.create(user.id, { userAgent: "bench", ipAddress: null });

for (let i = 0; i < 20_000; i += 1) await sessions.validate(token);
const n = 200_000;
const samples: number[] = [];
const started = process.hrtime.bigint();
for (let i = 0; i < n; i += 1) {
  const t0 = process.hrtime.bigint();
  await sessions.validate(token);
  if (i % 10 === 0) samples.push(Number(process.hrtime.bigint() - t0) / 1000);
}
const totalUs = Number(process.hrtime.bigint() - started) / 1000;
samples.sort((a, b) => a - b);
console.log(
  `SQLite session validation: ${(totalUs / n).toFixed(2)} µs mean, p50 ${percentile(samples, 50).toFixed(2)} µs, p99 ${percentile(samples, 99).toFixed(2)} µs (${n} validations, 10,001 sessions in the table)`,
);

const hashes: number[] = [];
for (let i = 0; i < 30; i += 1) {
  const t0 = process.hrtime.bigint();
  await hasher.hash(`password number ${i}`);
  hashes.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
hashes.sort((a, b) => a - b);
console.log(
  `argon2id hash (m=19456, t=2, p=1): ${percentile(hashes, 50).toFixed(1)} ms median, ${hashes[0]!.toFixed(1)}–${hashes[hashes.length - 1]!.toFixed(1)} ms`,
);

// Unknown user vs wrong password, interleaved so drift hits both equally.
const unknown: number[] = [];
const wrong: number[] = [];
for (let i = 0; i < 40; i += 1) {
  for (const [login, into] of [
    ["nobody.here", unknown],
    ["micro.user", wrong],
  ] as const) {
    const t0 = process.hrtime.bigint();
    const found = await accounts.findByLogin(login);
    await accounts.checkCredentials(found, "not the password at all");
    into.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
unknown.sort((a, b) => a - b);
wrong.sort((a, b) => a - b);
const u = percentile(unknown, 50);
const w = percentile(wrong, 50);
console.log(
  `sign-in check, median: unknown user ${u.toFixed(2)} ms, wrong password ${w.toFixed(2)} ms (difference ${((Math.abs(u - w) / w) * 100).toFixed(1)}%)`,
);

await stores.close();
rmSync(dir, { recursive: true, force: true });
