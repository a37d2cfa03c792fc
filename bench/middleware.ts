/**
 * Resource-server middleware figures:
 *   - validations per second of the shared validate() (what requireAuth runs),
 *     in-process against a SQLite store, for a session cookie and for a
 *     Bearer JWT (with the session check against the store, and JWKS-only);
 *   - revocation delay to the resource server: sign out on a real Latch
 *     process, poll the example resource server (its own process, same
 *     SQLite file) until it answers 401; p50/p99 over 50 runs, for the
 *     cookie and for a token of the session.
 * Run: node --import tsx bench/middleware.ts   (pin it: taskset -c 0 node --import tsx bench/middleware.ts)
 */
import { spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAccounts } from "../src/core/accounts.js";
import { createPasswordHasher } from "../src/core/passwords.js";
import { createSessionManager } from "../src/core/sessions.js";
import { createTokenService } from "../src/core/tokens.js";
import { createValidator } from "../src/middleware/validate.js";
import type { RequestView, Validator } from "../src/middleware/validate.js";
import { openSqliteStores } from "../src/stores/sqlite/index.js";
import { Client, ROOT, freePort, startLatch } from "../test/support/latch-process.js";

const RUNS = 50;
const policy = { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 };
const runtime = { clock: { now: () => Date.now() }, random: (b: Uint8Array) => void randomFillSync(b) };
const dir = mkdtempSync(join(tmpdir(), "latch-bench-mw-"));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Validations per second: best of three 2-second rounds after a warm-up (best, as noise only slows). */
async function rate(validator: Validator, request: RequestView): Promise<number> {
  const check = await validator.validate(request);
  if (!check.ok) throw new Error(`benchmark request refused: ${check.failure.code}`);
  const round = async (ms: number): Promise<number> => {
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      for (let i = 0; i < 100; i += 1) await validator.validate(request);
      n += 100;
    }
    return n / (ms / 1000);
  };
  await round(500);
  return Math.max(await round(2000), await round(2000), await round(2000));
}

async function throughput(): Promise<void> {
  const stores = openSqliteStores({ path: join(dir, "throughput.db") });
  const accounts = createAccounts({ users: stores.users, hasher: createPasswordHasher(), runtime });
  const sessions = createSessionManager({ store: stores.sessions, runtime, policy });
  const tokens = createTokenService({ keys: stores.keys, runtime, issuer: "latch", ttlSeconds: 900 });
  const user = await accounts.register({ username: "bench.user", password: "benchmark password here" });
  // Fill the table so the lookup is a real index probe, not a one-row scan.
  for (let i = 0; i < 10_000; i += 1) await sessions.create(user.id, { userAgent: "bench", ipAddress: null });
  const { token: cookie, session } = await sessions.create(user.id, { userAgent: "bench", ipAddress: null });
  const { token: jwt } = await tokens.issue({ userId: user.id, sessionId: session.id, roles: user.roles });
  // The JWKS is served in-process: the figure is the validator's, not a network's.
  const jwks = {
    url: "http://latch.bench/.well-known/jwks.json",
    issuer: "latch",
    fetch: async () => new Response(JSON.stringify(await tokens.jwks()), { headers: { "content-type": "application/json" } }),
  };
  const cookieRequest: RequestView = { method: "GET", headers: { cookie: `sid=${cookie}` } };
  const bearerRequest: RequestView = { method: "GET", headers: { authorization: `Bearer ${jwt}` } };
  // tokenCacheSize 0: every validation checks the signature (ES256, the default TOKEN_ALG), as for a token seen for the first time.
  const rows: Array<[string, number]> = [
    ["session cookie", await rate(createValidator({ sessions: stores.sessions, policy }), cookieRequest)],
    [
      "Bearer JWT, signature checked + session in store",
      await rate(createValidator({ sessions: stores.sessions, policy, jwks, tokenCacheSize: 0 }), bearerRequest),
    ],
    [
      "Bearer JWT, repeated token (cached) + session in store",
      await rate(createValidator({ sessions: stores.sessions, policy, jwks }), bearerRequest),
    ],
    ["Bearer JWT, signature checked, JWKS only", await rate(createValidator({ jwks, tokenCacheSize: 0 }), bearerRequest)],
  ];
  const fmt = (n: number): string => Math.round(n).toLocaleString("en-US").padStart(9);
  console.log("validate() per second, one thread, SQLite (10,001 sessions in the table):");
  for (const [name, perSecond] of rows) console.log(`  ${name.padEnd(56)}${fmt(perSecond)}/s  (${(1e6 / perSecond).toFixed(1)} µs each)`);
  await stores.close();
}

async function startResourceServer(env: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "examples/resource-server/server.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`resource server exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error("resource server did not start");
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/** Milliseconds from sign-out acknowledged by Latch to the first 401 from the resource server. */
async function revocationDelay(): Promise<void> {
  const env = { DATABASE_URL: `sqlite:${join(dir, "revocation.db")}` };
  const latch = await startLatch(env);
  const resource = await startResourceServer({ ...env, LATCH_URL: latch.url });
  try {
    const setup = new Client(latch.url);
    await setup.request("POST", "/register", { username: "revoke.bench", password: "benchmark password here" });
    const results: Record<"cookie" | "bearer", number[]> = { cookie: [], bearer: [] };
    const polls: number[] = [];
    for (let run = 0; run < RUNS; run += 1) {
      const client = new Client(latch.url);
      const login = await client.request("POST", "/login", { username: "revoke.bench", password: "benchmark password here" });
      if (login.status !== 200) throw new Error(`login ${login.status}`);
      const token = (await client.request("POST", "/token")).body.token as string;
      const cookieHeaders = { cookie: `sid=${client.cookie}` };
      const bearerHeaders = { authorization: `Bearer ${token}` };
      for (const headers of [cookieHeaders, bearerHeaders]) {
        if ((await fetch(`${resource.url}/dashboard`, { headers })).status !== 200) throw new Error("not accepted before sign-out");
      }
      await client.request("POST", "/logout");
      const signedOut = performance.now();
      // Both pollers start together, each timed from the same acknowledgement.
      await Promise.all(
        (
          [
            ["cookie", cookieHeaders],
            ["bearer", bearerHeaders],
          ] as const
        ).map(async ([kind, headers]) => {
          let n = 0;
          for (;;) {
            n += 1;
            const response = await fetch(`${resource.url}/dashboard`, { headers });
            await response.arrayBuffer();
            if (response.status === 401) break;
            if (performance.now() - signedOut > 5000) throw new Error(`${kind} still accepted 5 s after sign-out`);
          }
          results[kind].push(performance.now() - signedOut);
          polls.push(n);
        }),
      );
    }
    console.log(`revocation delay to the resource server (sign-out acknowledged → first 401), ${RUNS} runs:`);
    for (const kind of ["cookie", "bearer"] as const) {
      const sorted = results[kind].sort((a, b) => a - b);
      console.log(
        `  ${kind.padEnd(6)}  p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms, max ${sorted[sorted.length - 1]!.toFixed(2)} ms`,
      );
    }
    console.log(`  requests until refused: ${Math.max(...polls) === 1 ? "always the first" : `up to ${Math.max(...polls)}`}`);
  } finally {
    await resource.stop();
    await latch.stop();
  }
}

try {
  await throughput();
  await revocationDelay();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
