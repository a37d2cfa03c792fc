import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, TEST_PASSWORD } from "../testing/test-server.js";
import type { TestServer } from "../testing/test-server.js";

describe("sign-in throttling", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("after ten failures for an account, refuses even the right password with 429 and Retry-After until the window passes", async () => {
    const { username } = await t.register();
    const statuses = [];
    for (let i = 0; i < 12; i += 1) {
      const response = await t.app.inject({ method: "POST", url: "/login", payload: { username, password: `wrong password ${i}` } });
      statuses.push(response.statusCode);
    }
    assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
    assert.deepEqual(statuses.slice(10), [429, 429]);
    const right = await t.app.inject({ method: "POST", url: "/login", payload: { username, password: TEST_PASSWORD } });
    assert.equal(right.statusCode, 429);
    assert.equal(right.json().error.code, "rate_limited");
    const retryAfter = Number(right.headers["retry-after"]);
    assert.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${retryAfter}`);
    t.clock.advance(900_001);
    assert.equal((await t.app.inject({ method: "POST", url: "/login", payload: { username, password: TEST_PASSWORD } })).statusCode, 200);
  });

  it("throttles unknown accounts the same way, so the limit does not reveal which exist", async () => {
    const statuses = [];
    for (let i = 0; i < 11; i += 1) {
      statuses.push((await t.app.inject({ method: "POST", url: "/login", payload: { username: "no.such.user", password: "wrong password" } })).statusCode);
    }
    assert.equal(statuses[10], 429);
  });

  it("throttles registrations per address", async () => {
    const fresh = await createTestServer({ env: { THROTTLE_REGISTRATIONS: "3" } });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i += 1) {
        statuses.push((await fresh.app.inject({ method: "POST", url: "/register", payload: { username: `reg.limit.${i}`, password: TEST_PASSWORD } })).statusCode);
      }
      assert.deepEqual(statuses, [201, 201, 201, 429]);
      const other = await fresh.app.inject({ method: "POST", url: "/register", remoteAddress: "203.0.113.9", payload: { username: "reg.other", password: TEST_PASSWORD } });
      assert.equal(other.statusCode, 201);
    } finally {
      await fresh.close();
    }
  });
});

describe("throttling under concurrency and across endpoints", () => {
  it("lets no more guesses through than the address limit when they all arrive at once", async () => {
    const t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "20" } });
    try {
      const responses = await Promise.all(
        Array.from({ length: 60 }, (_, i) => t.app.inject({ method: "POST", url: "/login", payload: { username: `nobody.${i}`, password: "wrong password" } })),
      );
      const statuses = responses.map((r) => r.statusCode);
      assert.ok(statuses.every((s) => s === 401 || s === 429 || s === 503), statuses.join(","));
      assert.ok(statuses.filter((s) => s === 401).length <= 20, `${statuses.filter((s) => s === 401).length} guesses were checked`);
      assert.ok(statuses.filter((s) => s === 429).length >= 40);
    } finally {
      await t.close();
    }
  });

  it("gives exactly ten 401s and then 429s to twenty simultaneous guesses on one account", async () => {
    const t = await createTestServer();
    try {
      const { username } = await t.register();
      const responses = await Promise.all(Array.from({ length: 20 }, () => t.app.inject({ method: "POST", url: "/login", payload: { username, password: "wrong password" } })));
      const statuses = responses.map((r) => r.statusCode).sort();
      assert.deepEqual(statuses, [...Array(10).fill(401), ...Array(10).fill(429)]);
    } finally {
      await t.close();
    }
  });

  it("ignores X-Forwarded-For unless TRUST_PROXY names the proxy", async () => {
    const t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "3" } });
    try {
      for (let i = 0; i < 3; i += 1) {
        await t.app.inject({ method: "POST", url: "/login", payload: { username: `nobody.${i}`, password: "wrong password" }, headers: { "x-forwarded-for": `198.51.100.${i}` } });
      }
      const spoofed = await t.app.inject({ method: "POST", url: "/login", payload: { username: "nobody.x", password: "wrong password" }, headers: { "x-forwarded-for": "198.51.100.99" } });
      assert.equal(spoofed.statusCode, 429, "a forged X-Forwarded-For does not give a fresh address");
    } finally {
      await t.close();
    }
    const proxied = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "3", TRUST_PROXY: "127.0.0.1" } });
    try {
      for (let i = 0; i < 3; i += 1) {
        await proxied.app.inject({ method: "POST", url: "/login", payload: { username: `nobody.${i}`, password: "wrong password" }, headers: { "x-forwarded-for": "198.51.100.1" } });
      }
      const other = await proxied.app.inject({ method: "POST", url: "/login", payload: { username: "nobody.x", password: "wrong password" }, headers: { "x-forwarded-for": "198.51.100.2" } });
      assert.equal(other.statusCode, 401, "behind a trusted proxy, each client address has its own limit");
    } finally {
      await proxied.close();
    }
  });

  it("counts wrong passwords at POST /password and DELETE /me against the account limit", async () => {
    const t = await createTestServer();
    try {
      const me = await t.register();
      const statuses = [];
      for (let i = 0; i < 11; i += 1) {
        const url = i % 2 === 0 ? "/password" : "/me";
        const method = i % 2 === 0 ? "POST" : "DELETE";
        const payload = i % 2 === 0 ? { currentPassword: "wrong password", newPassword: "another fine passphrase" } : { password: "wrong password" };
        statuses.push((await t.app.inject({ method, url, payload, ...t.auth(me) })).statusCode);
      }
      assert.deepEqual(statuses, [...Array(10).fill(401), 429]);
    } finally {
      await t.close();
    }
  });
});
