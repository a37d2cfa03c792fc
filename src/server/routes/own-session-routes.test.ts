import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";

describe("the user's own sessions", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("GET /sessions lists each session with its public handle, metadata and which one is current", async () => {
    const first = await t.register();
    await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username: first.username, password: TEST_PASSWORD },
      headers: { "user-agent": "Phone/1.0" },
      remoteAddress: "198.51.100.77",
    });
    const response = await t.app.inject({ url: "/sessions", cookies: { sid: first.cookie } });
    assert.equal(response.statusCode, 200);
    const { sessions } = response.json();
    assert.equal(sessions.length, 2);
    for (const s of sessions) {
      for (const key of ["id", "createdAt", "lastSeenAt", "idleExpiresAt", "absoluteExpiresAt", "userAgent", "current"])
        assert.ok(key in s, key);
      assert.ok(!first.cookie.includes(s.id) || s.current, "handles are not secrets but never the cookie");
      assert.notEqual(s.id, first.cookie);
    }
    assert.equal(sessions.filter((s: { current: boolean }) => s.current).length, 1);
    const phone = sessions.find((s: { userAgent: string }) => s.userAgent === "Phone/1.0");
    assert.equal(phone.ipAddress, "198.51.100.0");
    assert.equal(phone.current, false);
  });

  it("DELETE /sessions/:id ends another of the user's sessions with 204", async () => {
    const me = await t.register();
    const other = await t.login(me.username);
    const { sessions } = (await t.app.inject({ url: "/sessions", cookies: { sid: me.cookie } })).json();
    const target = sessions.find((s: { current: boolean }) => !s.current);
    const response = await t.app.inject({ method: "DELETE", url: `/sessions/${target.id}`, ...t.auth(me) });
    assert.equal(response.statusCode, 204);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: other.cookie } })).statusCode, 401);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: me.cookie } })).statusCode, 200);
  });

  it("DELETE /sessions/:id on the current session signs out and clears the cookie", async () => {
    const me = await t.register();
    const { sessions } = (await t.app.inject({ url: "/sessions", cookies: { sid: me.cookie } })).json();
    const response = await t.app.inject({ method: "DELETE", url: `/sessions/${sessions[0].id}`, ...t.auth(me) });
    assert.equal(response.statusCode, 204);
    assert.match(String(response.headers["set-cookie"]), /^sid=; Max-Age=0/);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: me.cookie } })).statusCode, 401);
  });

  it("DELETE /sessions/:id answers 404 for another user's session and for an unknown id, and ends nothing", async () => {
    const victim = await t.register();
    const attacker = await t.register();
    const { sessions } = (await t.app.inject({ url: "/sessions", cookies: { sid: victim.cookie } })).json();
    for (const id of [sessions[0].id, "x".repeat(30), "nonsense"]) {
      const response = await t.app.inject({ method: "DELETE", url: `/sessions/${id}`, ...t.auth(attacker) });
      assert.equal(response.statusCode, 404, id);
      assert.equal(response.json().error.code, "not_found");
    }
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: victim.cookie } })).statusCode, 200);
  });

  it("DELETE /sessions/:id needs the CSRF token", async () => {
    const me = await t.register();
    const { sessions } = (await t.app.inject({ url: "/sessions", cookies: { sid: me.cookie } })).json();
    assert.equal(
      (await t.app.inject({ method: "DELETE", url: `/sessions/${sessions[0].id}`, cookies: { sid: me.cookie } })).statusCode,
      403,
    );
  });

  it("POST /sessions/revoke-others ends every other session and keeps this one", async () => {
    const me = await t.register();
    const others = [await t.login(me.username), await t.login(me.username)];
    const response = await t.app.inject({ method: "POST", url: "/sessions/revoke-others", ...t.auth(me) });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { revoked: 2 });
    for (const o of others) assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: o.cookie } })).statusCode, 401);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: me.cookie } })).statusCode, 200);
  });

  it("session endpoints refuse without a session (401)", async () => {
    for (const [method, url] of [
      ["GET", "/sessions"],
      ["DELETE", "/sessions/abc"],
      ["POST", "/sessions/revoke-others"],
      ["POST", "/password"],
    ] as const) {
      const response = await t.app.inject({ method, url });
      assert.equal(response.statusCode, 401, url);
    }
  });
});

describe("POST /password", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("changes the password, gives this session a new cookie and CSRF token, and ends every other session", async () => {
    const me = await t.register();
    const other = await t.login(me.username);
    const response = await t.app.inject({
      method: "POST",
      url: "/password",
      ...t.auth(me),
      payload: { currentPassword: TEST_PASSWORD, newPassword: "a brand new passphrase" },
    });
    assert.equal(response.statusCode, 200, response.body);
    const fresh = setCookieValue(response)!;
    assert.ok(fresh && fresh !== me.cookie);
    assert.notEqual(response.json().csrfToken, me.csrfToken);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: me.cookie } })).statusCode, 401);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: other.cookie } })).statusCode, 401);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: fresh } })).statusCode, 200);
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { username: me.username, password: TEST_PASSWORD } })).statusCode,
      401,
    );
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { username: me.username, password: "a brand new passphrase" } }))
        .statusCode,
      200,
    );
  });

  it("refuses a wrong current password with 401 invalid_credentials and changes nothing", async () => {
    const me = await t.register();
    const response = await t.app.inject({
      method: "POST",
      url: "/password",
      ...t.auth(me),
      payload: { currentPassword: "wrong one!", newPassword: "a brand new passphrase" },
    });
    assert.equal(response.statusCode, 401);
    assert.equal(response.json().error.code, "invalid_credentials");
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: me.cookie } })).statusCode, 200);
  });

  it("refuses a weak new password with 400 and missing fields with 400", async () => {
    const me = await t.register();
    for (const payload of [
      { currentPassword: TEST_PASSWORD, newPassword: "short" },
      { currentPassword: TEST_PASSWORD, newPassword: "password1" },
      { currentPassword: TEST_PASSWORD },
      {},
    ]) {
      const response = await t.app.inject({ method: "POST", url: "/password", ...t.auth(me), payload });
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
    }
  });

  it("needs the CSRF token", async () => {
    const me = await t.register();
    const response = await t.app.inject({
      method: "POST",
      url: "/password",
      cookies: { sid: me.cookie },
      payload: { currentPassword: TEST_PASSWORD, newPassword: "a brand new passphrase" },
    });
    assert.equal(response.statusCode, 403);
  });
});
