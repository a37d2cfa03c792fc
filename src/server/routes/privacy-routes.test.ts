import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, TEST_PASSWORD } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";

describe("GDPR endpoints", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("GET /me/export downloads the profile, sessions and security events as JSON, without the hash", async () => {
    const me = await t.register();
    await t.app.inject({ method: "POST", url: "/login", payload: { username: me.username, password: "not my password" } });
    await t.login(me.username);
    await new Promise((r) => setImmediate(r));
    const response = await t.app.inject({ url: "/me/export", cookies: { sid: me.cookie } });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers["content-disposition"]), /attachment; filename="latch-export\.json"/);
    const body = response.json();
    assert.equal(body.profile.id, me.userId);
    assert.equal(body.profile.username, me.username);
    assert.equal(body.sessions.length, 2);
    const types = body.securityEvents.map((e: { type: string }) => e.type);
    for (const type of ["register", "sign_in", "sign_in_failed"]) assert.ok(types.includes(type), type);
    assert.doesNotMatch(response.body, /argon2|passwordHash/);
    assert.ok(!response.body.includes(me.cookie.split(".")[1]!));
  });

  it("DELETE /me with the password erases the user, their sessions and events", async () => {
    const me = await t.register();
    const other = await t.login(me.username);
    const response = await t.app.inject({ method: "DELETE", url: "/me", ...t.auth(me), payload: { password: TEST_PASSWORD } });
    assert.equal(response.statusCode, 204);
    assert.match(String(response.headers["set-cookie"]), /^sid=; Max-Age=0/);
    assert.equal(await t.stores.users.findUserById(me.userId), null);
    assert.deepEqual(await t.stores.events.listUserEvents(me.userId, 100), []);
    for (const cookie of [me.cookie, other.cookie])
      assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 401);
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { username: me.username, password: TEST_PASSWORD } })).statusCode,
      401,
    );
  });

  it("DELETE /me refuses a wrong password (401), a missing one (400), and a missing CSRF token (403)", async () => {
    const me = await t.register();
    assert.equal(
      (await t.app.inject({ method: "DELETE", url: "/me", ...t.auth(me), payload: { password: "wrong password" } })).statusCode,
      401,
    );
    assert.equal((await t.app.inject({ method: "DELETE", url: "/me", ...t.auth(me), payload: {} })).statusCode, 400);
    assert.equal(
      (await t.app.inject({ method: "DELETE", url: "/me", cookies: { sid: me.cookie }, payload: { password: TEST_PASSWORD } })).statusCode,
      403,
    );
    assert.ok(await t.stores.users.findUserById(me.userId));
  });

  it("GDPR endpoints refuse without a session", async () => {
    assert.equal((await t.app.inject({ url: "/me/export" })).statusCode, 401);
    assert.equal((await t.app.inject({ method: "DELETE", url: "/me", payload: { password: "x" } })).statusCode, 401);
  });
});
