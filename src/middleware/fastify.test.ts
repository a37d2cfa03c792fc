import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Fastify from "fastify";
import type { FastifyInstance } from "fastify";
import type { FetchImplementation } from "jose";
import { createTestServer } from "../testing/test-server.js";
import type { SignedIn, TestServer } from "../testing/test-server.js";
import { createValidator, latchFastify } from "./fastify.js";

function injectFetch(t: TestServer): FetchImplementation {
  return async (url) => {
    const response = await t.app.inject({ url: new URL(url).pathname });
    return new Response(response.body, { status: response.statusCode, headers: { "content-type": "application/json" } });
  };
}

describe("the Fastify plugin", () => {
  let t: TestServer;
  let app: FastifyInstance;
  before(async () => {
    t = await createTestServer();
    app = Fastify();
    await app.register(latchFastify, {
      sessions: t.stores.sessions,
      policy: t.context.config.session,
      clock: t.clock,
      jwks: { url: "http://latch.test/.well-known/jwks.json", issuer: "latch", fetch: injectFetch(t) },
    });
    // Registered in a child scope: fastify-plugin makes the decorators visible here too.
    await app.register(async (scope) => {
      scope.get("/dashboard", { preHandler: scope.requireAuth }, async (request) => ({
        message: `Welcome, ${request.latch!.user.username}`,
      }));
      scope.get("/admin", { preHandler: [scope.requireAuth, scope.requireRole("admin")] }, async () => ({ message: "Admin area" }));
      scope.get("/public", async (request) => ({ latch: request.latch }));
    });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await t.close();
  });

  async function tokenFor(user: SignedIn): Promise<string> {
    return (await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) })).json().token;
  }

  it("decorates request.latch, null until a preHandler sets it", async () => {
    assert.deepEqual((await app.inject({ url: "/public" })).json(), { latch: null });
    const user = await t.register();
    const response = await app.inject({ url: "/dashboard", cookies: { sid: user.cookie } });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { message: `Welcome, ${user.username}` });
    assert.equal(response.headers["cache-control"], "no-store");
    const bearer = await app.inject({ url: "/dashboard", headers: { authorization: `Bearer ${await tokenFor(user)}` } });
    assert.deepEqual(bearer.json(), { message: `Welcome, ${user.username}` });
  });

  it("refuses in the contract's shape with WWW-Authenticate", async () => {
    const missing = await app.inject({ url: "/dashboard" });
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.headers["www-authenticate"], "Bearer");
    assert.equal(missing.json().error.code, "unauthenticated");
    const bad = await app.inject({ url: "/dashboard", headers: { authorization: "Bearer x.y.z" } });
    assert.equal(bad.statusCode, 401);
    assert.equal(bad.headers["www-authenticate"], 'Bearer error="invalid_token"');
    assert.equal(bad.json().error.code, "invalid_token");
  });

  it("requireRole gives 403 without the role and lets an admin in", async () => {
    const user = await t.register();
    const forbidden = await app.inject({ url: "/admin", cookies: { sid: user.cookie } });
    assert.equal(forbidden.statusCode, 403);
    assert.equal(forbidden.json().error.code, "forbidden");
    const admin = await t.registerAdmin();
    assert.deepEqual((await app.inject({ url: "/admin", cookies: { sid: admin.cookie } })).json(), { message: "Admin area" });
    assert.equal((await app.inject({ url: "/admin" })).statusCode, 401);
  });

  it("accepts a shared validator and checks role names at creation", async () => {
    const other = Fastify();
    await other.register(latchFastify, { validator: createValidator({ sessions: t.stores.sessions, clock: t.clock }) });
    assert.throws(() => other.requireRole("Admin!"), /role/);
    await other.close();
  });
});
