import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { isCachedSessionStore } from "../core/store.js";
import type { Session, SessionCacheStats, Stores } from "../core/store.js";
import { DATA_VERSION_CHECK_MS, openStores } from "./open-stores.js";
import { testSession, testUser } from "./test-fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "latch-open-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function userWithSessions(stores: Stores, userId: string, count: number, now: number): Promise<Session[]> {
  await stores.users.createUser(testUser({ id: userId, createdAt: now, updatedAt: now }));
  const sessions: Session[] = [];
  for (let i = 0; i < count; i += 1) {
    const session = testSession(userId, {
      createdAt: now,
      lastSeenAt: now,
      idleExpiresAt: now + 600_000,
      absoluteExpiresAt: now + 600_000,
    });
    await stores.sessions.createSession(session);
    sessions.push(session);
  }
  return sessions;
}

/** Two processes' stores on one SQLite file (each its own connection and cache), closed after `body`. */
async function onOneFile(file: string, body: (a: Stores, b: Stores, path: string) => Promise<void>): Promise<void> {
  const path = join(dir, file);
  const config = { database: { kind: "sqlite" as const, path }, redisUrl: null };
  const a = await openStores(config);
  const b = await openStores(config);
  try {
    await body(a, b, path);
  } finally {
    await a.close();
    await b.close();
  }
}

function stats(stores: Stores): SessionCacheStats {
  assert.ok(isCachedSessionStore(stores.sessions));
  return stores.sessions.cacheStats();
}

describe("openStores on SQLite", () => {
  it("sees within DATA_VERSION_CHECK_MS a session ended or a role changed by another process on the same file", async () => {
    await onOneFile("shared.db", async (a, b) => {
      const now = Date.now();
      const [session] = (await userWithSessions(a, "u1", 1, now)) as [Session];
      assert.deepEqual((await a.sessions.findSession(session.id, now))?.user.roles, ["user"]);
      assert.ok(await a.sessions.findSession(session.id, now), "now cached in A");

      // A checks the file's data_version at most every DATA_VERSION_CHECK_MS
      // of its clock (here: the `now` passed in).
      await b.users.updateUserRoles("u1", ["user", "admin"], now);
      assert.deepEqual((await a.sessions.findSession(session.id, now + DATA_VERSION_CHECK_MS))?.user.roles, ["user", "admin"]);

      await b.sessions.deleteSession(session.id);
      assert.equal(await a.sessions.findSession(session.id, now + 2 * DATA_VERSION_CHECK_MS), null);
    });
  });

  it("drops only what another process ended: its renewals keep every entry, its sign-out drops one, its role change drops that user's", async () => {
    await onOneFile("precise.db", async (a, b, path) => {
      let now = Date.now();
      const [s1, s2, s3] = await userWithSessions(a, "p1", 3, now);
      const [other] = await userWithSessions(a, "p2", 1, now);
      const all = [s1!, s2!, s3!, other!];
      for (const s of all) assert.ok(await a.sessions.findSession(s.id, now));
      assert.equal(stats(a).entries, 4);

      // B renews all four (as its write-behind batch does every second): A keeps every entry.
      for (const s of all) assert.equal(await b.sessions.touchSession(s.id, now + 1, now + 700_000), true);
      now += DATA_VERSION_CHECK_MS;
      const before = stats(a);
      for (const s of all) assert.ok(await a.sessions.findSession(s.id, now));
      assert.equal(stats(a).misses, before.misses, "no entry was dropped by another process's renewals");
      assert.equal(stats(a).hits, before.hits + 4);

      // B signs one session out: A drops that one entry and serves the rest from memory.
      await b.sessions.deleteSession(s1!.id);
      now += DATA_VERSION_CHECK_MS;
      assert.equal(await a.sessions.findSession(s1!.id, now), null);
      const afterSignOut = stats(a);
      assert.equal(afterSignOut.entries, 3);
      for (const s of [s2!, s3!, other!]) assert.ok(await a.sessions.findSession(s.id, now));
      assert.equal(stats(a).misses, afterSignOut.misses);

      // B changes p1's roles: A drops p1's sessions and re-reads them with the new roles; p2's entry stays.
      await b.users.updateUserRoles("p1", ["user", "admin"], now);
      now += DATA_VERSION_CHECK_MS;
      const beforeRoles = stats(a);
      assert.deepEqual((await a.sessions.findSession(s2!.id, now))?.user.roles, ["user", "admin"]);
      assert.ok(await a.sessions.findSession(other!.id, now));
      assert.equal(stats(a).misses, beforeRoles.misses + 1, "only p1's session was read again");

      // An operator with the sqlite3 shell (no Latch code): the triggers log it too.
      const shell = new Database(path);
      try {
        shell.prepare("DELETE FROM sessions WHERE id = ?").run(s3!.id);
      } finally {
        shell.close();
      }
      now += DATA_VERSION_CHECK_MS;
      assert.equal(await a.sessions.findSession(s3!.id, now), null);
    });
  });

  it("empties its cache when log rows it had not read were pruned", async () => {
    await onOneFile("pruned.db", async (a, b, path) => {
      let now = Date.now();
      const [kept, ended] = await userWithSessions(a, "q1", 2, now);
      for (const s of [kept!, ended!]) assert.ok(await a.sessions.findSession(s.id, now));
      await b.sessions.deleteSession(ended!.id);
      // Age B's row past the log's keeping time, then let B's sweep prune it before A polls.
      const shell = new Database(path);
      try {
        shell.prepare("UPDATE invalidations SET at = at - 1").run();
      } finally {
        shell.close();
      }
      await b.sessions.deleteExpiredSessions(now, 500);
      now += DATA_VERSION_CHECK_MS;
      const before = stats(a);
      assert.equal(await a.sessions.findSession(ended!.id, now), null);
      assert.ok(await a.sessions.findSession(kept!.id, now));
      assert.equal(stats(a).misses, before.misses + 2, "both were read again: the cache was emptied");

      // The log is empty now; B's renewal afterwards must not empty A's cache again.
      assert.equal(await b.sessions.touchSession(kept!.id, now + 1, now + 700_000), true);
      now += DATA_VERSION_CHECK_MS;
      const afterFlush = stats(a);
      assert.ok(await a.sessions.findSession(kept!.id, now));
      assert.equal(stats(a).misses, afterFlush.misses, "one flush for the gap, not one per later commit");
    });
  });

  it("logs nothing for the sweeper's deletes of expired sessions, so another process's cache keeps its entries", async () => {
    await onOneFile("swept.db", async (a, b, path) => {
      let now = Date.now();
      const [live] = await userWithSessions(a, "r1", 1, now);
      const [expiring] = await userWithSessions(a, "r2", 1, now - 700_000); // idle expiry 100 s ago
      assert.ok(await a.sessions.findSession(live!.id, now));
      assert.equal(await b.sessions.deleteExpiredSessions(now, 500), 1);
      const shell = new Database(path, { readonly: true });
      try {
        assert.equal((shell.prepare("SELECT count(*) AS n FROM invalidations").get() as { n: number }).n, 0);
        assert.equal((shell.prepare("SELECT count(*) AS n FROM sessions WHERE id = ?").get(expiring!.id) as { n: number }).n, 0);
      } finally {
        shell.close();
      }
      // B's sweep committed (the data version moved) but logged nothing: A's entry stays.
      now += DATA_VERSION_CHECK_MS;
      const before = stats(a);
      assert.ok(await a.sessions.findSession(live!.id, now));
      assert.equal(stats(a).misses, before.misses);
      // A sign-out in B after the sweep is still seen.
      await b.sessions.deleteSession(live!.id);
      now += DATA_VERSION_CHECK_MS;
      assert.equal(await a.sessions.findSession(live!.id, now), null);
    });
  });
});
