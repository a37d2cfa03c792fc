import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import express from "express";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import type { FetchImplementation } from "jose";
import { inject } from "light-my-request";
import { Secret, TOTP } from "otpauth";
import { csrfTokenFor, parseSessionToken } from "../core/session-token.js";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../testing/test-server.js";
import type { SignedIn, TestServer } from "../testing/test-server.js";
import { createValidator, requireAuth, requireRole } from "./express.js";
import type { Validator } from "./express.js";
import { latchFastify } from "./fastify.js";

function injectFetch(t: TestServer): FetchImplementation {
  return async (url) => {
    const response = await t.app.inject({ url: new URL(url).pathname });
    return new Response(response.body, { status: response.statusCode, headers: { "content-type": "application/json" } });
  };
}

describe("the middleware and second factors", () => {
  let t: TestServer;
  let latch: Validator;
  let expressApp: express.Express;
  let fastifyApp: FastifyInstance;
  let secret: string;
  let user: SignedIn;
  let pendingCookie: string;
  let twoFactorCookie: string;
  let onlyPassword: SignedIn;

  before(async () => {
    t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "1000" } });
    latch = createValidator({
      sessions: t.stores.sessions,
      policy: t.context.config.session,
      clock: t.clock,
      csrf: "require",
      jwks: { url: "http://latch.test/.well-known/jwks.json", issuer: "latch", fetch: injectFetch(t) },
    });
    expressApp = express();
    expressApp.get("/notes", requireAuth(latch), (req, res) => void res.json({ amr: req.latch!.session.amr, mfa: req.latch!.user.mfa }));
    expressApp.post("/notes", requireAuth(latch), (_req, res) => void res.status(201).json({}));
    expressApp.post("/transfers", requireAuth(latch, { mfa: true }), (_req, res) => void res.status(201).json({}));
    expressApp.get("/admin", requireRole("admin", latch, { mfa: true }), (_req, res) => void res.json({}));
    fastifyApp = Fastify();
    await fastifyApp.register(latchFastify, { validator: latch });
    fastifyApp.get("/notes", { preHandler: fastifyApp.requireAuth }, async (request) => ({ amr: request.latch!.session.amr }));
    fastifyApp.post("/notes", { preHandler: fastifyApp.requireAuth }, async () => ({}));
    fastifyApp.post("/transfers", { preHandler: fastifyApp.requireAuth({ mfa: true }) }, async (_request, reply) =>
      reply.code(201).send({ ok: true }),
    );
    fastifyApp.get("/admin", { preHandler: fastifyApp.requireRole("admin", { mfa: true }) }, async () => ({ ok: true }));
    await fastifyApp.ready();

    user = await t.registerAdmin();
    secret = (await t.app.inject({ method: "POST", url: "/mfa/totp", ...t.auth(user) })).json().secret;
    const code = (at: number): string => TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: at });
    await t.app.inject({ method: "POST", url: "/mfa/totp/confirm", ...t.auth(user), payload: { code: code(t.clock.now()) } });
    t.clock.advance(30_000);
    const login = await t.app.inject({ method: "POST", url: "/login", payload: { username: user.username, password: TEST_PASSWORD } });
    pendingCookie = setCookieValue(login)!;
    const login2 = await t.app.inject({ method: "POST", url: "/login", payload: { username: user.username, password: TEST_PASSWORD } });
    const done = await t.app.inject({
      method: "POST",
      url: "/login/mfa",
      cookies: { sid: setCookieValue(login2)! },
      payload: { code: code(t.clock.now()) },
    });
    assert.equal(done.statusCode, 200, done.body);
    twoFactorCookie = setCookieValue(done)!;
    onlyPassword = await t.registerAdmin();
  });
  after(async () => {
    await fastifyApp.close();
    await t.close();
  });

  const viaExpress = (method: "GET" | "POST", url: string, headers: Record<string, string>) => inject(expressApp, { method, url, headers });
  const viaFastify = (method: "GET" | "POST", url: string, headers: Record<string, string>) => fastifyApp.inject({ method, url, headers });

  for (const [name, call] of [
    ["Express", viaExpress],
    ["Fastify", viaFastify],
  ] as const) {
    it(`${name}: a pending sign-in's cookie is 401 on every route, even with the CSRF token its secret gives`, async () => {
      const csrf = csrfTokenFor(parseSessionToken(pendingCookie)!.secret);
      for (const [method, url] of [
        ["GET", "/notes"],
        ["POST", "/notes"],
        ["POST", "/transfers"],
        ["GET", "/admin"],
      ] as const) {
        const response = await call(method, url, { cookie: `sid=${pendingCookie}`, "x-csrf-token": csrf });
        assert.equal(response.statusCode, 401, `${name} ${method} ${url}`);
        assert.equal(response.json().error.code, "unauthenticated");
      }
    });

    it(`${name}: requireAuth({ mfa: true }) takes a two-factor session and answers 403 to a one-factor one`, async () => {
      const two = await call("POST", "/transfers", {
        cookie: `sid=${twoFactorCookie}`,
        "x-csrf-token": csrfTokenFor(parseSessionToken(twoFactorCookie)!.secret),
      });
      assert.equal(two.statusCode, 201, two.body);
      const one = await call("POST", "/transfers", { cookie: `sid=${onlyPassword.cookie}`, "x-csrf-token": onlyPassword.csrfToken });
      assert.equal(one.statusCode, 403);
      assert.equal(one.json().error.code, "forbidden");
      assert.match(one.json().error.message, /second factor/);
      const admin = await call("GET", "/admin", { cookie: `sid=${onlyPassword.cookie}` });
      assert.equal(admin.statusCode, 403, "requireRole with { mfa: true }");
      assert.equal((await call("GET", "/admin", { cookie: `sid=${twoFactorCookie}` })).statusCode, 200);
      const notes = await call("GET", "/notes", { cookie: `sid=${twoFactorCookie}` });
      assert.deepEqual(notes.json().amr, ["pwd", "otp", "mfa"]);
    });

    it(`${name}: a Bearer token carries the session's amr; a one-factor token gets 403 with insufficient_user_authentication`, async () => {
      const token = async (cookie: string): Promise<string> =>
        (
          await t.app.inject({
            method: "POST",
            url: "/token",
            cookies: { sid: cookie },
            headers: { "x-csrf-token": csrfTokenFor(parseSessionToken(cookie)!.secret) },
          })
        ).json().access_token;
      const strong = await call("POST", "/transfers", { authorization: `Bearer ${await token(twoFactorCookie)}` });
      assert.equal(strong.statusCode, 201, strong.body);
      const weak = await call("POST", "/transfers", { authorization: `Bearer ${await token(onlyPassword.cookie)}` });
      assert.equal(weak.statusCode, 403);
      assert.equal(weak.headers["www-authenticate"], 'Bearer error="insufficient_user_authentication"');
    });
  }

  it("JWKS-only: the token's amr claim decides", async () => {
    const jwksOnly = createValidator({
      clock: t.clock,
      jwks: { url: "http://latch.test/.well-known/jwks.json", issuer: "latch", fetch: injectFetch(t) },
    });
    const app = express();
    app.post("/transfers", requireAuth(jwksOnly, { mfa: true }), (_req, res) => void res.status(201).json({}));
    const strongToken = (
      await t.app.inject({
        method: "POST",
        url: "/token",
        cookies: { sid: twoFactorCookie },
        headers: { "x-csrf-token": csrfTokenFor(parseSessionToken(twoFactorCookie)!.secret) },
      })
    ).json().access_token;
    assert.equal(
      (await inject(app, { method: "POST", url: "/transfers", headers: { authorization: `Bearer ${strongToken}` } })).statusCode,
      201,
    );
    const weakToken = (await t.app.inject({ method: "POST", url: "/token", ...t.auth(onlyPassword) })).json().access_token;
    assert.equal(
      (await inject(app, { method: "POST", url: "/transfers", headers: { authorization: `Bearer ${weakToken}` } })).statusCode,
      403,
    );
  });

  it("refuses a malformed requirement at creation", () => {
    assert.throws(() => requireAuth(latch, { mfa: "yes" } as never), TypeError);
    assert.throws(() => fastifyApp.requireRole("admin", { strong: true } as never), TypeError);
  });
});
