import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, TEST_PASSWORD } from "./testing.js";
import type { TestServer } from "./testing.js";

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
