import type { FastifyReply, FastifyRequest } from "fastify";
import { sessionCookie } from "../auth/index.js";
import { LatchError } from "../core/errors.js";
import { loginKey } from "../core/identity.js";
import type { NewSession } from "../core/sessions.js";
import type { UserRecord } from "../core/store.js";
import { truncateAddress } from "./client-address.js";
import type { ServerContext } from "./context.js";
import { parseSessionToken } from "../core/session-token.js";
import { recordEvent, userAgentOf } from "./events.js";
import { bodyObject } from "./responses.js";
import { checkAddress, countAccountAttempt, recordFailure, recordSuccess } from "./throttle.js";

/**
 * Checks `{username | email, password}` from the body, throttled per account
 * and per address. Unknown user and wrong password give the same error after
 * the same work (one argon2id verification). Used by POST /login and by
 * POST /token with credentials.
 */
export async function verifySignIn(ctx: ServerContext, request: FastifyRequest): Promise<UserRecord> {
  const body = bodyObject(request);
  const login = body.username ?? body.email;
  if (typeof login !== "string" || typeof body.password !== "string") {
    throw new LatchError("invalid_input", "Send username (or email) and password as strings.", { details: { field: typeof login !== "string" ? "username" : "password" } });
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
    await recordSuccess(ctx, account);
    ctx.metrics.signIns.inc({ result: "success" });
    return user!;
  } finally {
    release();
  }
}

/**
 * Starts a brand-new session and sets its cookie. Whatever session id the
 * client presented is never reused (no fixation); if it named a live
 * session, that session is ended, so one browser holds one session (ASVS 7.2.4).
 */
export async function startSession(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply, user: UserRecord): Promise<NewSession> {
  const previous = parseSessionToken(ctx.auth.cookieValue(request.headers.cookie));
  // Only while the hash the password was checked against is still the
  // user's: a password change that landed meanwhile has ended the user's
  // sessions, and must end this one too (401, as for a wrong password).
  const created = await ctx.sessions.create(user.id, { userAgent: userAgentOf(request), ipAddress: truncateAddress(request.ip) }, { ifPasswordHash: user.passwordHash });
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
