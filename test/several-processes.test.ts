import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { performance } from "node:perf_hooks";
import { REDIS_URL, serviceSkip } from "../src/testing/services.js";
import type { LatchProcess } from "./support/latch-process.js";
import { createTestDatabase } from "./support/postgres-database.js";
import type { TestDatabase } from "./support/postgres-database.js";
import {
  PASSWORD,
  call,
  latchEnv,
  refusal,
  rotated,
  sessionIdOf,
  sessionWorksOnBoth,
  signIn,
  signOutDelays,
  signUp,
  startTracked,
  status,
  stopLatch,
  summary,
  throttleIsShared,
  waitForRedis,
  withinOneSecond,
} from "./support/several-latches.js";
import type { Refusal, Session } from "./support/several-latches.js";

/**
 * Two real Latch processes on different ports sharing one PostgreSQL
 * database (fresh for this file) and the shared Redis: they act as one
 * (CONTRACT.md, "Several processes"). Nothing on the shared Redis is
 * flushed: every user and session here is new.
 */

const skip = (await serviceSkip("postgres")) || (await serviceSkip("redis"));

describe("two Latch processes on one PostgreSQL and one Redis", { skip }, () => {
  let db: TestDatabase | undefined;
  let a: LatchProcess | undefined;
  let b: LatchProcess | undefined;
  let env: Record<string, string>;
  const delays: Record<string, Refusal[]> = {};
  const pair = () => ({ a: a!, b: b! });

  function record(kind: string, values: Refusal[]): void {
    (delays[kind] ??= []).push(...values);
  }

  before(async () => {
    db = await createTestDatabase("latch_mp");
    env = latchEnv(db.url, REDIS_URL);
    a = await startTracked(env);
    b = await startTracked(env);
    // Both use Redis (not the database fallback) before anything is measured.
    await waitForRedis(a.url, "ok");
    await waitForRedis(b.url, "ok");
  });

  after(async () => {
    await stopLatch(a);
    await stopLatch(b);
    await db?.drop();
    const all = Object.values(delays).flat();
    if (all.length > 0) {
      console.log(`# cross-process revocation, first refusal after the acknowledgement: all ${summary(all)}`);
      for (const [kind, values] of Object.entries(delays)) console.log(`#   ${kind}: ${summary(values)}`);
    }
  });

  it("accepts a session made on A on B, and one made on B on A", async () => {
    await sessionWorksOnBoth(pair());
  });

  it("refuses on B a session signed out on A within one second (and the reverse)", async () => {
    const measured = await signOutDelays(pair(), 5);
    record("sign-out", measured);
  });

  it("refuses on B the other sessions within one second after revoke-others on A", async () => {
    const keeper = await signUp(a!.url);
    const others = [await signIn(b!.url, keeper.username), await signIn(a!.url, keeper.username), await signIn(b!.url, keeper.username)];
    for (const session of [keeper, ...others]) assert.equal(await status(b!.url, session), 200);
    const answer = await call(a!.url, "POST", "/sessions/revoke-others", { session: keeper });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.revoked, 3);
    const acknowledged = performance.now();
    const measured = withinOneSecond(await Promise.all(others.map((session) => refusal(b!.url, session, acknowledged))));
    record("revoke-others", measured);
    assert.equal(await status(b!.url, keeper), 200, "the session that asked stays signed in");
    assert.equal(await status(a!.url, keeper), 200);
  });

  it("refuses on B the old id and the other sessions within one second after a password change on A", async () => {
    const user = await signUp(b!.url);
    const other = await signIn(b!.url, user.username);
    for (const session of [user, other]) assert.equal(await status(b!.url, session), 200);
    const answer = await call(a!.url, "POST", "/password", {
      session: user,
      body: { currentPassword: PASSWORD, newPassword: "another long enough password" },
    });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const acknowledged = performance.now();
    const renewed = rotated(user, answer);
    const measured = withinOneSecond(await Promise.all([user, other].map((session) => refusal(b!.url, session, acknowledged))));
    record("password change", measured);
    assert.equal(await status(b!.url, renewed), 200, "the session that changed the password goes on under its new id");
    assert.equal((await call(b!.url, "GET", "/me", { session: renewed })).body.session.id, sessionIdOf(renewed));
    assert.equal((await call(b!.url, "POST", "/login", { body: { username: user.username, password: PASSWORD } })).status, 401);
    await signIn(b!.url, user.username, "another long enough password");
  });

  it("shows a role change made on one process on the other's next request, and admin sign-outs everywhere", async () => {
    const admin = await signIn(a!.url, "root.admin");
    const adminOnB: Session = await signIn(b!.url, "root.admin");
    const user = await signUp(b!.url);
    // Both processes have served the user's session (and its roles) before the change.
    for (const latch of [a!, b!]) {
      assert.equal(await status(latch.url, user, "/admin"), 403);
      assert.equal(await status(latch.url, user, "/admin"), 403);
    }

    const promoted = await call(a!.url, "PATCH", `/admin/users/${user.userId}`, { session: admin, body: { roles: ["user", "admin"] } });
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body));
    assert.equal(await status(b!.url, user, "/admin"), 200, "B sees the promotion on the next request");
    assert.deepEqual((await call(b!.url, "GET", "/me", { session: user })).body.user.roles.sort(), ["admin", "user"]);

    const demoted = await call(b!.url, "PATCH", `/admin/users/${user.userId}`, { session: adminOnB, body: { roles: ["user"] } });
    assert.equal(demoted.status, 200, JSON.stringify(demoted.body));
    assert.equal(await status(a!.url, user, "/admin"), 403, "A sees the demotion on the next request");
    assert.equal(await status(b!.url, user, "/admin"), 403);

    const second = await signIn(a!.url, user.username);
    for (const session of [user, second]) assert.equal(await status(b!.url, session), 200);
    const forced = await call(a!.url, "POST", `/admin/users/${user.userId}/revoke-sessions`, { session: admin });
    assert.equal(forced.status, 200, JSON.stringify(forced.body));
    assert.equal(forced.body.revoked, 2);
    const acknowledged = performance.now();
    const measured = withinOneSecond(await Promise.all([user, second].map((session) => refusal(b!.url, session, acknowledged))));
    record("admin revoke-sessions", measured);
  });

  it("enforces one sign-in throttle across both processes", async () => {
    await throttleIsShared(pair());
  });

  it("loses no acknowledged session when a process is killed with SIGKILL and restarted", async () => {
    const user = await signUp(b!.url);
    const sessions: Session[] = [];
    for (let i = 0; i < 20; i += 1) sessions.push(await signIn(a!.url, user.username));

    // And some sign-ins still in flight at the kill: whichever A acknowledged must survive too.
    const inFlight: Promise<Session | null>[] = [];
    const acknowledged: Session[] = [];
    let killed!: () => void;
    const killNow = new Promise<void>((resolve) => (killed = resolve));
    for (let i = 0; i < 8; i += 1) {
      inFlight.push(
        signIn(a!.url, user.username).then(
          (session) => {
            acknowledged.push(session);
            if (acknowledged.length === 3) killed();
            return session;
          },
          () => null,
        ),
      );
    }
    await Promise.race([killNow, Promise.all(inFlight)]);
    const port = a!.port;
    await a!.stop("SIGKILL");
    await Promise.all(inFlight);
    // Every answer received was acknowledged by A, including any that arrived between the decision to kill and the kill.
    const extra = [...acknowledged];
    assert.ok(extra.length >= 3, `${extra.length} of 8 in-flight sign-ins answered`);

    a = await startTracked(env, { port });
    await waitForRedis(a.url, "ok");
    for (const session of [...sessions, ...extra]) {
      assert.equal(await status(a.url, session), 200, `session ${sessionIdOf(session)} after the restart`);
      assert.equal(await status(b!.url, session), 200);
    }
    // The system of record has them (Redis keeps nothing on disk).
    const ids = [...sessions, ...extra].map(sessionIdOf);
    const rows = await db!.query<{ n: string }>("SELECT count(*) AS n FROM sessions WHERE id = ANY($1)", [ids]);
    assert.equal(Number(rows.rows[0]!.n), ids.length);
    console.log(
      `# SIGKILL: ${sessions.length} sessions signed in before the kill and ${extra.length} acknowledged while 8 were in flight, all valid after the restart`,
    );
  });
});
