import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { performance } from "node:perf_hooks";
import { issueSessionToken } from "../src/core/session-token.js";
import { startRedisServer } from "../src/stores/redis/redis-test-support.js";
import type { RedisServer } from "../src/stores/redis/redis-test-support.js";
import type { LatchProcess } from "./support/latch-process.js";
import {
  CLIENT_ADDRESS,
  PASSWORD,
  call,
  latchEnv,
  redisBinariesSkip,
  signIn,
  signUp,
  sleep,
  startTracked,
  status,
  stopLatch,
  uniqueName,
  waitForRedis,
} from "./support/several-latches.js";
import type { Answer, Session } from "./support/several-latches.js";
import { startThrowawayPostgres, throwawayPostgresSkip } from "./support/throwaway-postgres.js";
import type { ThrowawayPostgres } from "./support/throwaway-postgres.js";

/**
 * Two real Latch processes on a throw-away PostgreSQL and a redis-server of
 * this test's own (tiered store). PostgreSQL is stopped for about ten
 * seconds under light load and started again (CONTRACT.md, "Several
 * processes": when the database is unreachable and Redis is configured,
 * live sessions stay valid, cookies and tokens, a session ended before or
 * during the outage stays ended, every write answers 503 `unavailable` and
 * changes nothing, /readyz answers 200 `degraded`, and writes work again by
 * themselves when the database returns).
 *
 * SESSION_IDLE_TIMEOUT=3 puts a renewal due every 300 ms and lets the idle
 * timeout known before the outage pass three times over during it: the
 * sessions stay alive only because they are used, as a user's would be.
 */

const skip = throwawayPostgresSkip() || redisBinariesSkip();

const OUTAGE_MS = 10_000;
const NEW_PASSWORD = "a different long enough password";

type Kind = "live cookie" | "bearer" | "signed-out cookie" | "unknown cookie";

interface Probe {
  kind: Kind;
  label: string;
  session?: Session;
  /** A Bearer token and its `exp` (ms). */
  bearer?: { token: string; expMs: number };
}

interface Outcome {
  kind: Kind;
  label: string;
  on: "A" | "B";
  start: number;
  end: number;
  /** Wall-clock time of the request, for the Bearer token's expiry. */
  wallStart: number;
  status: number;
  detail: string;
}

async function bearerCall(base: string, token: string): Promise<Answer> {
  const response = await fetch(`${base}/protected`, {
    headers: { authorization: `Bearer ${token}`, "x-forwarded-for": CLIENT_ADDRESS },
    signal: AbortSignal.timeout(5000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body, headers: response.headers };
}

function expOf(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as { exp: number };
  return payload.exp * 1000;
}

/** What a probe must answer at `wall` (Date.now()): a number, or null when either 200 or 401 is right (a token at its expiry). */
function expected(probe: Probe, wall: number): number | null {
  if (probe.kind === "live cookie") return 200;
  if (probe.kind === "signed-out cookie" || probe.kind === "unknown cookie") return 401;
  const expMs = probe.bearer!.expMs;
  if (wall < expMs - 500) return 200;
  if (wall > expMs + 1500) return 401;
  return null;
}

describe("two Latch processes (tiered) through a PostgreSQL outage", { skip }, () => {
  let pg: ThrowawayPostgres | undefined;
  let redis: RedisServer | undefined;
  let a: LatchProcess | undefined;
  let b: LatchProcess | undefined;
  let stopLoad: (() => Promise<Outcome[]>) | undefined;
  const users: Session[] = [];
  /** Signed in before the outage, each served by both processes. */
  const live: Session[] = [];
  let signedOut: Session | undefined;
  let unknown: Session | undefined;
  /** Signed out during the outage (refused with 503): must go on working. */
  let victim: Session | undefined;
  /** Its password change during the outage is refused with 503: the password stays. */
  let changer: Session | undefined;
  const name = (latch: LatchProcess): "A" | "B" => (latch === a ? "A" : "B");

  before(async () => {
    pg = await startThrowawayPostgres();
    redis = await startRedisServer();
    const env = latchEnv(pg.url, redis.url, { SESSION_IDLE_TIMEOUT: "3", SESSION_ABSOLUTE_TIMEOUT: "3600" });
    a = await startTracked(env);
    b = await startTracked(env);
    await waitForRedis(a.url, "ok");
    await waitForRedis(b.url, "ok");
    for (let i = 0; i < 3; i += 1) users.push(await signUp((i % 2 === 0 ? a : b).url, uniqueName("outage")));
    live.push(...users, await signIn(b.url, users[0]!.username), await signIn(a.url, users[1]!.username));
    victim = await signIn(a.url, users[2]!.username);
    changer = await signIn(b.url, users[1]!.username);
    live.push(victim, changer);

    signedOut = await signIn(a.url, users[0]!.username);
    assert.equal(await status(b.url, signedOut), 200);
    const loggedOut = await call(b.url, "POST", "/logout", { session: signedOut });
    assert.equal(loggedOut.status, 200, JSON.stringify(loggedOut.body));

    const forged = issueSessionToken(users[0]!.userId, (bytes) => void randomFillSync(bytes));
    unknown = { cookie: forged.token, csrfToken: "", userId: users[0]!.userId, username: users[0]!.username };

    for (const latch of [a, b]) {
      for (const session of live) assert.equal(await status(latch.url, session), 200, `${session.username} on ${name(latch)}`);
      assert.equal(await status(latch.url, signedOut), 401);
      assert.equal(await status(latch.url, unknown), 401);
    }
  });

  after(async () => {
    await stopLoad?.();
    await stopLatch(a);
    await stopLatch(b);
    await redis?.kill();
    await pg?.destroy();
  });

  /** Requests until the returned function is called: each probe on A and on B, in two loops, about every 10 ms each. */
  function startLoad(probes: Probe[]): () => Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    let stopped = false;
    async function one(probe: Probe, latch: LatchProcess): Promise<void> {
      const start = performance.now();
      const wallStart = Date.now();
      let got: number;
      let detail = "";
      try {
        const answer =
          probe.bearer !== undefined
            ? await bearerCall(latch.url, probe.bearer.token)
            : await call(latch.url, "GET", "/protected", { session: probe.session });
        got = answer.status;
        detail = JSON.stringify(answer.body).slice(0, 160);
      } catch (error) {
        got = 0;
        detail = String((error as Error)?.cause ?? error);
      }
      outcomes.push({
        kind: probe.kind,
        label: probe.label,
        on: name(latch),
        start,
        end: performance.now(),
        wallStart,
        status: got,
        detail,
      });
    }
    async function loop(offset: number): Promise<void> {
      for (let i = offset; !stopped; i += 2) {
        const probe = probes[i % probes.length]!;
        await Promise.all([one(probe, a!), one(probe, b!)]);
        await sleep(10);
      }
    }
    const loops = [loop(0), loop(1)];
    const stop = async (): Promise<Outcome[]> => {
      stopped = true;
      await Promise.all(loops);
      if (stopLoad === stop) stopLoad = undefined;
      return outcomes;
    };
    stopLoad = stop;
    return stop;
  }

  async function readyz(latch: LatchProcess): Promise<Answer> {
    return call(latch.url, "GET", "/readyz");
  }

  /** Polls /readyz until `accept` holds; fails with the last answer after `timeoutMs`. */
  async function waitForReady(latch: LatchProcess, what: string, accept: (answer: Answer) => boolean, timeoutMs: number): Promise<number> {
    const started = performance.now();
    let last: Answer | string = "no answer";
    for (;;) {
      try {
        last = await readyz(latch);
        if (accept(last)) return performance.now() - started;
      } catch (error) {
        last = String(error);
      }
      if (performance.now() - started > timeoutMs)
        assert.fail(
          `${name(latch)}/readyz not ${what} within ${timeoutMs} ms: ${typeof last === "string" ? last : `${last.status} ${JSON.stringify(last.body)}`}`,
        );
      await sleep(50);
    }
  }

  function assertUnavailable(answer: Answer, what: string): void {
    assert.equal(answer.status, 503, `${what} during the outage: ${answer.status} ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body?.error?.code, "unavailable", `${what}: ${JSON.stringify(answer.body)}`);
  }

  it("keeps validating from Redis while PostgreSQL is stopped (200 live, 401 ended or unknown, 503 for writes), and writes again by itself when it returns", async (t) => {
    const probes: Probe[] = [
      ...live.map(
        (session, i): Probe => ({
          kind: "live cookie",
          label: session === victim ? "victim (logout refused)" : session === changer ? "changer (password refused)" : `live #${i}`,
          session,
        }),
      ),
      { kind: "signed-out cookie", label: "signed out before", session: signedOut! },
      { kind: "unknown cookie", label: "unknown", session: unknown! },
    ];
    // The token is taken just before the outage: it lives as long as its
    // session's idle expiry then (3 s), so it is checked up to its `exp`, and
    // refused after it like any expired token.
    const issued = await call(a!.url, "POST", "/token", { session: users[1]! });
    assert.equal(issued.status, 200, JSON.stringify(issued.body));
    const bearer = { token: issued.body.token as string, expMs: expOf(issued.body.token as string) };
    probes.push({ kind: "bearer", label: "bearer before", bearer });
    for (const latch of [a!, b!]) assert.equal((await bearerCall(latch.url, bearer.token)).status, 200);

    const load = startLoad(probes);
    await sleep(1000);

    // The outage.
    const stoppedAt = performance.now();
    await pg!.stop("fast");
    const stoppedMs = performance.now() - stoppedAt;

    const degradedMs = await Promise.all(
      [a!, b!].map((latch) =>
        waitForReady(
          latch,
          "200 degraded (database down, redis ok)",
          (r) => r.status === 200 && r.body?.status === "degraded" && r.body?.stores?.database === "down" && r.body?.stores?.redis === "ok",
          5000,
        ),
      ),
    );

    // Every check from here on that is not about a write's answer is
    // collected, so that one run reports every case that fails rather than
    // the first.
    const problems: string[] = [];
    const check = (ok: boolean, message: string): void => {
      if (!ok) problems.push(message);
    };

    // Writes: 503 unavailable on both processes, and nothing changes; at
    // once, and again once the idle timeout known before the outage has
    // passed (the sessions live on only through renewals the database has
    // not seen).
    const outageName = uniqueName("outage.new");
    const writes: string[] = [];
    for (const round of [0, 1]) {
      if (round === 1) await sleep(Math.max(0, stoppedAt + 4500 - performance.now()));
      for (const latch of [a!, b!]) {
        const on = name(latch);
        assertUnavailable(
          await call(latch.url, "POST", "/login", { body: { username: users[0]!.username, password: PASSWORD } }),
          `POST /login on ${on}`,
        );
        assertUnavailable(
          await call(latch.url, "POST", "/register", { body: { username: outageName, password: PASSWORD } }),
          `POST /register on ${on}`,
        );
        assertUnavailable(await call(latch.url, "POST", "/logout", { session: victim! }), `POST /logout on ${on}`);
        assertUnavailable(
          await call(latch.url, "POST", "/password", { session: changer!, body: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD } }),
          `POST /password on ${on}`,
        );
      }
      writes.push(`at +${Math.round(performance.now() - stoppedAt)} ms login, register, logout, password 503 on A and B`);
      // The refused sign-out and password change changed nothing: both sessions still work on both processes, at once.
      for (const latch of [a!, b!]) {
        for (const [session, what] of [
          [victim!, "the session whose sign-out was refused"],
          [changer!, "the session whose password change was refused"],
        ] as const) {
          const answer = await call(latch.url, "GET", "/protected", { session });
          check(
            answer.status === 200,
            `during the outage, just after the refused writes at +${Math.round(performance.now() - stoppedAt)} ms: ${what}, on ${name(latch)}: ${answer.status} ${JSON.stringify(answer.body)}`,
          );
        }
      }
    }

    // A token for a live session during the outage: issuing one writes no
    // row the contract names, so either answer is defensible; whichever it
    // is, it must be one of the two, and a token issued must work.
    const duringToken = await call(b!.url, "POST", "/token", { session: live[3]! });
    assert.ok(
      duringToken.status === 200 || duringToken.status === 503,
      `POST /token during the outage: ${duringToken.status} ${JSON.stringify(duringToken.body)}`,
    );
    if (duringToken.status === 200) {
      for (const latch of [a!, b!])
        assert.equal(
          (await bearerCall(latch.url, duringToken.body.token)).status,
          200,
          `a token issued during the outage, on ${name(latch)}`,
        );
    } else {
      assert.equal(duringToken.body?.error?.code, "unavailable");
    }

    // Past several renewal intervals and three idle timeouts.
    await sleep(Math.max(0, stoppedAt + OUTAGE_MS - performance.now()));
    for (const latch of [a!, b!]) {
      const answer = await readyz(latch);
      assert.equal(answer.status, 200, `${name(latch)}/readyz at the end of the outage: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.status, "degraded");
    }

    // PostgreSQL returns: writes work again by themselves.
    const restartedAt = performance.now();
    await pg!.start();
    const listeningMs = performance.now() - restartedAt;
    let recoverMs = NaN;
    let lastTry: Answer | string = "none";
    for (let i = 0; ; i += 1) {
      const latch = i % 2 === 0 ? a! : b!;
      try {
        lastTry = await call(latch.url, "POST", "/login", { body: { username: users[0]!.username, password: PASSWORD } });
        if (lastTry.status === 200) {
          recoverMs = performance.now() - restartedAt;
          live.push({
            cookie: /sid=([^;]+)/.exec(lastTry.headers.get("set-cookie") ?? "")![1]!,
            csrfToken: lastTry.body.csrfToken,
            userId: users[0]!.userId,
            username: users[0]!.username,
          });
          break;
        }
        assert.equal(lastTry.status, 503, `POST /login while PostgreSQL returns: ${lastTry.status} ${JSON.stringify(lastTry.body)}`);
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        lastTry = String(error);
      }
      if (performance.now() - restartedAt > 15_000)
        assert.fail(
          `no sign-in succeeded within 15 s of PostgreSQL's return: ${typeof lastTry === "string" ? lastTry : JSON.stringify(lastTry.body)}`,
        );
      await sleep(100);
    }
    // The other process too, within a few seconds.
    const other = live.at(-1)!;
    for (const latch of [a!, b!]) {
      const deadline = performance.now() + 5000;
      for (;;) {
        const answer = await call(latch.url, "POST", "/login", { body: { username: users[2]!.username, password: PASSWORD } });
        if (answer.status === 200) break;
        if (performance.now() > deadline)
          assert.fail(`POST /login on ${name(latch)} 5 s after the first success: ${answer.status} ${JSON.stringify(answer.body)}`);
        await sleep(100);
      }
      assert.equal(await status(latch.url, other), 200);
    }
    await Promise.all([a!, b!].map((latch) => waitForReady(latch, "200 ok", (r) => r.status === 200 && r.body?.status === "ok", 10_000)));
    // Long enough for the write-behind (at most the 300 ms renewal interval) to reach the database.
    await sleep(1500);
    const outcomes = await load();

    const during = outcomes.filter((o) => o.start >= stoppedAt && o.start < restartedAt);
    const afterwards = outcomes.filter((o) => o.start >= restartedAt);
    const count = (list: Outcome[], code: number): number => list.filter((o) => o.status === code).length;
    const byKind = (list: Outcome[]): string =>
      (["live cookie", "bearer", "signed-out cookie", "unknown cookie"] as const)
        .map((kind) => {
          const mine = list.filter((o) => o.kind === kind);
          const codes = new Map<number, number>();
          for (const o of mine) codes.set(o.status, (codes.get(o.status) ?? 0) + 1);
          return `${kind} ${[...codes].map(([code, n]) => `${n}×${code}`).join(" ")}`;
        })
        .join("; ");
    t.diagnostic(
      `PostgreSQL down ${((restartedAt - stoppedAt) / 1000).toFixed(1)} s (stopped in ${stoppedMs.toFixed(0)} ms): ${during.length} reads, ` +
        `${count(during, 200)}×200 ${count(during, 401)}×401 ${count(during, 503)}×503 ${during.length - count(during, 200) - count(during, 401) - count(during, 503)}×other ` +
        `(${byKind(during)}); /readyz degraded after ${degradedMs.map((ms) => ms.toFixed(0)).join("/")} ms of polling (A/B); writes ${writes.join(", ")}; ` +
        `POST /token during it ${duringToken.status}; PostgreSQL answering ${listeningMs.toFixed(0)} ms after the start, first sign-in ${recoverMs.toFixed(0)} ms after it; ` +
        `${afterwards.length} reads after the return (${byKind(afterwards)})`,
    );

    // Every read got the answer it must (no 503 for a read), grouped by
    // probe, process and answer: "live cookie "live #2" on A: 12×401 from +10240 to +11800 ms (…)".
    const wrong = (list: Outcome[], since: number, when: string): void => {
      const groups = new Map<string, Outcome[]>();
      for (const o of list) {
        const want = expected(probes.find((p) => p.label === o.label)!, o.wallStart);
        if (want === null ? o.status === 200 || o.status === 401 : o.status === want) continue;
        const key = `${o.kind} "${o.label}" on ${o.on}: ${o.status}`;
        groups.set(key, [...(groups.get(key) ?? []), o]);
      }
      for (const [key, group] of groups) {
        const at = (o: Outcome): number => Math.round(o.start - since);
        problems.push(`${when}: ${key} ×${group.length}, from +${at(group[0]!)} to +${at(group.at(-1)!)} ms (${group[0]!.detail})`);
      }
    };
    wrong(during, stoppedAt, "during the outage");
    check(during.filter((o) => o.kind === "live cookie").length >= 200, `only ${during.length} reads during the outage`);
    check(
      during.some((o) => o.kind === "live cookie" && o.start - stoppedAt > OUTAGE_MS - 1000),
      "live sessions were not used until the end of the outage",
    );
    check(
      during.some((o) => o.kind === "bearer" && o.status === 200),
      "the token never answered 200 during the outage",
    );
    wrong(afterwards, restartedAt, "after PostgreSQL's return");

    // Nothing changed and nothing was lost: the sessions are valid on both
    // (from the database too, now that it answers), the refused sign-out and
    // password change did nothing, the refused registration made no account.
    for (const latch of [a!, b!]) {
      for (const session of live) {
        const got = await status(latch.url, session);
        check(
          got === 200,
          `after the outage: ${session === victim ? "the session whose sign-out was refused" : session === changer ? "the session whose password change was refused" : `a live session of ${session.username}`} on ${name(latch)}: ${got}`,
        );
      }
      check((await status(latch.url, signedOut!)) === 401, `after the outage: the signed-out cookie on ${name(latch)} is not 401`);
      check((await status(latch.url, unknown!)) === 401, `after the outage: the unknown cookie on ${name(latch)} is not 401`);
    }
    const sessions = await call(a!.url, "GET", "/sessions", { session: victim! });
    check(
      sessions.status === 200 && sessions.body.sessions.some((s: { current: boolean }) => s.current),
      `after the outage: GET /sessions with the session whose sign-out was refused: ${sessions.status} ${JSON.stringify(sessions.body).slice(0, 200)}`,
    );
    const newPassword = await call(b!.url, "POST", "/login", { body: { username: users[1]!.username, password: NEW_PASSWORD } });
    check(newPassword.status === 401, `after the outage: the password refused during it signs in: ${newPassword.status}`);
    const oldPassword = await call(a!.url, "POST", "/login", { body: { username: users[1]!.username, password: PASSWORD } });
    check(
      oldPassword.status === 200,
      `after the outage: the unchanged password does not sign in: ${oldPassword.status} ${JSON.stringify(oldPassword.body)}`,
    );
    const registered = await call(a!.url, "POST", "/register", { body: { username: outageName, password: PASSWORD } });
    check(
      registered.status === 201,
      `after the outage: the name refused during it is not free: ${registered.status} ${JSON.stringify(registered.body)}`,
    );
    assert.deepEqual(problems, [], `${problems.length} checks failed`);
  });
});
