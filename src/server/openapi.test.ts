import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { issueAccountToken } from "../core/account-tokens.js";
import { after, before, describe, it } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { LatchError } from "../core/errors.js";
import type { Stores } from "../core/store.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { registeredRoutes } from "./openapi.js";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../testing/test-server.js";
import { createSoftwareAuthenticator } from "../testing/software-authenticator.js";
import { Secret, TOTP } from "otpauth";
import type { SignedIn, TestServer } from "../testing/test-server.js";

/**
 * Keeps GET /openapi.json true: it is a valid OpenAPI 3.1 document (checked
 * by an independent validator), it documents every endpoint of the contract
 * the server implements and every route it registers, and every real answer
 * (from app.inject) has a documented status and matches that status's
 * schema (Ajv, JSON Schema 2020-12). Every documented status of every
 * operation must be produced by some scenario below, so a new route or
 * status comes with a request that shows it.
 *
 * Adding an endpoint: give it a schema (README, "Adding an endpoint"), then
 * add its scenarios to `specific` below; the generic ones (401 without a
 * session, 400/403/413/415 for state-changing methods, 503 with the stores
 * down) are derived from the document.
 */

type Method = "get" | "post" | "put" | "patch" | "delete";
interface Operation {
  operationId?: string;
  requestBody?: { content: Record<string, { schema: unknown }> };
  security?: Array<Record<string, string[]>>;
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
  tags?: string[];
}
interface Document {
  openapi: string;
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
}

/** The contract's endpoints (CONTRACT.md): the Endpoints table, then mail and second factors, which may not be built yet. */
const CONTRACT_ENDPOINTS = [
  "POST /register",
  "POST /login",
  "POST /logout",
  "GET /protected",
  "GET /dashboard",
  "GET /me",
  "GET /csrf-token",
  "GET /sessions",
  "DELETE /sessions/:id",
  "POST /sessions/revoke-others",
  "POST /password",
  "POST /token",
  "GET /.well-known/jwks.json",
  "GET /me/export",
  "DELETE /me",
  "GET /admin",
  "GET /admin/users",
  "PATCH /admin/users/:id",
  "POST /admin/users/:id/revoke-sessions",
  "DELETE /users/:id",
  "GET /healthz",
  "GET /readyz",
  "GET /metrics",
  "GET /openapi.json",
  "POST /password/forgot",
  "POST /password/reset",
  "POST /email/verify",
  "POST /email/verify/send",
  "POST /me/email",
];
const CONTRACT_LATER = [
  "POST /mfa/totp",
  "POST /mfa/totp/confirm",
  "DELETE /mfa/totp",
  "POST /mfa/recovery-codes",
  "POST /login/mfa",
  "DELETE /admin/users/:id/mfa",
  "POST /passkeys/register/options",
  "POST /passkeys/register",
  "GET /passkeys",
  "DELETE /passkeys/:id",
  "POST /passkeys/login/options",
  "POST /passkeys/login",
];

const toTemplate = (url: string): string => url.replace(/:([A-Za-z_]+)/g, "{$1}");
const UNSAFE = new Set(["post", "put", "patch", "delete"]);

/** A store set whose every call fails as an unreachable backend would, once `down` is set. */
function breakable(inner: Stores): { stores: Stores; down(): void } {
  let broken = false;
  const fail = (): Promise<never> => Promise.reject(new LatchError("unavailable", "test: the store is down"));
  const wrap = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(object, property, receiver) {
        const value = Reflect.get(object, property, receiver) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (!broken) return (value as (...a: unknown[]) => unknown).apply(object, args);
          if (property === "peekSession") return undefined; // a cache miss: go to the (failing) store
          return fail();
        };
      },
    });
  const stores: Stores = {
    ...inner,
    users: wrap(inner.users),
    sessions: wrap(inner.sessions),
    events: wrap(inner.events),
    limits: wrap(inner.limits),
    keys: wrap(inner.keys),
    secondFactors: wrap(inner.secondFactors),
    mail: wrap(inner.mail),
    health: async () => (broken ? { memory: "down" } : inner.health()),
  };
  return { stores, down: () => (broken = true) };
}

describe("GET /openapi.json", () => {
  let t: TestServer;
  let doc: Document;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  /** "METHOD /template status" for every answer checked. */
  const seen = new Set<string>();

  before(async () => {
    t = await createTestServer();
    const response = await t.app.inject({ url: "/openapi.json" });
    assert.equal(response.statusCode, 200);
    doc = response.json() as Document;
    ajv.addSchema(doc, "latch-openapi");
  });
  after(() => t.close());

  function operation(method: string, template: string): Operation {
    const op = doc.paths[template]?.[method.toLowerCase() as Method];
    assert.ok(op, `${method} ${template} is documented`);
    return op;
  }

  /** Checks one real answer against the document: its status is documented, and its body matches the status's schema. */
  function check(method: string, url: string, response: LightMyRequestResponse, what: string): void {
    const template = toTemplate(url);
    const op = operation(method, template);
    const status = String(response.statusCode);
    const documented = op.responses[status];
    assert.ok(documented, `${method} ${template} answered ${status}, which the document does not list (${what}): ${response.body}`);
    seen.add(`${method.toUpperCase()} ${template} ${status}`);
    if (documented.content === undefined) {
      assert.equal(response.body, "", `${method} ${template} ${status} has no body`);
      return;
    }
    const type = String(response.headers["content-type"] ?? "").split(";")[0]!;
    assert.ok(
      type in documented.content,
      `${method} ${template} ${status} answered ${type}, documented ${Object.keys(documented.content)}`,
    );
    const pointer = ["paths", template, method.toLowerCase(), "responses", status, "content", type, "schema"]
      .map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1"))
      .join("/");
    const validate = ajv.getSchema(`latch-openapi#/${pointer}`)!;
    const body = type === "application/json" ? response.json() : response.body;
    assert.ok(
      validate(body),
      `${method} ${template} ${status} (${what}) does not match its schema: ${ajv.errorsText(validate.errors)}\n${response.body.slice(0, 500)}`,
    );
  }

  async function call(
    t: TestServer,
    options: InjectOptions & { method: string; url: string },
    what: string,
    template = options.url,
  ): Promise<LightMyRequestResponse> {
    const response = await t.app.inject(options);
    check(options.method, template, response, what);
    // A body the server accepted must be one the document allows (the schemas describe, so this is their check).
    const op = operation(options.method, toTemplate(template));
    if (response.statusCode < 300 && op.requestBody !== undefined && typeof options.payload === "object" && options.payload !== null) {
      const pointer = ["paths", toTemplate(template), options.method.toLowerCase(), "requestBody", "content", "application/json", "schema"]
        .map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1"))
        .join("/");
      const validate = ajv.getSchema(`latch-openapi#/${pointer}`)!;
      assert.ok(
        validate(options.payload),
        `${options.method} ${template}: the accepted body does not match the documented request body: ${ajv.errorsText(validate.errors)}`,
      );
    }
    return response;
  }

  it("is a valid OpenAPI 3.1 document by an independent validator", async () => {
    assert.equal(doc.openapi, "3.1.0");
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc) as never);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.equal(validator.version, "3.1");
    // And the validator does find faults: a response without a description, say.
    const broken = structuredClone(doc) as unknown as {
      paths: Record<string, Record<string, { responses: Record<string, Record<string, unknown>> }>>;
    };
    delete broken.paths["/login"]!.post!.responses["200"]!.description;
    assert.equal((await new Validator().validate(broken as never)).valid, false);
  });

  it("gives every operation an operationId (unique), a tag, a security requirement and its error shape as one shared component", () => {
    const ids = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops) as Array<[Method, Operation]>) {
        assert.ok(op.operationId, `${method} ${path}`);
        assert.ok(!ids.has(op.operationId), `duplicate ${op.operationId}`);
        ids.add(op.operationId);
        assert.ok((op.tags ?? []).length > 0, `${method} ${path} has a tag`);
        assert.ok(Array.isArray(op.security), `${method} ${path} states its security`);
        for (const [status, response] of Object.entries(op.responses)) {
          if (Number(status) >= 400)
            assert.deepEqual(
              response.content?.["application/json"]?.schema,
              { $ref: "#/components/schemas/Error" },
              `${method} ${path} ${status}`,
            );
        }
      }
    }
    assert.deepEqual(Object.keys(doc.components.securitySchemes).sort(), ["bearerToken", "csrfToken", "sessionCookie"]);
    assert.deepEqual(doc.components.securitySchemes.sessionCookie, {
      type: "apiKey",
      in: "cookie",
      name: "sid",
      description: (doc.components.securitySchemes.sessionCookie as { description: string }).description,
    });
    assert.equal((doc.components.securitySchemes.csrfToken as { name: string }).name, "X-CSRF-Token");
    assert.equal((doc.components.securitySchemes.bearerToken as { scheme: string }).scheme, "bearer");
    // No dangling reference anywhere.
    const text = JSON.stringify(doc);
    for (const [, name] of text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g))
      assert.ok(name! in doc.components.schemas, `dangling $ref ${name}`);
    assert.doesNotMatch(text, /"\$ref":"(?!#\/components\/schemas\/)/, "every $ref points into components");
  });

  it("documents every contract endpoint the server implements, and the core ones are all implemented", () => {
    const registered = new Set(registeredRoutes(t.app).map((r) => `${r.method} ${r.url}`));
    for (const endpoint of CONTRACT_ENDPOINTS) assert.ok(registered.has(endpoint), `${endpoint} is implemented`);
    for (const endpoint of [...CONTRACT_ENDPOINTS, ...CONTRACT_LATER]) {
      if (!registered.has(endpoint)) continue;
      const [method, url] = endpoint.split(" ") as [string, string];
      operation(method, toTemplate(url));
    }
  });

  it("documents every route the server registers; only the web pages are left out", () => {
    const routes = registeredRoutes(t.app);
    assert.ok(routes.length >= CONTRACT_ENDPOINTS.length);
    for (const route of routes) {
      if (route.hidden) {
        // Pages and their assets, registered by src/web/ (src/server/app.ts hides them).
        assert.equal(route.method, "GET", `${route.url}: only pages are hidden`);
        assert.match(route.url, /^\/($|account(\/|$)|assets\/)/, `${route.url}: only pages are hidden`);
        continue;
      }
      assert.ok(route.documented, `${route.method} ${route.url} has no response schema: see README "Adding an endpoint"`);
      operation(route.method, toTemplate(route.url));
    }
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const served = new Set(routes.map((r) => `${r.method} ${toTemplate(r.url)}`));
    for (const op of documented) assert.ok(served.has(op), `${op} is documented but not served`);
  });

  it("names the production cookie in production", async () => {
    const production = await createTestServer({ env: { NODE_ENV: "production", TRUSTED_ORIGINS: "https://app.example.com" } });
    try {
      const document = (await production.app.inject({ url: "/openapi.json" })).json() as Document;
      assert.equal((document.components.securitySchemes.sessionCookie as { name: string }).name, "__Host-sid");
    } finally {
      await production.close();
    }
  });

  describe("real answers match the document", () => {
    async function tokenOf(user: SignedIn): Promise<string> {
      return (await t.app.inject({ method: "POST", url: "/token", ...t.auth(user) })).json().token as string;
    }

    it("for the specific outcomes of each endpoint", async () => {
      const register = await call(
        t,
        { method: "POST", url: "/register", payload: { username: "doc.user", password: TEST_PASSWORD, email: "doc@example.com" } },
        "registered",
      );
      assert.equal(register.statusCode, 201);
      await call(t, { method: "POST", url: "/register", payload: { username: "doc.user", password: TEST_PASSWORD } }, "taken");
      await call(t, { method: "POST", url: "/register", payload: { username: "x", password: TEST_PASSWORD } }, "bad username");
      await call(t, { method: "POST", url: "/register", payload: { username: "no.email", password: TEST_PASSWORD } }, "no email (null)");

      await call(t, { method: "POST", url: "/login", payload: { username: "doc.user", password: TEST_PASSWORD } }, "signed in");
      await call(t, { method: "POST", url: "/login", payload: { email: "doc@example.com", password: "wrong password" } }, "wrong password");
      await call(t, { method: "POST", url: "/login", payload: { username: "doc.user" } }, "no password");

      const me = await t.login("doc.user");
      const token = await tokenOf(me);
      const bearer = { headers: { authorization: `Bearer ${token}` } };
      for (const url of ["/protected", "/dashboard", "/me"]) {
        await call(t, { method: "GET", url, cookies: { sid: me.cookie } }, "cookie");
        await call(t, { method: "GET", url, ...bearer }, "bearer");
        await call(t, { method: "GET", url, headers: { authorization: "Bearer not.a.token" } }, "bad token");
      }
      await call(t, { method: "GET", url: "/csrf-token", cookies: { sid: me.cookie } }, "csrf token");
      const sessions = await call(t, { method: "GET", url: "/sessions", cookies: { sid: me.cookie } }, "sessions");
      await call(t, { method: "GET", url: "/me/export", cookies: { sid: me.cookie } }, "export");

      await call(t, { method: "POST", url: "/token", ...t.auth(me) }, "token for the session");
      await call(t, { method: "POST", url: "/token", payload: { username: "doc.user", password: TEST_PASSWORD } }, "token for credentials");
      await call(
        t,
        { method: "POST", url: "/token", payload: { username: "doc.user", password: "wrong password" } },
        "token, wrong password",
      );
      await call(t, { method: "POST", url: "/token", payload: [] }, "token, not an object");
      await call(t, { method: "GET", url: "/.well-known/jwks.json" }, "jwks");

      const other = (sessions.json().sessions as Array<{ id: string; current: boolean }>).find((s) => !s.current)!;
      await call(t, { method: "DELETE", url: `/sessions/${other.id}`, ...t.auth(me) }, "revoked", "/sessions/:id");
      await call(t, { method: "DELETE", url: `/sessions/${"x".repeat(30)}`, ...t.auth(me) }, "unknown session", "/sessions/:id");
      await t.login("doc.user");
      await call(t, { method: "POST", url: "/sessions/revoke-others", ...t.auth(me) }, "revoke others");

      await call(
        t,
        {
          method: "POST",
          url: "/password",
          ...t.auth(me),
          payload: { currentPassword: "wrong password", newPassword: "another fine passphrase" },
        },
        "wrong current",
      );
      await call(
        t,
        { method: "POST", url: "/password", ...t.auth(me), payload: { currentPassword: TEST_PASSWORD, newPassword: "short" } },
        "weak new",
      );
      const changed = await call(
        t,
        {
          method: "POST",
          url: "/password",
          ...t.auth(me),
          payload: { currentPassword: TEST_PASSWORD, newPassword: "another fine passphrase" },
        },
        "changed",
      );
      assert.equal(changed.statusCode, 200);

      const admin = await t.registerAdmin();
      const target = await t.register();
      const adminBearer = { headers: { authorization: `Bearer ${await tokenOf(admin)}` } };
      await call(t, { method: "GET", url: "/admin", cookies: { sid: admin.cookie } }, "admin");
      await call(t, { method: "GET", url: "/admin", cookies: { sid: target.cookie } }, "not admin");
      await call(t, { method: "GET", url: "/admin/users?limit=2", ...adminBearer }, "a page", "/admin/users");
      await call(t, { method: "GET", url: "/admin/users?limit=0", ...adminBearer }, "bad limit", "/admin/users");
      await call(t, { method: "GET", url: "/admin/users", cookies: { sid: target.cookie } }, "not admin", "/admin/users");
      const unknown = "01900000-0000-7000-8000-000000000000";
      await call(
        t,
        { method: "PATCH", url: `/admin/users/${target.userId}`, ...t.auth(admin), payload: { roles: ["user", "editor"] } },
        "roles set",
        "/admin/users/:id",
      );
      await call(
        t,
        { method: "PATCH", url: `/admin/users/${target.userId}`, ...adminBearer, payload: { roles: ["user"], username: "renamed" } },
        "extra field",
        "/admin/users/:id",
      );
      await call(
        t,
        { method: "PATCH", url: `/admin/users/${unknown}`, ...adminBearer, payload: { roles: ["user"] } },
        "unknown user",
        "/admin/users/:id",
      );
      await call(
        t,
        { method: "POST", url: `/admin/users/${target.userId}/revoke-sessions`, ...adminBearer },
        "revoked",
        "/admin/users/:id/revoke-sessions",
      );
      await call(
        t,
        { method: "POST", url: `/admin/users/${unknown}/revoke-sessions`, ...adminBearer },
        "unknown",
        "/admin/users/:id/revoke-sessions",
      );
      await call(t, { method: "DELETE", url: `/users/${target.userId}`, ...adminBearer }, "deleted", "/users/:id");
      await call(t, { method: "DELETE", url: `/users/${target.userId}`, ...adminBearer }, "gone", "/users/:id");

      const leaving = await t.register();
      await call(t, { method: "DELETE", url: "/me", ...t.auth(leaving), payload: { password: "wrong password" } }, "wrong password");
      await call(t, { method: "DELETE", url: "/me", ...t.auth(leaving), payload: {} }, "no password");
      await call(t, { method: "DELETE", url: "/me", ...t.auth(leaving), payload: { password: TEST_PASSWORD } }, "erased");
      await call(t, { method: "POST", url: "/logout", ...t.auth(admin) }, "signed out");

      // Recovery and verified email. Tokens come from the outbox (the test server runs no sender).
      const linkToken = async (userId: string, kind: string): Promise<string> => {
        // A token of the real shape, written as a request would (the outbox's copy is not readable here).
        const user = (await t.stores.users.findUserById(userId))!;
        const { token, record } = issueAccountToken(t.context.runtime, {
          purpose: kind === "reset" ? "reset" : "verify",
          userId,
          emailKey: user.emailKey,
        });
        await t.stores.mail.queueMessage(
          {
            id: randomUUID(),
            userId,
            kind: kind === "reset" ? "password_reset" : "verify_email",
            to: user.email!,
            subject: "s",
            text: "t",
            html: "h",
            createdAt: t.clock.now(),
          },
          { token: record },
        );
        return token;
      };
      const mailer = await t.register();
      await call(
        t,
        { method: "POST", url: "/me/email", ...t.auth(mailer), payload: { email: "mailer@example.com", password: TEST_PASSWORD } },
        "email changed",
      );
      await call(
        t,
        { method: "POST", url: "/me/email", ...t.auth(mailer), payload: { email: "doc@example.com", password: TEST_PASSWORD } },
        "email taken",
      );
      await call(
        t,
        { method: "POST", url: "/me/email", ...t.auth(mailer), payload: { email: "other@example.com", password: "wrong password" } },
        "wrong password",
      );
      await call(
        t,
        { method: "POST", url: "/me/email", ...t.auth(mailer), payload: { email: "nope", password: TEST_PASSWORD } },
        "bad email",
      );
      await call(t, { method: "POST", url: "/email/verify/send", ...t.auth(mailer) }, "sent again");
      await call(t, { method: "POST", url: "/email/verify", payload: { token: await linkToken(mailer.userId, "verify") } }, "verified");
      await call(t, { method: "POST", url: "/email/verify", payload: { token: "x" } }, "bad token");
      await call(t, { method: "POST", url: "/email/verify/send", ...t.auth(mailer) }, "already verified");
      await call(t, { method: "POST", url: "/password/forgot", payload: { username: mailer.username } }, "forgot");
      await call(t, { method: "POST", url: "/password/forgot", payload: {} }, "forgot, nobody named");
      // The reset message is queued just after the answer, voiding older reset tokens: let it finish first.
      await t.context.mail.idle();
      await call(
        t,
        {
          method: "POST",
          url: "/password/reset",
          payload: { token: await linkToken(mailer.userId, "reset"), newPassword: "a reset passphrase here" },
        },
        "reset",
      );
      await call(
        t,
        { method: "POST", url: "/password/reset", payload: { token: "A".repeat(43), newPassword: "a reset passphrase here" } },
        "unknown token",
      );
      await t.context.mail.idle();

      await call(t, { method: "GET", url: "/healthz" }, "alive");
      await call(t, { method: "GET", url: "/readyz" }, "ready");
      await call(t, { method: "GET", url: "/metrics", remoteAddress: "127.0.0.1" }, "loopback");
      await call(t, { method: "GET", url: "/metrics", remoteAddress: "203.0.113.9" }, "remote");
      await call(t, { method: "GET", url: "/openapi.json" }, "itself");
    });

    it("for the refusals every endpoint shares: no session, bad JSON, a foreign Origin, too big, not JSON, not an admin", async () => {
      const user = await t.register();
      for (const [template, ops] of Object.entries(doc.paths)) {
        const url = template.replace(/\{[^}]+\}/g, "01900000-0000-7000-8000-000000000000");
        for (const [method, op] of Object.entries(ops) as Array<[Method, Operation]>) {
          const M = method.toUpperCase();
          const needsSession = (op.security ?? []).length > 0 && op.security!.every((r) => Object.keys(r).length > 0);
          if (needsSession && "401" in op.responses) await call(t, { method: M, url }, "no credentials", template);
          if (op.tags?.includes("admin") && "403" in op.responses)
            await call(
              t,
              { method: M, url, ...t.auth(user), payload: method === "patch" ? { roles: ["user"] } : undefined },
              "not an admin",
              template,
            );
          if (!UNSAFE.has(method)) continue;
          const json = { "content-type": "application/json" };
          await call(t, { method: M, url, headers: json, payload: '{"username": ' }, "malformed JSON", template);
          await call(
            t,
            { method: M, url, headers: { ...json, origin: "https://evil.example" }, payload: "{}" },
            "foreign Origin",
            template,
          );
          await call(t, { method: M, url, headers: json, payload: JSON.stringify({ pad: "x".repeat(20_000) }) }, "too large", template);
          await call(t, { method: M, url, headers: { "content-type": "text/plain" }, payload: "username=a" }, "not JSON", template);
        }
      }
    });

    it("when a store is down: 503 unavailable wherever a store is needed", async () => {
      const { stores, down } = breakable(createMemoryStores());
      const broken = await createTestServer({ stores });
      try {
        const user = await broken.register();
        down();
        for (const [template, ops] of Object.entries(doc.paths)) {
          const url = template.replace(/\{[^}]+\}/g, "01900000-0000-7000-8000-000000000000");
          for (const [method, op] of Object.entries(ops) as Array<[Method, Operation]>) {
            if (!("503" in op.responses)) continue;
            const payloads: Record<string, unknown> = {
              "/login": { username: "some.one", password: TEST_PASSWORD },
              "/register": { username: "some.one", password: TEST_PASSWORD },
              "/password/forgot": { username: "some.one" },
              "/password/reset": { token: "A".repeat(43), newPassword: "a reset passphrase here" },
              "/email/verify": { token: "A".repeat(43) },
            };
            const payload = payloads[template] as InjectOptions["payload"];
            const response = await call(
              broken,
              { method: method.toUpperCase(), url, ...broken.auth(user), payload },
              "store down",
              template,
            );
            assert.equal(response.statusCode, 503, `${method} ${template}: ${response.body}`);
          }
        }
      } finally {
        await broken.close();
      }
    });

    it("when throttled: 429 with Retry-After", async () => {
      const throttled = await createTestServer({
        env: { THROTTLE_ACCOUNT_FAILURES: "1", THROTTLE_ADDRESS_FAILURES: "1", THROTTLE_REGISTRATIONS: "1", THROTTLE_PASSWORD_RESETS: "1" },
      });
      try {
        const user = await throttled.register();
        const unverified = await throttled.login(user.username);
        await throttled.app.inject({
          method: "POST",
          url: "/me/email",
          ...throttled.auth(unverified),
          payload: { email: "throttled@example.com", password: TEST_PASSWORD },
        });
        for (let i = 0; i < 5; i += 1)
          await throttled.app.inject({ method: "POST", url: "/email/verify/send", ...throttled.auth(unverified) });
        const attempts: Array<[string, InjectOptions & { method: string; url: string }]> = [
          ["/register", { method: "POST", url: "/register", payload: { username: "second.one", password: TEST_PASSWORD } }],
          ["/login", { method: "POST", url: "/login", payload: { username: user.username, password: "wrong password" } }],
          ["/token", { method: "POST", url: "/token", payload: { username: user.username, password: "wrong password" } }],
          [
            "/password",
            {
              method: "POST",
              url: "/password",
              ...throttled.auth(user),
              payload: { currentPassword: "wrong password", newPassword: "another fine passphrase" },
            },
          ],
          ["/me", { method: "DELETE", url: "/me", ...throttled.auth(user), payload: { password: "wrong password" } }],
          ["/password/forgot", { method: "POST", url: "/password/forgot", payload: { username: user.username } }],
          ["/email/verify/send", { method: "POST", url: "/email/verify/send", ...throttled.auth(unverified) }],
          [
            "/me/email",
            { method: "POST", url: "/me/email", ...throttled.auth(user), payload: { email: "x@example.com", password: "wrong password" } },
          ],
        ];
        for (const [template, options] of attempts) {
          let response: LightMyRequestResponse | undefined;
          for (let i = 0; i < 3 && response?.statusCode !== 429; i += 1) response = await call(throttled, options, "throttled", template);
          assert.equal(response!.statusCode, 429, `${template}: ${response!.body}`);
          assert.match(String(response!.headers["retry-after"]), /^\d+$/);
        }
      } finally {
        await throttled.close();
      }
    });

    it("for the second factors: TOTP, the second step, passkeys and the admin's reset", async () => {
      const code = (secret: string, at = t.clock.now()): string => TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: at });
      const user = await t.register();
      await call(t, { method: "GET", url: "/mfa", cookies: { sid: user.cookie } }, "status");
      const setup = await call(t, { method: "POST", url: "/mfa/totp", ...t.auth(user) }, "setup");
      const secret = setup.json().secret as string;
      await call(t, { method: "POST", url: "/mfa/totp/confirm", ...t.auth(user), payload: { code: "12345" } }, "wrong code");
      await call(t, { method: "POST", url: "/mfa/totp/confirm", ...t.auth(user), payload: { code: code(secret) } }, "confirmed");
      t.clock.advance(30_000);
      await call(
        t,
        { method: "POST", url: "/mfa/recovery-codes", ...t.auth(user), payload: { password: "wrong password" } },
        "wrong password",
      );
      await call(t, { method: "POST", url: "/mfa/recovery-codes", ...t.auth(user), payload: { password: TEST_PASSWORD } }, "new codes");
      await call(t, { method: "GET", url: "/me/export", cookies: { sid: user.cookie } }, "export with TOTP");
      const pending = await call(
        t,
        { method: "POST", url: "/login", payload: { username: user.username, password: TEST_PASSWORD } },
        "mfa required",
      );
      assert.equal(pending.json().mfaRequired, true);
      const pendingCookie = setCookieValue(pending)!;
      await call(
        t,
        { method: "POST", url: "/token", payload: { username: user.username, password: TEST_PASSWORD } },
        "token, mfa required",
      );
      await call(
        t,
        {
          method: "POST",
          url: "/login/mfa",
          cookies: { sid: pendingCookie },
          payload: { code: "000000" === code(secret) ? "111111" : "000000" },
        },
        "wrong code",
      );
      const done = await call(
        t,
        { method: "POST", url: "/login/mfa", cookies: { sid: pendingCookie }, payload: { code: code(secret) } },
        "second step",
      );
      const strong = { ...user, cookie: setCookieValue(done)!, csrfToken: done.json().csrfToken as string };
      await call(t, { method: "GET", url: "/me", cookies: { sid: strong.cookie } }, "two-factor session");
      await call(t, { method: "DELETE", url: "/mfa/totp", ...t.auth(strong), payload: { password: TEST_PASSWORD } }, "off");

      const rp = t.context.relyingParty;
      const authenticator = createSoftwareAuthenticator();
      const webauthnCookie = (response: LightMyRequestResponse): string => setCookieValue(response, "webauthn")!;
      const options = await call(t, { method: "POST", url: "/passkeys/register/options", ...t.auth(strong) }, "registration options");
      const created = authenticator.register({ challenge: options.json().options.challenge, rpId: rp.id, origin: rp.origin });
      const withChallenge = (response: LightMyRequestResponse) => ({
        cookies: { sid: strong.cookie, webauthn: webauthnCookie(response) },
        headers: { "x-csrf-token": strong.csrfToken },
      });
      const registered = await call(
        t,
        { method: "POST", url: "/passkeys/register", ...withChallenge(options), payload: { response: created, name: "Laptop" } },
        "registered",
      );
      const passkeyId = registered.json().passkey.id as string;
      const again = await t.app.inject({ method: "POST", url: "/passkeys/register/options", ...t.auth(strong) });
      const twice = authenticator.register({ challenge: again.json().options.challenge, rpId: rp.id, origin: rp.origin });
      await call(
        t,
        { method: "POST", url: "/passkeys/register", ...withChallenge(again), payload: { response: twice } },
        "registered twice",
      );
      await call(t, { method: "GET", url: "/passkeys", cookies: { sid: strong.cookie } }, "list");
      await call(
        t,
        { method: "PATCH", url: `/passkeys/${passkeyId}`, ...t.auth(strong), payload: { name: "Work laptop" } },
        "renamed",
        "/passkeys/:id",
      );
      await call(
        t,
        { method: "PATCH", url: "/passkeys/01900000-0000-7000-8000-000000000000", ...t.auth(strong), payload: { name: "x" } },
        "unknown",
        "/passkeys/:id",
      );
      const signInOptions = await call(t, { method: "POST", url: "/passkeys/login/options" }, "sign-in options");
      const assertion = authenticator.assert({ challenge: signInOptions.json().options.challenge, rpId: rp.id, origin: rp.origin });
      const viaPasskey = { cookies: { webauthn: webauthnCookie(signInOptions) }, payload: { response: assertion } };
      await call(t, { method: "POST", url: "/passkeys/login", ...viaPasskey }, "signed in with a passkey");
      await call(t, { method: "POST", url: "/passkeys/login", ...viaPasskey }, "replayed");
      await call(t, { method: "DELETE", url: `/passkeys/${passkeyId}`, ...t.auth(strong) }, "removed", "/passkeys/:id");
      await call(t, { method: "DELETE", url: `/passkeys/${passkeyId}`, ...t.auth(strong) }, "gone", "/passkeys/:id");

      const admin = await t.registerAdmin();
      await call(t, { method: "DELETE", url: `/admin/users/${user.userId}/mfa`, ...t.auth(admin) }, "reset", "/admin/users/:id/mfa");
      await call(
        t,
        { method: "DELETE", url: "/admin/users/01900000-0000-7000-8000-000000000000/mfa", ...t.auth(admin) },
        "unknown",
        "/admin/users/:id/mfa",
      );
    });

    it("for the second factors when throttled: 429 with Retry-After", async () => {
      const throttled = await createTestServer({ env: { THROTTLE_ACCOUNT_FAILURES: "1", THROTTLE_ADDRESS_FAILURES: "1" } });
      try {
        const user = await throttled.register();
        const { secret } = (await throttled.app.inject({ method: "POST", url: "/mfa/totp", ...throttled.auth(user) })).json();
        await throttled.app.inject({
          method: "POST",
          url: "/mfa/totp/confirm",
          ...throttled.auth(user),
          payload: { code: TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: throttled.clock.now() }) },
        });
        const pending = setCookieValue(
          await throttled.app.inject({ method: "POST", url: "/login", payload: { username: user.username, password: TEST_PASSWORD } }),
        )!;
        const attempts: Array<[string, InjectOptions & { method: string; url: string }]> = [
          ["/login/mfa", { method: "POST", url: "/login/mfa", cookies: { sid: pending }, payload: { code: "000000" } }],
          ["/mfa/totp", { method: "DELETE", url: "/mfa/totp", ...throttled.auth(user), payload: { password: "wrong password" } }],
          [
            "/mfa/recovery-codes",
            { method: "POST", url: "/mfa/recovery-codes", ...throttled.auth(user), payload: { password: "wrong password" } },
          ],
          ["/passkeys/login", { method: "POST", url: "/passkeys/login", payload: { response: { id: "x" } } }],
          ["/passkeys/login/options", { method: "POST", url: "/passkeys/login/options" }],
        ];
        for (const [template, options] of attempts) {
          let response: LightMyRequestResponse | undefined;
          for (let i = 0; i < 12 && response?.statusCode !== 429; i += 1) response = await call(throttled, options, "throttled", template);
          assert.equal(response!.statusCode, 429, `${template}: ${response!.body}`);
          assert.match(String(response!.headers["retry-after"]), /^\d+$/);
        }
      } finally {
        await throttled.close();
      }
    });

    it("so that every documented status of every operation was seen and checked", () => {
      const missing: string[] = [];
      for (const [template, ops] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(ops) as Array<[Method, Operation]>) {
          for (const status of Object.keys(op.responses)) {
            if (!seen.has(`${method.toUpperCase()} ${template} ${status}`)) missing.push(`${method.toUpperCase()} ${template} ${status}`);
          }
        }
      }
      assert.deepEqual(missing, [], "documented statuses no scenario produced");
    });
  });
});
