import type { FastifyInstance, FastifyRequest } from "fastify";
import { publicUser } from "../../core/accounts.js";
import { accountTokenHash } from "../../core/account-tokens.js";
import { LatchError } from "../../core/errors.js";
import { loginKey, normaliseEmail } from "../../core/identity.js";
import { answer, errors, ref, security, unsafeMethodErrors, withHeaders } from "../api-schemas.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie, readCookie } from "../../auth/index.js";
import { recordEvent } from "../events.js";
import { emailChangedMessage, passwordChangedMessage, queuePasswordReset, queueQuietly, queueVerification } from "../mail.js";
import { bodyObject, userJson } from "../responses.js";
import { countAccountAttempt, recordSuccess } from "../throttle.js";

/** The one answer of POST /password/forgot, whoever is named. */
export const FORGOT_MESSAGE = "If that account exists and has an email address, a link to reset its password is on its way.";

const BAD_LINK = "This link is invalid, used or expired. Ask for a new one.";

type Schema = Record<string, unknown>;

/** How many verification messages an account may ask for per hour (then 429). */
export const VERIFY_MESSAGES_PER_HOUR = 5;

const recovery = (schema: Schema): { schema: Schema } => ({ schema: { tags: ["recovery"], ...schema } });
const tokenField = { type: "string", description: "The token from the link's fragment (`#token=…`): 43 URL-safe characters." };

const forgotSchema = recovery({
  operationId: "forgotPassword",
  summary: "Send a password-reset link",
  description:
    "Answers 202 with the same body and about the same time whether or not the account exists or has an email; when it has one, a reset link goes to it (at most 3 per account per hour, silently).",
  security: security.anyone,
  body: { type: "object", properties: { username: { type: "string" }, email: { type: "string" } } },
  response: { 202: answer("Accepted, whoever was named.", ref("Message")), ...errors(...unsafeMethodErrors, 429, 503) },
});

const resetSchema = recovery({
  operationId: "resetPassword",
  summary: "Set a new password with a reset token",
  description:
    "Sets the password (the registration rules apply), ends every session of the user and signs nobody in; a second factor is still asked for at the next sign-in.",
  security: security.anyone,
  body: { type: "object", properties: { token: tokenField, newPassword: { type: "string" } }, required: ["token", "newPassword"] },
  response: { 200: withHeaders(answer("The password is set.", ref("Message")), "Set-Cookie"), ...errors(...unsafeMethodErrors, 503) },
});

const verifySchema = recovery({
  operationId: "verifyEmail",
  summary: "Confirm an email address with a verification token",
  security: security.anyone,
  body: { type: "object", properties: { token: tokenField }, required: ["token"] },
  response: {
    200: answer("Verified.", { type: "object", properties: { user: ref("User") }, required: ["user"], additionalProperties: false }),
    ...errors(...unsafeMethodErrors, 503),
  },
});

const sendVerificationSchema = recovery({
  operationId: "sendVerificationEmail",
  summary: "Send the verification message again",
  security: security.sessionWithCsrf,
  response: { 202: answer("Queued.", ref("Message")), ...errors(...unsafeMethodErrors, 401, 429, 503) },
});

const changeEmailSchema = recovery({
  operationId: "changeEmail",
  summary: "Replace the account's email address",
  description: "The new address is unverified; a verification message goes to it and a notice to the old one.",
  security: security.sessionWithCsrf,
  body: {
    type: "object",
    properties: { email: { type: "string", format: "email" }, password: { type: "string" } },
    required: ["email", "password"],
  },
  response: {
    200: answer("Changed.", { type: "object", properties: { user: ref("User") }, required: ["user"], additionalProperties: false }),
    ...errors(...unsafeMethodErrors, 401, 409, 429, 503),
  },
});

/**
 * Account recovery and verified email: POST /password/forgot,
 * /password/reset, /email/verify, /email/verify/send and /me/email.
 * Every message is queued in the outbox (with its token, atomically) and
 * goes out from the sender; no request waits for mail.
 */
export function recoveryRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const session = guard(ctx);
  const { throttle } = ctx.config;

  /** 429 past the per-address limit of forgot-password requests. */
  async function countForgot(request: FastifyRequest): Promise<void> {
    const now = ctx.runtime.clock.now();
    const state = await ctx.stores.limits.hit(`forgot:addr:${request.ip}`, throttle.passwordResetWindowMs, now);
    if (state.count > throttle.passwordResets) {
      if (state.count === throttle.passwordResets + 1) recordEvent(ctx, request, "throttled", null, { scope: "password_reset" });
      throw new LatchError("rate_limited", undefined, { retryAfter: Math.max(1, Math.ceil((state.resetAt - now) / 1000)) });
    }
  }

  /**
   * Finds the account and queues its reset message. Runs after the 202 has
   * gone out (ctx.mail.defer), so the response takes the same time whether
   * or not the account exists, has an email, or is over its hourly limit.
   */
  async function sendReset(key: string, request: FastifyRequest): Promise<void> {
    try {
      const user = await ctx.stores.users.findUserByLogin(key);
      if (user === null || user.email === null) return;
      const state = await ctx.stores.limits.hit(`forgot:acct:${user.id}`, 3_600_000, ctx.runtime.clock.now());
      if (state.count > throttle.resetMessagesPerAccount) {
        if (state.count === throttle.resetMessagesPerAccount + 1)
          recordEvent(ctx, request, "throttled", user.id, { scope: "reset_messages" });
        return;
      }
      const id = await queuePasswordReset(ctx, user);
      recordEvent(ctx, request, "password_reset_requested", user.id, { message: id ?? "" });
    } catch (error) {
      request.log.warn({ err: error, kind: "password_reset", reqId: request.id }, "could not queue a reset message");
    }
  }

  app.post("/password/forgot", forgotSchema, async (request, reply) => {
    const body = bodyObject(request);
    const login = body.username ?? body.email;
    const key = loginKey(login);
    if (key === null || key === "") {
      throw new LatchError("invalid_input", "Send the account's username or email as a string.", { details: { field: "username" } });
    }
    await countForgot(request);
    ctx.mail.defer(() => sendReset(key, request));
    return reply.code(202).send({ message: FORGOT_MESSAGE });
  });

  app.post("/password/reset", resetSchema, async (request, reply) => {
    const body = bodyObject(request);
    const hash = accountTokenHash(body.token);
    if (hash === null) throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
    if (typeof body.newPassword !== "string")
      throw new LatchError("invalid_input", "newPassword must be a string.", { details: { field: "newPassword" } });
    const now = ctx.runtime.clock.now();
    const token = await ctx.stores.mail.findToken(hash, now);
    const user = token?.purpose === "reset" ? await ctx.stores.users.findUserById(token.userId) : null;
    if (token === null || user === null) throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
    // The policy is checked before the token is spent, so a rejected
    // password leaves the link usable.
    const passwordHash = await ctx.accounts.hashNewPassword(user, body.newPassword, "newPassword");
    const notice = passwordChangedMessage(ctx, user, "reset");
    const updated = await ctx.stores.users.resetPassword(user.id, hash, passwordHash, ctx.runtime.clock.now(), notice);
    if (updated === null) throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
    // The notice was queued in the reset's own transaction.
    if (notice !== null) ctx.mail.wake();
    const revoked = await ctx.stores.sessions.deleteUserSessions(user.id);
    // Whoever held the lock-out counter, the owner of the mailbox may sign in again.
    await recordSuccess(ctx, user.id);
    recordEvent(ctx, request, "password_reset", user.id, { revoked: String(revoked) });
    if (readCookie(request.headers.cookie, ctx.cookieName) !== undefined)
      reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
    return { message: "Your password has been reset. Sign in with the new password." };
  });

  app.post("/email/verify", verifySchema, async (request) => {
    const body = bodyObject(request);
    const hash = accountTokenHash(body.token);
    if (hash === null) throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
    const now = ctx.runtime.clock.now();
    const token = await ctx.stores.mail.findToken(hash, now);
    if (token === null || token.purpose !== "verify") throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
    const updated = await ctx.stores.users.verifyEmail(token.userId, hash, now);
    if (updated === null) throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
    recordEvent(ctx, request, "email_verified", updated.id);
    return { user: userJson(publicUser(updated)) };
  });

  app.post("/email/verify/send", { preHandler: session, ...sendVerificationSchema }, async (request, reply) => {
    const user = await ctx.stores.users.findUserById(authOf(request).user.id);
    if (user === null) throw new LatchError("unauthenticated");
    if (user.email === null) throw new LatchError("invalid_input", "Your account has no email address. Add one first.");
    if (user.emailVerified) throw new LatchError("invalid_input", "Your email address is already verified.");
    const now = ctx.runtime.clock.now();
    const state = await ctx.stores.limits.hit(`verify:acct:${user.id}`, 3_600_000, now);
    if (state.count > VERIFY_MESSAGES_PER_HOUR) {
      throw new LatchError("rate_limited", "Too many verification messages this hour. Try again later.", {
        retryAfter: Math.max(1, Math.ceil((state.resetAt - now) / 1000)),
      });
    }
    await queueVerification(ctx, user);
    return reply.code(202).send({ message: "A new verification link is on its way." });
  });

  app.post("/me/email", { preHandler: session, ...changeEmailSchema }, async (request) => {
    const auth = authOf(request);
    const body = bodyObject(request);
    const email = normaliseEmail(body.email);
    if (typeof body.password !== "string")
      throw new LatchError("invalid_input", "Send your password to confirm.", { details: { field: "password" } });
    const user = await ctx.stores.users.findUserById(auth.user.id);
    if (user === null) throw new LatchError("unauthenticated");
    await countAccountAttempt(ctx, request, user.id, user.id);
    if (!(await ctx.accounts.checkCredentials(user, body.password))) {
      recordEvent(ctx, request, "sign_in_failed", user.id, { reason: "email change" });
      throw new LatchError("invalid_credentials", "The password is wrong.");
    }
    await recordSuccess(ctx, user.id);
    if (email.key === user.emailKey)
      throw new LatchError("invalid_input", "That is already your email address.", { details: { field: "email" } });
    const updated = await ctx.stores.users.updateUserEmail(
      user.id,
      { email: email.username, emailKey: email.key },
      ctx.runtime.clock.now(),
    );
    if (updated === null) throw new LatchError("unauthenticated");
    recordEvent(ctx, request, "email_changed", user.id);
    await queueQuietly(request.log, "verify_email", () => queueVerification(ctx, updated));
    if (user.email !== null) {
      const oldEmail = user.email;
      await queueQuietly(request.log, "email_changed", () => ctx.mail.queue(emailChangedMessage(ctx, updated, oldEmail, email.username)));
    }
    return { user: userJson(publicUser(updated)) };
  });
}
