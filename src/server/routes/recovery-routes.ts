import type { FastifyInstance, FastifyRequest, FastifySchema, RouteShorthandOptions } from "fastify";
import { publicUser } from "../../core/accounts.js";
import { accountTokenHash } from "../../core/account-tokens.js";
import { LatchError } from "../../core/errors.js";
import { loginKey, normaliseEmail } from "../../core/identity.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie, readCookie } from "../cookies.js";
import { recordEvent } from "../events.js";
import { emailChangedMessage, passwordChangedMessage, queuePasswordReset, queueQuietly, queueVerification } from "../mail.js";
import { bodyObject, userJson } from "../responses.js";
import { countAccountAttempt, recordSuccess } from "../throttle.js";

/** The one answer of POST /password/forgot, whoever is named. */
export const FORGOT_MESSAGE = "If that account exists and has an email address, a link to reset its password is on its way.";

const BAD_LINK = "This link is invalid, used or expired. Ask for a new one.";

type Schema = Record<string, unknown>;

const errorSchema: Schema = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" }, details: { type: "object", additionalProperties: { type: "string" } } },
    },
  },
};
const userSchema: Schema = {
  type: "object",
  required: ["id", "username", "email", "emailVerified", "roles", "createdAt"],
  properties: {
    id: { type: "string" },
    username: { type: "string" },
    email: { type: ["string", "null"] },
    emailVerified: { type: "boolean" },
    roles: { type: "array", items: { type: "string" } },
    mfa: { type: "boolean" },
    createdAt: { type: "string", format: "date-time" },
  },
};
const messageSchema: Schema = { type: "object", required: ["message"], properties: { message: { type: "string" } } };
const userAnswer: Schema = { type: "object", required: ["user"], properties: { user: userSchema } };

function errors(...statuses: number[]): Record<string, Schema> {
  return Object.fromEntries(statuses.map((status) => [String(status), { description: `Error ${status}`, ...errorSchema }]));
}

/**
 * Route options with a schema that documents the route (for the OpenAPI
 * document) but neither validates nor serialises: the handlers check their
 * input themselves, in the contract's error shape and order.
 */
function described(schema: Schema, extra: RouteShorthandOptions = {}): RouteShorthandOptions {
  return {
    ...extra,
    schema: { tags: ["recovery"], ...schema } as FastifySchema,
    validatorCompiler: () => () => true,
    serializerCompiler: () => (data) => JSON.stringify(data),
  };
}

const sessionSecurity = [{ sessionCookie: [], csrfHeader: [] }];

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
        if (state.count === throttle.resetMessagesPerAccount + 1) recordEvent(ctx, request, "throttled", user.id, { scope: "reset_messages" });
        return;
      }
      const id = await queuePasswordReset(ctx, user);
      recordEvent(ctx, request, "password_reset_requested", user.id, { message: id ?? "" });
    } catch (error) {
      request.log.warn({ err: error, kind: "password_reset", reqId: request.id }, "could not queue a reset message");
    }
  }

  app.post(
    "/password/forgot",
    described({
      operationId: "forgotPassword",
      summary: "Send a password-reset link",
      description:
        "Answers 202 with the same body and about the same time whether or not the account exists or has an email; when it has one, a reset link goes to it (at most 3 per account per hour).",
      body: { type: "object", properties: { username: { type: "string" }, email: { type: "string" } } },
      response: { 202: { description: "Accepted", ...messageSchema }, ...errors(400, 403, 413, 415, 429, 503) },
    }),
    async (request, reply) => {
      const body = bodyObject(request);
      const login = body.username ?? body.email;
      const key = loginKey(login);
      if (key === null || key === "") {
        throw new LatchError("invalid_input", "Send the account's username or email as a string.", { details: { field: "username" } });
      }
      await countForgot(request);
      ctx.mail.defer(() => sendReset(key, request));
      return reply.code(202).send({ message: FORGOT_MESSAGE });
    },
  );

  app.post(
    "/password/reset",
    described({
      operationId: "resetPassword",
      summary: "Set a new password with a reset token",
      description: "Sets the password, ends every session of the user and signs nobody in. A second factor is still asked for at the next sign-in.",
      body: { type: "object", required: ["token", "newPassword"], properties: { token: { type: "string" }, newPassword: { type: "string" } } },
      response: { 200: { description: "Password set", ...messageSchema }, ...errors(400, 403, 413, 415, 503) },
    }),
    async (request, reply) => {
      const body = bodyObject(request);
      const hash = accountTokenHash(body.token);
      if (hash === null) throw new LatchError("invalid_input", BAD_LINK, { details: { field: "token" } });
      if (typeof body.newPassword !== "string") throw new LatchError("invalid_input", "newPassword must be a string.", { details: { field: "newPassword" } });
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
      if (readCookie(request.headers.cookie, ctx.cookieName) !== undefined) reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
      return { message: "Your password has been reset. Sign in with the new password." };
    },
  );

  app.post(
    "/email/verify",
    described({
      operationId: "verifyEmail",
      summary: "Confirm an email address with a verification token",
      body: { type: "object", required: ["token"], properties: { token: { type: "string" } } },
      response: { 200: { description: "Verified", ...userAnswer }, ...errors(400, 403, 413, 415, 503) },
    }),
    async (request) => {
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
    },
  );

  app.post(
    "/email/verify/send",
    described(
      {
        operationId: "sendVerificationEmail",
        summary: "Send the verification message again",
        security: sessionSecurity,
        response: { 202: { description: "Queued", ...messageSchema }, ...errors(400, 401, 403, 429, 503) },
      },
      { preHandler: session },
    ),
    async (request, reply) => {
      const user = await ctx.stores.users.findUserById(authOf(request).user.id);
      if (user === null) throw new LatchError("unauthenticated");
      if (user.email === null) throw new LatchError("invalid_input", "Your account has no email address. Add one first.");
      if (user.emailVerified) throw new LatchError("invalid_input", "Your email address is already verified.");
      const now = ctx.runtime.clock.now();
      const state = await ctx.stores.limits.hit(`verify:acct:${user.id}`, 3_600_000, now);
      if (state.count > throttle.resetMessagesPerAccount + 2) {
        throw new LatchError("rate_limited", "Too many verification messages this hour. Try again later.", { retryAfter: Math.max(1, Math.ceil((state.resetAt - now) / 1000)) });
      }
      await queueVerification(ctx, user);
      return reply.code(202).send({ message: "A new verification link is on its way." });
    },
  );

  app.post(
    "/me/email",
    described(
      {
        operationId: "changeEmail",
        summary: "Replace the account's email address",
        description: "The new address is unverified; a verification message goes to it and a notice to the old one.",
        security: sessionSecurity,
        body: { type: "object", required: ["email", "password"], properties: { email: { type: "string" }, password: { type: "string" } } },
        response: { 200: { description: "Changed", ...userAnswer }, ...errors(400, 401, 403, 409, 413, 415, 429, 503) },
      },
      { preHandler: session },
    ),
    async (request) => {
      const auth = authOf(request);
      const body = bodyObject(request);
      const email = normaliseEmail(body.email);
      if (typeof body.password !== "string") throw new LatchError("invalid_input", "Send your password to confirm.", { details: { field: "password" } });
      const user = await ctx.stores.users.findUserById(auth.user.id);
      if (user === null) throw new LatchError("unauthenticated");
      await countAccountAttempt(ctx, request, user.id, user.id);
      if (!(await ctx.accounts.checkCredentials(user, body.password))) {
        recordEvent(ctx, request, "sign_in_failed", user.id, { reason: "email change" });
        throw new LatchError("invalid_credentials", "The password is wrong.");
      }
      await recordSuccess(ctx, user.id);
      if (email.key === user.emailKey) throw new LatchError("invalid_input", "That is already your email address.", { details: { field: "email" } });
      const updated = await ctx.stores.users.updateUserEmail(user.id, { email: email.username, emailKey: email.key }, ctx.runtime.clock.now());
      if (updated === null) throw new LatchError("unauthenticated");
      recordEvent(ctx, request, "email_changed", user.id);
      await queueQuietly(request.log, "verify_email", () => queueVerification(ctx, updated));
      if (user.email !== null) {
        const oldEmail = user.email;
        await queueQuietly(request.log, "email_changed", () => ctx.mail.queue(emailChangedMessage(ctx, updated, oldEmail, email.username)));
      }
      return { user: userJson(publicUser(updated)) };
    },
  );
}
