import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from "jose";
import type { JWK, JWTPayload } from "jose";
import type { LightMyRequestResponse } from "fastify";
import { createTestServer, TEST_PASSWORD } from "../../testing/test-server.js";
import type { SignedIn, TestServer } from "../../testing/test-server.js";

const INVALID_TOKEN = 'Bearer error="invalid_token"';

function assertInvalidToken(response: LightMyRequestResponse, what: string): void {
  assert.equal(response.statusCode, 401, `${what}: ${response.body}`);
  assert.equal(response.headers["www-authenticate"], INVALID_TOKEN, what);
  assert.equal(response.json().error.code, "invalid_token", what);
}

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("POST /token", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "50" } })));
  after(() => t.close());

  async function tokenFor(user: SignedIn): Promise<string> {
    const response = await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) });
    assert.equal(response.statusCode, 200, response.body);
    return response.json().access_token as string;
  }

  it("issues a token for the session, with its CSRF token, in the OAuth response shape", async () => {
    const user = await t.register();
    const response = await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["cache-control"], "no-store");
    const body = response.json();
    assert.deepEqual(Object.keys(body).sort(), ["access_token", "expires_in", "token", "token_type"]);
    assert.equal(body.token, body.access_token);
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 900);
    const header = decodeProtectedHeader(body.token);
    assert.equal(header.alg, "ES256", "TOKEN_ALG's default");
    assert.equal(typeof header.kid, "string");
    const claims = decodeJwt(body.token);
    const me = (await t.app.inject({ url: "/me", cookies: { sid: user.cookie } })).json();
    assert.equal(claims.sub, user.userId);
    assert.equal(claims.sid, me.session.id);
    assert.deepEqual(claims.roles, ["user"]);
    assert.equal(claims.iss, "latch");
    assert.equal(claims.exp! - claims.iat!, 900);
  });

  it("refuses the session path without the CSRF token, and anyone with neither session nor credentials", async () => {
    const user = await t.register();
    const noCsrf = await t.app.inject({ method: "POST", url: "/token", cookies: { sid: user.cookie } });
    assert.equal(noCsrf.statusCode, 403);
    assert.equal(noCsrf.json().error.code, "csrf");
    const nobody = await t.app.inject({ method: "POST", url: "/token" });
    assert.equal(nobody.statusCode, 401);
    assert.equal(nobody.json().error.code, "unauthenticated");
  });

  it("issues a token for credentials in the body, for a new session that sets no cookie and shows in the session list", async () => {
    const user = await t.register();
    for (const login of [{ username: user.username }, { username: user.username.toUpperCase() }]) {
      const response = await t.app.inject({ method: "POST", url: "/token", payload: { ...login, password: TEST_PASSWORD } });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.headers["set-cookie"], undefined);
      const sid = decodeJwt(response.json().token).sid;
      const sessions = (await t.app.inject({ url: "/sessions", cookies: { sid: user.cookie } })).json().sessions as Array<{ id: string }>;
      assert.ok(
        sessions.some((s) => s.id === sid),
        "the token's session is one of the user's sessions",
      );
    }
  });

  it("refuses wrong credentials with invalid_credentials and the same body for unknown users", async () => {
    const user = await t.register();
    const wrong = await t.app.inject({ method: "POST", url: "/token", payload: { username: user.username, password: "not the password" } });
    const unknown = await t.app.inject({
      method: "POST",
      url: "/token",
      payload: { username: "nobody-at-all", password: "not the password" },
    });
    assert.equal(wrong.statusCode, 401);
    assert.deepEqual(wrong.json(), unknown.json());
    assert.equal(wrong.json().error.code, "invalid_credentials");
    const missing = await t.app.inject({ method: "POST", url: "/token", payload: { username: user.username } });
    assert.equal(missing.statusCode, 400);
  });

  it("throttles token requests with credentials per address", async () => {
    const fresh = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "3" } });
    try {
      const user = await fresh.register();
      const attempt = (): Promise<LightMyRequestResponse> =>
        fresh.app.inject({ method: "POST", url: "/token", payload: { username: user.username, password: TEST_PASSWORD } });
      for (let i = 0; i < 3; i += 1) assert.equal((await attempt()).statusCode, 200, `attempt ${i}`);
      const refused = await attempt();
      assert.equal(refused.statusCode, 429);
      assert.equal(refused.json().error.code, "rate_limited");
      assert.ok(Number(refused.headers["retry-after"]) > 0);
      // The session path is not counted: it proves possession of a session already.
      assert.equal((await fresh.app.inject({ method: "POST", url: "/token", ...fresh.auth(user) })).statusCode, 200);
    } finally {
      await fresh.close();
    }
  });

  it("throttles token requests per /64 for IPv6 clients behind a trusted proxy", async () => {
    const fresh = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "2", TRUST_PROXY: "127.0.0.1" } });
    try {
      const user = await fresh.register();
      const attempt = (from: string): Promise<LightMyRequestResponse> =>
        fresh.app.inject({
          method: "POST",
          url: "/token",
          payload: { username: user.username, password: TEST_PASSWORD },
          headers: { "x-forwarded-for": from },
        });
      assert.equal((await attempt("2001:db8:77:1::a")).statusCode, 200);
      assert.equal((await attempt("2001:db8:77:1::b")).statusCode, 200);
      assert.equal((await attempt("2001:db8:77:1:ffff::c")).statusCode, 429, "a new address in the same /64 gets no new tokens");
      assert.equal((await attempt("2001:db8:77:2::a")).statusCode, 200, "another /64 is another client");
    } finally {
      await fresh.close();
    }
  });

  it("never issues a token that outlives its session", async () => {
    const short = await createTestServer({ env: { SESSION_IDLE_TIMEOUT: "300", SESSION_ABSOLUTE_TIMEOUT: "300" } });
    try {
      const user = await short.register();
      short.clock.advance(100_000);
      const response = await short.app.inject({ method: "POST", url: "/token", ...short.auth(user) });
      assert.equal(response.json().expires_in, 200);
    } finally {
      await short.close();
    }
  });

  describe("Bearer authentication", () => {
    it("authenticates GET /protected, /dashboard and /me, with the session's handle", async () => {
      const user = await t.register();
      const token = await tokenFor(user);
      const headers = { authorization: `Bearer ${token}` };
      assert.equal((await t.app.inject({ url: "/protected", headers })).json().message, "Access granted");
      assert.equal((await t.app.inject({ url: "/dashboard", headers })).json().message, `Welcome, ${user.username}`);
      const me = await t.app.inject({ url: "/me", headers });
      assert.equal(me.statusCode, 200);
      assert.equal(me.json().session.id, decodeJwt(token).sid);
      assert.equal(me.headers["cache-control"], "no-store");
    });

    it("answers a request with neither cookie nor token 401 with WWW-Authenticate: Bearer", async () => {
      for (const url of ["/protected", "/dashboard", "/me", "/admin"]) {
        const response = await t.app.inject({ url });
        assert.equal(response.statusCode, 401, url);
        assert.equal(response.headers["www-authenticate"], "Bearer", url);
        assert.equal(response.json().error.code, "unauthenticated");
      }
    });

    it("refuses a tampered token, alg none, a foreign key, garbage and an unknown kid with invalid_token", async () => {
      const user = await t.register();
      const token = await tokenFor(user);
      const [header, payload, signature] = token.split(".") as [string, string, string];
      const claims = decodeJwt(token);
      const cases: Record<string, string> = {
        tampered: `${header}.${b64({ ...claims, roles: ["user", "admin"] })}.${signature}`,
        "bad signature": `${header}.${payload}.${signature.slice(0, -4)}AAAA`,
        "alg none": `${b64({ alg: "none", typ: "JWT" })}.${payload}.`,
        "alg none with kid": `${b64({ alg: "none", typ: "JWT", kid: decodeProtectedHeader(token).kid })}.${payload}.`,
        "unknown kid": `${b64({ alg: "EdDSA", typ: "JWT", kid: "no-such-key" })}.${payload}.${signature}`,
        garbage: "not-a-jwt",
        empty: "",
      };
      for (const [what, bad] of Object.entries(cases)) {
        for (const url of ["/protected", "/dashboard", "/me", "/admin"]) {
          assertInvalidToken(await t.app.inject({ url, headers: { authorization: `Bearer ${bad}` } }), `${what} on ${url}`);
        }
      }
    });

    it("refuses an expired token", async () => {
      const user = await t.register();
      const token = await tokenFor(user);
      t.clock.advance(899_000);
      assert.equal((await t.app.inject({ url: "/protected", headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
      t.clock.advance(1_000);
      const response = await t.app.inject({ url: "/protected", headers: { authorization: `Bearer ${token}` } });
      assertInvalidToken(response, "expired");
      assert.match(response.json().error.message, /expired/);
    });

    it("refuses a token at once when its session ends: sign-out, revocation, password change, admin revocation", async () => {
      const endings: Record<string, (user: SignedIn) => Promise<unknown>> = {
        "sign-out": (user) => t.app.inject({ method: "POST", url: "/logout", ...t.auth(user) }),
        revocation: async (user) => {
          const other = await t.login(user.username);
          const sid = (await t.app.inject({ url: "/me", cookies: { sid: user.cookie } })).json().session.id;
          return t.app.inject({ method: "DELETE", url: `/sessions/${sid}`, ...t.auth(other) });
        },
        "password change": (user) =>
          t.app.inject({
            method: "POST",
            url: "/password",
            ...t.auth(user),
            payload: { currentPassword: TEST_PASSWORD, newPassword: "another fine passphrase" },
          }),
        "admin revocation": async (user) => {
          const admin = await t.registerAdmin();
          return t.app.inject({ method: "POST", url: `/admin/users/${user.userId}/revoke-sessions`, ...t.auth(admin) });
        },
      };
      for (const [what, end] of Object.entries(endings)) {
        const user = await t.register();
        const token = await tokenFor(user);
        const headers = { authorization: `Bearer ${token}` };
        assert.equal((await t.app.inject({ url: "/dashboard", headers })).statusCode, 200, what);
        await end(user);
        assertInvalidToken(await t.app.inject({ url: "/dashboard", headers }), what);
      }
    });

    it("refuses the token of a credentials session once that session is revoked from another", async () => {
      const user = await t.register();
      const response = await t.app.inject({ method: "POST", url: "/token", payload: { username: user.username, password: TEST_PASSWORD } });
      const token = response.json().token as string;
      const headers = { authorization: `Bearer ${token}` };
      assert.equal((await t.app.inject({ url: "/me", headers })).statusCode, 200);
      const sid = decodeJwt(token).sid as string;
      assert.equal((await t.app.inject({ method: "DELETE", url: `/sessions/${sid}`, ...t.auth(user) })).statusCode, 204);
      assertInvalidToken(await t.app.inject({ url: "/me", headers }), "revoked");
    });

    it("refuses a validly signed token whose session belongs to someone else", async () => {
      const victim = await t.register();
      const attacker = await t.register();
      const token = await tokenFor(attacker);
      const victimSid = (await t.app.inject({ url: "/me", cookies: { sid: victim.cookie } })).json().session.id;
      const [active] = (await t.stores.keys.listSigningKeys()).filter((k) => k.retiredAt === null);
      const key = await importJWK(JSON.parse(active!.privateJwk) as JWK, "ES256");
      const claims: JWTPayload = { ...decodeJwt(token), sid: victimSid };
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: active!.kid, typ: "JWT" }).sign(key);
      assertInvalidToken(await t.app.inject({ url: "/me", headers: { authorization: `Bearer ${forged}` } }), "sub/sid mismatch");
    });

    it("takes the user and roles from the store, so a role change applies to live tokens", async () => {
      const user = await t.register();
      const headers = { authorization: `Bearer ${await tokenFor(user)}` };
      const forbidden = await t.app.inject({ url: "/admin", headers });
      assert.equal(forbidden.statusCode, 403);
      assert.equal(forbidden.json().error.code, "forbidden");
      assert.equal(forbidden.headers["www-authenticate"], 'Bearer error="insufficient_scope"');
      await t.stores.users.updateUserRoles(user.userId, ["user", "admin"], t.clock.now());
      assert.deepEqual((await t.app.inject({ url: "/admin", headers })).json(), { message: "Admin area" });
    });

    it("needs no CSRF token on state-changing admin routes", async () => {
      const admin = await t.registerAdmin();
      const target = await t.register();
      const token = await tokenFor(admin);
      const response = await t.app.inject({
        method: "PATCH",
        url: `/admin/users/${target.userId}`,
        headers: { authorization: `Bearer ${token}` },
        payload: { roles: ["editor"] },
      });
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual(response.json().user.roles.sort(), ["editor", "user"]);
    });

    it("is not accepted where the contract says session only", async () => {
      const user = await t.register();
      const headers = { authorization: `Bearer ${await tokenFor(user)}` };
      for (const [method, url] of [
        ["GET", "/sessions"],
        ["GET", "/csrf-token"],
        ["POST", "/logout"],
        ["POST", "/token"],
      ] as const) {
        const response = await t.app.inject({ method, url, headers });
        assert.equal(response.statusCode, 401, `${method} ${url}`);
        assert.equal(response.json().error.code, "unauthenticated");
      }
    });

    it("does not slide the session's idle expiry", async () => {
      const user = await t.register();
      const headers = { authorization: `Bearer ${await tokenFor(user)}` };
      let touches = 0;
      const original = t.stores.sessions.touchSession;
      t.stores.sessions.touchSession = (...args) => ((touches += 1), original(...args));
      try {
        for (let i = 0; i < 3; i += 1) {
          t.clock.advance(120_000);
          assert.equal((await t.app.inject({ url: "/me", headers })).statusCode, 200);
        }
        assert.equal(touches, 0);
      } finally {
        t.stores.sessions.touchSession = original;
      }
    });
  });
});

describe("signing keys over HTTP", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("GET /.well-known/jwks.json publishes the public key of the tokens, cacheably, to anyone", async () => {
    const user = await t.register();
    const token = (await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) })).json().token as string;
    const response = await t.app.inject({ url: "/.well-known/jwks.json" });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["cache-control"], "public, max-age=300");
    const { keys } = response.json() as { keys: JWK[] };
    assert.deepEqual(
      keys.map((k) => k.kid),
      [decodeProtectedHeader(token).kid],
    );
    assert.equal(keys[0]!.kty, "EC");
    assert.equal(keys[0]!.crv, "P-256");
    assert.equal(keys[0]!.alg, "ES256");
    assert.equal(keys[0]!.use, "sig");
    assert.equal("d" in keys[0]!, false, "never the private key");
  });

  it("after a rotation, old tokens still work until they expire, new ones carry the new kid, and both keys are published", async () => {
    const user = await t.register();
    const issue = async (): Promise<string> => (await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) })).json().token;
    const old = await issue();
    const rotated = await t.context.tokens.rotate();
    const fresh = await issue();
    assert.equal(decodeProtectedHeader(fresh).kid, rotated.kid);
    assert.notEqual(decodeProtectedHeader(old).kid, rotated.kid);
    for (const token of [old, fresh]) {
      assert.equal((await t.app.inject({ url: "/dashboard", headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
    }
    const kids = ((await t.app.inject({ url: "/.well-known/jwks.json" })).json().keys as JWK[]).map((k) => k.kid);
    assert.ok(kids.includes(decodeProtectedHeader(old).kid) && kids.includes(rotated.kid));
    t.clock.advance(900_000);
    assertInvalidToken(await t.app.inject({ url: "/dashboard", headers: { authorization: `Bearer ${old}` } }), "old token after exp");
    t.clock.advance(t.context.tokens.retentionMs - 900_000);
    const after = ((await t.app.inject({ url: "/.well-known/jwks.json" })).json().keys as JWK[]).map((k) => k.kid);
    assert.deepEqual(after, [rotated.kid], "the retired key leaves the JWKS after the longest token lifetime");
  });
});
