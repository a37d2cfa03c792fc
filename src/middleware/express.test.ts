import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import express from "express";
import type { Express } from "express";
import type { FetchImplementation } from "jose";
import { inject } from "light-my-request";
import type { Response as InjectResponse } from "light-my-request";
import { LatchError } from "../core/errors.js";
import { createTestServer } from "../testing/test-server.js";
import type { SignedIn, TestServer } from "../testing/test-server.js";
import { createValidator, requireAuth, requireRole } from "./express.js";
import type { Validator } from "./express.js";

function injectFetch(t: TestServer): FetchImplementation {
  return async (url) => {
    const response = await t.app.inject({ url: new URL(url).pathname });
    return new Response(response.body, { status: response.statusCode, headers: { "content-type": "application/json" } });
  };
}

/** The tutorials' resource routes, protected by the middleware. */
function resourceApp(latch: Validator): Express {
  const app = express();
  app.get("/dashboard", requireAuth(latch), (req, res) => {
    res.json({ message: `Welcome, ${req.latch!.user.username}`, via: req.latch!.via });
  });
  app.get("/admin", requireAuth(latch), requireRole("admin", latch), (_req, res) => {
    res.json({ message: "Admin area" });
  });
  app.post("/notes", requireAuth(latch), (req, res) => {
    res.status(201).json({ by: req.latch!.user.id });
  });
  return app;
}

describe("Express requireAuth and requireRole", () => {
  let t: TestServer;
  let latch: Validator;
  let app: Express;
  before(async () => {
    t = await createTestServer();
    latch = createValidator({
      sessions: t.stores.sessions,
      policy: t.context.config.session,
      clock: t.clock,
      jwks: { url: "http://latch.test/.well-known/jwks.json", issuer: "latch", fetch: injectFetch(t) },
    });
    app = resourceApp(latch);
  });
  after(() => t.close());

  const call = (options: { method?: "GET" | "POST"; url: string; headers?: Record<string, string> }): Promise<InjectResponse> =>
    inject(app, { method: options.method ?? "GET", url: options.url, headers: options.headers ?? {} });

  async function tokenFor(user: SignedIn): Promise<string> {
    return (await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) })).json().token;
  }

  it("lets a Latch session in and puts the user on req.latch, uncacheably", async () => {
    const user = await t.register();
    const response = await call({ url: "/dashboard", headers: { cookie: `sid=${user.cookie}` } });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { message: `Welcome, ${user.username}`, via: "session" });
    assert.equal(response.headers["cache-control"], "no-store");
  });

  it("lets a Bearer JWT in", async () => {
    const user = await t.register();
    const response = await call({ url: "/dashboard", headers: { authorization: `Bearer ${await tokenFor(user)}` } });
    assert.deepEqual(response.json(), { message: `Welcome, ${user.username}`, via: "bearer" });
  });

  it("answers 401 in the contract's shape, with WWW-Authenticate for Bearer", async () => {
    const missing = await call({ url: "/dashboard" });
    assert.equal(missing.statusCode, 401);
    assert.deepEqual(missing.json(), { error: { code: "unauthenticated", message: "Authentication required." } });
    assert.equal(missing.headers["www-authenticate"], "Bearer");
    const bad = await call({ url: "/dashboard", headers: { authorization: "Bearer not.a.token" } });
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.json().error.code, "invalid_token");
    assert.equal(bad.headers["www-authenticate"], 'Bearer error="invalid_token"');
  });

  it("requireRole: 401 signed out, 403 forbidden without the role, 200 with it (validating once)", async () => {
    assert.equal((await call({ url: "/admin" })).statusCode, 401);
    const user = await t.register();
    const forbidden = await call({ url: "/admin", headers: { cookie: `sid=${user.cookie}` } });
    assert.equal(forbidden.statusCode, 403);
    assert.equal(forbidden.json().error.code, "forbidden");
    const admin = await t.registerAdmin();
    let finds = 0;
    const original = t.stores.sessions.findSession;
    t.stores.sessions.findSession = (...args) => ((finds += 1), original(...args));
    try {
      const allowed = await call({ url: "/admin", headers: { cookie: `sid=${admin.cookie}` } });
      assert.deepEqual(allowed.json(), { message: "Admin area" });
      assert.equal(finds, 1);
    } finally {
      t.stores.sessions.findSession = original;
    }
    const bearer = await call({ url: "/admin", headers: { authorization: `Bearer ${await tokenFor(user)}` } });
    assert.equal(bearer.statusCode, 403);
    assert.equal(bearer.headers["www-authenticate"], 'Bearer error="insufficient_scope"');
  });

  it("requires the CSRF token for cookie-authenticated POSTs but not for Bearer ones", async () => {
    const user = await t.register();
    assert.equal((await call({ method: "POST", url: "/notes", headers: { cookie: `sid=${user.cookie}` } })).statusCode, 403);
    assert.equal(
      (await call({ method: "POST", url: "/notes", headers: { cookie: `sid=${user.cookie}`, "x-csrf-token": user.csrfToken } })).statusCode,
      201,
    );
    assert.equal(
      (await call({ method: "POST", url: "/notes", headers: { authorization: `Bearer ${await tokenFor(user)}` } })).statusCode,
      201,
    );
  });

  it("re-sends the cookie when it slides the idle expiry", async () => {
    const user = await t.register();
    t.clock.advance(61_000);
    const response = await call({ url: "/dashboard", headers: { cookie: `sid=${user.cookie}` } });
    assert.match(String(response.headers["set-cookie"]), new RegExp(`^sid=${user.cookie.replace(".", "\\.")}; Max-Age=1800;`));
  });

  it("answers 503 when the store is down, and checks role names when the middleware is created", async () => {
    const down = resourceApp(
      createValidator({ sessions: { ...t.stores.sessions, findSession: () => Promise.reject(new LatchError("unavailable")) } }),
    );
    const user = await t.register();
    const response = await inject(down, { method: "GET", url: "/dashboard", headers: { cookie: `sid=${user.cookie}` } });
    assert.equal(response.statusCode, 503);
    assert.equal(response.json().error.code, "unavailable");
    assert.throws(() => requireRole("", latch), /role/);
    assert.throws(() => requireAuth({}), /sessions/);
  });
});
