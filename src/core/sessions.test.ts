import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { beforeEach, describe, it } from "node:test";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { createFakeClock } from "./runtime.js";
import type { FakeClock } from "./runtime.js";
import { createSessionManager } from "./sessions.js";
import type { SessionManager } from "./sessions.js";
import type { Stores } from "./store.js";

describe("session manager", () => {
  let clock: FakeClock;
  let stores: Stores;
  let sessions: SessionManager;
  const policy = { idleTimeoutMs: 600_000, absoluteTimeoutMs: 3_600_000, renewIntervalMs: 60_000 };

  beforeEach(async () => {
    clock = createFakeClock(Date.UTC(2026, 0, 1));
    stores = createMemoryStores();
    sessions = createSessionManager({ store: stores.sessions, runtime: { clock, random: (b) => void randomFillSync(b) }, policy });
    await stores.users.createUser({
      id: "u1",
      username: "u1",
      usernameKey: "u1",
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "x",
      roles: ["user"],
      mfa: false,
      createdAt: clock.now(),
      updatedAt: clock.now(),
    });
  });

  it("creates sessions with both expiries set from the policy", async () => {
    const { session, token } = await sessions.create("u1", { userAgent: "ua", ipAddress: "192.0.2.0" });
    assert.equal(session.idleExpiresAt, clock.now() + 600_000);
    assert.equal(session.absoluteExpiresAt, clock.now() + 3_600_000);
    assert.ok(token.startsWith(session.id + "."));
    const valid = await sessions.validate(token);
    assert.equal(valid?.user.id, "u1");
    assert.equal(valid?.renewed, false);
  });

  it("refuses a token after its idle timeout, exactly at the boundary", async () => {
    const { token } = await sessions.create("u1", { userAgent: null, ipAddress: null });
    clock.advance(599_999);
    assert.ok(await sessions.validate(token));
    clock.advance(600_000);
    assert.equal(await sessions.validate(token), null);
  });

  it("renews at most once per renewal interval and caps the idle expiry at the absolute one", async () => {
    const { token } = await sessions.create("u1", { userAgent: null, ipAddress: null });
    clock.advance(30_000);
    assert.equal((await sessions.validate(token))?.renewed, false);
    clock.advance(30_000);
    const renewed = await sessions.validate(token);
    assert.equal(renewed?.renewed, true);
    assert.equal(renewed?.session.idleExpiresAt, clock.now() + 600_000);
    clock.set(Date.UTC(2026, 0, 1) + 3_300_000);
    // The session idled out long ago; a fresh one shows the cap instead.
    const second = await sessions.create("u1", { userAgent: null, ipAddress: null });
    for (let t = 0; t < 3_500_000; t += 300_000) {
      clock.advance(300_000);
      const v = await sessions.validate(second.token);
      if (v) assert.ok(v.session.idleExpiresAt <= v.session.absoluteExpiresAt);
    }
    assert.equal(await sessions.validate(second.token), null);
  });

  it("rotates a session to a new id and secret, keeping its absolute expiry", async () => {
    const { session, token } = await sessions.create("u1", { userAgent: "ua", ipAddress: null });
    clock.advance(10_000);
    const rotated = await sessions.rotate(session);
    assert.ok(rotated);
    assert.notEqual(rotated.session.id, session.id);
    assert.equal(rotated.session.absoluteExpiresAt, session.absoluteExpiresAt);
    assert.equal(rotated.session.createdAt, session.createdAt);
    assert.equal(await sessions.validate(token), null);
    assert.ok(await sessions.validate(rotated.token));
    assert.equal(await sessions.rotate(session), null);
  });
});
