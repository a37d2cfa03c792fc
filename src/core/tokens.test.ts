import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from "jose";
import type { JWK } from "jose";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { createFakeClock } from "./runtime.js";
import type { FakeClock, Runtime } from "./runtime.js";
import type { SigningKeyStore } from "./store.js";
import {
  MAX_TOKEN_TTL_SECONDS,
  TOKEN_ALGORITHMS,
  cacheVerifiedTokens,
  createTokenService,
  generateSigningKey,
  jwkAlgorithm,
  parseBearerHeader,
} from "./tokens.js";
import type { TokenAlgorithm, TokenService, TokenVerification } from "./tokens.js";

const SID = "abcdefgh" + "A".repeat(22);
const subject = { userId: "0190a1b2-0000-7000-8000-000000000001", sessionId: SID, roles: ["user"] };

function setup(options: { keys?: SigningKeyStore; clock?: FakeClock; ttlSeconds?: number; algorithm?: TokenAlgorithm } = {}): {
  tokens: TokenService;
  keys: SigningKeyStore;
  clock: FakeClock;
  runtime: Runtime;
} {
  const clock = options.clock ?? createFakeClock(Date.UTC(2026, 0, 1));
  const keys = options.keys ?? createMemoryStores().keys;
  const runtime: Runtime = { clock, random: (bytes) => void randomFillSync(bytes) };
  return {
    tokens: createTokenService({
      keys,
      runtime,
      issuer: "latch-test",
      ttlSeconds: options.ttlSeconds ?? 900,
      algorithm: options.algorithm,
    }),
    keys,
    clock,
    runtime,
  };
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("access tokens", () => {
  it("are ES256 JWTs by default, with kid and typ, carrying iss, sub, sid, roles, amr, iat and exp", async () => {
    const { tokens, clock } = setup({ ttlSeconds: 600 });
    const issued = await tokens.issue({ ...subject, roles: ["user", "admin"] });
    const header = decodeProtectedHeader(issued.token);
    assert.deepEqual(header, { alg: "ES256", kid: issued.kid, typ: "JWT" });
    const claims = decodeJwt(issued.token);
    assert.deepEqual(Object.keys(claims).sort(), ["amr", "exp", "iat", "iss", "roles", "sid", "sub"]);
    assert.deepEqual(claims.amr, ["pwd"]);
    assert.equal(claims.iss, "latch-test");
    assert.equal(claims.sub, subject.userId);
    assert.equal(claims.sid, SID);
    assert.deepEqual(claims.roles, ["user", "admin"]);
    assert.equal(claims.iat, Math.floor(clock.now() / 1000));
    assert.equal(claims.exp! - claims.iat!, 600);
    assert.equal(issued.expiresIn, 600);
  });

  it("verify with the service that issued them, and with a second service over the same store", async () => {
    const a = setup();
    const b = setup({ keys: a.keys, clock: a.clock });
    const issued = await a.tokens.issue(subject);
    for (const service of [a.tokens, b.tokens]) {
      const result = await service.verify(issued.token);
      assert.equal(result.valid, true);
      if (result.valid) assert.equal(result.claims.sid, SID);
    }
  });

  it("never outlive the session's expiry given as notAfter", async () => {
    const { tokens, clock } = setup();
    const issued = await tokens.issue({ ...subject, notAfter: clock.now() + 120_000 });
    assert.equal(issued.expiresIn, 120);
  });

  it("refuse lifetimes over 15 minutes at creation", () => {
    assert.throws(() => setup({ ttlSeconds: MAX_TOKEN_TTL_SECONDS + 1 }), RangeError);
    assert.throws(() => setup({ ttlSeconds: 0 }), RangeError);
  });

  it("are refused once expired, by the injected clock", async () => {
    const { tokens, clock } = setup({ ttlSeconds: 60 });
    const { token } = await tokens.issue(subject);
    clock.advance(59_000);
    assert.equal((await tokens.verify(token)).valid, true);
    clock.advance(1_000);
    assert.deepEqual(await tokens.verify(token), { valid: false, reason: "expired", message: "The access token has expired." });
  });

  it("are refused when tampered with", async () => {
    const { tokens } = setup();
    const { token } = await tokens.issue(subject);
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const forgedPayload = b64({ ...decodeJwt(token), roles: ["user", "admin"] });
    const flipped = signature.slice(0, 10) + (signature[10] === "A" ? "B" : "A") + signature.slice(11);
    assert.equal((await tokens.verify(`${header}.${forgedPayload}.${signature}`)).valid, false);
    assert.equal((await tokens.verify(`${header}.${payload}.${flipped}`)).valid, false);
    const result = await tokens.verify(`${header}.${forgedPayload}.${signature}`);
    assert.equal(!result.valid && result.reason, "signature");
  });

  it('refuse alg "none" and HMAC tokens keyed with the public key', async () => {
    const { tokens } = setup();
    const { token, kid } = await tokens.issue(subject);
    const claims = decodeJwt(token);
    const none = `${b64({ alg: "none", typ: "JWT", kid })}.${b64(claims)}.`;
    const result = await tokens.verify(none);
    assert.equal(!result.valid && result.reason, "algorithm");
    const jwk = (await tokens.jwks()).keys[0]!;
    const hmac = await new SignJWT(claims).setProtectedHeader({ alg: "HS256", kid, typ: "JWT" }).sign(Buffer.from(JSON.stringify(jwk)));
    const confused = await tokens.verify(hmac);
    assert.equal(!confused.valid && confused.reason, "algorithm");
  });

  it("refuse another issuer, an unknown kid, and malformed input", async () => {
    const { tokens, keys, clock } = setup();
    const { token } = await tokens.issue(subject);
    const other = createTokenService({
      keys,
      runtime: { clock, random: (b) => void randomFillSync(b) },
      issuer: "someone-else",
      ttlSeconds: 900,
    });
    const wrongIssuer = await other.verify(token);
    assert.equal(!wrongIssuer.valid && wrongIssuer.reason, "issuer");

    const stranger = setup({ clock });
    const foreign = await stranger.tokens.issue(subject);
    const unknown = await tokens.verify(foreign.token);
    assert.equal(!unknown.valid && unknown.reason, "unknown_key");

    for (const bad of ["", "abc", "a.b.c", "a.b", `${token}.x`, "x".repeat(5000)]) {
      assert.equal((await tokens.verify(bad)).valid, false, bad.slice(0, 20));
    }
  });

  it("refuse a well-signed token whose claims are not Latch's shape", async () => {
    const { tokens, keys } = setup();
    await tokens.issue(subject);
    const [active] = await keys.listSigningKeys();
    const key = await importJWK(JSON.parse(active!.privateJwk) as JWK, "ES256");
    const now = Math.floor(Date.UTC(2026, 0, 1) / 1000);
    const noSid = await new SignJWT({ roles: ["user"] })
      .setProtectedHeader({ alg: "ES256", kid: active!.kid, typ: "JWT" })
      .setIssuer("latch-test")
      .setSubject("u")
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(key);
    const result = await tokens.verify(noSid);
    assert.equal(!result.valid && result.reason, "claims");
  });
});

describe("the verified-token cache", () => {
  it("checks a token's signature once, still refuses it at exp, and never caches a refusal", async () => {
    const { tokens, clock } = setup({ ttlSeconds: 60 });
    const { token } = await tokens.issue(subject);
    let checks = 0;
    const counted = (value: string): Promise<TokenVerification> => ((checks += 1), tokens.verify(value));
    const verify = cacheVerifiedTokens(counted, { size: 2, clock });
    for (let i = 0; i < 5; i += 1) assert.equal((await verify(token)).valid, true);
    assert.equal(checks, 1);
    for (let i = 0; i < 3; i += 1) assert.equal((await verify("bad.token.here")).valid, false);
    assert.equal(checks, 4, "refusals are checked every time");
    clock.advance(60_000);
    const expired = await verify(token);
    assert.equal(!expired.valid && expired.reason, "expired");
  });

  it("is bounded, forgetting the oldest token first", async () => {
    const { tokens, clock } = setup();
    // Different sessions: Ed25519 is deterministic, so equal claims would make equal tokens.
    const issued = await Promise.all(["1", "2", "3"].map((n) => tokens.issue({ ...subject, sessionId: SID.slice(0, -1) + n })));
    let checks = 0;
    const verify = cacheVerifiedTokens((value) => ((checks += 1), tokens.verify(value)), { size: 2, clock });
    for (const { token } of issued) await verify(token);
    await verify(issued[2]!.token);
    await verify(issued[1]!.token);
    assert.equal(checks, 3);
    await verify(issued[0]!.token);
    assert.equal(checks, 4);
  });
});

describe("signing keys", () => {
  it("are created on first use, once, even when requests race", async () => {
    const { tokens, keys } = setup();
    assert.equal((await keys.listSigningKeys()).length, 0);
    const issued = await Promise.all(Array.from({ length: 10 }, () => tokens.issue(subject)));
    assert.equal(new Set(issued.map((i) => i.kid)).size, 1);
    assert.equal((await keys.listSigningKeys()).length, 1);
  });

  it("converge on one active key when two processes create the first one at once", async () => {
    const a = setup();
    const b = setup({ keys: a.keys, clock: a.clock });
    const [fromA, fromB] = await Promise.all([a.tokens.issue(subject), b.tokens.issue(subject)]);
    const listed = await a.keys.listSigningKeys();
    assert.equal(listed.filter((k) => k.retiredAt === null).length, 1);
    // Both tokens verify everywhere: the losing key was retired, not lost.
    for (const service of [a.tokens, b.tokens]) {
      assert.equal((await service.verify(fromA.token)).valid, true);
      assert.equal((await service.verify(fromB.token)).valid, true);
    }
    const active = listed.find((k) => k.retiredAt === null)!.kid;
    assert.equal((await a.tokens.issue(subject)).kid, active);
    assert.equal((await b.tokens.issue(subject)).kid, active);
  });

  it("after rotate: old tokens verify until they expire, new tokens carry the new kid, both keys are published", async () => {
    const { tokens, clock } = setup({ ttlSeconds: 300 });
    const old = await tokens.issue(subject);
    const rotated = await tokens.rotate();
    assert.notEqual(rotated.kid, old.kid);
    assert.equal(rotated.status, "active");
    const fresh = await tokens.issue(subject);
    assert.equal(fresh.kid, rotated.kid);
    assert.equal(decodeProtectedHeader(fresh.token).kid, rotated.kid);
    assert.equal((await tokens.verify(old.token)).valid, true);
    assert.deepEqual((await tokens.jwks()).keys.map((k) => k.kid).sort(), [old.kid, rotated.kid].sort());
    clock.advance(299_000);
    assert.equal((await tokens.verify(old.token)).valid, true);
    clock.advance(1_000);
    const expired = await tokens.verify(old.token);
    assert.equal(!expired.valid && expired.reason, "expired");
  });

  it("leave the JWKS once the longest token lifetime (plus the key refresh interval) has passed since retirement", async () => {
    const { tokens, keys, clock } = setup();
    const old = await tokens.issue(subject);
    await tokens.rotate();
    const jwk = (await tokens.jwks()).keys;
    assert.equal(jwk.length, 2);
    for (const key of jwk) {
      assert.deepEqual(Object.keys(key).sort(), ["alg", "crv", "kid", "kty", "use", "x", "y"], "public halves only");
      assert.equal(key.alg, "ES256");
    }
    clock.advance(MAX_TOKEN_TTL_SECONDS * 1000);
    assert.equal((await tokens.jwks()).keys.length, 2, "still needed: a process may have signed with it after retirement");
    clock.advance(tokens.retentionMs - MAX_TOKEN_TTL_SECONDS * 1000);
    assert.deepEqual(
      (await tokens.jwks()).keys.map((k) => k.kid),
      [(await tokens.list()).find((k) => k.status === "active")!.kid],
    );
    assert.equal((await tokens.list()).find((k) => k.kid === old.kid)!.status, "expired");
    assert.equal(await tokens.prune(), 1);
    assert.equal((await keys.listSigningKeys()).length, 1);
  });

  it("rotated by another process are picked up: unknown kids at once, signing within the refresh interval", async () => {
    const a = setup();
    const b = setup({ keys: a.keys, clock: a.clock });
    const before = await b.tokens.issue(subject);
    const rotated = await a.tokens.rotate();
    assert.equal((await b.tokens.issue(subject)).kid, before.kid, "B signs with its cached key for now");
    a.clock.advance(10_000);
    assert.equal((await b.tokens.issue(subject)).kid, rotated.kid, "and with the new one after the refresh interval");

    const c = setup({ keys: a.keys, clock: a.clock });
    await c.tokens.issue(subject);
    await a.tokens.rotate();
    const fromA = await a.tokens.issue(subject);
    assert.equal((await c.tokens.verify(fromA.token)).valid, true, "C reloads on the unknown kid at once");
    assert.equal((await c.tokens.issue(subject)).kid, fromA.kid, "and that reload also moves its signing key");
  });

  it("reload at most once per cooldown for tokens naming unknown kids", async () => {
    const { keys, clock, runtime } = setup();
    let reads = 0;
    const counting: SigningKeyStore = { ...keys, listSigningKeys: () => ((reads += 1), keys.listSigningKeys()) };
    const tokens = createTokenService({ keys: counting, runtime, issuer: "latch-test", ttlSeconds: 900 });
    const { token } = await tokens.issue(subject);
    const [h, p, s] = token.split(".") as [string, string, string];
    const readsBefore = reads;
    for (let i = 0; i < 50; i += 1) {
      const forged = `${b64({ ...decodeProtectedHeader(`${h}.${p}.${s}`), kid: `unknown-${i}` })}.${p}.${s}`;
      assert.equal((await tokens.verify(forged)).valid, false);
    }
    assert.equal(reads - readsBefore, 1);
    clock.advance(1_000);
    await tokens.verify(`${b64({ alg: "EdDSA", kid: "another", typ: "JWT" })}.${p}.${s}`);
    assert.equal(reads - readsBefore, 2);
  });
});

describe("parseBearerHeader", () => {
  it("takes the token from a Bearer header and nothing else", () => {
    assert.equal(parseBearerHeader("Bearer abc.def.ghi"), "abc.def.ghi");
    assert.equal(parseBearerHeader("bearer abc.def.ghi"), "abc.def.ghi");
    for (const bad of [undefined, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "Bearer a,b", `Bearer ${"a".repeat(5000)}`]) {
      assert.equal(parseBearerHeader(bad), null, String(bad));
    }
  });
});

describe("token algorithms (TOKEN_ALG)", () => {
  for (const algorithm of TOKEN_ALGORITHMS) {
    it(`${algorithm}: signs with a key of that algorithm, published with kid, alg and use "sig", and verifies`, async () => {
      const { tokens } = setup({ algorithm });
      const issued = await tokens.issue(subject);
      assert.equal(decodeProtectedHeader(issued.token).alg, algorithm);
      const [jwk] = (await tokens.jwks()).keys;
      assert.equal(jwk!.kid, issued.kid);
      assert.equal(jwk!.alg, algorithm);
      assert.equal(jwk!.use, "sig");
      assert.equal(jwkAlgorithm(jwk!), algorithm);
      for (const secret of ["d", "p", "q", "dp", "dq", "qi"]) assert.equal(secret in jwk!, false, `no private ${secret}`);
      assert.equal((await tokens.verify(issued.token)).valid, true);
    });
  }

  it("makes RSA keys of 2048 bits and refuses shorter ones or keys whose material contradicts their alg", async () => {
    const key = await generateSigningKey({ runtime: setup().runtime, alg: "RS256" });
    const jwk = JSON.parse(key.publicJwk) as JWK;
    assert.equal(Buffer.from(jwk.n!, "base64url").length * 8, 2048);
    assert.equal(jwkAlgorithm(jwk), "RS256");
    assert.equal(jwkAlgorithm({ ...jwk, n: Buffer.from(jwk.n!, "base64url").subarray(0, 128).toString("base64url") }), null, "1024-bit");
    assert.equal(jwkAlgorithm({ ...jwk, alg: "ES256" }), null);
    assert.equal(jwkAlgorithm({ kty: "EC", crv: "P-384", x: "x", y: "y" }), null);
    assert.equal(jwkAlgorithm({ kty: "oct", k: "c2VjcmV0" }), null);
  });

  it("pins each key to its own algorithm: a header naming another one is refused, whatever the signature", async () => {
    const { tokens, keys } = setup({ algorithm: "RS256" });
    const issued = await tokens.issue(subject);
    const [active] = await keys.listSigningKeys();
    const privateJwk = JSON.parse(active!.privateJwk) as JWK;
    const payload = decodeJwt(issued.token);
    // The same RSA key under PS256 (a valid signature with a different algorithm) and an HMAC keyed with the public key.
    const ps256 = await new SignJWT(payload)
      .setProtectedHeader({ alg: "PS256", kid: active!.kid, typ: "JWT" })
      .sign(await importJWK({ ...privateJwk, alg: "PS256" }, "PS256"));
    const hs256 = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS256", kid: active!.kid, typ: "JWT" })
      .sign(new TextEncoder().encode(active!.publicJwk));
    for (const token of [ps256, hs256]) {
      const result = await tokens.verify(token);
      assert.equal(!result.valid && result.reason, "algorithm", decodeProtectedHeader(token).alg);
    }
    // A header that names another accepted algorithm for this RSA key: refused before the signature is looked at.
    const [, p, s] = issued.token.split(".");
    const relabelled = `${b64({ alg: "ES256", kid: active!.kid, typ: "JWT" })}.${p}.${s}`;
    assert.equal((await tokens.verify(relabelled)).valid, false);
  });

  it("switches to a key of the configured algorithm at the next start, keeping the old key published until its tokens expire", async () => {
    const first = setup({ algorithm: "EdDSA" });
    const old = await first.tokens.issue(subject);
    // The restart: a new service over the same store with TOKEN_ALG unset.
    const restarted = createTokenService({ keys: first.keys, runtime: first.runtime, issuer: "latch-test", ttlSeconds: 900 });
    assert.equal((await restarted.verify(old.token)).valid, true);
    assert.equal((await restarted.prepare()).alg, "ES256", "prepare() at start switches");
    const fresh = await restarted.issue(subject);
    assert.equal(decodeProtectedHeader(fresh.token).alg, "ES256");
    assert.notEqual(fresh.kid, old.kid);
    const published = (await restarted.jwks()).keys.map((k) => `${k.kid}:${k.alg}`).sort();
    assert.deepEqual(published, [`${old.kid}:EdDSA`, `${fresh.kid}:ES256`].sort());
    assert.equal((await restarted.verify(old.token)).valid, true);
    assert.deepEqual((await restarted.list()).map((k) => `${k.alg}:${k.status}`).sort(), ["ES256:active", "EdDSA:published"].sort());
    // A process still running with the old setting follows the active key rather than switching back.
    first.clock.advance(11_000);
    assert.equal(decodeProtectedHeader((await first.tokens.issue(subject)).token).alg, "ES256");
    assert.equal((await first.keys.listSigningKeys()).length, 2);
    // A second start with the same setting adds nothing.
    const again = createTokenService({ keys: first.keys, runtime: first.runtime, issuer: "latch-test", ttlSeconds: 900 });
    assert.equal((await again.issue(subject)).kid, fresh.kid);
    first.clock.advance(first.tokens.retentionMs);
    assert.deepEqual(
      (await restarted.jwks()).keys.map((k) => k.kid),
      [fresh.kid],
    );
  });

  it("rotates to a key of the configured algorithm", async () => {
    const { tokens, keys, runtime } = setup({ algorithm: "ES256" });
    await tokens.issue(subject);
    const rsa = createTokenService({ keys, runtime, issuer: "latch-test", ttlSeconds: 900, algorithm: "RS256" });
    const rotated = await rsa.rotate();
    assert.equal(rotated.alg, "RS256");
    assert.equal(decodeProtectedHeader((await tokens.issue(subject)).token).alg, "ES256", "cached until the refresh");
    assert.deepEqual((await rsa.list()).map((k) => `${k.alg}:${k.status}`).sort(), ["ES256:published", "RS256:active"]);
  });

  it("keeps every algorithm's private key sealed with TOKEN_KEY_SECRET", async () => {
    for (const algorithm of TOKEN_ALGORITHMS) {
      const { keys, runtime } = setup();
      const tokens = createTokenService({ keys, runtime, issuer: "latch-test", ttlSeconds: 900, algorithm, keySecret: "k".repeat(32) });
      const issued = await tokens.issue(subject);
      const [stored] = await keys.listSigningKeys();
      assert.match(stored!.privateJwk, /^sealed:v1:/, algorithm);
      assert.equal((await tokens.verify(issued.token)).valid, true, algorithm);
    }
  });

  it("verifies nothing with a stored key whose record and JWK disagree", async () => {
    const { tokens, keys } = setup({ algorithm: "ES256" });
    const issued = await tokens.issue(subject);
    const [active] = await keys.listSigningKeys();
    const tampered = createTokenService({
      keys: { ...keys, listSigningKeys: async () => [{ ...active!, alg: "EdDSA" }] },
      runtime: setup().runtime,
      issuer: "latch-test",
      ttlSeconds: 900,
      algorithm: "EdDSA",
    });
    assert.equal((await tampered.verify(issued.token)).valid, false);
  });
});
