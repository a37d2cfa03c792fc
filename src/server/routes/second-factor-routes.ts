import type { FastifyInstance, FastifyRequest } from "fastify";
import { clearedSessionCookie } from "../../auth/index.js";
import { publicUser } from "../../core/accounts.js";
import { LatchError } from "../../core/errors.js";
import type { ValidSession } from "../../core/sessions.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { recordEvent } from "../events.js";
import { bodyObject, userJson } from "../responses.js";
import { PENDING_SIGN_IN_ATTEMPTS, PENDING_SIGN_IN_MS, startSession, verifySecondFactor } from "../sign-in.js";
import { countAccountAttempt, recordSuccess } from "../throttle.js";
import { secondFactorSchemas } from "./second-factor-schemas.js";

/**
 * Re-checks the signed-in user's password before a change to their second
 * factors (a stolen session alone must not turn TOTP off), throttled per
 * account like a sign-in.
 */
export async function confirmPassword(ctx: ServerContext, request: FastifyRequest, userId: string): Promise<void> {
  const body = bodyObject(request);
  if (typeof body.password !== "string") throw new LatchError("invalid_input", "Send your password to confirm.");
  const user = await ctx.stores.users.findUserById(userId);
  if (user === null) throw new LatchError("unauthenticated");
  await countAccountAttempt(ctx, request, user.id, user.id);
  if (!(await ctx.accounts.checkCredentials(user, body.password))) {
    recordEvent(ctx, request, "sign_in_failed", user.id, { reason: "second factor change" });
    throw new LatchError("invalid_credentials", "The password is wrong.");
  }
  await recordSuccess(ctx, user.id);
}

/**
 * TOTP and recovery codes: POST /mfa/totp, POST /mfa/totp/confirm, DELETE
 * /mfa/totp, POST /mfa/recovery-codes, GET /mfa; and the second step of a
 * password sign-in, POST /login/mfa.
 *
 * @example
 * secondFactorRoutes(app, context);
 */
export function secondFactorRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const session = guard(ctx);

  app.get(
    "/mfa",
    {
      preValidation: session,
      schema: secondFactorSchemas.status,
    },
    async (request) => {
      const { user } = authOf(request);
      const [totp, left, passkeys] = await Promise.all([
        ctx.stores.secondFactors.findTotp(user.id),
        ctx.stores.secondFactors.countRecoveryCodes(user.id),
        ctx.stores.secondFactors.listPasskeys(user.id),
      ]);
      return {
        totp: totp?.secret != null,
        totpSetupPending: totp?.pendingSecret != null,
        recoveryCodesLeft: left,
        passkeys: passkeys.length,
      };
    },
  );

  app.post(
    "/mfa/totp",
    {
      preValidation: session,
      schema: secondFactorSchemas.begin,
    },
    async (request) => {
      const { user } = authOf(request);
      const setup = await ctx.factors.beginTotp(user);
      if (setup === null) throw new LatchError("unauthenticated");
      recordEvent(ctx, request, "totp_setup_started", user.id);
      return setup;
    },
  );

  app.post(
    "/mfa/totp/confirm",
    {
      preValidation: session,
      schema: secondFactorSchemas.confirm,
    },
    async (request) => {
      const { user } = authOf(request);
      const body = bodyObject(request);
      if (typeof body.code !== "string") throw new LatchError("invalid_input", "Send code: the 6 digits the authenticator app shows.");
      const recoveryCodes = await ctx.factors.confirmTotp(user.id, body.code);
      if (recoveryCodes === null) {
        throw new LatchError(
          "invalid_input",
          "That code does not match the new secret (or there is no setup to confirm). Check the app's clock and try the current code.",
          {
            details: { field: "code" },
          },
        );
      }
      recordEvent(ctx, request, "totp_enabled", user.id);
      return { recoveryCodes };
    },
  );

  app.delete(
    "/mfa/totp",
    {
      preValidation: session,
      schema: secondFactorSchemas.disable,
    },
    async (request, reply) => {
      const { user } = authOf(request);
      await confirmPassword(ctx, request, user.id);
      if (await ctx.stores.secondFactors.deleteTotp(user.id)) recordEvent(ctx, request, "totp_disabled", user.id);
      return reply.code(204).send();
    },
  );

  app.post(
    "/mfa/recovery-codes",
    {
      preValidation: session,
      schema: secondFactorSchemas.recoveryCodes,
    },
    async (request) => {
      const { user } = authOf(request);
      await confirmPassword(ctx, request, user.id);
      if (!(await ctx.factors.hasTotp(user.id))) throw new LatchError("invalid_input", "Recovery codes come with TOTP: set up TOTP first.");
      const recoveryCodes = await ctx.factors.regenerateRecoveryCodes(user.id);
      recordEvent(ctx, request, "recovery_codes_generated", user.id);
      return { recoveryCodes };
    },
  );

  // The pending sign-in, found before the body is validated: without one the
  // answer is 401 whatever the body, as for the routes that need a session.
  const pendingOf = new WeakMap<FastifyRequest, ValidSession>();

  app.post(
    "/login/mfa",
    {
      async preValidation(request) {
        const pending = await ctx.auth.session(ctx.auth.cookieValue(request.headers.cookie), "pending_mfa");
        if (pending === null)
          throw new LatchError("unauthenticated", "There is no sign-in waiting for a code: sign in with your password first.");
        pendingOf.set(request, pending);
      },
      schema: secondFactorSchemas.completeSignIn,
    },
    async (request, reply) => {
      // No CSRF token, as for POST /login (there is no session yet whose
      // token could be known); the Origin checks of app.ts still apply.
      const pending = pendingOf.get(request);
      if (pending === undefined) throw new LatchError("unauthenticated");
      const body = request.body === undefined ? {} : bodyObject(request);
      const pendingId = pending.session.id;
      const amr = await verifySecondFactor(ctx, request, pending.user, { code: body.code, recoveryCode: body.recoveryCode }, async () => {
        const failures = await ctx.stores.limits.hit(`mfa:pending:${pendingId}`, PENDING_SIGN_IN_MS, ctx.runtime.clock.now());
        if (failures.count >= PENDING_SIGN_IN_ATTEMPTS) {
          await ctx.stores.sessions.deleteSession(pendingId);
          reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
        }
      });
      const user = await ctx.stores.users.findUserById(pending.user.id);
      if (user === null) throw new LatchError("unauthenticated");
      // A new session with a new id: the pending one is ended by startSession, never promoted.
      const { session, csrfToken } = await startSession(ctx, request, reply, user, { amr });
      await ctx.stores.limits.reset(`mfa:pending:${pendingId}`);
      recordEvent(ctx, request, "sign_in", user.id, { session: session.id, amr: amr.join(" ") });
      return { user: userJson(publicUser(user)), csrfToken };
    },
  );
}
