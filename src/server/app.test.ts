import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createPasswordHasher } from "../core/passwords.js";
import { createSessionCache } from "../stores/cached/session-cache.js";
import { createManualChannel } from "../stores/revocation-channel.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../testing/test-server.js";
import type { TestServer } from "../testing/test-server.js";

describe("request handling", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer({ env: { TRUSTED_ORIGINS: "https://app.example.com" } })));
  after(() => t.close());

  function assertError(response: { statusCode: number; json(): unknown; body: string }, status: number, code: string): void {
    assert.equal(response.statusCode, status, response.body);
    const body = response.json() as { error: { code: string; message: string } };
    assert.deepEqual(Object.keys(body), ["error"]);
    assert.equal(body.error.code, code);
    assert.equal(typeof body.error.message, "string");
    assert.doesNotMatch(response.body, /at .*\.(ts|js):\d+|node_modules|SQLITE|SELECT /);
  }

  it("answers malformed JSON with 400 invalid_input", async () => {
    const response = await t.app.inject({
      method: "POST",
      url: "/login",
      headers: { "content-type": "application/json" },
      payload: '{"username": "x",',
    });
    assertError(response, 400, "invalid_input");
  });

  it("answers a non-JSON body with 415 unsupported_media_type", async () => {
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const response = await t.app.inject({
        method: "POST",
        url: "/login",
        headers: { "content-type": type },
        payload: "username=a&password=b",
      });
      assertError(response, 415, "unsupported_media_type");
    }
  });

  it("answers a body over 16 KiB with 413 payload_too_large", async () => {
    const response = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "big", password: "x".repeat(17 * 1024) },
    });
    assertError(response, 413, "payload_too_large");
  });

  it("answers a JSON body that is not an object with 400", async () => {
    for (const payload of ["[]", "null", '"text"', "42"]) {
      const response = await t.app.inject({ method: "POST", url: "/login", headers: { "content-type": "application/json" }, payload });
      assertError(response, 400, "invalid_input");
    }
  });

  it("refuses __proto__ and constructor keys with 400", async () => {
    for (const payload of [
      '{"__proto__": {"admin": true}, "username": "a", "password": "b"}',
      '{"constructor": {"prototype": {"x": 1}}}',
    ]) {
      const response = await t.app.inject({ method: "POST", url: "/register", headers: { "content-type": "application/json" }, payload });
      assertError(response, 400, "invalid_input");
    }
  });

  it("answers unknown routes with 404 JSON", async () => {
    assertError(await t.app.inject({ url: "/nope" }), 404, "not_found");
    assertError(await t.app.inject({ method: "DELETE", url: "/protected" }), 404, "not_found");
  });

  it("sets security headers on every response", async () => {
    const response = await t.app.inject({ url: "/healthz" });
    assert.equal(response.headers["x-content-type-options"], "nosniff");
    assert.equal(response.headers["referrer-policy"], "no-referrer");
    // 0, the current advice: the legacy XSS auditors' "block" mode could itself be abused to blank out parts of a page.
    assert.equal(response.headers["x-xss-protection"], "0");
    assert.equal((await t.app.inject({ url: "/nope" })).headers["x-xss-protection"], "0");
    assert.match(String(response.headers["content-security-policy"]), /frame-ancestors 'none'/);
    assert.equal(response.headers["strict-transport-security"], undefined);
  });

  it("GET /healthz and /readyz report ok", async () => {
    assert.deepEqual((await t.app.inject({ url: "/healthz" })).json(), { status: "ok" });
    const ready = await t.app.inject({ url: "/readyz" });
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().status, "ok");
    assert.deepEqual(ready.json().stores, { memory: "ok" });
  });

  it("GET /readyz is 503 unavailable when the database does not answer", async () => {
    const original = t.stores.health;
    t.stores.health = async () => ({ database: "down" });
    try {
      assertError(await t.app.inject({ url: "/readyz" }), 503, "unavailable");
    } finally {
      t.stores.health = original;
    }
  });
});

describe("origins and CORS", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer({ env: { TRUSTED_ORIGINS: "https://app.example.com" } })));
  after(() => t.close());
  const trusted = "https://app.example.com";

  it("refuses sign-in and registration from an untrusted Origin with 403 csrf (login CSRF)", async () => {
    const { username } = await t.register();
    for (const [url, payload] of [
      ["/login", { username, password: TEST_PASSWORD }],
      ["/register", { username: "fromevil", password: TEST_PASSWORD }],
    ] as const) {
      const response = await t.app.inject({ method: "POST", url, payload, headers: { origin: "https://evil.example" } });
      assert.equal(response.statusCode, 403);
      assert.equal(response.json().error.code, "csrf");
    }
  });

  it("refuses a cross-site request without an Origin, and allows a same-origin one", async () => {
    const { username } = await t.register();
    const crossSite = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username, password: TEST_PASSWORD },
      headers: { "sec-fetch-site": "cross-site" },
    });
    assert.equal(crossSite.statusCode, 403);
    const sameOrigin = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username, password: TEST_PASSWORD },
      headers: { origin: "http://localhost:80", host: "localhost:80", "sec-fetch-site": "same-origin" },
    });
    assert.equal(sameOrigin.statusCode, 200, sameOrigin.body);
  });

  it("refuses a session-authenticated state change from an untrusted Origin even with the CSRF token", async () => {
    const { cookie, csrfToken } = await t.register();
    const response = await t.app.inject({
      method: "POST",
      url: "/logout",
      cookies: { sid: cookie },
      headers: { "x-csrf-token": csrfToken, origin: "https://evil.example" },
    });
    assert.equal(response.statusCode, 403);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 200);
  });

  it("lets a trusted origin sign in cross-site, with credentialed CORS headers echoing it", async () => {
    const { username } = await t.register();
    const response = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username, password: TEST_PASSWORD },
      headers: { origin: trusted, "sec-fetch-site": "cross-site" },
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["access-control-allow-origin"], trusted);
    assert.equal(response.headers["access-control-allow-credentials"], "true");
    assert.ok(setCookieValue(response));
  });

  it("answers a trusted preflight and gives an untrusted one no CORS headers", async () => {
    const ok = await t.app.inject({
      method: "OPTIONS",
      url: "/login",
      headers: { origin: trusted, "access-control-request-method": "POST" },
    });
    assert.equal(ok.statusCode, 204);
    assert.equal(ok.headers["access-control-allow-origin"], trusted);
    assert.match(String(ok.headers["access-control-allow-headers"]), /X-CSRF-Token/);
    const refused = await t.app.inject({
      method: "OPTIONS",
      url: "/login",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    assert.equal(refused.headers["access-control-allow-origin"], undefined);
    const simple = await t.app.inject({ url: "/healthz", headers: { origin: "https://evil.example" } });
    assert.equal(simple.headers["access-control-allow-origin"], undefined);
  });
});

describe("production mode", () => {
  it("uses the __Host- cookie with Secure, and sends HSTS", async () => {
    const t = await createTestServer({ env: { NODE_ENV: "production", TRUSTED_ORIGINS: "https://app.example.com" } });
    try {
      const response = await t.app.inject({ method: "POST", url: "/register", payload: { username: "produser", password: TEST_PASSWORD } });
      assert.equal(response.statusCode, 201);
      const header = String(response.headers["set-cookie"]);
      assert.match(header, /^__Host-sid=/);
      assert.match(header, /; Secure/);
      assert.match(header, /; Path=\//);
      assert.doesNotMatch(header, /Domain=/);
      assert.match(String(response.headers["strict-transport-security"]), /max-age=\d+/);
      const cookie = setCookieValue(response, "__Host-sid")!;
      assert.equal((await t.app.inject({ url: "/protected", cookies: { "__Host-sid": cookie } })).statusCode, 200);
      assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 401);
    } finally {
      await t.close();
    }
  });
});

describe("GET /metrics", () => {
  it("serves Prometheus text to loopback clients and 403 to others, directly or through a trusted proxy", async () => {
    const t = await createTestServer({ env: { TRUST_PROXY: "127.0.0.1" } });
    try {
      await t.register();
      await t.app.inject({ method: "POST", url: "/login", payload: { username: "nobody.at.all", password: "wrong password" } });
      const local = await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1" });
      assert.equal(local.statusCode, 200);
      assert.match(String(local.headers["content-type"]), /text\/plain/);
      assert.match(local.body, /latch_sign_ins_total\{result="failure"\} 1/);
      assert.match(local.body, /latch_registrations_total 1/);
      assert.match(local.body, /latch_process_cpu_seconds_total/);
      const remote = await t.app.inject({ url: "/metrics", remoteAddress: "203.0.113.5" });
      assert.equal(remote.statusCode, 403);
      assert.equal(remote.json().error.code, "forbidden");
      const spoofed = await t.app.inject({ url: "/metrics", remoteAddress: "203.0.113.5", headers: { "x-forwarded-for": "127.0.0.1" } });
      assert.equal(spoofed.statusCode, 403);
      // Through the trusted proxy on loopback, the forwarded client decides.
      const forwarded = await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1", headers: { "x-forwarded-for": "203.0.113.5" } });
      assert.equal(forwarded.statusCode, 403);
      const forwardedLocal = await t.app.inject({
        url: "/metrics",
        remoteAddress: "127.0.0.1",
        headers: { "x-forwarded-for": "127.0.0.1" },
      });
      assert.equal(forwardedLocal.statusCode, 200);
    } finally {
      await t.close();
    }
  });
});

describe("GET /metrics with an in-process session cache", () => {
  it("says whether the cache serves, what it holds, and where validations were answered", async () => {
    const channel = createManualChannel({ up: true });
    const cache = createSessionCache(createMemoryStores(), channel, { clock: { now: () => Date.now() } });
    const t = await createTestServer({ stores: cache.stores });
    try {
      const user = await t.register("metrics.cache.user");
      for (let i = 0; i < 3; i += 1)
        assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: user.cookie } })).statusCode, 200);
      const scrape = async (): Promise<string> => (await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1" })).body;
      let body = await scrape();
      assert.match(body, /latch_session_cache_serving 1/);
      assert.match(body, /latch_session_cache_entries 1/);
      assert.match(body, /latch_session_cache_lookups_total\{result="hit"\} 2/);
      assert.match(body, /latch_session_cache_lookups_total\{result="miss"\} 1/);
      channel.setUp(false);
      body = await scrape();
      assert.match(body, /latch_session_cache_serving 0/);
      assert.match(body, /latch_session_cache_entries 0/);
    } finally {
      await t.close();
    }
  });

  it("has no cache metrics when there is no cache", async () => {
    const t = await createTestServer({ stores: createMemoryStores() });
    try {
      const body = (await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1" })).body;
      assert.doesNotMatch(body, /latch_session_cache/);
    } finally {
      await t.close();
    }
  });
});

describe("shutdown drain", () => {
  it("waits for a state-changing handler that is still running", async () => {
    const real = createPasswordHasher({ concurrency: 2 });
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let gated = false;
    const hasher = {
      ...real,
      async verify(stored: string, password: string) {
        if (gated) await gate;
        return real.verify(stored, password);
      },
    };
    const t = await createTestServer({ hasher });
    try {
      const user = await t.register();
      assert.equal(await t.drain(10), true, "nothing running");
      gated = true;
      const login = t.app.inject({ method: "POST", url: "/login", payload: { username: user.username, password: TEST_PASSWORD } });
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await t.drain(30), false, "the sign-in is waiting for its hash");
      release();
      assert.equal(await t.drain(5000), true);
      assert.equal((await login).statusCode, 200);
    } finally {
      await t.close();
    }
  });
});
