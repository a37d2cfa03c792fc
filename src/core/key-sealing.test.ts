import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { isLatchError } from "./errors.js";
import { isSealed, openPrivateKey, sealPrivateKey } from "./key-sealing.js";
import { createFakeClock } from "./runtime.js";
import { createTokenService } from "./tokens.js";

const random = (bytes: Uint8Array): void => void randomFillSync(bytes);
const secret = "a-long-random-key-encryption-secret-0123456789";

describe("signing keys at rest", () => {
  it("seal a private key so the stored text holds none of it, and open it with the same secret and kid", () => {
    const jwk = JSON.stringify({ kty: "OKP", crv: "Ed25519", d: "cHJpdmF0ZS1rZXktbWF0ZXJpYWw", x: "cHVibGlj" });
    const sealed = sealPrivateKey(jwk, "kid-1", secret, random);
    assert.ok(isSealed(sealed));
    assert.ok(!sealed.includes("cHJpdmF0ZS1rZXktbWF0ZXJpYWw"));
    assert.equal(openPrivateKey(sealed, "kid-1", secret), jwk);
    assert.throws(
      () => openPrivateKey(sealed, "kid-1", `${secret}x`),
      (e) => isLatchError(e, "unavailable"),
    );
    assert.throws(() => openPrivateKey(sealed, "kid-2", secret), "bound to its kid");
    assert.throws(
      () => openPrivateKey(sealed, "kid-1", null),
      (e) => isLatchError(e, "unavailable"),
    );
    assert.equal(openPrivateKey(jwk, "kid-1", null), jwk, "plain keys pass through");
  });

  it("let a token service with TOKEN_KEY_SECRET sign and verify while the store holds only sealed keys", async () => {
    const stores = createMemoryStores();
    const clock = createFakeClock(Date.now());
    const tokens = createTokenService({
      keys: stores.keys,
      runtime: { clock, random },
      issuer: "latch",
      ttlSeconds: 900,
      keySecret: secret,
    });
    const issued = await tokens.issue({ userId: "u1", sessionId: "s".repeat(30), roles: ["user"] });
    const verified = await tokens.verify(issued.token);
    assert.ok(verified.valid);
    assert.equal(verified.claims.sub, "u1");
    const [stored] = await stores.keys.listSigningKeys();
    assert.ok(isSealed(stored!.privateJwk));
    assert.ok(!stored!.privateJwk.includes('"d"'));
  });
});
