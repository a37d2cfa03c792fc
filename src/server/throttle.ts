import type { FastifyRequest } from "fastify";
import { LatchError } from "../core/errors.js";
import { throttleAddress } from "./client-address.js";
import type { ServerContext } from "./context.js";
import { recordEvent } from "./events.js";

/**
 * Sign-in and registration throttling. Counters live in the stores' shared
 * RateLimitStore (Redis when configured, else the database), so several
 * processes enforce one limit.
 *
 * The per-account counter is hit *before* the password is checked and reset
 * on success: concurrent guesses cannot slip past the limit while their
 * hashes are still running, and once the limit is reached every attempt is
 * refused, right password or not, until the window passes. The per-address
 * counter counts failures only, so many people behind one NAT who sign in
 * successfully are not locked out together.
 */
function retryAfterSeconds(resetAt: number, now: number): number {
  return Math.max(1, Math.ceil((resetAt - now) / 1000));
}

/**
 * Throttled windows already recorded by this process, key → the window's
 * end. Bounded: past the limit the oldest are forgotten, which at worst
 * records a window a second time.
 */
const recordedWindows = new Map<string, number>();
const MAX_RECORDED_WINDOWS = 10_000;

/**
 * Whether this refusal is the first this process has seen for the key's
 * current window. Counters that are hit atomically say it exactly
 * (`count === limit + 1`, once across all processes); the address check only
 * peeks, so it asks {@link recordedWindows} (once per process and window).
 */
function firstRefusal(key: string, resetAt: number): boolean {
  if (recordedWindows.get(key) === resetAt) return false;
  recordedWindows.delete(key);
  if (recordedWindows.size >= MAX_RECORDED_WINDOWS) recordedWindows.delete(recordedWindows.keys().next().value!);
  recordedWindows.set(key, resetAt);
  return true;
}

/**
 * Refuses with 429. The security event (kept 90 days) is written only when
 * `first`, once per key and window: one per refused request would let a
 * flood from one address fill the disk and push a victim's real history out
 * of `/me/export`. The metric still counts every refusal.
 */
function refuse(ctx: ServerContext, request: FastifyRequest, userId: string | null, scope: string, resetAt: number, first: boolean): never {
  if (scope !== "registration") ctx.metrics.signIns.inc({ result: "throttled" });
  if (first) recordEvent(ctx, request, "throttled", userId, { scope });
  throw new LatchError("rate_limited", undefined, { retryAfter: retryAfterSeconds(resetAt, ctx.runtime.clock.now()) });
}

/**
 * For limits counted with `hit`: refuses past `limit`, recording the event
 * only on the hit that crossed it.
 *
 * @example
 * refuseOver(ctx, request, await ctx.stores.limits.hit(key, windowMs, now), limit, { scope: "token", userId: null });
 */
export function refuseOver(
  ctx: ServerContext,
  request: FastifyRequest,
  state: { count: number; resetAt: number },
  limit: number,
  options: { scope: string; userId: string | null },
): void {
  if (state.count > limit) refuse(ctx, request, options.userId, options.scope, state.resetAt, state.count === limit + 1);
}

/** Per client address: IPv4 as it is, IPv6 per /64 (see `throttleAddress`). */
const addressKey = (request: FastifyRequest): string => `addr:${throttleAddress(request.ip)}`;

/**
 * Sign-in attempts from each address still being checked in this process.
 * Failures are only counted once their hash has run, so without this a burst
 * of concurrent guesses would all pass the address check before the first
 * failure was recorded. Attempts in flight count as failures until they end.
 */
const inFlight = new Map<string, number>();

/**
 * Refuses with 429 when the client address has failed too often (counting
 * its attempts still in flight). On success, returns a release function to
 * call when the attempt has finished.
 */
export async function checkAddress(ctx: ServerContext, request: FastifyRequest): Promise<() => void> {
  const key = addressKey(request);
  const pending = inFlight.get(key) ?? 0;
  inFlight.set(key, pending + 1);
  const release = (): void => {
    const left = (inFlight.get(key) ?? 1) - 1;
    if (left <= 0) inFlight.delete(key);
    else inFlight.set(key, left);
  };
  try {
    const now = ctx.runtime.clock.now();
    const state = await ctx.stores.limits.peek(`login:${key}`, now);
    if ((state?.count ?? 0) + pending >= ctx.config.throttle.addressFailures) {
      // Attempts in flight can refuse before any window is open: they share the window that is about to be.
      const resetAt = state?.resetAt ?? now + ctx.config.throttle.addressWindowMs;
      refuse(ctx, request, null, "address", resetAt, firstRefusal(key, state?.resetAt ?? 0));
    }
    return release;
  } catch (error) {
    release();
    throw error;
  }
}

/** Counts an attempt on the account (a user id, or the login text when no such user exists); refuses past the limit. */
export async function countAccountAttempt(
  ctx: ServerContext,
  request: FastifyRequest,
  account: string,
  userId: string | null,
): Promise<void> {
  const { accountFailures, accountWindowMs } = ctx.config.throttle;
  const state = await ctx.stores.limits.hit(`login:acct:${account}`, accountWindowMs, ctx.runtime.clock.now());
  refuseOver(ctx, request, state, accountFailures, { scope: "account", userId });
}

export async function recordFailure(ctx: ServerContext, request: FastifyRequest): Promise<void> {
  await ctx.stores.limits.hit(`login:${addressKey(request)}`, ctx.config.throttle.addressWindowMs, ctx.runtime.clock.now());
}

export async function recordSuccess(ctx: ServerContext, account: string): Promise<void> {
  await ctx.stores.limits.reset(`login:acct:${account}`);
}

/** Counts a registration from the client address; refuses past the limit. */
export async function countRegistration(ctx: ServerContext, request: FastifyRequest): Promise<void> {
  const { registrations, registrationWindowMs } = ctx.config.throttle;
  const state = await ctx.stores.limits.hit(`register:${addressKey(request)}`, registrationWindowMs, ctx.runtime.clock.now());
  refuseOver(ctx, request, state, registrations, { scope: "registration", userId: null });
}
