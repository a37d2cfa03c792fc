import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pino from "pino";
import { createFakeClock } from "../core/runtime.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { startMaintenance } from "./maintenance.js";

describe("maintenance", () => {
  it("sweeps expired sessions, events past retention and closed windows in batches, and keeps live data", async () => {
    const clock = createFakeClock(Date.UTC(2026, 5, 1));
    const stores = createMemoryStores();
    const now = clock.now();
    await stores.users.createUser({
      id: "u",
      username: "u",
      usernameKey: "u",
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "x",
      roles: ["user"],
      mfa: false,
      createdAt: now,
      updatedAt: now,
    });
    const session = (id: string, idle: number) => ({
      id,
      userId: "u",
      secretHash: Buffer.alloc(32),
      createdAt: now - 10,
      lastSeenAt: now - 10,
      idleExpiresAt: idle,
      absoluteExpiresAt: now + 1e9,
      userAgent: null,
      ipAddress: null,
      amr: ["pwd" as const],
      pending: false,
    });
    for (let i = 0; i < 7; i += 1) await stores.sessions.createSession(session(`expired-${i}`, now - 1));
    await stores.sessions.createSession(session("live", now + 60_000));
    const event = (id: string, at: number) => ({
      id,
      userId: "u",
      type: "sign_in" as const,
      at,
      ipAddress: null,
      userAgent: null,
      detail: null,
    });
    await stores.events.recordEvent(event("old", now - 91 * 86_400_000));
    await stores.events.recordEvent(event("recent", now - 89 * 86_400_000));
    await stores.limits.hit("closed", 1000, now - 5000);

    const stop = startMaintenance({
      stores,
      clock,
      logger: pino({ level: "silent" }),
      intervalMs: 60_000,
      eventRetentionDays: 90,
      batchSize: 3,
    });
    try {
      for (let i = 0; i < 50 && (await stores.sessions.listUserSessions("u", now - 100)).length > 1; i += 1)
        await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(
        (await stores.sessions.listUserSessions("u", now - 100)).map((s) => s.id),
        ["live"],
      );
      assert.deepEqual(
        (await stores.events.listUserEvents("u", 10)).map((e) => e.id),
        ["recent"],
      );
      assert.equal(await stores.limits.deleteClosedWindows(now, 10), 0);
    } finally {
      stop();
    }
  });
});
