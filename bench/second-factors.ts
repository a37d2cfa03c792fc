/**
 * `node --import tsx bench/second-factors.ts`: what second factors cost.
 *
 * 1. Micro-benchmarks: one TOTP verification (unseal the secret, ±1 step of
 *    HMAC-SHA-1 through otpauth) and one passkey assertion verification
 *    (@simplewebauthn/server: client data, authenticator data, an ES256
 *    signature), each timed over many iterations after a warm-up.
 * 2. Sign-ins per second, in-process (`app.inject`, SQLite behind the
 *    session cache, the real argon2id hasher): a password sign-in (POST
 *    /login) against a password + TOTP sign-in (POST /login, then POST
 *    /login/mfa with a fresh code), in interleaved rounds so that a busy
 *    shared machine slows both alike; the ratio is the figure to read.
 *
 * Environment: BENCH_SIGNIN_SECONDS (5 per round), BENCH_SIGNIN_ROUNDS (3), BENCH_SIGNIN_CONCURRENCY (8).
 */
import { createHash, generateKeyPairSync, randomFillSync, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isoCBOR } from "@simplewebauthn/server/helpers";
import { Secret, TOTP } from "otpauth";
import { loadConfig } from "../src/core/config.js";
import { sealText, openText } from "../src/core/key-sealing.js";
import { relyingPartyOf, verifyAssertion } from "../src/core/passkeys.js";
import { createFakeClock } from "../src/core/runtime.js";
import type { Passkey } from "../src/core/store.js";
import { generateTotpSecret, matchTotp } from "../src/core/totp.js";
import { buildServer } from "../src/server/app.js";
import { openStores } from "../src/stores/open-stores.js";

const random = (bytes: Uint8Array): void => void randomFillSync(bytes);
const b64url = (bytes: Uint8Array | Buffer): string => Buffer.from(bytes).toString("base64url");

function time(label: string, iterations: number, work: () => unknown): number {
  for (let i = 0; i < Math.min(1000, iterations / 10); i += 1) work();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i += 1) work();
  const perOp = Number(process.hrtime.bigint() - start) / iterations / 1000;
  console.log(`${label}: ${perOp.toFixed(1)} µs per operation (${iterations} iterations)`);
  return perOp;
}

async function timeAsync(label: string, iterations: number, work: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(200, iterations / 10); i += 1) await work();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i += 1) await work();
  const perOp = Number(process.hrtime.bigint() - start) / iterations / 1000;
  console.log(`${label}: ${perOp.toFixed(1)} µs per operation (${iterations} iterations)`);
  return perOp;
}

/** A software authenticator's assertion for `challenge`: what a browser's toJSON() gives, signed with ES256. */
function softwareAssertion(origin: string, rpId: string) {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" });
  const cose = new Map<number, number | Uint8Array>([
    [1, 2],
    [3, -7],
    [-1, 1],
    [-2, Buffer.from(jwk.x!, "base64url")],
    [-3, Buffer.from(jwk.y!, "base64url")],
  ]);
  const credentialId = b64url(Buffer.from("bench-credential-0001"));
  const passkey: Passkey = {
    id: "bench",
    userId: "u",
    credentialId,
    publicKey: isoCBOR.encode(cose),
    counter: 0,
    transports: ["internal"],
    name: "bench",
    createdAt: 0,
    lastUsedAt: null,
  };
  const challenge = b64url(Buffer.alloc(32, 7));
  const authenticatorData = Buffer.concat([createHash("sha256").update(rpId).digest(), Buffer.from([0x05]), Buffer.alloc(4)]);
  const clientDataJSON = Buffer.from(JSON.stringify({ type: "webauthn.get", challenge, origin, crossOrigin: false }));
  const signature = sign("sha256", Buffer.concat([authenticatorData, createHash("sha256").update(clientDataJSON).digest()]), privateKey);
  const response = {
    id: credentialId,
    rawId: credentialId,
    type: "public-key",
    clientExtensionResults: {},
    response: {
      authenticatorData: b64url(authenticatorData),
      clientDataJSON: b64url(clientDataJSON),
      signature: b64url(signature),
      userHandle: b64url(Buffer.from("u")),
    },
  };
  return { passkey, challenge, response };
}

async function micro(): Promise<{ totpUs: number; passkeyUs: number }> {
  const key = "bench key for sealing TOTP secrets at rest";
  const secret = generateTotpSecret(random);
  const sealed = sealText(secret, "user-1", key, random, "latch-totp-secrets");
  const variable = { name: "MFA_KEY_SECRET", what: "TOTP secret" };
  const now = Date.now();
  const code = TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: now });
  // A code of the previous step: the window is searched, as for a slow typist.
  const late = TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: now - 30_000 });
  if (matchTotp(openText(sealed, "user-1", key, "latch-totp-secrets", variable), code, now) === null)
    throw new Error("the TOTP code did not verify");
  const totpUs = time("TOTP verification (unseal + match, current step)", 50_000, () =>
    matchTotp(openText(sealed, "user-1", key, "latch-totp-secrets", variable), code, now),
  );
  time("TOTP verification (unseal + match, previous step)", 50_000, () =>
    matchTotp(openText(sealed, "user-1", key, "latch-totp-secrets", variable), late, now),
  );
  time("TOTP wrong code (unseal + all three steps)", 50_000, () =>
    matchTotp(openText(sealed, "user-1", key, "latch-totp-secrets", variable), "000000", now),
  );

  const rp = relyingPartyOf("http://localhost:3000");
  const { passkey, challenge, response } = softwareAssertion(rp.origin, rp.id);
  if ((await verifyAssertion(rp, response, challenge, passkey)) === null) throw new Error("the assertion did not verify");
  const passkeyUs = await timeAsync("passkey assertion verification (@simplewebauthn/server, ES256)", 5_000, () =>
    verifyAssertion(rp, response, challenge, passkey),
  );
  return { totpUs, passkeyUs };
}

async function signIns(): Promise<void> {
  const seconds = Number(process.env.BENCH_SIGNIN_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_SIGNIN_ROUNDS ?? 3);
  const concurrency = Number(process.env.BENCH_SIGNIN_CONCURRENCY ?? 8);
  const dir = mkdtempSync(join(tmpdir(), "latch-bench-mfa-"));
  const clock = createFakeClock(Date.now());
  const config = loadConfig({
    LOG_LEVEL: "silent",
    DATABASE_URL: `sqlite:${join(dir, "bench.db")}`,
    THROTTLE_ADDRESS_FAILURES: "1000000",
    THROTTLE_REGISTRATIONS: "1000000",
    MFA_KEY_SECRET: "bench key for sealing TOTP secrets at rest",
  });
  const stores = await openStores(config, { clock });
  const { app, context } = await buildServer({ config, stores, runtime: { clock, random }, logger: false });
  const password = "a perfectly fine passphrase";
  const plain: string[] = [];
  const totp: Array<{ username: string; secret: string; usedStep: number }> = [];
  // Enough accounts that the clock moves at most one step while a sign-in is in flight.
  for (let i = 0; i < concurrency * 12; i += 1) {
    const p = `bench.plain.${i}`;
    await app.inject({ method: "POST", url: "/register", payload: { username: p, password } });
    plain.push(p);
    const t = `bench.totp.${i}`;
    const reg = await app.inject({ method: "POST", url: "/register", payload: { username: t, password } });
    const cookie = /sid=([^;]+)/.exec(String(reg.headers["set-cookie"]))![1]!;
    const headers = { "x-csrf-token": reg.json().csrfToken };
    const { secret } = (await app.inject({ method: "POST", url: "/mfa/totp", cookies: { sid: cookie }, headers })).json();
    const confirm = await app.inject({
      method: "POST",
      url: "/mfa/totp/confirm",
      cookies: { sid: cookie },
      headers,
      payload: { code: TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: clock.now() }) },
    });
    if (confirm.statusCode !== 200) throw new Error(`TOTP setup failed: ${confirm.body}`);
    totp.push({ username: t, secret, usedStep: Math.floor(clock.now() / 30_000) });
  }

  let nextPlain = 0;
  async function plainSignIn(): Promise<void> {
    const username = plain[nextPlain++ % plain.length]!;
    const response = await app.inject({ method: "POST", url: "/login", payload: { username, password } });
    if (response.statusCode !== 200 || response.json().user === undefined) throw new Error(`sign-in failed: ${response.body}`);
  }
  let nextTotp = 0;
  async function totpSignIn(): Promise<void> {
    const account = totp[nextTotp++ % totp.length]!;
    // Each account's code works once per 30 s step: when this one has had its
    // turn in this step, move the (fake) clock to the next step.
    if (account.usedStep >= Math.floor(clock.now() / 30_000)) clock.advance(30_000);
    account.usedStep = Math.floor(clock.now() / 30_000);
    const first = await app.inject({ method: "POST", url: "/login", payload: { username: account.username, password } });
    if (first.json().mfaRequired !== true) throw new Error(`no code step: ${first.body}`);
    const cookie = /sid=([^;]+)/.exec(String(first.headers["set-cookie"]))![1]!;
    // The code of the step this sign-in was given (the app's code when the person read it).
    const code = TOTP.generate({ secret: Secret.fromBase32(account.secret), timestamp: account.usedStep * 30_000 });
    const second = await app.inject({ method: "POST", url: "/login/mfa", cookies: { sid: cookie }, payload: { code } });
    if (second.statusCode !== 200) throw new Error(`second step failed: ${second.body}`);
  }

  async function measure(work: () => Promise<void>): Promise<number> {
    let done = 0;
    const end = Date.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < end) {
          await work();
          done += 1;
        }
      }),
    );
    return done / seconds;
  }

  const results: Array<{ plain: number; totp: number }> = [];
  await measure(plainSignIn); // warm-up
  for (let round = 1; round <= rounds; round += 1) {
    const a = await measure(plainSignIn);
    const b = await measure(totpSignIn);
    results.push({ plain: a, totp: b });
    console.log(`round ${round}: password ${a.toFixed(1)}/s, password + TOTP ${b.toFixed(1)}/s, ratio ${(b / a).toFixed(3)}`);
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const ratios = results.map((r) => r.totp / r.plain);
  console.log(
    `sign-ins per second (median of ${rounds}, ${concurrency} concurrent, hash concurrency ${config.hashConcurrency}): password ${median(results.map((r) => r.plain)).toFixed(1)}, ` +
      `password + TOTP ${median(results.map((r) => r.totp)).toFixed(1)}; ratio median ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`,
  );
  await app.close();
  await context.stores.close();
  rmSync(dir, { recursive: true, force: true });
}

const { totpUs, passkeyUs } = await micro();
console.log(`micro: TOTP ${totpUs.toFixed(1)} µs, passkey assertion ${passkeyUs.toFixed(1)} µs`);
await signIns();
