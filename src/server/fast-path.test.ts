import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createSessionCache } from "../stores/cached/session-cache.js";
import { createManualChannel } from "../stores/revocation-channel.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { createTestServer } from "../testing/test-server.js";
import type { SignedIn, TestServer } from "../testing/test-server.js";

/** Headers that depend on the connection or the moment, not on the answer. */
const VOLATILE = new Set(["date", "connection", "keep-alive", "transfer-encoding"]);

function comparable(headers: Headers | Record<string, unknown>): Record<string, string> {
  const entries = headers instanceof Headers ? [...headers.entries()] : Object.entries(headers).map(([k, v]) => [k, String(v)] as const);
  return Object.fromEntries(
    entries
      .filter(([k]) => !VOLATILE.has(k.toLowerCase()))
      .map(([k, v]) => [k.toLowerCase(), v])
      .sort(([a], [b]) => a!.localeCompare(b!)),
  );
}

describe("the fast path for validated GETs", () => {
  let t: TestServer;
  let base: string;
  let user: SignedIn;

  before(async () => {
    const cache = createSessionCache(createMemoryStores(), createManualChannel({ up: true }), { clock: { now: () => Date.now() } });
    t = await createTestServer({ stores: cache.stores, env: { TRUSTED_ORIGINS: "https://app.example.com" } });
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    user = await t.register("fast.path.user");
  });
  after(() => t.close());

  for (const path of ["/protected", "/dashboard"]) {
    it(`answers GET ${path} from the cache with Fastify's exact status, headers and body`, async () => {
      const viaFastify = await t.app.inject({ url: path, cookies: { sid: user.cookie } }); // inject never takes the fast path; it fills the cache
      assert.equal(viaFastify.statusCode, 200, viaFastify.body);
      const before = t.fastPath.answered;
      const viaFastPath = await fetch(`${base}${path}`, { headers: { cookie: `sid=${user.cookie}` } });
      const body = await viaFastPath.text();
      assert.equal(t.fastPath.answered, before + 1, "answered by the fast path");
      assert.equal(viaFastPath.status, 200);
      assert.equal(body, viaFastify.body);
      assert.deepEqual(comparable(viaFastPath.headers), comparable(viaFastify.headers));
      assert.deepEqual(JSON.parse(body).user.username, "fast.path.user");
    });
  }

  it("gives each user the Content-Length of their own body (header lists are shared by body length)", async () => {
    // Two users whose bodies have the same length, one whose body is longer:
    // each answer's Content-Length must be its own body's byte count.
    const others = [await t.register("fast.path.usex"), await t.register("fast.path.user.with.a.longer.name")];
    const lengths: number[] = [];
    for (const signedIn of [user, ...others, user]) {
      await t.app.inject({ url: "/protected", cookies: { sid: signedIn.cookie } }); // fills the cache
      const before = t.fastPath.answered;
      const answer = await fetch(`${base}/protected`, { headers: { cookie: `sid=${signedIn.cookie}` } });
      const body = Buffer.from(await answer.arrayBuffer());
      assert.equal(t.fastPath.answered, before + 1, "answered by the fast path");
      assert.equal(answer.headers.get("content-length"), String(body.length));
      lengths.push(body.length);
    }
    assert.equal(lengths[0], lengths[1], "same-length bodies");
    assert.ok(lengths[2]! > lengths[0]!, "a longer body");
    assert.equal(lengths[3], lengths[0], "the first user again");
  });

  it("leaves to Fastify whatever it does not fully understand, and those answers are unchanged", async () => {
    const cookie = `sid=${user.cookie}`;
    const cases: Array<{ what: string; url: string; headers: Record<string, string>; status: number }> = [
      { what: "a query string", url: "/protected?x=1", headers: { cookie }, status: 200 },
      { what: "an Origin header (CORS)", url: "/protected", headers: { cookie, origin: "https://app.example.com" }, status: 200 },
      { what: "an Authorization header", url: "/protected", headers: { cookie, authorization: "Bearer not-a-token" }, status: 401 },
      { what: "no cookie", url: "/protected", headers: {}, status: 401 },
      { what: "a wrong secret", url: "/protected", headers: { cookie: `sid=${user.cookie.slice(0, -2)}AA` }, status: 401 },
      { what: "another path", url: "/me", headers: { cookie }, status: 200 },
    ];
    for (const c of cases) {
      const before = t.fastPath.answered;
      const response = await fetch(`${base}${c.url}`, { headers: c.headers });
      const text = await response.text();
      assert.equal(t.fastPath.answered, before, `${c.what}: not the fast path`);
      assert.equal(response.status, c.status, `${c.what}: ${text}`);
      assert.equal(response.headers.get("cache-control"), "no-store", c.what);
      if (c.status === 401) assert.ok(JSON.parse(text).error.code, c.what);
    }
    const cors = await fetch(`${base}/protected`, { headers: { cookie, origin: "https://app.example.com" } });
    assert.equal(cors.headers.get("access-control-allow-origin"), "https://app.example.com");
    await cors.text();
  });

  it("refuses a signed-out session at once: the sign-out empties the cache entry", async () => {
    const other = await t.register("fast.path.leaver");
    await t.app.inject({ url: "/protected", cookies: { sid: other.cookie } });
    const ok = await fetch(`${base}/protected`, { headers: { cookie: `sid=${other.cookie}` } });
    assert.equal(ok.status, 200);
    await ok.text();
    const out = await t.app.inject({ method: "POST", url: "/logout", ...t.auth(other) });
    assert.equal(out.statusCode, 200, out.body);
    const refused = await fetch(`${base}/protected`, { headers: { cookie: `sid=${other.cookie}` } });
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "unauthenticated");
  });
});

describe("the fast path when a renewal is due", () => {
  let t: TestServer;
  let base: string;
  let cache: ReturnType<typeof createSessionCache>;
  let inner: ReturnType<typeof createMemoryStores>;

  before(async () => {
    inner = createMemoryStores();
    // The server's own fake clock, so the test can make a renewal fall due.
    cache = createSessionCache(inner, createManualChannel({ up: true }), { clock: { now: () => t.clock.now() }, writeBehindMs: 60_000 });
    t = await createTestServer({ stores: cache.stores });
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  });
  after(() => t.close());

  it("renews in memory, answers with the cookie re-sent exactly as Fastify does, and writes the renewal behind", async () => {
    const a = await t.register("fast.path.renewed.a");
    const b = await t.register("fast.path.renewed.b");
    for (const u of [a, b]) assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: u.cookie } })).statusCode, 200);
    t.clock.advance(t.context.config.session.renewIntervalMs + 1_000);
    const before = t.fastPath.answered;
    const viaFastPath = await fetch(`${base}/protected`, { headers: { cookie: `sid=${a.cookie}` } });
    await viaFastPath.text();
    assert.equal(t.fastPath.answered, before + 1, "answered by the fast path");
    const viaFastify = await t.app.inject({ url: "/protected", cookies: { sid: b.cookie } });
    const fastCookie = viaFastPath.headers.get("set-cookie");
    const fastifyCookie = viaFastify.headers["set-cookie"];
    assert.ok(fastCookie !== null && typeof fastifyCookie === "string", "both re-send the cookie");
    assert.equal(fastCookie.replace(a.cookie, "<value>"), fastifyCookie.replace(b.cookie, "<value>"), "same attributes and expiry");
    const renewedAt = t.clock.now();
    assert.equal(
      (await cache.stores.sessions.findSession(a.cookie.split(".")[0]!, renewedAt))?.session.lastSeenAt,
      renewedAt,
      "the cache has the slide",
    );
    await cache.flush();
    assert.equal(
      (await inner.sessions.findSession(a.cookie.split(".")[0]!, renewedAt))?.session.lastSeenAt,
      renewedAt,
      "and the store, after the batch",
    );
    const again = await fetch(`${base}/protected`, { headers: { cookie: `sid=${a.cookie}` } });
    await again.text();
    assert.equal(again.headers.get("set-cookie"), null, "no renewal until the next interval");
  });
});
