import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { beforeEach, describe, it } from "node:test";
import { LatchError } from "../../core/errors.js";
import { createFakeClock } from "../../core/runtime.js";
import type { FakeClock } from "../../core/runtime.js";
import { issueSessionToken } from "../../core/session-token.js";
import { createSessionManager } from "../../core/sessions.js";
import type { Session, Stores } from "../../core/store.js";
import { createMemoryStores } from "../memory/memory-store.js";
import { runStoreConformance } from "../store-conformance.js";
import { createSessionCache } from "./session-cache.js";
import type { SessionCache } from "./session-cache.js";
import { createManualChannel } from "../revocation-channel.js";
import type { ManualChannel } from "../revocation-channel.js";

runStoreConformance("memory behind the session cache", async () => {
  const cache = createSessionCache(createMemoryStores(), createManualChannel({ up: true }), { clock: { now: () => Date.now() } });
  return { stores: cache.stores };
});

describe("the in-process session cache", () => {
  let clock: FakeClock;
  let inner: Stores;
  let cache: SessionCache;
  let channel: ManualChannel;
  let n = 0;

  async function newSession(overrides: Partial<Session> = {}): Promise<Session> {
    n += 1;
    const userId = `user-${n}`;
    await inner.users.createUser({
      id: userId,
      username: userId,
      usernameKey: userId,
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "x",
      roles: ["user"],
      mfa: false,
      createdAt: 1,
      updatedAt: 1,
    });
    const issued = issueSessionToken(userId, (b) => void randomFillSync(b));
    const now = clock.now();
    const session = {
      id: issued.id,
      userId,
      secretHash: issued.secretHash,
      createdAt: now,
      lastSeenAt: now,
      idleExpiresAt: now + 600_000,
      absoluteExpiresAt: now + 3_600_000,
      userAgent: null,
      ipAddress: null,
      amr: ["pwd" as const],
      pending: false,
      ...overrides,
    };
    await inner.sessions.createSession(session);
    return session;
  }

  beforeEach(() => {
    clock = createFakeClock(Date.UTC(2026, 0, 1));
    inner = createMemoryStores();
    channel = createManualChannel({ up: true });
    cache = createSessionCache(inner, channel, { clock, maxAgeMs: 30_000 });
  });

  it("serves a repeated validation from memory", async () => {
    const session = await newSession();
    assert.ok(await cache.stores.sessions.findSession(session.id, clock.now()));
    assert.ok(await cache.stores.sessions.findSession(session.id, clock.now()));
    assert.deepEqual(cache.stats(), { serving: true, entries: 1, hits: 1, misses: 1, writes: 0 });
  });

  it("answers peekSession from memory only: undefined on a miss, a revocation, an expiry or a channel outage", async () => {
    const session = await newSession({ idleExpiresAt: clock.now() + 60_000 });
    const sessions = cache.stores.sessions;
    assert.equal(sessions.peekSession!(session.id, clock.now()), undefined, "not cached yet");
    const found = await sessions.findSession(session.id, clock.now());
    assert.equal(sessions.peekSession!(session.id, clock.now()), found, "the cached entry itself");
    channel.setUp(false);
    assert.equal(sessions.peekSession!(session.id, clock.now()), undefined, "channel down: nothing from memory");
    channel.setUp(true);
    await sessions.findSession(session.id, clock.now());
    cache.apply({ kind: "session", sessionId: session.id });
    assert.equal(sessions.peekSession!(session.id, clock.now()), undefined, "invalidated");
    await sessions.findSession(session.id, clock.now());
    assert.ok(sessions.peekSession!(session.id, clock.now()));
    assert.equal(sessions.peekSession!(session.id, clock.now() + 60_000), undefined, "idle expiry reached");
  });

  it("remembers the secret peekVerified accepted with the entry: later hits compare, a renewal keeps it, a re-read checks again", async () => {
    const session = await newSession();
    const { secret: right } = issueSessionToken(session.userId, (b) => void randomFillSync(b));
    const wrong = `${right.slice(0, -1)}${right.endsWith("A") ? "B" : "A"}`;
    const checked: string[] = [];
    const verify = (secret: string, s: Session): boolean => {
      checked.push(secret);
      assert.equal(s.id, session.id);
      return secret === right;
    };
    const sessions = cache.stores.sessions;
    assert.equal(sessions.peekVerified!(session.id, clock.now(), right, verify), undefined, "not cached yet");
    const found = await sessions.findSession(session.id, clock.now());
    assert.equal(sessions.peekVerified!(session.id, clock.now(), wrong, verify), null, "a wrong secret");
    assert.equal(sessions.peekVerified!(session.id, clock.now(), right, verify), found, "the right one");
    assert.deepEqual(checked, [wrong, right], "each checked once");
    assert.equal(sessions.peekVerified!(session.id, clock.now(), right, verify), found);
    assert.equal(sessions.peekVerified!(session.id, clock.now(), wrong, verify), null, "refused by the remembered secret");
    assert.equal(checked.length, 2, "no further checks once one secret matched");
    clock.advance(20_000); // within this cache's maxAgeMs
    const renewed = sessions.renewCached!(session.id, clock.now(), clock.now() + 600_000);
    assert.ok(renewed);
    assert.equal(sessions.peekVerified!(session.id, clock.now(), right, verify)?.session, renewed, "renewed, still remembered");
    assert.equal(checked.length, 2);
    cache.apply({ kind: "session", sessionId: session.id });
    await cache.flush();
    await sessions.findSession(session.id, clock.now());
    assert.ok(sessions.peekVerified!(session.id, clock.now(), right, verify), "read again");
    assert.deepEqual(checked, [wrong, right, right], "a new entry checks the secret again");
  });

  it("lets the session manager validate a cached session synchronously, and only then", async () => {
    const manager = createSessionManager({
      store: cache.stores.sessions,
      runtime: { clock, random: (b) => void randomFillSync(b) },
      policy: { idleTimeoutMs: 600_000, absoluteTimeoutMs: 3_600_000, renewIntervalMs: 60_000 },
    });
    await inner.users.createUser({
      id: "u-sync",
      username: "u-sync",
      usernameKey: "u-sync",
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "x",
      roles: ["user"],
      mfa: false,
      createdAt: 1,
      updatedAt: 1,
    });
    const { token } = await manager.create("u-sync", { userAgent: null, ipAddress: null });
    assert.equal(manager.validateCached(token), undefined, "not in memory: the async path must run");
    assert.ok(await manager.validate(token));
    const cached = manager.validateCached(token);
    assert.equal(cached?.user.id, "u-sync");
    assert.equal(cached?.renewed, false);
    assert.equal(manager.validateCached(`${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`), null, "wrong secret");
    assert.equal(manager.validateCached("not a token"), null);
    clock.advance(60_000);
    assert.equal(manager.validateCached(token), undefined, "a renewal is due: only validate may write it");
    assert.equal((await manager.validate(token))?.renewed, true);
  });

  it("refuses any other secret for a cached session once its own has been remembered, wherever the secrets differ", async () => {
    const manager = createSessionManager({
      store: cache.stores.sessions,
      runtime: { clock, random: (b) => void randomFillSync(b) },
      policy: { idleTimeoutMs: 600_000, absoluteTimeoutMs: 3_600_000, renewIntervalMs: 60_000 },
    });
    await inner.users.createUser({
      id: "u-memo",
      username: "u-memo",
      usernameKey: "u-memo",
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "x",
      roles: ["user"],
      mfa: false,
      createdAt: 1,
      updatedAt: 1,
    });
    const { token, session } = await manager.create("u-memo", { userAgent: null, ipAddress: null });
    const secret = token.slice(session.id.length + 1);
    const flip = (c: string): string => (c === "A" ? "B" : "A");
    const wrongFirst = `${session.id}.${flip(secret[0]!)}${secret.slice(1)}`;
    const wrongMiddle = `${session.id}.${secret.slice(0, 20)}${flip(secret[20]!)}${secret.slice(21)}`;
    // Filled through the store, so nothing has checked (or remembered) the secret yet.
    assert.ok(await cache.stores.sessions.findSession(session.id, clock.now()), "fills the cache");
    assert.equal(manager.validateCached(wrongFirst), null, "a wrong secret before the right one was remembered");
    assert.equal(manager.validateCached(token)?.session.id, session.id, "the right one, now remembered");
    for (const wrong of [wrongFirst, wrongMiddle, `${token.slice(0, -1)}${flip(token.at(-1)!)}`]) {
      assert.equal(
        manager.validateCached(wrong),
        null,
        `after remembering: ${wrong === wrongFirst ? "first" : wrong === wrongMiddle ? "middle" : "last"} character differs`,
      );
    }
    // A re-filled entry is a new session object: its secret is checked against the stored hash again.
    cache.apply({ kind: "session", sessionId: session.id });
    assert.equal(manager.validateCached(token), undefined, "invalidated: not in memory");
    assert.equal(await manager.validate(wrongMiddle), null, "the async path refuses it against the stored hash (and fills the cache)");
    assert.equal(manager.validateCached(wrongMiddle), null);
    assert.ok(await manager.validate(token), "the async path remembers the right one for the new entry");
    assert.equal(manager.validateCached(token)?.user.id, "u-memo");
  });

  it("keeps serving an entry another process revoked until the invalidation arrives, then refuses it", async () => {
    const session = await newSession();
    await cache.stores.sessions.findSession(session.id, clock.now());
    await inner.sessions.deleteSession(session.id); // another process, straight to the store
    assert.ok(await cache.stores.sessions.findSession(session.id, clock.now()), "stale until told");
    cache.apply({ kind: "session", sessionId: session.id });
    assert.equal(await cache.stores.sessions.findSession(session.id, clock.now()), null);
  });

  it("forgets a session ended in this process at once", async () => {
    const session = await newSession();
    await cache.stores.sessions.findSession(session.id, clock.now());
    await cache.stores.sessions.deleteSession(session.id);
    assert.equal(await cache.stores.sessions.findSession(session.id, clock.now()), null);
  });

  it("refuses every session of a user created before a revoke-all, except the one kept", async () => {
    const a = await newSession();
    const b = { ...a, id: issueSessionToken(a.userId, (x) => void randomFillSync(x)).id };
    await inner.sessions.createSession(b);
    await cache.stores.sessions.findSession(a.id, clock.now());
    await cache.stores.sessions.findSession(b.id, clock.now());
    await inner.sessions.deleteUserSessions(a.userId, { exceptId: b.id });
    cache.apply({ kind: "user-sessions", userId: a.userId, before: clock.now() + 1, exceptId: b.id });
    assert.equal(await cache.stores.sessions.findSession(a.id, clock.now()), null);
    assert.ok(await cache.stores.sessions.findSession(b.id, clock.now()));
  });

  it("does not let a read that raced an invalidation fill the cache with a revoked session", async () => {
    const session = await newSession();
    const slowInner = inner.sessions.findSession;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    inner.sessions.findSession = async (id, now) => {
      const found = await slowInner(id, now);
      await gate;
      return found;
    };
    const racing = cache.stores.sessions.findSession(session.id, clock.now());
    await new Promise((r) => setImmediate(r));
    await inner.sessions.deleteSession.call(inner.sessions, session.id);
    cache.apply({ kind: "session", sessionId: session.id });
    release();
    await racing;
    inner.sessions.findSession = slowInner;
    assert.equal(cache.stats().entries, 0);
    assert.equal(await cache.stores.sessions.findSession(session.id, clock.now()), null);
  });

  it("shows new roles after a user invalidation", async () => {
    const session = await newSession();
    await cache.stores.sessions.findSession(session.id, clock.now());
    await inner.users.updateUserRoles(session.userId, ["user", "admin"], clock.now());
    cache.apply({ kind: "user", userId: session.userId });
    assert.deepEqual((await cache.stores.sessions.findSession(session.id, clock.now()))?.user.roles, ["user", "admin"]);
  });

  it("serves nothing from memory while the channel is down, and starts empty when it returns", async () => {
    const session = await newSession();
    await cache.stores.sessions.findSession(session.id, clock.now());
    channel.setUp(false);
    await inner.sessions.deleteSession(session.id);
    assert.equal(await cache.stores.sessions.findSession(session.id, clock.now()), null, "fails closed to the store");
    channel.setUp(true);
    assert.equal(cache.stats().entries, 0);
  });

  it("re-reads an entry past its idle expiry (another process may have renewed it) and past its maximum age", async () => {
    const session = await newSession();
    await cache.stores.sessions.findSession(session.id, clock.now());
    await inner.sessions.touchSession(session.id, clock.now() + 500_000, clock.now() + 1_100_000);
    clock.advance(700_000);
    assert.ok(await cache.stores.sessions.findSession(session.id, clock.now()), "renewed elsewhere, still valid");
    const missesBefore = cache.stats().misses;
    clock.advance(31_000);
    await cache.stores.sessions.findSession(session.id, clock.now());
    assert.equal(cache.stats().misses, missesBefore + 1);
  });

  it("never holds more than its maximum entries", async () => {
    const small = createSessionCache(inner, createManualChannel({ up: true }), { clock, maxEntries: 3 });
    for (let i = 0; i < 5; i += 1) await small.stores.sessions.findSession((await newSession()).id, clock.now());
    assert.equal(small.stats().entries, 3);
  });

  it("keeps serving an entry with a healthy channel however long it has been cached (no forced re-read by default)", async () => {
    const unbounded = createSessionCache(inner, createManualChannel({ up: true }), { clock });
    const session = await newSession({ idleExpiresAt: clock.now() + 3_000_000 });
    await unbounded.stores.sessions.findSession(session.id, clock.now());
    clock.advance(2_000_000);
    assert.ok(await unbounded.stores.sessions.findSession(session.id, clock.now()));
    assert.equal(unbounded.stats().misses, 1);
  });

  it("slides a cached session in memory at once and writes the renewals to the store in one batch later", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const a = await newSession();
    const b = await newSession();
    for (const s of [a, b]) await behind.stores.sessions.findSession(s.id, clock.now());
    const at = clock.now() + 1_000;
    assert.equal(await behind.stores.sessions.touchSession(a.id, at, at + 600_000), true);
    assert.equal(await behind.stores.sessions.touchSession(b.id, at, at + 600_000), true);
    assert.equal(
      (await behind.stores.sessions.findSession(a.id, clock.now()))?.session.idleExpiresAt,
      at + 600_000,
      "the cache answers with the slide",
    );
    assert.equal(
      (await inner.sessions.findSession(a.id, clock.now()))?.session.idleExpiresAt,
      a.idleExpiresAt,
      "the store has not been written yet",
    );
    assert.equal(behind.stats().writes, 0);
    await behind.flush();
    assert.equal((await inner.sessions.findSession(a.id, clock.now()))?.session.idleExpiresAt, at + 600_000);
    assert.equal((await inner.sessions.findSession(b.id, clock.now()))?.session.lastSeenAt, at);
    assert.equal(behind.stats().writes, 2);
  });

  it("writes pending renewals on close, so a restart loses no slide that was answered", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const session = await newSession();
    await behind.stores.sessions.findSession(session.id, clock.now());
    const at = clock.now() + 5_000;
    await behind.stores.sessions.touchSession(session.id, at, at + 600_000);
    const innerClose = inner.close;
    let closedAfterWrite = false;
    inner.close = async () => {
      closedAfterWrite = (await inner.sessions.findSession(session.id, clock.now()))?.session.lastSeenAt === at;
      await innerClose();
    };
    await behind.stores.close();
    assert.equal(closedAfterWrite, true);
  });

  it("drops an entry whose batched renewal the store refused (ended meanwhile), and never revives it", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const session = await newSession();
    await behind.stores.sessions.findSession(session.id, clock.now());
    await behind.stores.sessions.touchSession(session.id, clock.now() + 1, clock.now() + 600_000);
    // Deleted behind the cache's back (and its announcement not yet arrived).
    await inner.sessions.deleteSession(session.id);
    await behind.flush();
    assert.equal(behind.stats().entries, 0);
    assert.equal(await behind.stores.sessions.findSession(session.id, clock.now()), null);
  });

  it("keeps a renewal whose write failed (store down) for the next batch", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const session = await newSession();
    await behind.stores.sessions.findSession(session.id, clock.now());
    const at = clock.now() + 1_000;
    await behind.stores.sessions.touchSession(session.id, at, at + 600_000);
    const { touchSession, touchSessions } = inner.sessions;
    const down = async (): Promise<never> => {
      throw new Error("store down");
    };
    inner.sessions.touchSession = down;
    inner.sessions.touchSessions = down;
    await behind.flush();
    assert.equal(behind.stats().writes, 0);
    inner.sessions.touchSession = touchSession;
    inner.sessions.touchSessions = touchSessions;
    await behind.flush();
    assert.equal((await inner.sessions.findSession(session.id, clock.now()))?.session.lastSeenAt, at);
  });

  it("writes a large batch in slices with the event loop free between them, and keeps the slices after a failed one", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const sessions: Session[] = [];
    for (let i = 0; i < 600; i += 1) sessions.push(await newSession());
    for (const s of sessions) await behind.stores.sessions.findSession(s.id, clock.now());
    const at = clock.now() + 1_000;
    for (const s of sessions) behind.stores.sessions.renewCached(s.id, at, at + 600_000);
    const touchSessions = inner.sessions.touchSessions!;
    const calls: number[] = [];
    let failNext = 2;
    let ranBetween = 0;
    inner.sessions.touchSessions = async (touches) => {
      calls.push(touches.length);
      setImmediate(() => {
        ranBetween += 1;
      });
      failNext -= 1;
      if (failNext === 0) throw new LatchError("unavailable");
      return touchSessions(touches);
    };
    await behind.flush();
    assert.deepEqual(calls, [256, 256], "the first slice written, the second failed, the third not tried");
    assert.ok(ranBetween >= 1, "other work ran between the slices");
    assert.equal(behind.stats().writes, 256);
    const stored = async (s: Session) => (await inner.sessions.findSession(s.id, clock.now()))?.session.lastSeenAt;
    assert.equal(await stored(sessions[0]!), at);
    assert.equal(await stored(sessions[300]!), sessions[300]!.lastSeenAt, "the failed slice is not written yet");
    calls.length = 0;
    await behind.flush();
    assert.deepEqual(calls, [256, 88], "the failed slice and the rest, kept for the next flush");
    assert.equal(await stored(sessions[300]!), at);
    assert.equal(await stored(sessions[599]!), at);
    assert.equal(behind.stats().writes, 600);
  });

  it("evicts sessions nobody used since the last pass before hot ones, however old the hot ones are", async () => {
    const small = createSessionCache(inner, createManualChannel({ up: true }), { clock, maxEntries: 3 });
    const hot = await newSession();
    await small.stores.sessions.findSession(hot.id, clock.now());
    for (let i = 0; i < 6; i += 1) {
      await small.stores.sessions.findSession((await newSession()).id, clock.now());
      assert.ok(small.stores.sessions.peekSession!(hot.id, clock.now()), `the hot session stays (round ${i})`);
    }
    assert.equal(small.stats().entries, 3);
  });

  it("writes renewals made through a store outage longer than the idle timeout when the store returns (checked at the last moment the store knew)", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const session = await newSession({ idleExpiresAt: clock.now() + 10_000 });
    await behind.stores.sessions.findSession(session.id, clock.now());
    const { touchSession, touchSessions } = inner.sessions;
    const down = async (): Promise<never> => {
      throw new LatchError("unavailable");
    };
    inner.sessions.touchSession = down;
    inner.sessions.touchSessions = down;
    // Renewed every 5 s for 30 s: the store's own expiry (10 s) passes meanwhile.
    for (let i = 0; i < 6; i += 1) {
      clock.advance(5_000);
      assert.ok(behind.stores.sessions.renewCached(session.id, clock.now(), clock.now() + 10_000), `renewal ${i}`);
      await behind.flush();
    }
    inner.sessions.touchSession = touchSession;
    inner.sessions.touchSessions = touchSessions;
    await behind.flush();
    assert.equal(
      (await inner.sessions.findSession(session.id, clock.now()))?.session.idleExpiresAt,
      clock.now() + 10_000,
      "the store took the newest expiry",
    );
    assert.ok(behind.stores.sessions.peekSession(session.id, clock.now()), "the session is still served");
  });

  it("serves a session while its sign-out is in flight and after the store refused it as unavailable, renewals kept; forgets it once the store took it", async () => {
    const behind = createSessionCache(inner, createManualChannel({ up: true }), { clock, writeBehindMs: 60_000 });
    const session = await newSession();
    await behind.stores.sessions.findSession(session.id, clock.now());
    const renewedTo = clock.now() + 10_000;
    assert.ok(behind.stores.sessions.renewCached(session.id, clock.now(), renewedTo), "renewed in memory, not yet written");
    const deleteSession = inner.sessions.deleteSession;
    let refuse = (): void => {};
    inner.sessions.deleteSession = () =>
      new Promise((_, reject) => {
        refuse = () => reject(new LatchError("unavailable"));
      });
    const signingOut = behind.stores.sessions.deleteSession(session.id);
    assert.ok(behind.stores.sessions.peekSession(session.id, clock.now()), "served from memory while the write is in flight");
    refuse();
    await assert.rejects(signingOut, (e: unknown) => e instanceof LatchError && e.code === "unavailable");
    assert.ok(behind.stores.sessions.peekSession(session.id, clock.now()), "still served: the refused write changed nothing");
    inner.sessions.deleteSession = deleteSession;
    await behind.flush();
    assert.equal(
      (await inner.sessions.findSession(session.id, clock.now()))?.session.idleExpiresAt,
      renewedTo,
      "the renewal made before the refused sign-out still reached the store",
    );
    assert.equal(await behind.stores.sessions.deleteSession(session.id), session.userId);
    assert.equal(behind.stores.sessions.peekSession(session.id, clock.now()), undefined, "gone once the store took the sign-out");
  });
});
