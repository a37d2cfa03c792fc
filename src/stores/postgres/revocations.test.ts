import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, connect } from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { POSTGRES_URL, serviceSkip } from "../../testing/services.js";
import { createSessionCache } from "../cached/session-cache.js";
import { createManualChannel } from "../revocation-channel.js";
import { runStoreConformance } from "../store-conformance.js";
import { testSession, testUser } from "../test-fixtures.js";
import { createPostgresStores } from "./postgres-store.js";
import { dropTestSchema, testSchemaName } from "./postgres-test-support.js";
import type { PostgresStores } from "./postgres-store.js";
import { listenForRevocations } from "./revocations.js";
import type { PostgresRevocationEvent, RevocationListener } from "./revocations.js";

const skip = await serviceSkip("postgres");

async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<number> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now() - started;
}

/**
 * A TCP relay in front of PostgreSQL, for faults a real network has: `hang()`
 * stops passing the server's bytes to the client (a partition that drops
 * packets, or a stopped server), `cut()` closes every connection.
 */
async function startRelay(): Promise<{ url: string; hang(): void; resume(): void; cut(): void; close(): Promise<void> }> {
  const target = new URL(POSTGRES_URL);
  const pairs = new Set<[Socket, Socket]>();
  let hung = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.on("data", (chunk: Buffer) => {
      if (!hung) client.write(chunk);
    });
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(POSTGRES_URL);
  url.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: url.href,
    hang: () => void (hung = true),
    resume: () => void (hung = false),
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

runStoreConformance(
  "postgres behind the session cache, kept by LISTEN/NOTIFY",
  async () => {
    const schema = testSchemaName();
    const database = await createPostgresStores({ url: POSTGRES_URL, schema });
    const channel = createManualChannel();
    const cache = createSessionCache(database, channel, { clock: { now: () => Date.now() } });
    const listener = listenForRevocations({ url: POSTGRES_URL, schema, onEvent: channel.emit, onStatus: (s) => channel.setUp(s === "up") });
    await waitFor("the listener", () => listener.up);
    return {
      stores: {
        ...cache.stores,
        async close() {
          await listener.close();
          await database.close();
        },
      },
      cleanup: () => dropTestSchema(schema),
    };
  },
  { skip },
);

describe("PostgreSQL revocation notifications", { skip }, () => {
  let schema: string;
  let stores: PostgresStores;
  let listener: RevocationListener;
  const events: PostgresRevocationEvent[] = [];
  const seen = (expected: PostgresRevocationEvent): boolean => events.some((e) => JSON.stringify(e) === JSON.stringify(expected));

  before(async () => {
    schema = testSchemaName();
    stores = await createPostgresStores({ url: POSTGRES_URL, schema });
    listener = listenForRevocations({ url: POSTGRES_URL, schema, onEvent: (e) => events.push(e) });
    await waitFor("the listener", () => listener.up);
  });
  after(async () => {
    await listener?.close();
    await stores?.close();
    if (schema !== undefined) await dropTestSchema(schema);
  });

  it("announces in a schema with the longest name PostgreSQL allows", async () => {
    const long = `latch_test_${randomBytes(26).toString("hex")}`;
    assert.equal(long.length, 63);
    const longStores = await createPostgresStores({ url: POSTGRES_URL, schema: long });
    const heard: PostgresRevocationEvent[] = [];
    const longListener = listenForRevocations({ url: POSTGRES_URL, schema: long, onEvent: (e) => heard.push(e) });
    try {
      await waitFor("the listener", () => longListener.up);
      const user = testUser();
      await longStores.users.createUser(user);
      const session = testSession(user.id);
      await longStores.sessions.createSession(session);
      await longStores.sessions.deleteSession(session.id);
      await waitFor("the sign-out", () => heard.some((e) => e.kind === "session" && e.sessionId === session.id));
      assert.equal(
        events.some((e) => e.kind === "session" && e.sessionId === session.id),
        false,
        "another schema's listener hears nothing of it",
      );
    } finally {
      await longListener.close();
      await longStores.close();
      await dropTestSchema(long);
    }
  });

  it("leaves the sweeper's deletes of expired sessions unannounced, and announces an operator's UPDATE or TRUNCATE", async () => {
    const user = testUser();
    await stores.users.createUser(user);
    const expired = testSession(user.id, { idleExpiresAt: Date.now() - 1000 });
    const shortened = testSession(user.id);
    await stores.sessions.createSession(expired);
    await stores.sessions.createSession(shortened);
    assert.ok((await stores.sessions.deleteExpiredSessions(Date.now(), 100)) >= 1);
    await stores.pool.query("UPDATE sessions SET absolute_expires_at = absolute_expires_at - 1000 WHERE id = $1", [shortened.id]);
    await waitFor("the shortened session", () => seen({ kind: "session", sessionId: shortened.id }));
    assert.equal(seen({ kind: "session", sessionId: expired.id }), false, "the sweep said nothing");
    await stores.pool.query("TRUNCATE sessions");
    await waitFor("the truncation", () => events.some((e) => e.kind === "flush"));
  });

  it("announces every ended session and changed user, from whichever statement ended it, and nothing for a renewal", async () => {
    const user = testUser();
    await stores.users.createUser(user);
    const [a, b, c, d] = [testSession(user.id), testSession(user.id), testSession(user.id), testSession(user.id)];
    for (const s of [a, b, c, d]) await stores.sessions.createSession(s);

    await stores.sessions.touchSession(a.id, Date.now(), a.idleExpiresAt + 60_000); // a renewal extends the idle expiry
    await stores.sessions.deleteSession(a.id);
    await waitFor("sign-out", () => seen({ kind: "session", sessionId: a.id }));

    const next = testSession(user.id);
    assert.equal(await stores.sessions.rotateSession(b.id, next), true);
    await waitFor("rotation", () => seen({ kind: "session", sessionId: b.id }));

    assert.equal(await stores.sessions.deleteUserSessions(user.id, { exceptId: next.id }), 2);
    await waitFor("revoke-others", () => seen({ kind: "session", sessionId: c.id }) && seen({ kind: "session", sessionId: d.id }));

    await stores.users.updateUserRoles(user.id, ["user", "admin"], Date.now());
    await waitFor("role change", () => seen({ kind: "user", userId: user.id }));

    const before = events.length;
    await stores.users.deleteUser(user.id);
    await waitFor(
      "deletion, with its sessions by cascade",
      () => events.length >= before + 2 && seen({ kind: "session", sessionId: next.id }),
    );
    assert.equal(
      events.filter((e) => e.kind === "session" && e.sessionId === a.id).length,
      1,
      "one announcement per ended session: the renewal said nothing",
    );
  });

  it("syncs: once sync() resolves, everything committed before it has been heard", async () => {
    const user = testUser();
    await stores.users.createUser(user);
    const sessions = [testSession(user.id), testSession(user.id), testSession(user.id)];
    for (const session of sessions) await stores.sessions.createSession(session);
    for (const session of sessions) {
      await stores.sessions.deleteSession(session.id);
      const started = performance.now();
      assert.equal(await listener.sync(2000), true, "its marker came back");
      assert.ok(performance.now() - started < 500, "by the marker, not by the timeout");
      assert.ok(seen({ kind: "session", sessionId: session.id }), "heard before sync() resolved");
    }
    await stores.users.updateUserRoles(user.id, ["user", "admin"], Date.now());
    assert.equal(await listener.sync(2000), true);
    assert.ok(seen({ kind: "user", userId: user.id }));
  });

  it("goes down while a revocation trigger is disabled, and comes back when it is enabled again", async () => {
    await stores.pool.query("ALTER TABLE sessions DISABLE TRIGGER sessions_announce_end");
    try {
      await waitFor("down", () => !listener.up, 2000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(listener.up, false, "stays down: a reconnect finds the trigger disabled");
      assert.equal(await listener.sync(100), false, "nothing can be heard while down");
    } finally {
      await stores.pool.query("ALTER TABLE sessions ENABLE TRIGGER sessions_announce_end");
    }
    await waitFor("up again", () => listener.up, 5000);
  });

  it("announces nothing for a change that is rolled back, and announces a psql-style delete once committed", async () => {
    const user = testUser();
    await stores.users.createUser(user);
    const kept = testSession(user.id);
    const deleted = testSession(user.id);
    await stores.sessions.createSession(kept);
    await stores.sessions.createSession(deleted);
    const client = await stores.pool.connect();
    try {
      await client.query("BEGIN");
      await client.query("DELETE FROM sessions WHERE id = $1", [kept.id]);
      await client.query("ROLLBACK");
      await client.query("DELETE FROM sessions WHERE id = $1", [deleted.id]);
    } finally {
      client.release();
    }
    await waitFor("the committed delete", () => seen({ kind: "session", sessionId: deleted.id }));
    // Heartbeats pass every 250 ms: two of them prove the channel delivered everything sent before.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(seen({ kind: "session", sessionId: kept.id }), false);
    assert.ok(await stores.sessions.findSession(kept.id, Date.now()));
  });
});

describe("the PostgreSQL-backed session cache under faults", { skip }, () => {
  let schema: string;
  let stores: PostgresStores;
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let listener: RevocationListener;
  let cache: ReturnType<typeof createSessionCache>;
  const statuses: string[] = [];

  before(async () => {
    schema = testSchemaName();
    stores = await createPostgresStores({ url: POSTGRES_URL, schema });
    relay = await startRelay();
    const channel = createManualChannel();
    cache = createSessionCache(stores, channel, { clock: { now: () => Date.now() } });
    // Only the listening connection goes through the relay: the database stays reachable for reads.
    listener = listenForRevocations({
      url: relay.url,
      schema,
      onEvent: channel.emit,
      onStatus: (status) => {
        statuses.push(status);
        channel.setUp(status === "up");
      },
    });
    await waitFor("the listener", () => listener.up);
  });
  after(async () => {
    await listener?.close();
    await relay?.close();
    await stores?.close();
    if (schema !== undefined) await dropTestSchema(schema);
  });

  async function cachedSession(): Promise<string> {
    const user = testUser();
    await stores.users.createUser(user);
    const session = testSession(user.id);
    await stores.sessions.createSession(session);
    assert.ok(await cache.stores.sessions.findSession(session.id, Date.now()));
    assert.ok(cache.stores.sessions.peekSession!(session.id, Date.now()), "served from memory");
    return session.id;
  }

  it("stops serving from memory within a second when notifications stop arriving, and starts empty when they return", async () => {
    const id = await cachedSession();
    relay.hang();
    const downAfter = await waitFor("down", () => !listener.up, 1500);
    assert.ok(downAfter < 1200, `noticed after ${downAfter.toFixed(0)} ms`);
    assert.equal(cache.stores.sessions.peekSession!(id, Date.now()), undefined, "fails closed");
    assert.ok(await cache.stores.sessions.findSession(id, Date.now()), "reads still come from the database");
    assert.equal(cache.stores.sessions.peekSession!(id, Date.now()), undefined, "and are not cached while down");
    relay.resume();
    // Up to a connect timeout (2 s) for the attempt the hang broke, then a back-off.
    await waitFor("up again", () => listener.up, 8000);
    assert.equal(cache.stores.sessions.peekSession!(id, Date.now()), undefined, "starts empty");
  });

  it("reconnects after its connection is cut, and then hears revocations again", async () => {
    const downsBefore = statuses.filter((s) => s === "down").length;
    relay.cut();
    await waitFor("down", () => !listener.up, 1500);
    await waitFor("up again", () => listener.up, 5000);
    assert.equal(statuses.filter((s) => s === "down").length, downsBefore + 1);
    const id = await cachedSession();
    await stores.sessions.deleteSession(id); // straight to the database, as another process would
    await waitFor("the revocation", () => cache.stores.sessions.peekSession!(id, Date.now()) === undefined);
    assert.equal(await cache.stores.sessions.findSession(id, Date.now()), null);
    assert.equal(statuses.at(-1), "up");
  });
});
