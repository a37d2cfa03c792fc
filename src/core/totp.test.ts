import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import { Secret, TOTP } from "otpauth";
import { openText, sealText } from "./key-sealing.js";
import { generateRecoveryCodes, generateTotpSecret, hashRecoveryCode, isRecoveryCodeShape, matchTotp, totpStep, totpUri } from "./totp.js";

const random = (bytes: Uint8Array): void => void randomFillSync(bytes);
const codeAt = (secret: string, at: number): string => TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: at });

describe("TOTP", () => {
  it("makes 160-bit base32 secrets and an otpauth URI apps read", () => {
    const secret = generateTotpSecret(random);
    assert.match(secret, /^[A-Z2-7]{32}$/);
    assert.notEqual(generateTotpSecret(random), secret);
    const uri = new URL(totpUri(secret, "alice"));
    assert.equal(uri.protocol, "otpauth:");
    assert.equal(decodeURIComponent(uri.pathname), "/Latch:alice");
    assert.equal(uri.searchParams.get("secret"), secret);
    assert.equal(uri.searchParams.get("issuer"), "Latch");
    assert.equal(uri.searchParams.get("algorithm"), "SHA1");
    assert.equal(uri.searchParams.get("digits"), "6");
    assert.equal(uri.searchParams.get("period"), "30");
  });

  it("matches the RFC 6238 SHA-1 test vector", () => {
    // RFC 6238 appendix B: the ASCII secret "12345678901234567890", T = 59 s, 8 digits 94287082: the last 6 digits.
    const secret = Secret.fromLatin1("12345678901234567890").base32;
    assert.equal(matchTotp(secret, "287082", 59_000), 1);
  });

  it("answers the code's step within one step either side, and null beyond or for malformed input", () => {
    const secret = generateTotpSecret(random);
    const now = Date.UTC(2026, 0, 1, 12, 0, 15);
    const step = totpStep(now);
    assert.equal(matchTotp(secret, codeAt(secret, now), now), step);
    assert.equal(matchTotp(secret, codeAt(secret, now - 30_000), now), step - 1);
    assert.equal(matchTotp(secret, codeAt(secret, now + 30_000), now), step + 1);
    assert.equal(matchTotp(secret, codeAt(secret, now - 60_000), now), null);
    assert.equal(matchTotp(secret, codeAt(secret, now + 60_000), now), null);
    for (const bad of ["", "12345", "1234567", "12a456", " 123456"]) assert.equal(matchTotp(secret, bad, now), null, bad);
  });
});

describe("recovery codes", () => {
  it("are ten distinct xxxx-xxxx-xxxx-xxxx codes without look-alike letters", () => {
    const codes = generateRecoveryCodes(random);
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const code of codes) {
      assert.match(code, /^[a-hjkmnp-z2-9]{4}(-[a-hjkmnp-z2-9]{4}){3}$/);
      assert.ok(isRecoveryCodeShape(code));
    }
  });

  it("hash the same whatever the case, dashes or spaces, and differently per user", () => {
    const [code] = generateRecoveryCodes(random);
    const hash = hashRecoveryCode("u1", code!);
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(hashRecoveryCode("u1", code!.replace(/-/g, " ").toUpperCase()), hash);
    assert.notEqual(hashRecoveryCode("u2", code!), hash);
    assert.equal(isRecoveryCodeShape("not a code"), false);
  });
});

describe("sealing TOTP secrets", () => {
  const key = "a sealing key of more than thirty-two characters";
  it("round-trips, binds the user id, and keeps purposes apart", () => {
    const sealed = sealText("JBSWY3DPEHPK3PXP", "user-1", key, random, "latch-totp-secrets");
    assert.ok(sealed.startsWith("sealed:v1:"));
    assert.ok(!sealed.includes("JBSWY3DPEHPK3PXP"));
    const variable = { name: "MFA_KEY_SECRET", what: "TOTP secret" };
    assert.equal(openText(sealed, "user-1", key, "latch-totp-secrets", variable), "JBSWY3DPEHPK3PXP");
    assert.throws(() => openText(sealed, "user-2", key, "latch-totp-secrets", variable), /could not be unsealed: MFA_KEY_SECRET/);
    assert.throws(() => openText(sealed, "user-1", key, "latch-signing-keys", variable), /could not be unsealed/);
    assert.throws(() => openText(sealed, "user-1", null, "latch-totp-secrets", variable), /MFA_KEY_SECRET is not set/);
    assert.equal(
      openText("JBSWY3DPEHPK3PXP", "user-1", key, "latch-totp-secrets", variable),
      "JBSWY3DPEHPK3PXP",
      "unsealed values pass through",
    );
  });
});
