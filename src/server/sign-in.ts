import type { FastifyReply, FastifyRequest } from "fastify";
import { sessionCookie } from "../auth/index.js";
import { LatchError } from "../core/errors.js";
import { loginKey } from "../core/identity.js";
import type { NewSession, NewSessionOptions } from "../core/sessions.js";
import type { SecondFactorProof } from "../core/second-factors.js";
import type { AuthMethod, UserRecord } from "../core/store.js";
import { truncateAddress } from "./client-address.js";
import type { ServerContext } from "./context.js";
import { parseSessionToken } from "../core/session-token.js";
import { recordEvent, userAgentOf } from "./events.js";
import { bodyObject } from "./responses.js";
import { checkAddress, countAccountAttempt, recordFailure, recordSuccess } from "./throttle.js";

/** A right password: the user, and whether a TOTP code is still owed. */
export interface PasswordSignIn {
  user: UserRecord;
  /** The account has TOTP: the sign-in is not complete until a code (or recovery code) is given. */
  needsCode: boolean;
}

/**
 * Checks `{username | email, password}` from the body, throttled per account
 * and per address. Unknown user and wrong password give the same error after
 * the same work (one argon2id verification). Used by POST /login and by
 * POST /token with credentials.
 *
 * For an account with TOTP the per-account counter is not reset by the right
 * password: only the second step's success resets it, so knowing the password
 * does not buy fresh code guesses (wrong codes count against the same limit).
 */
export async function verifySignIn(ctx: ServerContext, request: FastifyRequest): Promise<PasswordSignIn> {
  const body = bodyObject(request);
  const login = body.username ?? body.email;
  if (typeof login !== "string" || typeof body.password !== "string") {
    throw new LatchError("invalid_input", "Send username (or email) and password as strings.", {
      details: { field: typeof login !== "string" ? "username" : "password" },
    });
  }
  const release = await checkAddress(ctx, request);
  try {
    const user = await ctx.accounts.findByLogin(login);
    const account = user?.id ?? `login:${loginKey(login) ?? ""}`;
    await countAccountAttempt(ctx, request, account, user?.id ?? null);
    if (!(await ctx.accounts.checkCredentials(user, body.password))) {
      await recordFailure(ctx, request);
      ctx.metrics.signIns.inc({ result: "failure" });
      recordEvent(ctx, request, "sign_in_failed", user?.id ?? null);
      throw new LatchError("invalid_credentials");
    }
    const needsCode = user!.mfa && (await ctx.factors.hasTotp(user!.id));
    if (needsCode) return { user: user!, needsCode };
    await recordSuccess(ctx, account);
    ctx.metrics.signIns.inc({ result: "success" });
    return { user: user!, needsCode };
  } finally {
    release();
  }
}

/**
 * Starts a brand-new session and sets its cookie. Whatever session id the
 * client presented is never reused (no fixation); if it named a live
 * session, that session is ended, so one browser holds one session (ASVS 7.2.4).
 */
export async function startSession(
  ctx: ServerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  user: UserRecord,
  options: NewSessionOptions = {},
): Promise<NewSession> {
  const previous = parseSessionToken(ctx.auth.cookieValue(request.headers.cookie));
  // Only while the hash the password was checked against is still the
  // user's: a password change that landed meanwhile has ended the user's
  // sessions, and must end this one too (401, as for a wrong password).
  const created = await ctx.sessions.create(
    user.id,
    { userAgent: userAgentOf(request), ipAddress: truncateAddress(request.ip) },
    { ...options, ifPasswordHash: user.passwordHash },
  );
  if (previous !== null) {
    // Only a cookie that proves its secret may end a session: a planted id alone must not sign anyone out.
    const valid = await ctx.sessions.validate(`${previous.id}.${previous.secret}`);
    if (valid !== null) await ctx.stores.sessions.deleteSession(valid.session.id);
  }
  reply.header(
    "Set-Cookie",
    sessionCookie(ctx.cookieName, created.token, created.session.idleExpiresAt, ctx.runtime.clock.now(), ctx.cookieOptions),
  );
  return created;
}

/** How long a pending sign-in waits for its code, and how many wrong codes it survives. */
export const PENDING_SIGN_IN_MS = 5 * 60_000;
export const PENDING_SIGN_IN_ATTEMPTS = 5;

/**
 * Proves the second factor of a sign-in whose password was right: a TOTP
 * code or a recovery code, counted against the per-account limit like a
 * password (429 past it), used up when right. On success the account's
 * counter is reset (the sign-in is complete) and the session's `amr` is
 * returned; a wrong code records `mfa_failed` and throws
 * `invalid_credentials`, after `onFailure` has run.
 */
export async function verifySecondFactor(
  ctx: ServerContext,
  request: FastifyRequest,
  user: UserRecord | { id: string },
  proof: SecondFactorProof,
  onFailure?: () => Promise<void>,
): Promise<AuthMethod[]> {
  if (typeof proof.code !== "string" && typeof proof.recoveryCode !== "string") {
    throw new LatchError("invalid_input", "Send code (the 6 digits from the authenticator app) or recoveryCode as a string.");
  }
  await countAccountAttempt(ctx, request, user.id, user.id);
  const method = await ctx.factors.verify(user.id, proof);
  if (method === null) {
    await recordFailure(ctx, request);
    ctx.metrics.signIns.inc({ result: "failure" });
    recordEvent(ctx, request, "mfa_failed", user.id, { method: typeof proof.code === "string" ? "totp" : "recovery_code" });
    await onFailure?.();
    throw new LatchError("invalid_credentials", "The code is wrong, expired or already used.");
  }
  await recordSuccess(ctx, user.id);
  ctx.metrics.signIns.inc({ result: "success" });
  if (method === "recovery_code")
    recordEvent(ctx, request, "recovery_code_used", user.id, { left: String(await ctx.stores.secondFactors.countRecoveryCodes(user.id)) });
  return ["pwd", "otp", "mfa"];
}
