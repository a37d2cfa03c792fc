import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";

describe("POST /register", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("creates the user, signs them in and returns the user with a CSRF token", async () => {
    const response = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "Register.One", password: TEST_PASSWORD, email: "one@example.com" },
    });
    assert.equal(response.statusCode, 201);
    const body = response.json();
    assert.deepEqual(Object.keys(body.user).sort(), ["createdAt", "email", "emailVerified", "id", "mfa", "roles", "username"]);
    assert.equal(body.user.username, "Register.One");
    assert.equal(body.user.email, "one@example.com");
    assert.deepEqual(body.user.roles, ["user"]);
    assert.equal(body.user.mfa, false);
    assert.match(body.csrfToken, /^[A-Za-z0-9_-]{43}$/);
    const cookie = setCookieValue(response)!;
    const me = await t.app.inject({ url: "/me", cookies: { sid: cookie } });
    assert.equal(me.statusCode, 200);
    assert.equal(me.json().user.id, body.user.id);
  });

  it("sets the cookie HttpOnly, SameSite=Lax, Path=/, without Secure outside production, expiring with the session", async () => {
    const { response } = await t.register();
    const header = String(response.headers["set-cookie"]);
    assert.match(header, /^sid=[A-Za-z0-9_-]{30}\.[A-Za-z0-9_-]{43};/);
    assert.match(header, /; HttpOnly/);
    assert.match(header, /; SameSite=Lax/);
    assert.match(header, /; Path=\//);
    assert.doesNotMatch(header, /Secure/);
    assert.match(header, /Max-Age=1800;/);
  });

  it("refuses a taken username, compared case-insensitively after NFKC, with 409 conflict", async () => {
    await t.register("taken.name");
    for (const username of ["taken.name", "TAKEN.NAME", "ｔａｋｅｎ.ｎａｍｅ"]) {
      const response = await t.app.inject({ method: "POST", url: "/register", payload: { username, password: TEST_PASSWORD } });
      assert.equal(response.statusCode, 409, username);
      assert.equal(response.json().error.code, "conflict");
    }
  });

  it("refuses a taken email with 409 conflict", async () => {
    await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "mail.owner", password: TEST_PASSWORD, email: "Shared@Example.com" },
    });
    const response = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "mail.thief", password: TEST_PASSWORD, email: "shared@example.com" },
    });
    assert.equal(response.statusCode, 409);
  });

  const invalid: Array<[string, Record<string, unknown>]> = [
    ["a too short username", { username: "ab", password: TEST_PASSWORD }],
    ["a too long username", { username: "a".repeat(65), password: TEST_PASSWORD }],
    ["a username with a space", { username: "with space", password: TEST_PASSWORD }],
    ["a username with an @", { username: "me@home", password: TEST_PASSWORD }],
    ["a non-string username", { username: 42, password: TEST_PASSWORD }],
    ["a missing password", { username: "nopassword" }],
    ["a 7-character password", { username: "shortpass", password: "abcdefg" }],
    ["a 257-character password", { username: "longpass", password: "x".repeat(257) }],
    ["a common password", { username: "commonpass", password: "password123" }],
    ["a password equal to the username", { username: "SameAsName1", password: "sameasname1" }],
    ["an invalid email", { username: "bademail", password: TEST_PASSWORD, email: "not-an-email" }],
  ];
  for (const [name, payload] of invalid) {
    it(`refuses ${name} with 400 invalid_input`, async () => {
      const response = await t.app.inject({ method: "POST", url: "/register", payload });
      assert.equal(response.statusCode, 400, response.body);
      assert.equal(response.json().error.code, "invalid_input");
      assert.equal(typeof response.json().error.message, "string");
    });
  }

  it("accepts any Unicode in a password of 8 to 256 characters", async () => {
    const response = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "unicode.pw", password: "пароль-🔐-ключ" },
    });
    assert.equal(response.statusCode, 201);
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { username: "unicode.pw", password: "пароль-🔐-ключ" } })).statusCode,
      200,
    );
  });
});

describe("POST /login", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("signs in by username or by email, case-insensitively", async () => {
    await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "Login.User", password: TEST_PASSWORD, email: "login@example.com" },
    });
    for (const login of [
      { username: "login.user" },
      { username: "LOGIN.USER" },
      { email: "Login@Example.com" },
      { username: "login@example.com" },
    ]) {
      const response = await t.app.inject({ method: "POST", url: "/login", payload: { ...login, password: TEST_PASSWORD } });
      assert.equal(response.statusCode, 200, JSON.stringify(login));
      assert.equal(response.json().user.username, "Login.User");
      assert.ok(setCookieValue(response));
    }
  });

  it("issues a new session id on every sign-in and never promotes one the client presented", async () => {
    const { cookie: first, username } = await t.register();
    const planted = "A".repeat(30) + "." + "B".repeat(43);
    const response = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username, password: TEST_PASSWORD },
      cookies: { sid: first },
    });
    const second = setCookieValue(response)!;
    assert.notEqual(second, first);
    const again = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username, password: TEST_PASSWORD },
      cookies: { sid: planted },
    });
    assert.notEqual(setCookieValue(again), planted);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: planted } })).statusCode, 401);
  });

  it("ends the session the browser was already in when it signs in again", async () => {
    const { cookie: first, username } = await t.register();
    const response = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username, password: TEST_PASSWORD },
      cookies: { sid: first },
    });
    assert.equal(response.statusCode, 200);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: first } })).statusCode, 401);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: setCookieValue(response)! } })).statusCode, 200);
  });

  it("ignores a roles field at registration (no mass assignment)", async () => {
    const response = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "wants.admin", password: TEST_PASSWORD, roles: ["admin"], id: "chosen-id", createdAt: 0 },
    });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(response.json().user.roles, ["user"]);
    assert.notEqual(response.json().user.id, "chosen-id");
    assert.equal((await t.app.inject({ url: "/admin", cookies: { sid: setCookieValue(response)! } })).statusCode, 403);
  });

  it("answers a wrong password and an unknown user with the same status and body", async () => {
    const { username } = await t.register();
    const wrong = await t.app.inject({ method: "POST", url: "/login", payload: { username, password: "not the password" } });
    const unknown = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username: "nobody.here", password: "not the password" },
    });
    assert.equal(wrong.statusCode, 401);
    assert.equal(unknown.statusCode, 401);
    assert.equal(wrong.body, unknown.body);
    assert.equal(wrong.json().error.code, "invalid_credentials");
    assert.equal(setCookieValue(wrong), undefined);
  });

  it("spends a full password verification on unknown users too", async () => {
    let verifications = 0;
    const { createPasswordHasher } = await import("../../core/passwords.js");
    const real = createPasswordHasher();
    const counting = await createTestServer({
      hasher: { ...real, verify: (hash, password) => ((verifications += 1), real.verify(hash, password)) },
    });
    try {
      await counting.app.inject({ method: "POST", url: "/login", payload: { username: "ghost.user", password: "whatever password" } });
      assert.equal(verifications, 1);
    } finally {
      await counting.close();
    }
  });

  it("refuses a body without credentials with 400", async () => {
    for (const payload of [{}, { username: "x" }, { password: "y" }, { username: ["a"], password: "y" }]) {
      const response = await t.app.inject({ method: "POST", url: "/login", payload });
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
      assert.equal(response.json().error.code, "invalid_input");
    }
  });
});

describe("POST /logout", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("ends the session in the store, clears the cookie, and the old cookie is refused", async () => {
    const { cookie, csrfToken } = await t.register();
    const response = await t.app.inject({
      method: "POST",
      url: "/logout",
      cookies: { sid: cookie },
      headers: { "x-csrf-token": csrfToken },
    });
    assert.equal(response.statusCode, 200);
    assert.equal(typeof response.json().message, "string");
    assert.match(String(response.headers["set-cookie"]), /^sid=; Max-Age=0;.*HttpOnly/);
    assert.equal(await t.stores.sessions.findSession(cookie.slice(0, 30), t.clock.now()), null);
    const after = await t.app.inject({ url: "/protected", cookies: { sid: cookie } });
    assert.equal(after.statusCode, 401);
    assert.equal(after.json().error.code, "unauthenticated");
  });

  it("accepts the CSRF token in the CSRF-Token header too", async () => {
    const { cookie, csrfToken } = await t.register();
    const response = await t.app.inject({ method: "POST", url: "/logout", cookies: { sid: cookie }, headers: { "csrf-token": csrfToken } });
    assert.equal(response.statusCode, 200);
  });

  it("refuses without the CSRF token, or with a wrong one, with 403 csrf and keeps the session", async () => {
    const { cookie, csrfToken } = await t.register();
    const other = await t.register();
    for (const headers of [{}, { "x-csrf-token": "x".repeat(43) }, { "x-csrf-token": other.csrfToken }]) {
      const response = await t.app.inject({ method: "POST", url: "/logout", cookies: { sid: cookie }, headers });
      assert.equal(response.statusCode, 403);
      assert.equal(response.json().error.code, "csrf");
    }
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 200);
    assert.ok(csrfToken);
  });

  it("refuses without a session with 401", async () => {
    const response = await t.app.inject({ method: "POST", url: "/logout" });
    assert.equal(response.statusCode, 401);
    assert.equal(response.json().error.code, "unauthenticated");
  });
});
