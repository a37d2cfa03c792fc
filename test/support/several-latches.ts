import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { startLatch } from "./latch-process.js";
import type { LatchProcess } from "./latch-process.js";

/**
 * Helpers for tests that run several real Latch processes on one PostgreSQL
 * database and one Redis (test/several-processes, redis-faults,
 * redis-cluster): starting and always stopping them, a small HTTP client
 * with fixed cookies and timeouts, and the two-process scenarios that the
 * single-Redis and the cluster tests share.
 */

export const PASSWORD = "a long enough password";
export { sleep };

/** Every Latch started here; killed by PID if the test process exits first. */
const running = new Set<LatchProcess>();
process.on("exit", () => {
  for (const latch of running) latch.child.kill("SIGKILL");
});

/**
 * Every Latch on one Redis shares the key prefix "latch:", and so the
 * per-address rate-limit windows (`latch:rl:register:addr:127.0.0.1`, …).
 * So that these tests neither count against other users of the shared Redis
 * nor trip over earlier runs, each test process presents an address of its
 * own from the benchmarking range (198.18.0.0/15) through X-Forwarded-For,
 * which the Latch processes believe from loopback (TRUST_PROXY).
 */
export const CLIENT_ADDRESS = `198.18.${randomBytes(1)[0]}.${(randomBytes(1)[0]! % 254) + 1}`;

/**
 * The environment of a Latch on shared stores: the per-address limits are
 * raised out of the way, the per-account limit keeps its default of 10, and
 * an admin `root.admin` is created at start.
 */
export function latchEnv(databaseUrl: string, redisUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    LOG_LEVEL: "warn",
    TRUST_PROXY: "loopback",
    THROTTLE_ACCOUNT_FAILURES: "10",
    THROTTLE_ADDRESS_FAILURES: "1000000",
    THROTTLE_REGISTRATIONS: "1000000",
    ADMIN_USERNAME: "root.admin",
    ADMIN_PASSWORD: PASSWORD,
    ...extra,
  };
}

export async function startTracked(env: Record<string, string>, options: { port?: number } = {}): Promise<LatchProcess> {
  const latch = await startLatch(env, options);
  running.add(latch);
  latch.child.once("exit", () => running.delete(latch));
  return latch;
}

/** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Never throws. */
export async function stopLatch(latch: LatchProcess | undefined, graceMs = 5000): Promise<void> {
  if (latch === undefined) return;
  const timer = setTimeout(() => latch.child.kill("SIGKILL"), graceMs);
  try {
    await latch.stop("SIGTERM");
  } finally {
    clearTimeout(timer);
    running.delete(latch);
  }
}

/** redis-server and redis-cli on the PATH; under CI=true their absence fails instead of skipping. */
export function redisBinariesSkip(): string | false {
  const present = ["redis-server", "redis-cli"].every((bin) => spawnSync(bin, ["--version"], { stdio: "ignore" }).status === 0);
  if (present) return false;
  const reason = "redis-server and redis-cli are not installed";
  if (process.env.CI === "true" || process.env.CI === "1")
    throw new Error(`${reason}, and CI=true: the Redis fault and cluster tests must run in CI.`);
  console.log(`# skipping: ${reason}`);
  return reason;
}

export const redisCli = async (args: string[]): Promise<string> => (await promisify(execFile)("redis-cli", args, { timeout: 5000 })).stdout;

// ---------------------------------------------------------------------------
// HTTP

/** A signed-in session: the cookie value and its CSRF token, usable on any process. */
export interface Session {
  cookie: string;
  csrfToken: string;
  userId: string;
  username: string;
}

export interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

/** One request with a 5 s timeout; a cookie and CSRF token when `session` is given. */
export async function call(
  base: string,
  method: string,
  path: string,
  options: { session?: Session | undefined; body?: unknown } = {},
): Promise<Answer> {
  const { session, body } = options;
  const response = await fetch(base + path, {
    method,
    headers: {
      "x-forwarded-for": CLIENT_ADDRESS,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(session === undefined ? {} : { cookie: `sid=${session.cookie}` }),
      ...(session === undefined || method === "GET" ? {} : { "x-csrf-token": session.csrfToken }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

function cookieOf(answer: Answer): string {
  const match = /(?:^|[,\s])sid=([^;]+)/.exec(answer.headers.get("set-cookie") ?? "");
  assert.ok(match, `a session cookie in ${answer.headers.get("set-cookie")}`);
  return match[1]!;
}

function sessionOf(answer: Answer): Session {
  return { cookie: cookieOf(answer), csrfToken: answer.body.csrfToken, userId: answer.body.user.id, username: answer.body.user.username };
}

export function uniqueName(prefix: string): string {
  return `${prefix}.${randomBytes(5).toString("hex")}`;
}

export async function signUp(base: string, username = uniqueName("mp")): Promise<Session> {
  const answer = await call(base, "POST", "/register", { body: { username, password: PASSWORD } });
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  return sessionOf(answer);
}

export async function signIn(base: string, username: string, password = PASSWORD): Promise<Session> {
  const answer = await call(base, "POST", "/login", { body: { username, password } });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return sessionOf(answer);
}

/** The session after a password change: the same session under a new id. */
export function rotated(session: Session, answer: Answer): Session {
  return { ...session, cookie: cookieOf(answer), csrfToken: answer.body.csrfToken };
}

export async function status(base: string, session: Session, path = "/protected"): Promise<number> {
  return (await call(base, "GET", path, { session })).status;
}

/** The session id (public handle) in a cookie value. */
export function sessionIdOf(session: Session): string {
  return session.cookie.split(".")[0]!;
}

/**
 * Polls `GET /protected` on `base` every `intervalMs` until it answers 401,
 * and returns how long after `since` (a performance.now() time, typically
 * when the revocation was acknowledged) that 401 arrived, at least 0, and
 * how many requests were still accepted after `since`. Fails on any answer
 * other than 200 or 401, after `timeoutMs`, or when the refusal does not
 * stick (three more requests must be 401 too).
 */
export interface Refusal {
  ms: number;
  accepted: number;
}

export async function refusal(
  base: string,
  session: Session,
  since: number,
  options: { intervalMs?: number; timeoutMs?: number } = {},
): Promise<Refusal> {
  const intervalMs = options.intervalMs ?? 10;
  const timeoutMs = options.timeoutMs ?? 3000;
  let accepted = 0;
  for (;;) {
    const answer = await call(base, "GET", "/protected", { session });
    const at = performance.now();
    if (answer.status === 401) {
      for (let i = 0; i < 3; i += 1) assert.equal(await status(base, session), 401, "a refused session stays refused");
      return { ms: Math.max(0, at - since), accepted };
    }
    accepted += 1;
    assert.equal(answer.status, 200, `GET /protected answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    if (at - since > timeoutMs) assert.fail(`still accepted ${Math.round(at - since)} ms after it was ended`);
    await sleep(intervalMs);
  }
}

/** Waits until GET /readyz reports `redis` as `expected` (and the status that goes with it); returns the ms it took. */
export async function waitForRedis(base: string, expected: "ok" | "down", timeoutMs = 10_000): Promise<number> {
  const started = performance.now();
  let last: Answer | undefined;
  for (;;) {
    try {
      last = await call(base, "GET", "/readyz");
      if (last.status === 200 && last.body?.stores?.redis === expected) {
        assert.equal(last.body.status, expected === "ok" ? "ok" : "degraded");
        assert.equal(last.body.stores.database, "ok");
        return performance.now() - started;
      }
    } catch {
      // not answering yet
    }
    if (performance.now() - started > timeoutMs)
      assert.fail(`${base}/readyz did not report redis ${expected} within ${timeoutMs} ms: ${JSON.stringify(last?.body)}`);
    await sleep(20);
  }
}

/** "n=17 p50=3.7 ms max=13.2 ms, 0 requests accepted after the acknowledgement" */
export function summary(refusals: Refusal[]): string {
  const sorted = refusals.map((r) => r.ms).sort((x, y) => x - y);
  const ms = (v: number | undefined): string => `${(v ?? NaN).toFixed(1)} ms`;
  const accepted = refusals.reduce((sum, r) => sum + r.accepted, 0);
  return `n=${sorted.length} p50=${ms(sorted[Math.floor((sorted.length - 1) / 2)])} max=${ms(sorted.at(-1))}, ${accepted} requests accepted after the acknowledgement`;
}

/** Asserts each refusal came within one second. */
export function withinOneSecond(refusals: Refusal[]): Refusal[] {
  for (const r of refusals) assert.ok(r.ms < 1000, `refused ${r.ms.toFixed(1)} ms after the revocation was acknowledged`);
  return refusals;
}

// ---------------------------------------------------------------------------
// Scenarios shared by the single-Redis and the cluster tests

export interface Pair {
  a: LatchProcess;
  b: LatchProcess;
}

/** A session made on either process works on the other. */
export async function sessionWorksOnBoth({ a, b }: Pair): Promise<void> {
  for (const [made, other] of [
    [a, b],
    [b, a],
  ] as const) {
    const registered = await signUp(made.url);
    const signedIn = await signIn(made.url, registered.username);
    for (const session of [registered, signedIn]) {
      const there = await call(other.url, "GET", "/me", { session });
      assert.equal(there.status, 200, JSON.stringify(there.body));
      assert.equal(there.body.user.username, registered.username);
      assert.equal(there.body.session.id, sessionIdOf(session));
      assert.equal((await call(made.url, "GET", "/me", { session })).body.session.id, sessionIdOf(session));
    }
    // A state-changing request made on the other process with the CSRF token the first one issued.
    const sessions = await call(other.url, "GET", "/sessions", { session: signedIn });
    assert.equal(sessions.status, 200);
    assert.equal(sessions.body.sessions.length, 2);
    // The client address is the one X-Forwarded-For gave (TRUST_PROXY=loopback), truncated to /24.
    for (const listed of sessions.body.sessions) assert.equal(listed.ipAddress, CLIENT_ADDRESS.replace(/\.\d+$/, ".0"));
    const revoked = await call(other.url, "DELETE", `/sessions/${sessionIdOf(registered)}`, { session: signedIn });
    assert.equal(revoked.status, 204, JSON.stringify(revoked.body));
  }
}

/**
 * Signs a session out on one process and measures when the other refuses
 * it; `rounds` times in each direction. The other process has served the
 * session just before, so any copy it keeps is warm. Returns the delays.
 */
export async function signOutDelays({ a, b }: Pair, rounds: number): Promise<Refusal[]> {
  const delays: Refusal[] = [];
  const user = await signUp(a.url);
  for (let i = 0; i < rounds * 2; i += 1) {
    const [ending, other] = i % 2 === 0 ? [a, b] : [b, a];
    const session = await signIn(ending.url, user.username);
    for (let j = 0; j < 3; j += 1) assert.equal(await status(other.url, session), 200);
    assert.equal(await status(ending.url, session), 200);
    const answer = await call(ending.url, "POST", "/logout", { session });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const acknowledged = performance.now();
    const delay = await refusal(other.url, session, acknowledged);
    assert.ok(delay.ms < 1000, `refused ${delay.ms} ms after sign-out was acknowledged`);
    assert.equal(await status(ending.url, session), 401);
    delays.push(delay);
  }
  return delays;
}

/**
 * Twelve wrong passwords for one account, alternating between the
 * processes: the 11th and 12th are refused with 429 and Retry-After, and
 * then so is the right password, on both.
 */
export async function throttleIsShared({ a, b }: Pair): Promise<void> {
  const user = await signUp(b.url);
  const statuses: number[] = [];
  for (let i = 1; i <= 12; i += 1) {
    const latch = i % 2 === 1 ? a : b;
    const answer = await call(latch.url, "POST", "/login", { body: { username: user.username, password: `wrong password ${i}` } });
    statuses.push(answer.status);
    if (i <= 10) {
      assert.equal(answer.status, 401, `attempt ${i}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.code, "invalid_credentials");
    } else {
      assert.equal(
        answer.status,
        429,
        `attempt ${i} on ${latch === a ? "A" : "B"} (${statuses.join(" ")}): ${JSON.stringify(answer.body)}`,
      );
      assert.equal(answer.body.error.code, "rate_limited");
      const retryAfter = Number(answer.headers.get("retry-after"));
      assert.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 900, `Retry-After: ${answer.headers.get("retry-after")}`);
    }
  }
  for (const latch of [a, b]) {
    const answer = await call(latch.url, "POST", "/login", { body: { username: user.username, password: PASSWORD } });
    assert.equal(answer.status, 429, `the right password on ${latch === a ? "A" : "B"}: ${JSON.stringify(answer.body)}`);
    assert.ok(Number(answer.headers.get("retry-after")) > 0);
  }
  // The session made at registration is not affected by the throttle.
  assert.equal(await status(a.url, user), 200);
}
