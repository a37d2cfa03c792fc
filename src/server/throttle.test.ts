import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import BetterSqlite3 from "better-sqlite3";
import { openSqliteStores } from "../stores/sqlite/index.js";
import { createTestServer, TEST_PASSWORD } from "../testing/test-server.js";
import type { TestServer } from "../testing/test-server.js";

describe("sign-in throttling", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("after ten failures for an account, refuses even the right password with 429 and Retry-After until the window passes", async () => {
    const { username } = await t.register();
    const statuses = [];
    for (let i = 0; i < 12; i += 1) {
      const response = await t.app.inject({ method: "POST", url: "/login", payload: { username, password: `wrong password ${i}` } });
      statuses.push(response.statusCode);
    }
    assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
    assert.deepEqual(statuses.slice(10), [429, 429]);
    const right = await t.app.inject({ method: "POST", url: "/login", payload: { username, password: TEST_PASSWORD } });
    assert.equal(right.statusCode, 429);
    assert.equal(right.json().error.code, "rate_limited");
    const retryAfter = Number(right.headers["retry-after"]);
    assert.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${retryAfter}`);
    t.clock.advance(900_001);
    assert.equal((await t.app.inject({ method: "POST", url: "/login", payload: { username, password: TEST_PASSWORD } })).statusCode, 200);
  });

  it("throttles unknown accounts the same way, so the limit does not reveal which exist", async () => {
    const statuses = [];
    for (let i = 0; i < 11; i += 1) {
      statuses.push(
        (await t.app.inject({ method: "POST", url: "/login", payload: { username: "no.such.user", password: "wrong password" } }))
          .statusCode,
      );
    }
    assert.equal(statuses[10], 429);
  });

  it("throttles registrations per address", async () => {
    const fresh = await createTestServer({ env: { THROTTLE_REGISTRATIONS: "3" } });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i += 1) {
        statuses.push(
          (await fresh.app.inject({ method: "POST", url: "/register", payload: { username: `reg.limit.${i}`, password: TEST_PASSWORD } }))
            .statusCode,
        );
      }
      assert.deepEqual(statuses, [201, 201, 201, 429]);
      const other = await fresh.app.inject({
        method: "POST",
        url: "/register",
        remoteAddress: "203.0.113.9",
        payload: { username: "reg.other", password: TEST_PASSWORD },
      });
      assert.equal(other.statusCode, 201);
    } finally {
      await fresh.close();
    }
  });
});

describe("throttling under concurrency and across endpoints", () => {
  it("lets no more guesses through than the address limit when they all arrive at once", async () => {
    const t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "20" } });
    try {
      const responses = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          t.app.inject({ method: "POST", url: "/login", payload: { username: `nobody.${i}`, password: "wrong password" } }),
        ),
      );
      const statuses = responses.map((r) => r.statusCode);
      assert.ok(
        statuses.every((s) => s === 401 || s === 429 || s === 503),
        statuses.join(","),
      );
      assert.ok(statuses.filter((s) => s === 401).length <= 20, `${statuses.filter((s) => s === 401).length} guesses were checked`);
      assert.ok(statuses.filter((s) => s === 429).length >= 40);
    } finally {
      await t.close();
    }
  });

  it("gives exactly ten 401s and then 429s to twenty simultaneous guesses on one account", async () => {
    const t = await createTestServer();
    try {
      const { username } = await t.register();
      const responses = await Promise.all(
        Array.from({ length: 20 }, () =>
          t.app.inject({ method: "POST", url: "/login", payload: { username, password: "wrong password" } }),
        ),
      );
      const statuses = responses.map((r) => r.statusCode).sort();
      assert.deepEqual(statuses, [...Array(10).fill(401), ...Array(10).fill(429)]);
    } finally {
      await t.close();
    }
  });

  it("ignores X-Forwarded-For unless TRUST_PROXY names the proxy", async () => {
    const t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "3" } });
    try {
      for (let i = 0; i < 3; i += 1) {
        await t.app.inject({
          method: "POST",
          url: "/login",
          payload: { username: `nobody.${i}`, password: "wrong password" },
          headers: { "x-forwarded-for": `198.51.100.${i}` },
        });
      }
      const spoofed = await t.app.inject({
        method: "POST",
        url: "/login",
        payload: { username: "nobody.x", password: "wrong password" },
        headers: { "x-forwarded-for": "198.51.100.99" },
      });
      assert.equal(spoofed.statusCode, 429, "a forged X-Forwarded-For does not give a fresh address");
    } finally {
      await t.close();
    }
    const proxied = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "3", TRUST_PROXY: "127.0.0.1" } });
    try {
      for (let i = 0; i < 3; i += 1) {
        await proxied.app.inject({
          method: "POST",
          url: "/login",
          payload: { username: `nobody.${i}`, password: "wrong password" },
          headers: { "x-forwarded-for": "198.51.100.1" },
        });
      }
      const other = await proxied.app.inject({
        method: "POST",
        url: "/login",
        payload: { username: "nobody.x", password: "wrong password" },
        headers: { "x-forwarded-for": "198.51.100.2" },
      });
      assert.equal(other.statusCode, 401, "behind a trusted proxy, each client address has its own limit");
    } finally {
      await proxied.close();
    }
  });

  it("counts IPv6 clients per /64 behind a trusted proxy, and IPv4-mapped IPv6 as its IPv4 address", async () => {
    const t = await createTestServer({ env: { THROTTLE_ADDRESS_FAILURES: "3", THROTTLE_REGISTRATIONS: "2", TRUST_PROXY: "127.0.0.1" } });
    try {
      const guess = (from: string, i: number) =>
        t.app.inject({
          method: "POST",
          url: "/login",
          payload: { username: `nobody.${i}`, password: "wrong password" },
          headers: { "x-forwarded-for": from },
        });
      // One /64, a different address every time (what any host with a /64 can do).
      const rotating = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:0db8:0001:0002:abcd::9"];
      for (const [i, from] of rotating.entries()) assert.equal((await guess(from, i)).statusCode, 401);
      const fourth = await guess("2001:db8:1:2:1234:5678:9abc:def0", 9);
      assert.equal(fourth.statusCode, 429, "a fourth address in the same /64 is the same client");
      assert.equal(fourth.json().error.code, "rate_limited");
      assert.equal((await guess("2001:db8:1:3::1", 10)).statusCode, 401, "the next /64 is another client");

      for (const [i, from] of ["::ffff:198.51.100.7", "198.51.100.7", "::ffff:198.51.100.7"].entries())
        assert.equal((await guess(from, 20 + i)).statusCode, 401);
      assert.equal((await guess("198.51.100.7", 30)).statusCode, 429, "IPv4-mapped IPv6 counts as the IPv4 address");
      assert.equal((await guess("198.51.100.8", 31)).statusCode, 401, "IPv4 stays per address");

      const register = (from: string, i: number) =>
        t.app.inject({
          method: "POST",
          url: "/register",
          payload: { username: `v6.reg.${i}`, password: TEST_PASSWORD },
          headers: { "x-forwarded-for": from },
        });
      assert.equal((await register("2001:db8:9:9::1", 1)).statusCode, 201);
      assert.equal((await register("2001:db8:9:9::2", 2)).statusCode, 201);
      assert.equal((await register("2001:db8:9:9:8::3", 3)).statusCode, 429, "registrations count per /64");
    } finally {
      await t.close();
    }
  });

  it("writes a throttling event once per key and window, not one per refused request: 1,000 refusals add a handful of rows", async () => {
    const dir = mkdtempSync(join(tmpdir(), "latch-throttle-rows-"));
    const path = join(dir, "latch.db");
    const t = await createTestServer({ stores: openSqliteStores({ path }), env: { THROTTLE_ADDRESS_FAILURES: "3" } });
    const reader = new BetterSqlite3(path, { readonly: true });
    const rows = (): number =>
      (
        reader
          .prepare(
            "SELECT (SELECT count(*) FROM security_events) + (SELECT count(*) FROM rate_limits) + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM users) AS n",
          )
          .get() as { n: number }
      ).n;
    const throttledEvents = (): Array<{ detail: string }> =>
      reader.prepare("SELECT detail FROM security_events WHERE type = 'throttled'").all() as Array<{ detail: string }>;
    try {
      const victim = await t.register();
      // A credential-stuffing flood: a new login name on every request, from one address.
      for (let i = 0; i < 3; i += 1) {
        assert.equal(
          (await t.app.inject({ method: "POST", url: "/login", payload: { username: `stuffed.${i}`, password: "wrong password" } }))
            .statusCode,
          401,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      const before = rows();
      const statuses = new Map<number, number>();
      for (let i = 0; i < 1000; i += 1) {
        const status = (
          await t.app.inject({ method: "POST", url: "/login", payload: { username: `stuffed.${i}`, password: "wrong password" } })
        ).statusCode;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      // Guesses at the victim's account from that address: refused too, and they write nothing either.
      for (let i = 0; i < 200; i += 1) {
        await t.app.inject({ method: "POST", url: "/login", payload: { username: victim.username, password: "wrong password" } });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual([...statuses], [[429, 1000]]);
      const added = rows() - before;
      assert.ok(added <= 5, `1,200 refused sign-ins added ${added} rows`);
      const scopes = throttledEvents()
        .map((row) => JSON.parse(row.detail).scope)
        .sort();
      assert.deepEqual(scopes, ["address"], "one event for the address's window");
      // The victim's own history keeps its sign-up, not a flood of refusals.
      const history = await t.stores.events.listUserEvents(victim.userId, 100);
      assert.ok(history.filter((e) => e.type === "throttled").length <= 1, JSON.stringify(history.map((e) => e.type)));
      assert.ok(history.some((e) => e.type === "register"));
      // A new window records again.
      t.clock.advance(900_001);
      for (let i = 0; i < 5; i += 1)
        await t.app.inject({ method: "POST", url: "/login", payload: { username: `later.${i}`, password: "wrong password" } });
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(
        throttledEvents()
          .map((row) => JSON.parse(row.detail).scope)
          .sort(),
        ["address", "address"],
      );
    } finally {
      reader.close();
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("records one throttling event per account window however many attempts it refuses", async () => {
    const t = await createTestServer();
    try {
      const victim = await t.register();
      for (let i = 0; i < 60; i += 1)
        await t.app.inject({ method: "POST", url: "/login", payload: { username: victim.username, password: `wrong password ${i}` } });
      await new Promise((resolve) => setTimeout(resolve, 20));
      const types = (await t.stores.events.listUserEvents(victim.userId, 200)).map((e) => e.type);
      assert.equal(types.filter((type) => type === "throttled").length, 1, types.join(","));
      assert.equal(types.filter((type) => type === "sign_in_failed").length, 10);
    } finally {
      await t.close();
    }
  });

  it("counts wrong passwords at POST /password and DELETE /me against the account limit", async () => {
    const t = await createTestServer();
    try {
      const me = await t.register();
      const statuses = [];
      for (let i = 0; i < 11; i += 1) {
        const url = i % 2 === 0 ? "/password" : "/me";
        const method = i % 2 === 0 ? "POST" : "DELETE";
        const payload =
          i % 2 === 0 ? { currentPassword: "wrong password", newPassword: "another fine passphrase" } : { password: "wrong password" };
        statuses.push((await t.app.inject({ method, url, payload, ...t.auth(me) })).statusCode);
      }
      assert.deepEqual(statuses, [...Array(10).fill(401), 429]);
    } finally {
      await t.close();
    }
  });
});
