import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { runStoreConformance } from "../store-conformance.js";
import { openSqliteStores } from "./sqlite-store.js";
import { migrate } from "./migrations.js";

const dir = mkdtempSync(join(tmpdir(), "latch-sqlite-"));
after(() => rmSync(dir, { recursive: true, force: true }));

runStoreConformance("sqlite", async () => ({ stores: openSqliteStores({ path: join(dir, "conformance.db") }) }));

describe("sqlite store", () => {
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
