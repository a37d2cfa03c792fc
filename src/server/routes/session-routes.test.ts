import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, setCookieValue } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";

describe("the signed-in user's endpoints", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer({ env: { SESSION_IDLE_TIMEOUT: "600", SESSION_ABSOLUTE_TIMEOUT: "3600" } })));
  after(() => t.close());

  it("GET /protected says Access granted with the user, and is not cached", async () => {
    const { cookie, userId } = await t.register();
    const response = await t.app.inject({ url: "/protected", cookies: { sid: cookie } });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().message, "Access granted");
    assert.equal(response.json().user.id, userId);
    assert.equal(response.headers["cache-control"], "no-store");
  });

  it("GET /dashboard welcomes the user by name", async () => {
    const { cookie, username } = await t.register();
    const response = await t.app.inject({ url: "/dashboard", cookies: { sid: cookie } });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().message, `Welcome, ${username}`);
    assert.equal(response.json().user.username, username);
  });

  it("GET /me returns the user and the session's public handle and times, never the cookie value", async () => {
    const { cookie } = await t.register();
    const response = await t.app.inject({ url: "/me", cookies: { sid: cookie } });
    assert.equal(response.statusCode, 200);
    const { session } = response.json();
    assert.deepEqual(Object.keys(session).sort(), ["absoluteExpiresAt", "amr", "createdAt", "id", "idleExpiresAt", "lastSeenAt"]);
    assert.notEqual(session.id, cookie);
    assert.ok(!response.body.includes(cookie.split(".")[1]!), "the secret part never appears in a response");
    assert.equal(Date.parse(session.absoluteExpiresAt) - Date.parse(session.createdAt), 3600_000);
  });

  it("GET /csrf-token returns the token given at sign-in", async () => {
    const { cookie, csrfToken } = await t.register();
    const response = await t.app.inject({ url: "/csrf-token", cookies: { sid: cookie } });
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().csrfToken, csrfToken);
  });

  for (const url of ["/protected", "/dashboard", "/me", "/csrf-token"]) {
    it(`GET ${url} without a session is 401 unauthenticated`, async () => {
      for (const cookies of [{} as Record<string, string>, { sid: "garbage" }, { sid: `${"a".repeat(30)}.${"b".repeat(43)}` }]) {
        const response = await t.app.inject({ url, cookies });
        assert.equal(response.statusCode, 401);
        assert.deepEqual(response.json().error.code, "unauthenticated");
      }
    });
  }

  it("refuses a cookie whose id is right but whose secret is wrong", async () => {
    const { cookie } = await t.register();
    const forged = `${cookie.slice(0, 31)}${"Z".repeat(43)}`;
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: forged } })).statusCode, 401);
  });
});

describe("session expiry", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer({ env: { SESSION_IDLE_TIMEOUT: "600", SESSION_ABSOLUTE_TIMEOUT: "3600" } })));
  after(() => t.close());

  it("ends a session after the idle timeout without requests", async () => {
    const { cookie } = await t.register();
    t.clock.advance(599_000);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 200);
    t.clock.advance(601_000);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 401);
  });

  it("slides the idle expiry with activity and re-sends the cookie with the new expiry", async () => {
    const { cookie } = await t.register();
    for (let i = 0; i < 4; i += 1) {
      t.clock.advance(400_000);
      const response = await t.app.inject({ url: "/protected", cookies: { sid: cookie } });
      assert.equal(response.statusCode, 200, `step ${i}`);
      assert.equal(setCookieValue(response), cookie);
      assert.match(String(response.headers["set-cookie"]), /Max-Age=600;/);
    }
  });

  it("ends a session at the absolute timeout however active it is", async () => {
    const { cookie } = await t.register();
    for (let elapsed = 0; elapsed < 3_500_000; elapsed += 500_000) {
      t.clock.advance(500_000);
      assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 200);
    }
    t.clock.advance(100_000);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 401);
  });

  it("never lets the cookie outlive the absolute expiry", async () => {
    const { cookie } = await t.register();
    let response = await t.app.inject({ url: "/protected", cookies: { sid: cookie } });
    for (let elapsed = 0; elapsed < 3_300_000; elapsed += 300_000) {
      t.clock.advance(300_000);
      response = await t.app.inject({ url: "/protected", cookies: { sid: cookie } });
    }
    assert.equal(response.statusCode, 200);
    const maxAge = Number(/Max-Age=(\d+)/.exec(String(response.headers["set-cookie"]))![1]);
    assert.ok(maxAge <= 300, `Max-Age ${maxAge}`);
  });

  it("writes to the store at most once per renewal interval, not on every request", async () => {
    const { cookie } = await t.register();
    let touches = 0;
    const original = t.stores.sessions.touchSession;
    t.stores.sessions.touchSession = (...args) => ((touches += 1), original(...args));
    try {
      for (let i = 0; i < 20; i += 1) {
        t.clock.advance(1000);
        assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 200);
      }
      // 20 s of requests with a 60 s renewal interval: no write at all.
      assert.equal(touches, 0);
      t.clock.advance(60_000);
      await t.app.inject({ url: "/protected", cookies: { sid: cookie } });
      assert.equal(touches, 1);
    } finally {
      t.stores.sessions.touchSession = original;
    }
  });
});
