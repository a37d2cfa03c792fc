import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { runStoreConformance } from "../store-conformance.js";
import { openSqliteStores } from "./sqlite-store.js";
import { migrate } from "./migrations.js";
import { testSession, testUser } from "../test-fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "latch-sqlite-"));
after(() => rmSync(dir, { recursive: true, force: true }));

runStoreConformance("sqlite", async () => ({ stores: openSqliteStores({ path: join(dir, "conformance.db") }) }));

/** Polls until `done` (up to 10 s: the checkpointer starts after 1 s and runs every second, later on a loaded machine). */
async function waitFor(done: () => boolean): Promise<void> {
  for (const until = Date.now() + 10_000; !done() && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 50));
}

describe("sqlite store", () => {
  it("checkpoints the WAL on a thread of its own, never in a commit on the event loop", async () => {
    const path = join(dir, "checkpoint.db");
    const stores = openSqliteStores({ path });
    assert.equal(stores.db.pragma("wal_autocheckpoint", { simple: true }), 1000, "SQLite's own until the thread is up");
    await waitFor(() => stores.db.pragma("wal_autocheckpoint", { simple: true }) === 0);
    assert.equal(stores.db.pragma("wal_autocheckpoint", { simple: true }), 0, "the thread checkpoints from now on");
    await stores.users.createUser(testUser({ id: "cp" }));
    const sizeBefore = statSync(path).size;
    stores.db.transaction(() => {
      for (let i = 0; i < 3_000; i += 1) void stores.sessions.createSession(testSession("cp", { id: `cp-${i}` }));
    })();
    assert.equal(statSync(path).size, sizeBefore, "the commit itself copied nothing into the database file");
    await waitFor(() => statSync(path).size > sizeBefore + 3_000 * 64);
    assert.ok(statSync(path).size > sizeBefore + 3_000 * 64, "the checkpointer copied the frames into the file");
    await stores.close();
    const again = openSqliteStores({ path });
    assert.equal((await again.sessions.listUserSessions("cp", 0)).length, 3_000);
    await again.close();
  });

  it("sweeps expired sessions in rowid slices, going on from where a call stopped at its limit", async () => {
    const stores = openSqliteStores({ path: join(dir, "sweep.db") });
    await stores.users.createUser(testUser({ id: "sw" }));
    const now = Date.now();
    stores.db.transaction(() => {
      for (let i = 0; i < 12_000; i += 1) {
        const expired = i % 3 === 0;
        const idle = i % 6 === 0;
        void stores.sessions.createSession(
          testSession("sw", {
            id: `sw-${i}`,
            idleExpiresAt: expired && idle ? now - 1 : now + 600_000,
            absoluteExpiresAt: expired && !idle ? now - 1 : now + 3_600_000,
          }),
        );
      }
    })();
    const rounds: number[] = [];
    for (;;) {
      const removed = await stores.sessions.deleteExpiredSessions(now, 1_000);
      rounds.push(removed);
      if (removed < 1_000) break;
    }
    assert.equal(
      rounds.reduce((a, b) => a + b, 0),
      4_000,
      "every expired session (idle or absolute) is gone",
    );
    assert.ok(rounds.length >= 4, `several rounds, each going on from the last: ${rounds.join(", ")}`);
    assert.equal(stores.db.prepare("SELECT count(*) FROM sessions").pluck().get(), 8_000, "no live session was touched");
    await stores.close();
  });

  it("creates the file and its folder, in WAL mode", async () => {
    const stores = openSqliteStores({ path: join(dir, "nested", "deeper", "latch.db") });
    assert.equal(stores.db.pragma("journal_mode", { simple: true }), "wal");
    assert.ok(readdirSync(join(dir, "nested", "deeper")).includes("latch.db"));
    await stores.close();
  });

  it("runs migrations again as a no-op", async () => {
    const stores = openSqliteStores({ path: join(dir, "twice.db") });
    const version = stores.db.pragma("user_version", { simple: true });
    assert.equal(migrate(stores.db), version);
    await stores.close();
    const again = openSqliteStores({ path: join(dir, "twice.db") });
    assert.equal(again.db.pragma("user_version", { simple: true }), version);
    await again.close();
  });

  it("keeps data across close and reopen", async () => {
    const path = join(dir, "reopen.db");
    const first = openSqliteStores({ path });
    await first.limits.hit("k", 60_000, Date.now());
    await first.close();
    const second = openSqliteStores({ path });
    assert.equal((await second.limits.peek("k", Date.now()))?.count, 1);
    await second.close();
  });

  it("stores no readable secret: the file holds the secret's hash, not the secret", async () => {
    const path = join(dir, "secrets.db");
    const stores = openSqliteStores({ path });
    const secretHash = Buffer.alloc(32, 7);
    await stores.users.createUser({
      id: "u1",
      username: "u1",
      usernameKey: "u1",
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "$argon2id$x",
      roles: ["user"],
      mfa: false,
      createdAt: 1,
      updatedAt: 1,
    });
    await stores.sessions.createSession({
      id: "s".repeat(30),
      userId: "u1",
      secretHash,
      createdAt: 1,
      lastSeenAt: 1,
      idleExpiresAt: Date.now() + 1e6,
      absoluteExpiresAt: Date.now() + 1e6,
      userAgent: null,
      ipAddress: null,
      amr: ["pwd"],
      pending: false,
    });
    await stores.close();
    const bytes = readFileSync(path);
    const wal = readFileSync(`${path}-wal`, { flag: "a+" });
    assert.ok(Buffer.concat([bytes, wal]).includes(secretHash), "the hash is what is stored");
  });

  it("reports a closed database as down and its calls as unavailable", async () => {
    const stores = openSqliteStores({ path: join(dir, "closed.db") });
    await stores.close();
    assert.deepEqual(await stores.health(), { database: "down" });
    await assert.rejects(stores.users.findUserById("x"), { code: "unavailable" });
  });
});
