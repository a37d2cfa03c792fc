import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { isLatchError } from "../core/errors.js";
import type { AccountToken, OutboxMessage, Passkey, SecurityEvent, Session, Stores, UserRecord } from "../core/store.js";
import { testSession } from "./test-fixtures.js";

/**
 * The store conformance suite. Every store Latch ships runs it in `npm test`,
 * and a third-party store can run it too:
 *
 * @example
 * import { runStoreConformance } from "latch/stores/conformance";
 * runStoreConformance("my-store", async () => ({ stores: await createMyStores(), cleanup: async () => {} }));
 *
 * The factory is called once per suite. Tests share the backend, so every
 * test works on ids and names of its own; a store may hold unrelated data.
 * Times are real (`Date.now()` based) because stores with native TTLs
 * (Redis) expire keys by the wall clock; expiry is tested by passing a later
 * `now`, which every store must honour on read.
 */
export interface ConformanceTarget {
  stores: Stores;
  /** Runs after the suite, after `stores.close()`. */
  cleanup?: () => Promise<void>;
}

export function runStoreConformance(
  name: string,
  factory: () => Promise<ConformanceTarget>,
  options: { skip?: string | false } = {},
): void {
  describe(`store conformance: ${name}`, { skip: options.skip ?? false }, () => {
    let target: ConformanceTarget;
    let s: Stores;

    before(async () => {
      target = await factory();
      s = target.stores;
    });
    after(async () => {
      await s?.close();
      await target?.cleanup?.();
    });

    const minute = 60_000;
    const hour = 60 * minute;

    function newUser(overrides: Partial<UserRecord> = {}): UserRecord {
      const tag = randomBytes(6).toString("hex");
      const now = Date.now();
      return {
        id: randomUUID(),
        username: `User_${tag}`,
        usernameKey: `user_${tag}`,
        email: `Mail_${tag}@example.com`,
        emailKey: `mail_${tag}@example.com`,
        emailVerified: false,
        passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        roles: ["user"],
        mfa: false,
        createdAt: now,
        updatedAt: now,
        ...overrides,
      };
    }

    function newSession(userId: string, overrides: Partial<Session> = {}): Session {
      return testSession(userId, { userAgent: "conformance/1.0", ...overrides });
    }

    async function userWithSession(sessionOverrides: Partial<Session> = {}): Promise<{ user: UserRecord; session: Session }> {
      const user = newUser();
      await s.users.createUser(user);
      const session = newSession(user.id, sessionOverrides);
      await s.sessions.createSession(session);
      return { user, session };
    }

    function newEvent(userId: string | null, at: number, type: SecurityEvent["type"] = "sign_in"): SecurityEvent {
      return { id: randomUUID(), userId, type, at, ipAddress: "192.0.2.0", userAgent: "conformance/1.0", detail: { session: "x" } };
    }

    describe("users", () => {
      it("returns a created user by id, by username key and by email key", async () => {
        const user = newUser();
        await s.users.createUser(user);
        assert.deepEqual(await s.users.findUserById(user.id), user);
        assert.deepEqual(await s.users.findUserByLogin(user.usernameKey), user);
        assert.deepEqual(await s.users.findUserByLogin(user.emailKey!), user);
      });

      it("returns null for an unknown id or login", async () => {
        assert.equal(await s.users.findUserById(randomUUID()), null);
        assert.equal(await s.users.findUserByLogin(`nobody_${randomBytes(6).toString("hex")}`), null);
      });

      it("stores a user without an email", async () => {
        const user = newUser({ email: null, emailKey: null });
        await s.users.createUser(user);
        const second = newUser({ email: null, emailKey: null });
        await s.users.createUser(second);
        assert.deepEqual(await s.users.findUserById(second.id), second);
      });

      it("refuses a taken username key with conflict and writes nothing", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const clash = newUser({ usernameKey: user.usernameKey });
        await assert.rejects(s.users.createUser(clash), (e) => isLatchError(e, "conflict"));
        assert.equal(await s.users.findUserById(clash.id), null);
      });

      it("refuses a taken email key with conflict and writes nothing", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const clash = newUser({ emailKey: user.emailKey });
        await assert.rejects(s.users.createUser(clash), (e) => isLatchError(e, "conflict"));
        assert.equal(await s.users.findUserById(clash.id), null);
      });

      it("refuses a username key equal to another user's email key", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const clash = newUser({ usernameKey: user.emailKey! });
        await assert.rejects(s.users.createUser(clash), (e) => isLatchError(e, "conflict"));
      });

      it("hands out copies that callers cannot use to change stored state", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const found = (await s.users.findUserById(user.id))!;
        found.roles.push("admin");
        found.passwordHash = "changed";
        assert.deepEqual(await s.users.findUserById(user.id), user);
      });

      it("replaces a password hash, and reports a miss", async () => {
        const user = newUser();
        await s.users.createUser(user);
        assert.equal(await s.users.updateUserPassword(user.id, "$argon2id$new", user.createdAt + 1), true);
        const found = await s.users.findUserById(user.id);
        assert.equal(found?.passwordHash, "$argon2id$new");
        assert.equal(found?.updatedAt, user.createdAt + 1);
        assert.equal(await s.users.updateUserPassword(randomUUID(), "$argon2id$x", 1), false);
      });

      it("replaces roles and returns the updated user, or null for a miss", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const updated = await s.users.updateUserRoles(user.id, ["user", "admin"], user.createdAt + 5);
        assert.deepEqual(updated?.roles, ["user", "admin"]);
        assert.deepEqual((await s.users.findUserById(user.id))?.roles, ["user", "admin"]);
        assert.equal(await s.users.updateUserRoles(randomUUID(), ["user"], 1), null);
      });

      it("lists users in id order, page by page", async () => {
        const prefix = `0${randomBytes(3).toString("hex")}`;
        const created = [];
        for (let i = 0; i < 5; i += 1) {
          const user = newUser({ id: `${prefix}-${i}-${randomUUID()}` });
          await s.users.createUser(user);
          created.push(user);
        }
        const firstPage = await s.users.listUsers({ limit: 2, after: `${prefix}-` });
        assert.deepEqual(
          firstPage.map((u) => u.id),
          created.slice(0, 2).map((u) => u.id),
        );
        const secondPage = await s.users.listUsers({ limit: 2, after: firstPage[1]!.id });
        assert.deepEqual(
          secondPage.map((u) => u.id),
          created.slice(2, 4).map((u) => u.id),
        );
        const all = await s.users.listUsers({ limit: 100 });
        const ids = all.map((u) => u.id);
        assert.deepEqual(ids, [...ids].sort());
      });

      it("deletes a user with their sessions and events, and reports a miss", async () => {
        const { user, session } = await userWithSession();
        await s.events.recordEvent(newEvent(user.id, Date.now()));
        assert.equal(await s.users.deleteUser(user.id), true);
        assert.equal(await s.users.findUserById(user.id), null);
        assert.equal(await s.sessions.findSession(session.id, Date.now()), null);
        assert.deepEqual(await s.sessions.listUserSessions(user.id, Date.now()), []);
        assert.deepEqual(await s.events.listUserEvents(user.id, 10), []);
        assert.equal(await s.users.deleteUser(user.id), false);
      });
    });

    describe("sessions", () => {
      it("finds a created session with its user, byte for byte", async () => {
        const { user, session } = await userWithSession();
        const found = await s.sessions.findSession(session.id, Date.now());
        assert.ok(found);
        assert.deepEqual(Buffer.from(found.session.secretHash), Buffer.from(session.secretHash));
        assert.deepEqual({ ...found.session, secretHash: null }, { ...session, secretHash: null });
        assert.deepEqual(found.user, {
          id: user.id,
          username: user.username,
          email: user.email,
          emailVerified: false,
          roles: user.roles,
          mfa: false,
          createdAt: user.createdAt,
        });
      });

      it("keeps null metadata", async () => {
        const { session } = await userWithSession({ userAgent: null, ipAddress: null });
        const found = await s.sessions.findSession(session.id, Date.now());
        assert.equal(found?.session.userAgent, null);
        assert.equal(found?.session.ipAddress, null);
      });

      it("returns null for an unknown id", async () => {
        assert.equal(await s.sessions.findSession(newSession(randomUUID()).id, Date.now()), null);
      });

      it("never returns a session past its idle expiry", async () => {
        const { session } = await userWithSession();
        assert.equal(await s.sessions.findSession(session.id, session.idleExpiresAt), null);
      });

      it("never returns a session past its absolute expiry, even with idle time left", async () => {
        const now = Date.now();
        const { session } = await userWithSession({ idleExpiresAt: now + 2 * hour, absoluteExpiresAt: now + hour });
        assert.ok(await s.sessions.findSession(session.id, now + hour - 1));
        assert.equal(await s.sessions.findSession(session.id, now + hour), null);
      });

      it("slides the idle expiry on touch", async () => {
        const { session } = await userWithSession();
        const later = session.lastSeenAt + 10 * minute;
        assert.equal(await s.sessions.touchSession(session.id, later, later + 30 * minute), true);
        const found = await s.sessions.findSession(session.id, later + 25 * minute);
        assert.equal(found?.session.lastSeenAt, later);
        assert.equal(found?.session.idleExpiresAt, later + 30 * minute);
      });

      it("never extends the idle expiry past the absolute expiry", async () => {
        const now = Date.now();
        const { session } = await userWithSession({ absoluteExpiresAt: now + hour });
        await s.sessions.touchSession(session.id, now + minute, now + 5 * hour);
        const found = await s.sessions.findSession(session.id, now + 2 * minute);
        assert.ok(found);
        assert.ok(found.session.idleExpiresAt <= session.absoluteExpiresAt);
        assert.equal(await s.sessions.findSession(session.id, now + hour), null);
      });

      it("does not revive a deleted session on a late touch", async () => {
        const { session } = await userWithSession();
        assert.equal(await s.sessions.deleteSession(session.id), session.userId);
        assert.equal(await s.sessions.touchSession(session.id, Date.now(), Date.now() + hour), false);
        assert.equal(await s.sessions.findSession(session.id, Date.now()), null);
      });

      it("does not revive an idle-expired session on a touch", async () => {
        const { session } = await userWithSession();
        const late = session.idleExpiresAt + 1;
        assert.equal(await s.sessions.touchSession(session.id, late, late + 30 * minute), false);
        assert.equal(await s.sessions.findSession(session.id, late), null);
      });

      it("survives racing touches and a delete: the session stays deleted", async () => {
        const { session } = await userWithSession();
        const now = Date.now();
        const touches = Array.from({ length: 10 }, (_, i) => s.sessions.touchSession(session.id, now + i, now + i + 30 * minute));
        const deleted = s.sessions.deleteSession(session.id);
        await Promise.all([...touches, deleted]);
        assert.equal(await s.sessions.findSession(session.id, now + 20), null);
        assert.deepEqual(await s.sessions.listUserSessions(session.userId, now + 20), []);
      });

      it("renews a batch of sessions in one call where the store offers it: live ones slide, deleted and expired ones stay gone, results in order", async (t) => {
        const touchSessions = s.sessions.touchSessions;
        if (touchSessions === undefined) return t.skip("this store renews one session at a time (touchSession)");
        const live = await userWithSession();
        const deleted = await userWithSession();
        const expired = await userWithSession();
        await s.sessions.deleteSession(deleted.session.id);
        const at = live.session.lastSeenAt + 10 * minute;
        const results = await touchSessions([
          { id: live.session.id, lastSeenAt: at, idleExpiresAt: at + 30 * minute },
          { id: deleted.session.id, lastSeenAt: at, idleExpiresAt: at + 30 * minute },
          { id: expired.session.id, lastSeenAt: expired.session.idleExpiresAt + 1, idleExpiresAt: expired.session.idleExpiresAt + hour },
        ]);
        assert.deepEqual(results, [true, false, false]);
        assert.equal((await s.sessions.findSession(live.session.id, at + 25 * minute))?.session.idleExpiresAt, at + 30 * minute);
        assert.equal(await s.sessions.findSession(deleted.session.id, at), null);
        assert.equal(await s.sessions.findSession(expired.session.id, expired.session.idleExpiresAt + 1), null);
        assert.deepEqual(await touchSessions([]), []);
      });

      it("reports a delete of an unknown session as null", async () => {
        assert.equal(await s.sessions.deleteSession(newSession(randomUUID()).id), null);
      });

      it("rotates a session to a new id atomically", async () => {
        const { session } = await userWithSession();
        const next = newSession(session.userId, { createdAt: session.createdAt, absoluteExpiresAt: session.absoluteExpiresAt });
        assert.equal(await s.sessions.rotateSession(session.id, next), true);
        assert.equal(await s.sessions.findSession(session.id, Date.now()), null);
        assert.equal((await s.sessions.findSession(next.id, Date.now()))?.session.id, next.id);
        assert.deepEqual(
          (await s.sessions.listUserSessions(session.userId, Date.now())).map((x) => x.id),
          [next.id],
        );
      });

      it("refuses to rotate a session that no longer exists, writing nothing", async () => {
        const { session } = await userWithSession();
        await s.sessions.deleteSession(session.id);
        const next = newSession(session.userId);
        assert.equal(await s.sessions.rotateSession(session.id, next), false);
        assert.equal(await s.sessions.findSession(next.id, Date.now()), null);
      });

      it("lists a user's live sessions, newest first, and no one else's", async () => {
        const now = Date.now();
        const { user, session: first } = await userWithSession({ createdAt: now - 2000 });
        const second = newSession(user.id, { createdAt: now - 1000 });
        const expired = newSession(user.id, { createdAt: now - 500, idleExpiresAt: now + 1000 });
        await s.sessions.createSession(second);
        await s.sessions.createSession(expired);
        await userWithSession();
        const listed = await s.sessions.listUserSessions(user.id, now + 1000);
        assert.deepEqual(
          listed.map((x) => x.id),
          [second.id, first.id],
        );
        assert.deepEqual(Buffer.from(listed[0]!.secretHash), Buffer.from(second.secretHash));
      });

      it("deletes all of a user's sessions except one", async () => {
        const { user, session: keep } = await userWithSession();
        for (let i = 0; i < 3; i += 1) await s.sessions.createSession(newSession(user.id));
        const { session: otherUsers } = await userWithSession();
        assert.equal(await s.sessions.deleteUserSessions(user.id, { exceptId: keep.id }), 3);
        assert.deepEqual(
          (await s.sessions.listUserSessions(user.id, Date.now())).map((x) => x.id),
          [keep.id],
        );
        assert.ok(await s.sessions.findSession(otherUsers.id, Date.now()));
        assert.equal(await s.sessions.deleteUserSessions(user.id), 1);
        assert.equal(await s.sessions.findSession(keep.id, Date.now()), null);
        assert.equal(await s.sessions.deleteUserSessions(user.id), 0);
      });

      it("sweeps expired sessions in batches and leaves live ones", async () => {
        const now = Date.now();
        const user = newUser();
        await s.users.createUser(user);
        const expiring = [];
        for (let i = 0; i < 5; i += 1) {
          const session = newSession(user.id, { idleExpiresAt: now + 1000 + i });
          await s.sessions.createSession(session);
          expiring.push(session);
        }
        const liveOne = newSession(user.id, { idleExpiresAt: now + hour });
        await s.sessions.createSession(liveOne);
        const sweepAt = now + 10_000;
        const firstBatch = await s.sessions.deleteExpiredSessions(sweepAt, 2);
        assert.ok(firstBatch <= 2 && firstBatch >= 1, `first batch removed ${firstBatch}`);
        let total = firstBatch;
        for (let round = 0; round < 20; round += 1) {
          const removed = await s.sessions.deleteExpiredSessions(sweepAt, 100);
          total += removed;
          if (removed === 0) break;
        }
        assert.ok(total >= 5, `removed ${total}`);
        assert.deepEqual(
          (await s.sessions.listUserSessions(user.id, sweepAt)).map((x) => x.id),
          [liveOne.id],
        );
        assert.ok(await s.sessions.findSession(liveOne.id, sweepAt));
      });

      it("creates a session only while the given password hash is still the user's", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const now = Date.now();
        const right = newSession(user.id);
        assert.equal(await s.sessions.createSession(right, { ifPasswordHash: user.passwordHash }), true);
        assert.equal((await s.sessions.findSession(right.id, now))?.session.id, right.id);
        const wrong = newSession(user.id);
        assert.equal(await s.sessions.createSession(wrong, { ifPasswordHash: "$argon2id$another" }), false);
        assert.equal(await s.sessions.findSession(wrong.id, now), null);
        assert.equal(
          await s.sessions.createSession(newSession(randomUUID()), { ifPasswordHash: user.passwordHash }),
          false,
          "no such user",
        );
        // The sign-in verified the old hash; the password changed before its session was written.
        await s.users.updateUserPassword(user.id, "$argon2id$the-new-one", Date.now());
        const late = newSession(user.id);
        assert.equal(await s.sessions.createSession(late, { ifPasswordHash: user.passwordHash }), false);
        assert.equal(await s.sessions.findSession(late.id, now), null);
        assert.deepEqual(
          (await s.sessions.listUserSessions(user.id, now)).map((x) => x.id),
          [right.id],
        );
        assert.equal(await s.sessions.createSession(newSession(user.id)), true, "without the condition a session is always written");
      });

      it("leaves no session from a sign-in that raced a password change, in either order", async () => {
        for (let round = 0; round < 20; round += 1) {
          const user = newUser();
          await s.users.createUser(user);
          const session = newSession(user.id);
          const change = async (): Promise<void> => {
            // What POST /password does: the new hash, then every session ended.
            if (round % 2 === 0) await new Promise((resolve) => setImmediate(resolve));
            await s.users.updateUserPassword(user.id, `$argon2id$changed-${round}`, Date.now());
            await s.sessions.deleteUserSessions(user.id);
          };
          const [created] = await Promise.all([s.sessions.createSession(session, { ifPasswordHash: user.passwordHash }), change()]);
          assert.equal(
            await s.sessions.findSession(session.id, Date.now()),
            null,
            `round ${round}: created=${created}, and the session survived the change`,
          );
        }
      });

      it("shows new roles to live sessions at once", async () => {
        const { user, session } = await userWithSession();
        assert.deepEqual((await s.sessions.findSession(session.id, Date.now()))?.user.roles, ["user"]);
        await s.users.updateUserRoles(user.id, ["user", "admin"], Date.now());
        assert.deepEqual((await s.sessions.findSession(session.id, Date.now()))?.user.roles, ["user", "admin"]);
      });
    });

    describe("security events", () => {
      it("lists a user's events newest first, up to a limit", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const now = Date.now();
        const events = [
          newEvent(user.id, now - 3000),
          newEvent(user.id, now - 1000, "sign_out"),
          newEvent(user.id, now - 2000, "password_changed"),
        ];
        for (const event of events) await s.events.recordEvent(event);
        const listed = await s.events.listUserEvents(user.id, 2);
        assert.deepEqual(listed, [events[1], events[2]]);
      });

      it("records events without a user or detail", async () => {
        const event: SecurityEvent = { ...newEvent(null, Date.now(), "sign_in_failed"), detail: null, userAgent: null, ipAddress: null };
        await s.events.recordEvent(event);
      });

      it("deletes a user's events", async () => {
        const user = newUser();
        await s.users.createUser(user);
        await s.events.recordEvent(newEvent(user.id, Date.now()));
        await s.events.recordEvent(newEvent(user.id, Date.now()));
        assert.equal(await s.events.deleteUserEvents(user.id), 2);
        assert.deepEqual(await s.events.listUserEvents(user.id, 10), []);
      });

      it("deletes events older than the retention window, in batches", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const old = Date.UTC(2001, 0, 1);
        const fresh = newEvent(user.id, Date.now());
        for (let i = 0; i < 3; i += 1) await s.events.recordEvent(newEvent(user.id, old + i));
        await s.events.recordEvent(fresh);
        let removed = 0;
        for (let round = 0; round < 10; round += 1) {
          const n = await s.events.deleteEventsBefore(old + 10, 2);
          assert.ok(n <= 2);
          removed += n;
          if (n === 0) break;
        }
        assert.ok(removed >= 3);
        assert.deepEqual(await s.events.listUserEvents(user.id, 10), [fresh]);
      });
    });

    describe("rate limits", () => {
      it("counts hits in a fixed window and starts a new one after it", async () => {
        const key = `conformance:${randomUUID()}`;
        const now = Date.now();
        assert.deepEqual(await s.limits.hit(key, 60_000, now), { count: 1, resetAt: now + 60_000 });
        assert.equal((await s.limits.hit(key, 60_000, now + 10)).count, 2);
        assert.deepEqual(await s.limits.peek(key, now + 20), { count: 2, resetAt: now + 60_000 });
        assert.deepEqual(await s.limits.hit(key, 60_000, now + 60_000), { count: 1, resetAt: now + 120_000 });
      });

      it("counts every one of many concurrent hits", async () => {
        const key = `conformance:${randomUUID()}`;
        const now = Date.now();
        const results = await Promise.all(Array.from({ length: 25 }, () => s.limits.hit(key, 60_000, now)));
        assert.deepEqual(
          results.map((r) => r.count).sort((a, b) => a - b),
          Array.from({ length: 25 }, (_, i) => i + 1),
        );
        assert.equal((await s.limits.peek(key, now))?.count, 25);
      });

      it("deletes closed windows and keeps open ones", async () => {
        const closed = `conformance:${randomUUID()}`;
        const open = `conformance:${randomUUID()}`;
        const now = Date.now();
        await s.limits.hit(closed, 1000, now);
        await s.limits.hit(open, 60_000, now);
        for (let round = 0; round < 50; round += 1) if ((await s.limits.deleteClosedWindows(now + 2000, 100)) === 0) break;
        assert.equal((await s.limits.peek(open, now + 2000))?.count, 1);
        assert.equal((await s.limits.hit(closed, 1000, now + 2000)).count, 1);
      });

      it("peeks null for an unknown or closed window, and resets", async () => {
        const key = `conformance:${randomUUID()}`;
        const now = Date.now();
        assert.equal(await s.limits.peek(key, now), null);
        await s.limits.hit(key, 1000, now);
        assert.equal(await s.limits.peek(key, now + 1000), null);
        await s.limits.hit(key, 60_000, now + 2000);
        await s.limits.reset(key);
        assert.equal(await s.limits.peek(key, now + 2000), null);
      });
    });

    describe("signing keys", () => {
      it("adds keys newest first and retires the previous active key", async () => {
        const base = Date.now() + 1_000_000;
        const existing = await s.keys.listSigningKeys();
        const first = {
          kid: randomUUID(),
          alg: "EdDSA" as const,
          publicJwk: '{"kty":"OKP"}',
          privateJwk: '{"kty":"OKP","d":"x"}',
          createdAt: base,
          retiredAt: null,
        };
        const second = { ...first, kid: randomUUID(), createdAt: base + 1000 };
        await s.keys.addSigningKey(first);
        await s.keys.addSigningKey(second);
        const listed = await s.keys.listSigningKeys();
        assert.equal(listed.length, existing.length + 2);
        assert.deepEqual(listed[0], second);
        assert.deepEqual(listed[1], { ...first, retiredAt: second.createdAt });
        assert.equal(listed.filter((k) => k.retiredAt === null).length, 1);
        assert.ok((await s.keys.deleteSigningKeysRetiredBefore(second.createdAt + 1)) >= 1);
        assert.equal(
          (await s.keys.listSigningKeys()).some((k) => k.kid === first.kid),
          false,
        );
      });
    });

    describe("mail outbox and account tokens", () => {
      const token = (user: UserRecord, purpose: AccountToken["purpose"], overrides: Partial<AccountToken> = {}): AccountToken => ({
        hash: randomBytes(32),
        purpose,
        userId: user.id,
        emailKey: purpose === "verify" ? user.emailKey : null,
        createdAt: Date.now(),
        expiresAt: Date.now() + hour,
        ...overrides,
      });
      const message = (user: UserRecord, overrides: Partial<OutboxMessage> = {}): OutboxMessage => ({
        id: randomUUID(),
        userId: user.id,
        kind: "verify_email",
        to: user.email ?? "x@example.com",
        subject: "Subject",
        text: "text",
        html: "<p>html</p>",
        createdAt: Date.now(),
        ...overrides,
      });
      const owner = () => `owner-${randomBytes(4).toString("hex")}`;

      it("queues a message with its token; one claimer takes it under a lease; sent drops it from the queue", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const t = token(user, "verify");
        const m = message(user);
        await s.mail.queueMessage(m, { token: t });
        assert.equal((await s.mail.findToken(t.hash, Date.now()))?.userId, user.id);
        assert.equal(await s.mail.findToken(t.hash, t.expiresAt), null, "expired at expiresAt");
        const now = Date.now();
        const [a, b] = [owner(), owner()];
        const claimed = (await s.mail.claimMessages(a, now, { leaseMs: minute, limit: 1000 })).filter((e) => e.id === m.id);
        assert.equal(claimed.length, 1);
        assert.equal(claimed[0]!.attempts, 1);
        assert.equal(claimed[0]!.text, "text");
        assert.equal(
          (await s.mail.claimMessages(b, now, { leaseMs: minute, limit: 1000 })).filter((e) => e.id === m.id).length,
          0,
          "leased",
        );
        assert.equal(await s.mail.markSent(m.id, b, now), false, "only the lease holder marks");
        assert.equal(await s.mail.markSent(m.id, a, now), true);
        const [summary] = await s.mail.listUserMessages(user.id, 10);
        assert.equal(summary?.status, "sent");
        assert.equal(summary?.sentAt, now);
        assert.equal(
          (await s.mail.claimMessages(b, now + hour, { leaseMs: minute, limit: 1000 })).filter((e) => e.id === m.id).length,
          0,
          "sent is never claimed again",
        );
      });

      it("a lease that runs out lets another sender take the message; retries wait; retryNow makes them due; failed is final", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const m = message(user);
        await s.mail.queueMessage(m);
        const now = Date.now();
        const [a, b] = [owner(), owner()];
        assert.equal(
          (await s.mail.claimMessages(a, now, { leaseMs: 1000, limit: 1000 })).some((e) => e.id === m.id),
          true,
        );
        const retaken = (await s.mail.claimMessages(b, now + 1001, { leaseMs: minute, limit: 1000 })).find((e) => e.id === m.id);
        assert.equal(retaken?.attempts, 2);
        assert.equal(await s.mail.markSent(m.id, a, now), false);
        assert.equal(await s.mail.markRetry(m.id, b, now + hour, "ECONNREFUSED"), true);
        assert.equal(
          (await s.mail.claimMessages(a, now + 2000, { leaseMs: minute, limit: 1000 })).some((e) => e.id === m.id),
          false,
          "waits out its backoff",
        );
        assert.ok((await s.mail.nextDueAt())! <= now + hour);
        assert.ok((await s.mail.retryNow(now + 2000)) >= 1);
        const again = (await s.mail.claimMessages(a, now + 2000, { leaseMs: minute, limit: 1000 })).find((e) => e.id === m.id);
        assert.equal(again?.attempts, 3);
        assert.ok((await s.mail.queueDepth()) >= 1);
        assert.equal(await s.mail.markFailed(m.id, a, now + 3000, "gave up"), true);
        const [summary] = await s.mail.listUserMessages(user.id, 10);
        assert.equal(summary?.status, "failed");
        assert.equal(
          (await s.mail.claimMessages(b, now + 2 * hour, { leaseMs: minute, limit: 1000 })).some((e) => e.id === m.id),
          false,
        );
      });

      it("verifyEmail spends the token once, only for the email it was sent to; updateUserEmail voids it", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const first = token(user, "verify");
        await s.mail.queueMessage(message(user), { token: first });
        const verified = await s.users.verifyEmail(user.id, first.hash, Date.now());
        assert.equal(verified?.emailVerified, true);
        assert.equal((await s.users.findUserById(user.id))?.emailVerified, true);
        assert.equal(await s.users.verifyEmail(user.id, first.hash, Date.now()), null, "used once");

        const stale = token(user, "verify");
        await s.mail.queueMessage(message(user), { token: stale });
        const next = `next_${randomBytes(6).toString("hex")}@example.com`;
        const changed = await s.users.updateUserEmail(user.id, { email: next, emailKey: next }, Date.now());
        assert.equal(changed?.email, next);
        assert.equal(changed?.emailVerified, false);
        assert.equal(await s.mail.findToken(stale.hash, Date.now()), null, "voided by the change");
        assert.equal(await s.users.verifyEmail(user.id, stale.hash, Date.now()), null);
        assert.equal((await s.users.findUserByLogin(next))?.id, user.id);
        assert.equal(await s.users.findUserByLogin(user.emailKey!), null, "the old email no longer signs in");

        const other = newUser();
        await s.users.createUser(other);
        await assert.rejects(s.users.updateUserEmail(user.id, { email: other.email!, emailKey: other.emailKey! }, Date.now()), (e) =>
          isLatchError(e, "conflict"),
        );
        await assert.rejects(s.users.updateUserEmail(user.id, { email: other.username, emailKey: other.usernameKey }, Date.now()), (e) =>
          isLatchError(e, "conflict"),
        );
        assert.equal((await s.users.findUserById(user.id))?.email, next, "a conflict changes nothing");
        const expired = token(user, "verify", { emailKey: next, expiresAt: Date.now() - 1 });
        await s.mail.queueMessage(message(user), { token: expired });
        assert.equal(await s.users.verifyEmail(user.id, expired.hash, Date.now()), null, "expired");
        assert.equal(await s.users.updateUserEmail(randomUUID(), null, Date.now()), null);
      });

      it("the session's user carries emailVerified, fresh after verification", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const session = testSession(user.id);
        await s.sessions.createSession(session);
        assert.equal((await s.sessions.findSession(session.id, Date.now()))?.user.emailVerified, false);
        const t = token(user, "verify");
        await s.mail.queueMessage(message(user), { token: t });
        await s.users.verifyEmail(user.id, t.hash, Date.now());
        assert.equal((await s.sessions.findSession(session.id, Date.now()))?.user.emailVerified, true);
      });

      it("resetPassword spends the token, sets the hash, voids the other reset tokens and queues the notice, all or nothing", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const older = token(user, "reset");
        const newer = token(user, "reset");
        await s.mail.queueMessage(message(user, { kind: "password_reset" }), { token: older });
        await s.mail.queueMessage(message(user, { kind: "password_reset" }), { token: newer, voidTokens: "reset" });
        assert.equal(await s.mail.findToken(older.hash, Date.now()), null, "a newer reset voids the older");
        const extra = token(user, "reset");
        await s.mail.queueMessage(message(user, { kind: "password_reset" }), { token: extra });
        const notice = message(user, { kind: "password_changed" });
        assert.equal(await s.users.resetPassword(user.id, older.hash, "$argon2id$new", Date.now(), notice), null);
        assert.equal((await s.users.findUserById(user.id))?.passwordHash, user.passwordHash, "nothing changed");
        const done = await s.users.resetPassword(user.id, newer.hash, "$argon2id$new", Date.now(), notice);
        assert.equal(done?.passwordHash, "$argon2id$new");
        assert.equal(await s.mail.findToken(extra.hash, Date.now()), null, "every reset token voided");
        assert.equal(await s.users.resetPassword(user.id, newer.hash, "$argon2id$again", Date.now(), null), null, "used once");
        assert.ok((await s.mail.listUserMessages(user.id, 10)).some((m) => m.id === notice.id));

        const late = token(user, "reset", { expiresAt: Date.now() - 1 });
        await s.mail.queueMessage(message(user), { token: late });
        assert.equal(await s.users.resetPassword(user.id, late.hash, "$argon2id$late", Date.now(), null), null, "expired");
        assert.equal((await s.users.findUserById(user.id))?.passwordHash, "$argon2id$new");
        const other = newUser();
        await s.users.createUser(other);
        const foreign = token(other, "reset");
        await s.mail.queueMessage(message(other), { token: foreign });
        assert.equal(await s.users.resetPassword(user.id, foreign.hash, "$argon2id$x", Date.now(), null), null, "another user's token");
      });

      it("deleting the user deletes their tokens and messages; old sent messages and expired tokens are swept", async () => {
        const user = newUser();
        await s.users.createUser(user);
        const t = token(user, "verify");
        await s.mail.queueMessage(message(user), { token: t });
        assert.equal(await s.users.deleteUser(user.id), true);
        assert.equal(await s.mail.findToken(t.hash, Date.now()), null);
        assert.deepEqual(await s.mail.listUserMessages(user.id, 10), []);

        const keeper = newUser();
        await s.users.createUser(keeper);
        const old = message(keeper, { createdAt: Date.now() - 10 * hour });
        await s.mail.queueMessage(old);
        const o = owner();
        await s.mail.claimMessages(o, Date.now(), { leaseMs: minute, limit: 1000 });
        await s.mail.markSent(old.id, o, Date.now());
        assert.ok((await s.mail.deleteMessagesBefore(Date.now() - 9 * hour, 1000)) >= 1);
        assert.equal((await s.mail.listUserMessages(keeper.id, 10)).length, 0);
        const gone = token(keeper, "reset", { expiresAt: Date.now() - 1 });
        await s.mail.queueMessage(message(keeper), { token: gone });
        assert.ok((await s.mail.deleteExpiredTokens(Date.now(), 1000)) >= 1);
        assert.equal(await s.mail.deleteUserMessages(keeper.id), 1);
      });
    });

    describe("second factors", () => {
      const passkeyOf = (userId: string, overrides: Partial<Passkey> = {}): Passkey => ({
        id: randomUUID(),
        userId,
        credentialId: randomBytes(16).toString("base64url"),
        publicKey: randomBytes(77),
        counter: 0,
        transports: ["internal", "hybrid"],
        name: "Laptop",
        createdAt: Date.now(),
        lastUsedAt: null,
        ...overrides,
      });

      it("keeps amr and the pending state of a session, and its user's mfa flag", async () => {
        const { session } = await userWithSession({ amr: ["pwd", "otp", "mfa"] });
        assert.deepEqual((await s.sessions.findSession(session.id, Date.now()))?.session.amr, ["pwd", "otp", "mfa"]);
        const { session: pending } = await userWithSession({ amr: ["pwd"], pending: true });
        const found = await s.sessions.findSession(pending.id, Date.now());
        assert.equal(found?.session.pending, true);
        assert.equal(found?.user.mfa, false);
        const { session: passkeyed } = await userWithSession({ amr: ["hwk", "mfa"], userAgent: null, ipAddress: null });
        assert.deepEqual((await s.sessions.findSession(passkeyed.id, Date.now()))?.session.amr, ["hwk", "mfa"]);
      });

      it("starts TOTP pending, confirms it atomically with recovery codes, and sets mfa on the user and their live sessions", async () => {
        const { user, session } = await userWithSession();
        assert.equal(await s.secondFactors.findTotp(user.id), null);
        assert.equal(await s.secondFactors.beginTotp(randomUUID(), "sealed-x", Date.now()), false, "no such user");
        assert.equal(await s.secondFactors.beginTotp(user.id, "sealed-1", Date.now()), true);
        assert.equal(await s.secondFactors.beginTotp(user.id, "sealed-2", Date.now()), true, "a newer setup replaces the pending one");
        const pending = await s.secondFactors.findTotp(user.id);
        assert.equal(pending?.secret, null);
        assert.equal(pending?.pendingSecret, "sealed-2");
        assert.equal((await s.users.findUserById(user.id))?.mfa, false);
        assert.equal(await s.secondFactors.confirmTotp(user.id, "sealed-1", 100, ["a", "b"], Date.now()), false, "not the pending secret");
        assert.equal(await s.secondFactors.countRecoveryCodes(user.id), 0);
        assert.equal(await s.secondFactors.confirmTotp(user.id, "sealed-2", 100, ["a", "b", "c"], Date.now()), true);
        const row = await s.secondFactors.findTotp(user.id);
        assert.equal(row?.secret, "sealed-2");
        assert.equal(row?.pendingSecret, null);
        assert.equal(row?.lastUsedStep, 100);
        assert.equal(await s.secondFactors.countRecoveryCodes(user.id), 3);
        assert.equal((await s.users.findUserById(user.id))?.mfa, true);
        assert.equal((await s.sessions.findSession(session.id, Date.now()))?.user.mfa, true, "a live session's user shows it at once");
        // A new setup while TOTP is on leaves the confirmed secret in force.
        await s.secondFactors.beginTotp(user.id, "sealed-3", Date.now());
        assert.equal((await s.secondFactors.findTotp(user.id))?.secret, "sealed-2");
      });

      it("accepts a time step once: concurrent uses of one step, exactly one wins; earlier steps never", async () => {
        const user = newUser();
        await s.users.createUser(user);
        assert.equal(await s.secondFactors.useTotpStep(user.id, 5), false, "no TOTP");
        await s.secondFactors.beginTotp(user.id, "sealed", Date.now());
        assert.equal(await s.secondFactors.useTotpStep(user.id, 5), false, "only pending");
        await s.secondFactors.confirmTotp(user.id, "sealed", 10, [], Date.now());
        const results = await Promise.all(Array.from({ length: 8 }, () => s.secondFactors.useTotpStep(user.id, 11)));
        assert.equal(results.filter(Boolean).length, 1);
        assert.equal(await s.secondFactors.useTotpStep(user.id, 11), false);
        assert.equal(await s.secondFactors.useTotpStep(user.id, 10), false);
        assert.equal(await s.secondFactors.useTotpStep(user.id, 12), true);
      });

      it("uses a recovery code once, even concurrently, and replaces them all", async () => {
        const user = newUser();
        await s.users.createUser(user);
        await s.secondFactors.beginTotp(user.id, "sealed", Date.now());
        await s.secondFactors.confirmTotp(user.id, "sealed", 1, ["h1", "h2"], Date.now());
        const results = await Promise.all(Array.from({ length: 6 }, () => s.secondFactors.useRecoveryCode(user.id, "h1")));
        assert.equal(results.filter(Boolean).length, 1);
        assert.equal(await s.secondFactors.countRecoveryCodes(user.id), 1);
        const other = newUser();
        await s.users.createUser(other);
        assert.equal(await s.secondFactors.useRecoveryCode(other.id, "h2"), false, "another user's code");
        await s.secondFactors.replaceRecoveryCodes(user.id, ["n1", "n2", "n3"]);
        assert.equal(await s.secondFactors.useRecoveryCode(user.id, "h2"), false);
        assert.equal(await s.secondFactors.countRecoveryCodes(user.id), 3);
        assert.equal(await s.secondFactors.deleteTotp(user.id), true);
        assert.equal(await s.secondFactors.countRecoveryCodes(user.id), 0);
        assert.equal(await s.secondFactors.findTotp(user.id), null);
        assert.equal((await s.users.findUserById(user.id))?.mfa, false);
        assert.equal(await s.secondFactors.deleteTotp(user.id), false);
      });

      it("stores passkeys byte for byte, unique by credential id, with mfa following them", async () => {
        const { user, session } = await userWithSession();
        const passkey = passkeyOf(user.id);
        await s.secondFactors.createPasskey(passkey);
        assert.equal((await s.users.findUserById(user.id))?.mfa, true);
        assert.equal((await s.sessions.findSession(session.id, Date.now()))?.user.mfa, true);
        const found = await s.secondFactors.findPasskeyByCredentialId(passkey.credentialId);
        assert.ok(found);
        assert.deepEqual(Buffer.from(found.publicKey), Buffer.from(passkey.publicKey));
        assert.deepEqual({ ...found, publicKey: null }, { ...passkey, publicKey: null });
        await assert.rejects(s.secondFactors.createPasskey(passkeyOf(user.id, { credentialId: passkey.credentialId })), (e) =>
          isLatchError(e, "conflict"),
        );
        const second = passkeyOf(user.id, { createdAt: passkey.createdAt + 1, name: "Phone" });
        await s.secondFactors.createPasskey(second);
        assert.deepEqual(
          (await s.secondFactors.listPasskeys(user.id)).map((p) => p.id),
          [passkey.id, second.id],
        );
        assert.equal(await s.secondFactors.findPasskeyByCredentialId("nope"), null);
        // The counter moves by compare-and-set.
        const uses = await Promise.all([
          s.secondFactors.recordPasskeyUse(passkey.id, 0, 5, 1000),
          s.secondFactors.recordPasskeyUse(passkey.id, 0, 5, 1000),
        ]);
        assert.equal(uses.filter(Boolean).length, 1);
        const used = await s.secondFactors.findPasskeyByCredentialId(passkey.credentialId);
        assert.equal(used?.counter, 5);
        assert.equal(used?.lastUsedAt, 1000);
        const stranger = newUser();
        await s.users.createUser(stranger);
        assert.equal(await s.secondFactors.renamePasskey(stranger.id, passkey.id, "Mine"), false);
        assert.equal(await s.secondFactors.deletePasskey(stranger.id, passkey.id), false);
        assert.equal(await s.secondFactors.renamePasskey(user.id, passkey.id, "Work laptop"), true);
        assert.equal((await s.secondFactors.listPasskeys(user.id))[0]?.name, "Work laptop");
        assert.equal(await s.secondFactors.deletePasskey(user.id, passkey.id), true);
        assert.equal((await s.users.findUserById(user.id))?.mfa, true, "one passkey is left");
        assert.equal(await s.secondFactors.deletePasskey(user.id, second.id), true);
        assert.equal((await s.users.findUserById(user.id))?.mfa, false);
        assert.equal((await s.sessions.findSession(session.id, Date.now()))?.user.mfa, false);
      });

      it("removes every second factor at once, and with the user", async () => {
        const user = newUser();
        await s.users.createUser(user);
        await s.secondFactors.beginTotp(user.id, "sealed", Date.now());
        await s.secondFactors.confirmTotp(user.id, "sealed", 1, ["r1"], Date.now());
        await s.secondFactors.createPasskey(passkeyOf(user.id));
        assert.equal(await s.secondFactors.deleteSecondFactors(user.id), true);
        assert.equal(await s.secondFactors.findTotp(user.id), null);
        assert.deepEqual(await s.secondFactors.listPasskeys(user.id), []);
        assert.equal(await s.secondFactors.countRecoveryCodes(user.id), 0);
        assert.equal((await s.users.findUserById(user.id))?.mfa, false);
        assert.equal(await s.secondFactors.deleteSecondFactors(user.id), false);

        const gone = newUser();
        await s.users.createUser(gone);
        const passkey = passkeyOf(gone.id);
        await s.secondFactors.createPasskey(passkey);
        await s.secondFactors.beginTotp(gone.id, "sealed", Date.now());
        await s.secondFactors.confirmTotp(gone.id, "sealed", 1, ["r1"], Date.now());
        await s.users.deleteUser(gone.id);
        assert.equal(await s.secondFactors.findPasskeyByCredentialId(passkey.credentialId), null);
        assert.equal(await s.secondFactors.findTotp(gone.id), null);
        assert.equal(await s.secondFactors.countRecoveryCodes(gone.id), 0);
      });

      it("hands a WebAuthn challenge out once, never after it expired, and sweeps expired ones", async () => {
        const now = Date.now();
        const challenge = {
          id: randomBytes(16).toString("base64url"),
          purpose: "sign_in" as const,
          userId: null,
          secretHash: randomBytes(32),
          challenge: "abc",
          expiresAt: now + minute,
        };
        await s.secondFactors.putChallenge(challenge);
        const taken = await Promise.all([
          s.secondFactors.takeChallenge(challenge.id, now),
          s.secondFactors.takeChallenge(challenge.id, now),
        ]);
        assert.equal(taken.filter((c) => c !== null).length, 1);
        const got = taken.find((c) => c !== null)!;
        assert.deepEqual(Buffer.from(got.secretHash), challenge.secretHash);
        assert.deepEqual({ ...got, secretHash: null }, { ...challenge, secretHash: null });
        const old = { ...challenge, id: randomBytes(16).toString("base64url"), expiresAt: now + 10 };
        await s.secondFactors.putChallenge(old);
        assert.equal(await s.secondFactors.takeChallenge(old.id, now + 10), null, "expired");
        const stale = { ...challenge, id: randomBytes(16).toString("base64url"), expiresAt: now - 1 };
        await s.secondFactors.putChallenge(stale);
        assert.ok((await s.secondFactors.deleteExpiredChallenges(now, 100)) >= 1);
        assert.equal(await s.secondFactors.takeChallenge(stale.id, now - 10), null, "swept");
      });
    });

    describe("health", () => {
      it("raises the flush mark one at a time, counting from where it was, and concurrent raises all count", async (t) => {
        if (s.marks === undefined) return t.skip("this store keeps no flush mark");
        const start = await s.marks.readFlushMark();
        assert.ok(Number.isInteger(start) && start >= 0);
        assert.equal(await s.marks.raiseFlushMark(), start + 1);
        const raised = await Promise.all(Array.from({ length: 10 }, () => s.marks!.raiseFlushMark()));
        assert.deepEqual(
          [...raised].sort((a, b) => a - b),
          Array.from({ length: 10 }, (_, i) => start + 2 + i),
        );
        assert.equal(await s.marks.readFlushMark(), start + 11);
      });

      it("reports every backend as ok while it answers", async () => {
        const health = await s.health();
        assert.ok(Object.keys(health).length > 0);
        assert.ok(
          Object.values(health).every((h) => h === "ok"),
          JSON.stringify(health),
        );
      });
    });
  });
}
