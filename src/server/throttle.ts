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

function refuse(ctx: ServerContext, request: FastifyRequest, userId: string | null, scope: string, resetAt: number): never {
  if (scope !== "registration") ctx.metrics.signIns.inc({ result: "throttled" });
  recordEvent(ctx, request, "throttled", userId, { scope });
  throw new LatchError("rate_limited", undefined, { retryAfter: retryAfterSeconds(resetAt, ctx.runtime.clock.now()) });
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
      refuse(ctx, request, null, "address", state?.resetAt ?? now + ctx.config.throttle.addressWindowMs);
    }
    return release;
  } catch (error) {
    release();
    throw error;
  }
}

/** Counts an attempt on the account (a user id, or the login text when no such user exists); refuses past the limit. */
export async function countAccountAttempt(ctx: ServerContext, request: FastifyRequest, account: string, userId: string | null): Promise<void> {
  const { accountFailures, accountWindowMs } = ctx.config.throttle;
  const state = await ctx.stores.limits.hit(`login:acct:${account}`, accountWindowMs, ctx.runtime.clock.now());
  if (state.count > accountFailures) refuse(ctx, request, userId, "account", state.resetAt);
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
  if (state.count > registrations) refuse(ctx, request, null, "registration", state.resetAt);
}
