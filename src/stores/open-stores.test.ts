import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { issueSessionToken } from "../core/session-token.js";
import { DATA_VERSION_CHECK_MS, openStores } from "./open-stores.js";

const dir = mkdtempSync(join(tmpdir(), "latch-open-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("openStores on SQLite", () => {
  it("sees within DATA_VERSION_CHECK_MS a session ended or a role changed by another process on the same file", async () => {
    const config = { database: { kind: "sqlite" as const, path: join(dir, "shared.db") }, redisUrl: null };
    const a = await openStores(config);
    const b = await openStores(config);
    try {
      const now = Date.now();
      await a.users.createUser({
        id: "u1",
        username: "u1",
        usernameKey: "u1",
        email: null,
        emailKey: null,
        emailVerified: false,
        passwordHash: "x",
        roles: ["user"],
        mfa: false,
        createdAt: now,
        updatedAt: now,
      });
      const issued = issueSessionToken("u1", (bytes) => void randomFillSync(bytes));
      const session = {
        id: issued.id,
        userId: "u1",
        secretHash: issued.secretHash,
        createdAt: now,
        lastSeenAt: now,
        idleExpiresAt: now + 60_000,
        absoluteExpiresAt: now + 60_000,
        userAgent: null,
        ipAddress: null,
        amr: ["pwd" as const],
        pending: false,
      };
      await a.sessions.createSession(session);
      assert.deepEqual((await a.sessions.findSession(session.id, now))?.user.roles, ["user"]);
      assert.ok(await a.sessions.findSession(session.id, now), "now cached in A");

      // A checks the file's data_version at most every DATA_VERSION_CHECK_MS
      // of its clock (here: the `now` passed in).
      await b.users.updateUserRoles("u1", ["user", "admin"], now);
      assert.deepEqual((await a.sessions.findSession(session.id, now + DATA_VERSION_CHECK_MS))?.user.roles, ["user", "admin"]);

      await b.sessions.deleteSession(session.id);
      assert.equal(await a.sessions.findSession(session.id, now + 2 * DATA_VERSION_CHECK_MS), null);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
