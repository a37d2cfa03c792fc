/**
 * Token verification per second by TOKEN_ALG (ES256, RS256, EdDSA), side by
 * side, in-process, one thread:
 *   - Latch's resource-server middleware: createValidator({ jwks }).validate()
 *     with the verified-token cache off (tokenCacheSize 0), so each call
 *     checks the signature, alg pinning, iss, exp and claim shapes; the JWKS is
 *     served in-process (fetched once, then cached), and no session store is
 *     consulted, so the figure is the verification alone;
 *   - the auth server's own TokenService.verify with its cache off;
 *   - and, for comparison, TokenService.issue (signing).
 * The machine is shared: the algorithms are interleaved (each round runs all
 * three, in a rotating order), and the report gives the median of the rounds
 * and the median per-round ratio to ES256, which is what to compare.
 * Run: node --import tsx bench/token-verify.ts   (pin it: taskset -c 0 node --import tsx bench/token-verify.ts)
 * Environment: BENCH_TOKEN_ROUNDS (9), BENCH_TOKEN_ROUND_MS (1000).
 */
import { randomFillSync } from "node:crypto";
import { createTokenService, TOKEN_ALGORITHMS } from "../src/core/tokens.js";
import type { TokenAlgorithm, TokenService } from "../src/core/tokens.js";
import { createValidator } from "../src/middleware/validate.js";
import type { RequestView } from "../src/middleware/validate.js";
import { createMemoryStores } from "../src/stores/memory/memory-store.js";
import { median } from "./lib/stats.js";

const ROUNDS = Number(process.env.BENCH_TOKEN_ROUNDS ?? 9);
const ROUND_MS = Number(process.env.BENCH_TOKEN_ROUND_MS ?? 1000);
const runtime = { clock: { now: () => Date.now() }, random: (b: Uint8Array) => void randomFillSync(b) };
const SID = "benchtok" + "A".repeat(22);

interface Subject {
  alg: TokenAlgorithm;
  middleware(): Promise<unknown>;
  server(): Promise<unknown>;
  issue(): Promise<unknown>;
}
type Kind = "middleware" | "server" | "issue";
const KINDS: Kind[] = ["middleware", "server", "issue"];

async function prepare(alg: TokenAlgorithm): Promise<Subject> {
  const make = (verifiedCacheSize: number): TokenService =>
    createTokenService({ keys: stores.keys, runtime, issuer: "latch", ttlSeconds: 900, algorithm: alg, verifiedCacheSize });
  const stores = createMemoryStores();
  const tokens = make(0);
  const { token } = await tokens.issue({ userId: "0190a1b2-0000-7000-8000-000000000001", sessionId: SID, roles: ["user"] });
  const validator = createValidator({
    jwks: {
      url: "http://latch.bench/.well-known/jwks.json",
      issuer: "latch",
      fetch: async () => new Response(JSON.stringify(await tokens.jwks()), { headers: { "content-type": "application/json" } }),
    },
    tokenCacheSize: 0,
  });
  const request: RequestView = { method: "GET", headers: { authorization: `Bearer ${token}` } };
  const first = await validator.validate(request);
  if (!first.ok) throw new Error(`${alg}: the middleware refused the benchmark token: ${first.failure.message}`);
  if (!(await tokens.verify(token)).valid) throw new Error(`${alg}: the server refused the benchmark token`);
  return {
    alg,
    middleware: async () => {
      const result = await validator.validate(request);
      if (!result.ok) throw new Error("refused");
    },
    server: async () => {
      if (!(await tokens.verify(token)).valid) throw new Error("refused");
    },
    // Signing, for comparison: what POST /token pays per token (RSA signs slowly).
    issue: () => tokens.issue({ userId: "0190a1b2-0000-7000-8000-000000000001", sessionId: SID, roles: ["user"] }),
  };
}

async function perSecond(fn: () => Promise<unknown>, ms: number): Promise<number> {
  let n = 0;
  const started = performance.now();
  const deadline = started + ms;
  while (performance.now() < deadline) {
    // Batches of 20 keep the clock reads out of the figure.
    for (let i = 0; i < 20; i += 1) await fn();
    n += 20;
  }
  return n / ((performance.now() - started) / 1000);
}

const subjects = await Promise.all(TOKEN_ALGORITHMS.map((alg) => prepare(alg)));
for (const s of subjects) for (const kind of KINDS) await perSecond(s[kind], 300);

const rates: Record<Kind, Record<string, number[]>> = { middleware: {}, server: {}, issue: {} };
for (let round = 0; round < ROUNDS; round += 1) {
  for (let i = 0; i < subjects.length; i += 1) {
    const s = subjects[(round + i) % subjects.length]!;
    for (const kind of KINDS) {
      const list = rates[kind][s.alg] ?? [];
      rates[kind][s.alg] = list;
      list.push(await perSecond(s[kind], ROUND_MS / 3));
    }
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString("en-US").padStart(8);
console.log(
  `token verifications per second, one thread, cache off; ${ROUNDS} interleaved rounds of ${Math.round(ROUND_MS / 3)} ms each (median; ratio = median per-round ratio to ES256)`,
);
console.log(`Node ${process.version}`);
const TITLES: Record<Kind, string> = {
  middleware: "Latch's middleware, createValidator({ jwks, tokenCacheSize: 0 }).validate():",
  server: "The auth server's TokenService.verify (verifiedCacheSize 0):",
  issue: "For comparison, signing: TokenService.issue (what POST /token pays per token):",
};
for (const kind of KINDS) {
  console.log(`\n${TITLES[kind]}`);
  const base = rates[kind].ES256!;
  for (const alg of TOKEN_ALGORITHMS) {
    const values = rates[kind][alg]!;
    const ratios = values.map((v, i) => v / base[i]!);
    const m = median(values);
    console.log(
      `  ${alg.padEnd(6)} ${fmt(m)}/s  (${(1e6 / m).toFixed(1).padStart(6)} µs each)  x${median(ratios).toFixed(2)} of ES256  [min ${fmt(Math.min(...values)).trim()}, max ${fmt(Math.max(...values)).trim()}]`,
    );
  }
}
