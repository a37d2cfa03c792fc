import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { performance } from "node:perf_hooks";
import { startRedisServer } from "../src/stores/redis/redis-test-support.js";
import type { RedisServer } from "../src/stores/redis/redis-test-support.js";
import { serviceSkip } from "../src/testing/services.js";
import type { LatchProcess } from "./support/latch-process.js";
import { createTestDatabase } from "./support/postgres-database.js";
import type { TestDatabase } from "./support/postgres-database.js";
import {
  PASSWORD,
  call,
  latchEnv,
  redisBinariesSkip,
  redisCli,
  refusal,
  sessionIdOf,
  signIn,
  signOutDelays,
  signUp,
  sleep,
  startTracked,
  status,
  stopLatch,
  summary,
  waitForRedis,
  withinOneSecond,
} from "./support/several-latches.js";
import type { Answer, Session } from "./support/several-latches.js";

/**
 * Two real Latch processes on one PostgreSQL database and a redis-server of
 * this test's own, killed by PID (SIGKILL) while requests keep coming, then
 * started again on the same port (CONTRACT.md, "Several processes": when
 * Redis is unreachable the processes keep serving from the database, a
 * session ended meanwhile stays ended, nothing answers 5xx once a second
 * has passed, and they use Redis again by themselves when it returns).
 */

const skip = (await serviceSkip("postgres")) || redisBinariesSkip();

interface Outcome {
  kind: "validate" | "sign-in" | "use elsewhere" | "sign-out" | "refused elsewhere";
  on: "A" | "B";
  start: number;
  end: number;
  ok: boolean;
  detail: string;
}

interface Load {
  /** Sessions signed in by the load and kept; and those it signed out. */
  kept: Session[];
  ended: Session[];
  stop(): Promise<Outcome[]>;
}

describe("two Latch processes through a Redis outage", { skip }, () => {
  let db: TestDatabase | undefined;
  let redis: RedisServer | undefined;
  let a: LatchProcess | undefined;
  let b: LatchProcess | undefined;
  /** Loads still running: a test that failed before stopping its own leaves one, stopped after it (afterEach). */
  const running = new Set<Load>();
  const users: Session[] = [];
  /**
   * A user the load never signs in or out. A sign-in's copy to Redis is
   * refused (left for the first read to refill) when a revocation on the
   * same user's key lands between its read and its write; the load signs
   * `users` out all the time, so "a sign-in lands in Redis" is checked with
   * this one.
   */
  let bystander: Session | undefined;
  /** Signed in before the outage, half on each process, each served by both. */
  const existing: Session[] = [];
  const endedDuringOutage: Session[] = [];
  const keptFromOutage: Session[] = [];
  const name = (latch: LatchProcess): "A" | "B" => (latch === a ? "A" : "B");

  async function sessionHashed(session: Session): Promise<boolean> {
    const id = sessionIdOf(session);
    return (await redisCli(["-p", String(redis!.port), "HEXISTS", `latch:{${id.slice(0, 8)}}`, id.slice(8)])).trim() === "1";
  }

  async function latchKeys(): Promise<string[]> {
    return (await redisCli(["-p", String(redis!.port), "--scan", "--pattern", "latch:*"])).split("\n").filter(Boolean);
  }

  /**
   * Requests from now until stop(): two loops validating the existing
   * sessions on A and B in turn, and one signing in on one process, using
   * the session on the other, and signing every other one out again (on
   * either) and checking the other process refuses it within one second
   * (unless `crossCheck` is false).
   */
  function startLoad(options: { crossCheck?: boolean } = {}): Load {
    const crossCheck = options.crossCheck ?? true;
    const outcomes: Outcome[] = [];
    const kept: Session[] = [];
    const ended: Session[] = [];
    let stopped = false;

    async function timed(
      kind: Outcome["kind"],
      latch: LatchProcess,
      expected: number,
      request: () => Promise<Answer | number>,
    ): Promise<Answer | null> {
      const start = performance.now();
      try {
        const answer = await request();
        const got = typeof answer === "number" ? answer : answer.status;
        const detail = typeof answer === "number" ? "" : JSON.stringify(answer.body).slice(0, 200);
        outcomes.push({ kind, on: name(latch), start, end: performance.now(), ok: got === expected, detail: `${got} ${detail}` });
        return got === expected && typeof answer !== "number" ? answer : null;
      } catch (error) {
        outcomes.push({
          kind,
          on: name(latch),
          start,
          end: performance.now(),
          ok: false,
          detail: String((error as Error)?.cause ?? error),
        });
        return null;
      }
    }

    async function validate(worker: number): Promise<void> {
      for (let i = worker; !stopped; i += 1) {
        const latch = i % 2 === 0 ? a! : b!;
        await timed("validate", latch, 200, () => call(latch.url, "GET", "/protected", { session: existing[i % existing.length] }));
        await sleep(5);
      }
    }

    async function signInOut(): Promise<void> {
      for (let i = 0; !stopped; i += 1) {
        const [here, there] = i % 2 === 0 ? [a!, b!] : [b!, a!];
        const user = users[i % users.length]!;
        const answer = await timed("sign-in", here, 200, () =>
          call(here.url, "POST", "/login", { body: { username: user.username, password: PASSWORD } }),
        );
        if (answer === null) continue;
        const cookie = /sid=([^;]+)/.exec(answer.headers.get("set-cookie") ?? "")?.[1] ?? "";
        const session: Session = { cookie, csrfToken: answer.body.csrfToken, userId: user.userId, username: user.username };
        if ((await timed("use elsewhere", there, 200, () => call(there.url, "GET", "/protected", { session }))) === null) continue;
        if (i % 4 >= 2) {
          kept.push(session);
          continue;
        }
        // Signed out on either process; the other must refuse it within one second.
        const [ending, other] = i % 4 === 0 ? [here, there] : [there, here];
        if ((await timed("sign-out", ending, 200, () => call(ending.url, "POST", "/logout", { session }))) === null) continue;
        const acknowledged = performance.now();
        if (crossCheck)
          await timed("refused elsewhere", other, 401, async () => {
            const refused = await refusal(other.url, session, acknowledged);
            assert.ok(refused.ms < 1000, `refused after ${refused.ms} ms`);
            return 401;
          });
        ended.push(session);
        await sleep(10);
      }
    }

    const workers = [validate(0), validate(1), signInOut()];
    const load: Load = {
      kept,
      ended,
      async stop() {
        stopped = true;
        await Promise.all(workers);
        running.delete(load);
        return outcomes;
      },
    };
    running.add(load);
    return load;
  }

  function describeFailures(outcomes: Outcome[], since: number): string[] {
    return outcomes.filter((o) => !o.ok).map((o) => `${o.kind} on ${o.on} at +${Math.round(o.start - since)} ms: ${o.detail}`);
  }

  async function pauseRedis(): Promise<() => void> {
    redis!.pause();
    let resumed = false;
    return () => {
      if (resumed) return;
      resumed = true;
      redis!.resume();
    };
  }

  before(async () => {
    db = await createTestDatabase("latch_mp");
    redis = await startRedisServer();
    const env = latchEnv(db.url, redis.url);
    a = await startTracked(env);
    b = await startTracked(env);
    await waitForRedis(a.url, "ok");
    await waitForRedis(b.url, "ok");
    for (let i = 0; i < 3; i += 1) users.push(await signUp((i % 2 === 0 ? a : b).url));
    bystander = await signUp(b.url);
    for (const user of users) {
      existing.push(await signIn(a.url, user.username), await signIn(b.url, user.username));
    }
    for (const session of existing) {
      assert.equal(await status(a.url, session), 200);
      assert.equal(await status(b.url, session), 200);
    }
    // Redis is in use: the sessions are there.
    for (const session of existing) assert.ok(await sessionHashed(session), `session ${sessionIdOf(session)} is in Redis`);
  });

  after(async () => {
    redis?.resume();
    await stopLatch(a);
    await stopLatch(b);
    await redis?.kill();
    await db?.drop();
  });

  // A failed test does not reach its load.stop(): stop it here, or it would
  // run on through the next tests (signing their users out) and keep the
  // process alive forever.
  afterEach(async () => {
    for (const load of [...running]) await load.stop();
  });

  it("keeps serving when redis-server is killed: sessions, sign-ins and sign-outs work, and nothing fails after the first second", async () => {
    const victim = await signIn(a!.url, users[0]!.username);
    for (let i = 0; i < 3; i += 1) assert.equal(await status(b!.url, victim), 200);

    const load = startLoad();
    await sleep(1000);
    const killedAt = performance.now();
    await redis!.kill();

    // /readyz: still 200, "degraded", redis "down".
    const [degradedA, degradedB] = await Promise.all([waitForRedis(a!.url, "down", 3000), waitForRedis(b!.url, "down", 3000)]);

    // Signed out on A while Redis is down: refused on B within a second.
    await sleep(Math.max(0, killedAt + 1500 - performance.now()));
    const answer = await call(a!.url, "POST", "/logout", { session: victim });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const victimRefused = withinOneSecond([await refusal(b!.url, victim, performance.now())]);
    endedDuringOutage.push(victim);

    // New sign-ins work on both, and each process accepts the other's.
    for (const [here, there] of [
      [a!, b!],
      [b!, a!],
    ] as const) {
      const session = await signIn(here.url, users[1]!.username);
      assert.equal(await status(there.url, session), 200);
      keptFromOutage.push(session);
    }

    await sleep(Math.max(0, killedAt + 5000 - performance.now()));
    const outcomes = await load.stop();
    keptFromOutage.push(...load.kept);
    endedDuringOutage.push(...load.ended);
    assert.equal((await call(a!.url, "GET", "/readyz")).body.status, "degraded");
    assert.equal((await call(b!.url, "GET", "/readyz")).body.status, "degraded");

    const afterKill = outcomes.filter((o) => o.start >= killedAt);
    const late = afterKill.filter((o) => o.start >= killedAt + 1000);
    const early = afterKill.filter((o) => o.start < killedAt + 1000);
    assert.deepEqual(describeFailures(late, killedAt), [], "no request fails once a second has passed");
    const count = (kind: Outcome["kind"]) => late.filter((o) => o.kind === kind).length;
    assert.ok(count("validate") >= 100, `${count("validate")} validations during the outage`);
    assert.ok(
      count("sign-in") >= 5 && count("sign-out") >= 2 && count("refused elsewhere") >= 2,
      JSON.stringify({ signIns: count("sign-in"), signOuts: count("sign-out") }),
    );
    for (const latch of [a!, b!]) {
      const warnings = latch
        .output()
        .split("\n")
        .filter((line) => line.includes("Redis is unreachable"));
      assert.equal(warnings.length, 1, `${name(latch)} logs the outage once: ${latch.output()}`);
    }

    const firstSuccess: Record<string, string> = {};
    for (const kind of ["validate", "sign-in", "use elsewhere", "sign-out"] as const) {
      const ends = afterKill.filter((o) => o.kind === kind && o.ok).map((o) => o.end - killedAt);
      firstSuccess[kind] = ends.length === 0 ? "none" : `${Math.min(...ends).toFixed(1)} ms`;
    }
    const slowest = Math.max(...late.map((o) => o.end - o.start));
    console.log(
      `# Redis killed: first success after the kill ${JSON.stringify(firstSuccess)}; ` +
        `${early.length} requests in the first second (${describeFailures(early, killedAt).length} failed: ${JSON.stringify(describeFailures(early, killedAt))}), ` +
        `${late.length} after it (0 failed, slowest ${slowest.toFixed(1)} ms); /readyz degraded after ${degradedA.toFixed(0)} ms (A) / ${degradedB.toFixed(0)} ms (B) of polling; ` +
        `sign-out on A refused on B after ${victimRefused[0]!.ms.toFixed(1)} ms`,
    );
  });

  it("uses Redis again by itself when redis-server returns on the same port, failing no request meanwhile", async () => {
    const load = startLoad();
    await sleep(300);
    const restartedAt = performance.now();
    await redis!.restart();
    const listening = performance.now() - restartedAt;

    // First moment a session is back in Redis: validations refill it.
    let usedAgain = NaN;
    const firstKey = (async () => {
      while (performance.now() - restartedAt < 10_000) {
        if ((await latchKeys()).some((key) => key.startsWith("latch:{"))) return (usedAgain = performance.now() - restartedAt);
        await sleep(20);
      }
      assert.fail("no session was written to Redis within 10 s of its return");
    })();
    const [okA, okB] = await Promise.all([waitForRedis(a!.url, "ok", 10_000), waitForRedis(b!.url, "ok", 10_000)]);
    await firstKey;
    const readyAfter = performance.now() - restartedAt;

    // New sign-ins on either process land in Redis again.
    for (const latch of [a!, b!]) {
      const session = await signIn(latch.url, bystander!.username);
      assert.ok(
        await sessionHashed(session),
        `a sign-in on ${name(latch)} is written to Redis; its /readyz now: ${JSON.stringify((await call(latch.url, "GET", "/readyz")).body)}; its log:\n${latch.output().slice(-3000)}`,
      );
      keptFromOutage.push(session);
    }
    await sleep(1500);
    const outcomes = await load.stop();
    keptFromOutage.push(...load.kept);
    assert.deepEqual(describeFailures(outcomes, restartedAt), [], "no request fails while Redis returns");
    assert.ok(outcomes.filter((o) => o.start >= restartedAt).length >= 50);

    // Nothing was lost or revived across the outage.
    for (const latch of [a!, b!]) {
      for (const session of [...existing, ...keptFromOutage])
        assert.equal(await status(latch.url, session), 200, `kept session on ${name(latch)}`);
      for (const session of endedDuringOutage) assert.equal(await status(latch.url, session), 401, `ended session on ${name(latch)}`);
    }
    // Revocations travel through Redis again.
    const refusals = await signOutDelays({ a: a!, b: b! }, 2);
    console.log(
      `# Redis back: listening ${listening.toFixed(0)} ms after the restart began; first session key in Redis after ${usedAgain.toFixed(0)} ms; ` +
        `/readyz ok on A and B within ${readyAfter.toFixed(0)} ms (polled ${okA.toFixed(0)} / ${okB.toFixed(0)} ms); ` +
        `${outcomes.length} requests during the return, 0 failed; cross-process sign-out again: ${summary(refusals)}`,
    );
  });

  it("keeps serving while redis-server hangs (SIGSTOP, connections open): nothing fails after the first second", async () => {
    await waitForRedis(a!.url, "ok");
    await waitForRedis(b!.url, "ok");
    const load = startLoad({ crossCheck: false });
    await sleep(500);
    const pausedAt = performance.now();
    const resume = await pauseRedis();
    let outcomes: Outcome[];
    try {
      await sleep(3500);
      outcomes = await load.stop();
    } finally {
      resume();
    }
    const late = outcomes.filter((o) => o.start >= pausedAt + 1000);
    assert.deepEqual(describeFailures(late, pausedAt), [], "no request fails once a second has passed");
    assert.ok(late.filter((o) => o.kind === "validate").length >= 50);
    const early = outcomes.filter((o) => o.start >= pausedAt && o.start < pausedAt + 1000);
    const slowestEarly = Math.max(...early.map((o) => o.end - o.start));
    console.log(
      `# Redis paused: ${early.length} requests in the first second (${describeFailures(early, pausedAt).length} failed, slowest ${slowestEarly.toFixed(0)} ms), ${late.length} after it, 0 failed`,
    );
    await waitForRedis(a!.url, "ok", 10_000);
    await waitForRedis(b!.url, "ok", 10_000);
  });

  // The connection stays open while Redis hangs, so only the subscription's
  // heartbeat (a message to itself that stops coming back) shows B that it
  // may be missing revocations; its cache then stops serving.
  it("refuses on B, within one second, a session signed out on A while redis-server hangs", async () => {
    await waitForRedis(a!.url, "ok");
    await waitForRedis(b!.url, "ok");
    const session = await signIn(a!.url, users[0]!.username);
    for (let i = 0; i < 3; i += 1) assert.equal(await status(b!.url, session), 200);
    const resume = await pauseRedis();
    try {
      const answer = await call(a!.url, "POST", "/logout", { session });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const acknowledged = performance.now();
      const refused = await refusal(b!.url, session, acknowledged, { intervalMs: 50, timeoutMs: 2000 }).catch((error: unknown) => {
        throw new Error(`B still accepts a session A signed out while Redis hangs: ${(error as Error).message}`);
      });
      withinOneSecond([refused]);
    } finally {
      resume();
    }
    await waitForRedis(b!.url, "ok", 10_000);
    assert.equal(await status(b!.url, session), 401);
  });
});
