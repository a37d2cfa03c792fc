// Checks that seedBetterAuthSessions still writes what better-auth accepts
// (run it after upgrading better-auth): seeds N sessions (default 1,000) into
// a scratch SQLite file, starts bench/baselines/better-auth.mjs on it, and
// expects 200 from GET /protected for 20 random cookie lines and 401 for a
// tampered signature, a tampered token, and an unsigned token.
//
//   node bench/better-auth-check.mjs [count]
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BETTER_AUTH_COOKIE, seedBetterAuthSessions } from "./lib/better-auth-sessions.mjs";

const count = Number(process.argv[2] ?? 1000);
const dir = mkdtempSync(join(tmpdir(), "latch-better-auth-check-"));
const dbPath = join(dir, "better-auth.db");
const outFile = join(dir, "cookies.txt");

const port = await new Promise((resolve, reject) => {
  const probe = createServer().listen(0, "127.0.0.1", () => {
    const { port: p } = probe.address();
    probe.close(() => resolve(p));
  });
  probe.on("error", reject);
});

const started = performance.now();
const seeded = await seedBetterAuthSessions({ dbPath, count, outFile });
console.log(`seeded ${seeded.sessions} sessions for ${seeded.users} users in ${Math.round(performance.now() - started)} ms`);
const lines = readFileSync(outFile, "utf8")
  .split("\n")
  .filter((line) => line !== "");
if (lines.length !== count) throw new Error(`expected ${count} cookie lines, found ${lines.length}`);

const server = spawn(process.execPath, [fileURLToPath(new URL("baselines/better-auth.mjs", import.meta.url))], {
  env: { PATH: process.env.PATH, PORT: String(port), BENCH_BETTER_AUTH_DB: dbPath },
  stdio: ["ignore", "inherit", "inherit"],
});
const url = `http://127.0.0.1:${port}/protected`;
const status = async (value) => (await fetch(url, { headers: value === null ? {} : { cookie: `${BETTER_AUTH_COOKIE}=${value}` } })).status;

let failures = 0;
function expect(what, got, want) {
  const ok = got === want;
  if (!ok) failures += 1;
  console.log(`${ok ? "ok  " : "FAIL"} ${what}: ${got}${ok ? "" : ` (expected ${want})`}`);
}

try {
  for (let tries = 0; ; tries++) {
    try {
      await status(null);
      break;
    } catch (error) {
      if (tries > 100 || server.exitCode !== null) throw new Error("the better-auth server did not start", { cause: error });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  let granted = 0;
  for (let i = 0; i < 20; i++) {
    if ((await status(lines[Math.floor(Math.random() * lines.length)])) === 200) granted += 1;
  }
  expect("20 random seeded cookies answered 200", granted, 20);
  const sample = decodeURIComponent(lines[0]);
  const dot = sample.lastIndexOf(".");
  const token = sample.slice(0, dot);
  const signature = sample.slice(dot + 1);
  const flip = (s, at) => s.slice(0, at) + (s[at] === "A" ? "B" : "A") + s.slice(at + 1);
  expect("tampered signature", await status(encodeURIComponent(`${token}.${flip(signature, 5)}`)), 401);
  expect("tampered token, original signature", await status(encodeURIComponent(`${flip(token, 5)}.${signature}`)), 401);
  expect("unsigned token", await status(token), 401);
  expect("no cookie", await status(null), 401);
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => (server.exitCode !== null || server.signalCode !== null ? r() : server.once("exit", r)));
  rmSync(dir, { recursive: true, force: true });
}
if (failures > 0) {
  console.error(`${failures} check(s) failed`);
  process.exit(1);
}
