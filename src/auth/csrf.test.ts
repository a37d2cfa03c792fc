import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createOriginPolicy, isOwnOrigin, isUnsafeMethod, originRefusal } from "./csrf.js";

describe("the Origin and Sec-Fetch-Site rule", () => {
  const development = createOriginPolicy({
    trustedOrigins: ["https://app.example.com"],
    publicUrl: "http://localhost:3000",
    production: false,
  });
  const production = createOriginPolicy({
    trustedOrigins: ["https://app.example.com"],
    publicUrl: "https://auth.example.com/latch",
    production: true,
  });

  it("counts PUBLIC_URL's origin as own, and loopback names on the connection's port outside production only", () => {
    assert.equal(isOwnOrigin(production, "https://auth.example.com", 8080), true);
    assert.equal(isOwnOrigin(production, "https://auth.example.com:443", 8080), true);
    assert.equal(isOwnOrigin(production, "http://127.0.0.1:8080", 8080), false);
    assert.equal(isOwnOrigin(development, "http://127.0.0.1:4000", 4000), true);
    assert.equal(isOwnOrigin(development, "http://[::1]:4000", 4000), true);
    assert.equal(isOwnOrigin(development, "http://127.0.0.1:4000", 4001), false);
    assert.equal(isOwnOrigin(development, "http://127.0.0.1:4000", undefined), false);
    assert.equal(isOwnOrigin(development, "http://evil.example:4000", 4000), false);
    assert.equal(isOwnOrigin(development, "null", 4000), false);
  });

  it("refuses an untrusted Origin, a cross-site request without a trusted one, and a repeated Origin", () => {
    assert.equal(originRefusal(production, {}, undefined), null);
    assert.equal(originRefusal(production, { origin: "https://app.example.com", "sec-fetch-site": "cross-site" }, undefined), null);
    assert.match(originRefusal(production, { origin: "https://evil.example" }, undefined) ?? "", /Origin is not trusted/);
    assert.match(originRefusal(production, { "sec-fetch-site": "cross-site" }, undefined) ?? "", /Cross-site/);
    assert.match(
      originRefusal(production, { origin: "https://auth.example.com", "sec-fetch-site": "cross-site" }, undefined) ?? "",
      /Cross-site/,
    );
    assert.notEqual(originRefusal(production, { origin: ["https://auth.example.com", "https://auth.example.com"] }, undefined), null);
  });

  it("knows the unsafe methods", () => {
    assert.deepEqual(["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"].map(isUnsafeMethod), [
      false,
      false,
      false,
      true,
      true,
      true,
      true,
    ]);
  });
});
