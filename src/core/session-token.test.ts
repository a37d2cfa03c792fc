import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import {
  csrfTokenFor,
  hashSessionSecret,
  issueSessionToken,
  parseSessionToken,
  slotTagFor,
  verifyCsrfToken,
  verifySessionSecret,
} from "./session-token.js";

const random = (bytes: Uint8Array): void => void randomFillSync(bytes);

describe("session tokens", () => {
  it("are id.secret with 128 random bits of id and 256 of secret, URL-safe", () => {
    const issued = issueSessionToken("user-1", random);
    assert.match(issued.token, /^[A-Za-z0-9_-]{30}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(issued.token, `${issued.id}.${issued.secret}`);
    assert.equal(Buffer.from(issued.secret, "base64url").length, 32);
    assert.equal(Buffer.from(issued.id.slice(8), "base64url").length, 16);
  });

  it("never repeat", () => {
    const seen = new Set(Array.from({ length: 1000 }, () => issueSessionToken("u", random).token));
    assert.equal(seen.size, 1000);
  });

  it("share a slot tag per user and only per user", () => {
    const a1 = issueSessionToken("alice", random);
    const a2 = issueSessionToken("alice", random);
    const b = issueSessionToken("bob", random);
    assert.equal(a1.id.slice(0, 8), slotTagFor("alice"));
    assert.equal(a1.id.slice(0, 8), a2.id.slice(0, 8));
    assert.notEqual(a1.id.slice(0, 8), b.id.slice(0, 8));
  });

  it("store only SHA-256 of the secret, which does not contain the secret", () => {
    const issued = issueSessionToken("u", random);
    assert.deepEqual(issued.secretHash, hashSessionSecret(issued.secret));
    assert.equal(issued.secretHash.length, 32);
    assert.ok(!issued.secretHash.toString("base64url").includes(issued.secret));
  });

  it("parse only well-formed values, before any I/O", () => {
    const { token, id, secret } = issueSessionToken("u", random);
    assert.deepEqual(parseSessionToken(token), { id, secret });
    for (const bad of [
      undefined,
      null,
      "",
      token + "x",
      token.slice(1),
      token.replace(".", "-"),
      `${id}.${secret.slice(0, -1)}!`,
      "a".repeat(74),
    ]) {
      assert.equal(parseSessionToken(bad as string), null, String(bad));
    }
  });

  it("verify the secret against the stored hash", () => {
    const issued = issueSessionToken("u", random);
    const other = issueSessionToken("u", random);
    assert.equal(verifySessionSecret(issued.secret, issued.secretHash), true);
    assert.equal(verifySessionSecret(other.secret, issued.secretHash), false);
    assert.equal(verifySessionSecret(issued.secret, Buffer.alloc(31)), false);
  });

  it("derive a CSRF token per session that only the secret's holder can compute", () => {
    const a = issueSessionToken("u", random);
    const b = issueSessionToken("u", random);
    assert.match(csrfTokenFor(a.secret), /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(csrfTokenFor(a.secret), csrfTokenFor(b.secret));
    assert.equal(verifyCsrfToken(a.secret, csrfTokenFor(a.secret)), true);
    assert.equal(verifyCsrfToken(a.secret, csrfTokenFor(b.secret)), false);
    assert.equal(verifyCsrfToken(a.secret, undefined), false);
    assert.equal(verifyCsrfToken(a.secret, [csrfTokenFor(a.secret)]), false);
  });
});
