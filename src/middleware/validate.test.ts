import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import type { FetchImplementation } from "jose";
import { LatchError } from "../core/errors.js";
import { createTestServer } from "../testing/test-server.js";
import type { SignedIn, TestServer } from "../testing/test-server.js";
import { checkRole, createValidator, failureFromError } from "./validate.js";
import type { RequestView, ValidationResult, ValidatorOptions } from "./validate.js";

const JWKS_URL = "http://latch.test/.well-known/jwks.json";
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");

/** Serves the JWKS through `app.inject`: no port. Counts fetches. */
function injectFetch(t: TestServer, counter: { fetches: number } = { fetches: 0 }): FetchImplementation {
  return async (url) => {
    counter.fetches += 1;
    const response = await t.app.inject({ url: new URL(url).pathname });
    return new Response(response.body, { status: response.statusCode, headers: { "content-type": "application/json" } });
  };
}

function get(headers: Record<string, string> = {}): RequestView {
  return { method: "GET", headers };
}

function expectFailure(result: ValidationResult, code: string, wwwAuthenticate: string | null, what = code): void {
  assert.equal(result.ok, false, what);
  if (!result.ok) {
    assert.equal(result.failure.code, code, what);
    assert.equal(result.failure.wwwAuthenticate, wwwAuthenticate, what);
  }
}

describe("the resource server's validate()", () => {
  let t: TestServer;
  let options: ValidatorOptions;
  before(async () => {
    t = await createTestServer({ env: { SESSION_IDLE_TIMEOUT: "600", SESSION_ABSOLUTE_TIMEOUT: "3600" } });
    options = {
      sessions: t.stores.sessions,
      policy: t.context.config.session,
      clock: t.clock,
      jwks: { url: JWKS_URL, issuer: t.context.config.issuer, fetch: injectFetch(t), cooldownMs: 0 },
    };
  });
  after(() => t.close());

  async function tokenFor(user: SignedIn): Promise<string> {
    return (await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) })).json().token;
  }

  it("refuses impossible options at creation", () => {
    assert.throws(() => createValidator({}), /sessions/);
    assert.throws(() => createValidator({ jwks: { url: "ftp://x/", issuer: "latch" } }), /jwks.url/);
    assert.throws(() => createValidator({ jwks: { url: "not a url", issuer: "latch" } }));
    assert.throws(() => createValidator({ jwks: { url: JWKS_URL, issuer: "" } }), /issuer/);
    assert.throws(
      () => createValidator({ sessions: t.stores.sessions, policy: { idleTimeoutMs: 0, absoluteTimeoutMs: 1, renewIntervalMs: 0 } }),
      /policy/,
    );
    assert.throws(() => createValidator({ sessions: t.stores.sessions, cookieNames: [] }), /cookieNames/);
    assert.throws(() => checkRole("Not A Role"), /role/);
  });

  it("accepts Latch's session cookie under sid or __Host-sid and gives the user and session", async () => {
    const latch = createValidator(options);
    const user = await t.register();
    for (const name of ["sid", "__Host-sid"]) {
      const result = await latch.validate(get({ cookie: `other=1; ${name}=${user.cookie}` }));
      assert.equal(result.ok, true, name);
      if (!result.ok) continue;
      assert.equal(result.auth.via, "session");
      assert.equal(result.auth.user.id, user.userId);
      assert.equal(result.auth.user.username, user.username);
      assert.deepEqual(result.auth.user.roles, ["user"]);
      assert.equal(result.auth.session.userId, user.userId);
      assert.equal("secretHash" in result.auth.session, false);
      assert.equal(result.auth.claims, null);
    }
  });

  it("never passes over a present __Host-sid that does not validate for a plain sid (cookie tossing)", async () => {
    const latch = createValidator(options);
    const victimSession = await t.register();
    const tossed = await t.register();
    await t.app.inject({ method: "POST", url: "/logout", ...t.auth(victimSession) });
    for (const hostValue of [victimSession.cookie, "not-a-token", `${tossed.cookie.slice(0, 31)}${"A".repeat(43)}`]) {
      // A sibling subdomain can set `sid` for the parent domain; only __Host-sid is bound to this host.
      const result = await latch.validate(get({ cookie: `__Host-sid=${hostValue}; sid=${tossed.cookie}` }));
      expectFailure(result, "unauthenticated", "Bearer", `__Host-sid=${hostValue.slice(0, 8)}…`);
    }
  });

  it("reads only __Host-sid by default when NODE_ENV=production, and sid too only when named", async () => {
    const user = await t.register();
    const saved = process.env.NODE_ENV;
    process.env.NODE_ENV = "production";
    try {
      const latch = createValidator(options);
      expectFailure(await latch.validate(get({ cookie: `sid=${user.cookie}` })), "unauthenticated", "Bearer", "plain sid in production");
      assert.equal((await latch.validate(get({ cookie: `__Host-sid=${user.cookie}` }))).ok, true);
      const named = createValidator({ ...options, cookieNames: ["__Host-sid", "sid"] });
      assert.equal((await named.validate(get({ cookie: `sid=${user.cookie}` }))).ok, true);
    } finally {
      if (saved === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = saved;
    }
    expectFailure(
      await createValidator({ ...options, production: true }).validate(get({ cookie: `sid=${user.cookie}` })),
      "unauthenticated",
      "Bearer",
    );
  });

  it("checks the Origin of cookie-authenticated changes when given its origins, and not otherwise", async () => {
    const user = await t.register();
    const post = (origin: string, site = "same-origin"): RequestView => ({
      method: "POST",
      headers: { cookie: `sid=${user.cookie}`, "x-csrf-token": user.csrfToken, origin, "sec-fetch-site": site },
    });
    const checked = createValidator({ ...options, origins: ["https://app.example.com"] });
    expectFailure(await checked.validate(post("https://evil.example", "cross-site")), "csrf", null, "untrusted Origin");
    assert.equal((await checked.validate(post("https://app.example.com", "cross-site"))).ok, true);
    assert.equal(
      (await createValidator(options).validate(post("https://evil.example", "cross-site"))).ok,
      true,
      "no Origin check by default",
    );
    assert.throws(() => createValidator({ ...options, origins: ["https://app.example.com/path"] }), /origins/);
  });

  it("refuses a missing, malformed, forged or signed-out cookie with 401 unauthenticated and WWW-Authenticate: Bearer", async () => {
    const latch = createValidator(options);
    const user = await t.register();
    for (const cookie of [undefined, "sid=garbage", `sid=${user.cookie.slice(0, 31)}${"Z".repeat(43)}`]) {
      expectFailure(await latch.validate(get(cookie === undefined ? {} : { cookie })), "unauthenticated", "Bearer", String(cookie));
    }
    assert.equal((await latch.validate(get({ cookie: `sid=${user.cookie}` }))).ok, true);
    await t.app.inject({ method: "POST", url: "/logout", ...t.auth(user) });
    expectFailure(await latch.validate(get({ cookie: `sid=${user.cookie}` })), "unauthenticated", "Bearer", "signed out");
    // A cookie-only server does not advertise a scheme it does not take.
    expectFailure(await createValidator({ sessions: t.stores.sessions }).validate(get()), "unauthenticated", null);
  });

  it("slides the idle expiry exactly as Latch does: at most once per renewal interval, with the cookie re-sent", async () => {
    const latch = createValidator(options);
    const user = await t.register();
    const cookie = { cookie: `sid=${user.cookie}` };
    t.clock.advance(30_000);
    const quiet = await latch.validate(get(cookie));
    assert.equal(quiet.ok && quiet.setCookie, null, "no write within the renewal interval");
    t.clock.advance(60_000);
    const renewed = await latch.validate(get(cookie));
    assert.ok(renewed.ok);
    assert.match(renewed.setCookie!, new RegExp(`^sid=${user.cookie.replace(".", "\\.")}; Max-Age=600; .*Path=/; HttpOnly; SameSite=Lax$`));
    assert.equal(renewed.auth.session.idleExpiresAt, t.clock.now() + 600_000);
    const onLatch = (await t.app.inject({ url: "/me", cookies: { sid: user.cookie } })).json().session;
    assert.equal(Date.parse(onLatch.idleExpiresAt), t.clock.now() + 600_000, "Latch sees the same expiry");
    // __Host- cookies are re-sent Secure, as Latch sets them.
    t.clock.advance(60_000);
    const host = await latch.validate(get({ cookie: `__Host-sid=${user.cookie}` }));
    assert.match(host.ok ? host.setCookie! : "", /; Secure$/);
  });

  it("requires the CSRF token on state-changing requests authenticated by the cookie", async () => {
    const latch = createValidator(options);
    const user = await t.register();
    const headers = { cookie: `sid=${user.cookie}` };
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      expectFailure(await latch.validate({ method, headers }), "csrf", null, method);
      assert.equal((await latch.validate({ method, headers: { ...headers, "x-csrf-token": user.csrfToken } })).ok, true, method);
    }
    assert.equal((await createValidator({ ...options, csrf: "off" }).validate({ method: "POST", headers })).ok, true);
  });

  it("accepts a Bearer JWT, taking the user and roles from the store", async () => {
    const latch = createValidator(options);
    const user = await t.register();
    const token = await tokenFor(user);
    const result = await latch.validate(get({ authorization: `Bearer ${token}` }));
    assert.ok(result.ok);
    assert.equal(result.auth.via, "bearer");
    assert.equal(result.auth.user.username, user.username);
    assert.equal(result.auth.session.id, decodeJwt(token).sid);
    assert.equal(result.auth.claims!.sub, user.userId);
    assert.equal(result.setCookie, null);
    assert.equal(latch.authorize(result.auth, "admin")?.wwwAuthenticate, 'Bearer error="insufficient_scope"');
    await t.stores.users.updateUserRoles(user.userId, ["user", "admin"], t.clock.now());
    const promoted = await latch.validate(get({ authorization: `Bearer ${token}` }));
    assert.ok(promoted.ok);
    assert.equal(latch.authorize(promoted.auth, "admin"), null);
  });

  it("refuses tampered, alg none, expired, unknown-kid, wrong-issuer and ended-session tokens with invalid_token", async () => {
    const latch = createValidator(options);
    const user = await t.register();
    const token = await tokenFor(user);
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const claims = decodeJwt(token);
    const bad: Record<string, string> = {
      tampered: `${header}.${b64({ ...claims, roles: ["user", "admin"] })}.${signature}`,
      "alg none": `${b64({ alg: "none", typ: "JWT" })}.${payload}.`,
      "unknown kid": `${b64({ alg: "EdDSA", typ: "JWT", kid: "nope" })}.${payload}.${signature}`,
      "not a JWT": "abc",
    };
    for (const [what, value] of Object.entries(bad)) {
      expectFailure(await latch.validate(get({ authorization: `Bearer ${value}` })), "invalid_token", 'Bearer error="invalid_token"', what);
    }
    const elsewhere = createValidator({ ...options, jwks: { ...options.jwks!, issuer: "someone-else" } });
    expectFailure(
      await elsewhere.validate(get({ authorization: `Bearer ${token}` })),
      "invalid_token",
      'Bearer error="invalid_token"',
      "issuer",
    );

    const expiring = await tokenFor(await t.register());
    t.clock.advance(600_000);
    expectFailure(
      await latch.validate(get({ authorization: `Bearer ${expiring}` })),
      "invalid_token",
      'Bearer error="invalid_token"',
      "expired",
    );

    const live = await t.register();
    const liveToken = await tokenFor(live);
    assert.equal((await latch.validate(get({ authorization: `Bearer ${liveToken}` }))).ok, true);
    await t.app.inject({ method: "POST", url: "/logout", ...t.auth(live) });
    expectFailure(
      await latch.validate(get({ authorization: `Bearer ${liveToken}` })),
      "invalid_token",
      'Bearer error="invalid_token"',
      "ended session",
    );
  });

  for (const alg of ["ES256", "RS256", "EdDSA"]) {
    it(`verifies a token of TOKEN_ALG=${alg} from the JWKS`, async () => {
      const server = await createTestServer({ env: { TOKEN_ALG: alg } });
      try {
        const user = await server.register();
        const token = (await server.app.inject({ method: "POST", url: "/token", ...server.auth(user) })).json().token as string;
        assert.equal(decodeProtectedHeader(token).alg, alg);
        const latch = createValidator({
          jwks: { url: JWKS_URL, issuer: server.context.config.issuer, fetch: injectFetch(server) },
          clock: server.clock,
          tokenCacheSize: 0,
        });
        const result = await latch.validate(get({ authorization: `Bearer ${token}` }));
        assert.ok(result.ok, alg);
        assert.equal(result.auth.user.id, user.userId);
      } finally {
        await server.close();
      }
    });
  }

  it("pins each published key to its own alg: a JWKS entry without alg, or a header naming another, verifies nothing", async () => {
    const user = await t.register();
    const token = await tokenFor(user);
    const [, payload, signature] = token.split(".") as [string, string, string];
    const { kid } = decodeProtectedHeader(token);
    const latch = createValidator({ jwks: options.jwks!, clock: t.clock, tokenCacheSize: 0 });
    assert.equal((await latch.validate(get({ authorization: `Bearer ${token}` }))).ok, true, "as published");
    const relabelled = `${b64({ alg: "RS256", typ: "JWT", kid })}.${payload}.${signature}`;
    expectFailure(
      await latch.validate(get({ authorization: `Bearer ${relabelled}` })),
      "invalid_token",
      'Bearer error="invalid_token"',
      "relabelled",
    );
    const stripped: FetchImplementation = async (url) => {
      const response = await t.app.inject({ url: new URL(url).pathname });
      const body = response.json() as { keys: Array<Record<string, unknown>> };
      return new Response(JSON.stringify({ keys: body.keys.map(({ alg: _alg, ...rest }) => rest) }), {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    };
    const noAlg = createValidator({ jwks: { ...options.jwks!, fetch: stripped }, clock: t.clock, tokenCacheSize: 0 });
    expectFailure(
      await noAlg.validate(get({ authorization: `Bearer ${token}` })),
      "invalid_token",
      'Bearer error="invalid_token"',
      "JWKS without alg",
    );
  });

  it("on a JWKS-only server, believes a token until its exp, even after sign-out (the documented trade-off)", async () => {
    const jwksOnly = createValidator({ jwks: options.jwks!, clock: t.clock });
    const user = await t.register();
    const token = await tokenFor(user);
    await t.app.inject({ method: "POST", url: "/logout", ...t.auth(user) });
    const result = await jwksOnly.validate(get({ authorization: `Bearer ${token}` }));
    assert.ok(result.ok);
    assert.equal(result.auth.user.id, user.userId);
    assert.equal(result.auth.user.username, null);
    // And cookies cannot be checked without the store.
    expectFailure(await jwksOnly.validate(get({ cookie: `sid=${user.cookie}` })), "unauthenticated", "Bearer");
  });

  it("refetches the JWKS on an unknown kid after a rotation, and at most once per cooldown", async () => {
    const counter = { fetches: 0 };
    const latch = createValidator({ ...options, jwks: { ...options.jwks!, fetch: injectFetch(t, counter), cooldownMs: 60_000 } });
    const user = await t.register();
    assert.equal((await latch.validate(get({ authorization: `Bearer ${await tokenFor(user)}` }))).ok, true);
    assert.equal(counter.fetches, 1);
    const token = await tokenFor(user);
    const [, payload, signature] = token.split(".") as [string, string, string];
    for (let i = 0; i < 20; i += 1) {
      const forged = `${b64({ alg: "EdDSA", typ: "JWT", kid: `unknown-${i}` })}.${payload}.${signature}`;
      expectFailure(await latch.validate(get({ authorization: `Bearer ${forged}` })), "invalid_token", 'Bearer error="invalid_token"');
    }
    assert.equal(counter.fetches, 1, "unknown kids within the cooldown cost no fetch");

    const eager = createValidator({ ...options, jwks: { ...options.jwks!, fetch: injectFetch(t, counter), cooldownMs: 0 } });
    assert.equal((await eager.validate(get({ authorization: `Bearer ${token}` }))).ok, true);
    await t.context.tokens.rotate();
    const rotated = await tokenFor(user);
    assert.equal((await eager.validate(get({ authorization: `Bearer ${rotated}` }))).ok, true, "the new kid is fetched");
    assert.equal((await eager.validate(get({ authorization: `Bearer ${token}` }))).ok, true, "the old key still verifies");
  });

  it("turns an unreachable JWKS or store into 503 unavailable, not a refused token", async () => {
    const user = await t.register();
    const token = await tokenFor(user);
    const down = createValidator({
      ...options,
      jwks: { ...options.jwks!, fetch: async () => Promise.reject(new TypeError("fetch failed")) },
    });
    const error = await down.validate(get({ authorization: `Bearer ${token}` })).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(error instanceof LatchError);
    assert.equal(failureFromError(error)?.status, 503);
    const broken = createValidator({
      ...options,
      sessions: { ...t.stores.sessions, findSession: () => Promise.reject(new LatchError("unavailable", "db down")) },
    });
    await assert.rejects(
      broken.validate(get({ cookie: `sid=${user.cookie}` })),
      (e: unknown) => failureFromError(e)?.code === "unavailable",
    );
    assert.equal(failureFromError(new Error("a bug")), null);
  });
});
