import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createPostgresStores } from "../src/stores/postgres/index.js";
import { dropTestSchema, testSchemaName } from "../src/stores/postgres/postgres-test-support.js";
import { createTestServer } from "../src/testing/test-server.js";
import { POSTGRES_URL, serviceSkip } from "../src/testing/services.js";
import { startTcpProxy } from "../src/testing/tcp-proxy.js";

/**
 * A database outage is logged once when it starts and once when it ends,
 * counted in latch_store_failures_total, and every request that needed the
 * database still gets its 503. The outage: a TCP proxy in front of the
 * shared PostgreSQL is cut (its connections reset, new ones refused), which
 * is what a stopped server looks like to Latch.
 */
const skip = await serviceSkip("postgres");

describe("logging a database outage", { skip, timeout: 60_000 }, () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  });

  it("logs one line when the database goes away and one when it is back, counts every failure, and answers each request 503", async () => {
    const proxy = await startTcpProxy(Number(new URL(POSTGRES_URL).port || 5432), new URL(POSTGRES_URL).hostname);
    cleanups.push(() => proxy.close());
    const url = new URL(POSTGRES_URL);
    url.port = String(proxy.port);
    const schema = testSchemaName();
    cleanups.push(() => dropTestSchema(schema));
    const stores = await createPostgresStores({ url: url.toString(), schema });
    const lines: Array<Record<string, unknown>> = [];
    const t = await createTestServer({
      stores,
      logger: { level: "info", stream: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } },
    });
    cleanups.push(() => t.close());
    const user = await t.register();

    proxy.cut();
    const statuses: number[] = [];
    for (let i = 0; i < 60; i += 1) {
      const requests = [
        t.app.inject({ url: "/protected", cookies: { sid: user.cookie } }),
        t.app.inject({ method: "POST", url: "/login", payload: { username: user.username, password: "whatever it is" } }),
        t.app.inject({ method: "POST", url: "/logout", ...t.auth(user) }),
      ];
      for (const response of await Promise.all(requests)) {
        statuses.push(response.statusCode);
        if (response.statusCode === 503) assert.equal(response.json().error.code, "unavailable");
      }
      await sleep(10);
    }
    assert.ok(
      statuses.every((status) => status === 503),
      `every request needing the database got 503: ${[...new Set(statuses)].join(",")}`,
    );
    const during = lines.length;
    assert.equal(
      during,
      1,
      `one line for the outage, not one per request: ${during} lines, the first ${JSON.stringify(lines[0]).slice(0, 300)}`,
    );
    assert.equal(lines[0]!.store, "database");
    assert.match(String(lines[0]!.msg), /database is unavailable/i);
    assert.ok(JSON.stringify(lines[0]).length < 4000, "a short line");

    const metrics = await t.app.inject({ url: "/metrics", remoteAddress: "127.0.0.1" });
    const failures = /^latch_store_failures_total\{store="database"\} (\d+)$/m.exec(metrics.body);
    assert.ok(failures, metrics.body.slice(0, 400));
    assert.ok(Number(failures[1]) >= statuses.length, `${failures[1]} failures counted for ${statuses.length} requests`);

    proxy.restore();
    for (let i = 0; i < 100 && lines.length < 2; i += 1) await sleep(50);
    assert.equal(lines.length, 2, JSON.stringify(lines).slice(0, 600));
    assert.match(String(lines[1]!.msg), /database answers again/i);
    assert.equal(lines[1]!.store, "database");
    assert.ok(Number(lines[1]!.failures) >= statuses.length);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: user.cookie } })).statusCode, 200);

    // A second outage is logged again.
    proxy.cut();
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: user.cookie } })).statusCode, 503);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: user.cookie } })).statusCode, 503);
    assert.equal(lines.length, 3);
    proxy.restore();
  });
});
