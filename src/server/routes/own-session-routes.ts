import type { FastifyInstance } from "fastify";
import { LatchError } from "../../core/errors.js";
import { isSessionId } from "../../core/session-token.js";
import type { Session } from "../../core/store.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie, sessionCookie } from "../../auth/index.js";
import { recordEvent } from "../events.js";
import { passwordChangedMessage, queueQuietly } from "../mail.js";
import { bodyObject, sessionJson } from "../responses.js";
import { countAccountAttempt, recordSuccess } from "../throttle.js";
import { answer, errors, idParam, noBody, ref, security, unsafeMethodErrors, withHeaders } from "../api-schemas.js";

/** A session as the user's session list shows it. */
function listedSession(
  session: Session,
  currentId: string,
): ReturnType<typeof sessionJson> & { userAgent: string | null; ipAddress: string | null; current: boolean } {
  return { ...sessionJson(session), userAgent: session.userAgent, ipAddress: session.ipAddress, current: session.id === currentId };
}

const listSchema = {
  operationId: "listSessions",
  summary: "The user's live sessions",
  tags: ["sessions"],
  security: security.session,
  response: {
    200: answer("Every live session of the user, this one marked current.", {
      type: "object",
      properties: { sessions: { type: "array", items: ref("ListedSession") } },
      required: ["sessions"],
      additionalProperties: false,
    }),
    ...errors(401, 503),
  },
};

const deleteSchema = {
  operationId: "revokeSession",
  summary: "End one of the user's sessions (this one signs out)",
  tags: ["sessions"],
  security: security.sessionWithCsrf,
  params: idParam("The session's public handle (`id` in GET /sessions)."),
  response: {
    204: withHeaders(noBody("Ended; the cookie is cleared when it was this session."), "Set-Cookie"),
    ...errors(...unsafeMethodErrors, 401, 404, 503),
  },
};

const revokeOthersSchema = {
  operationId: "revokeOtherSessions",
  summary: "End every other session of the user",
  tags: ["sessions"],
  security: security.sessionWithCsrf,
  response: { 200: answer("How many sessions ended.", ref("Revoked")), ...errors(...unsafeMethodErrors, 401, 503) },
};

const passwordSchema = {
  operationId: "changePassword",
  summary: "Change the password",
  description: "This session gets a new cookie and CSRF token; every other session of the user ends.",
  tags: ["sessions"],
  security: security.sessionWithCsrf,
  body: {
    type: "object",
    properties: { currentPassword: { type: "string" }, newPassword: { type: "string", minLength: 8, maxLength: 256 } },
    required: ["currentPassword", "newPassword"],
  },
  response: {
    200: withHeaders(
      answer("Changed.", {
        type: "object",
        properties: { message: { type: "string" }, csrfToken: { type: "string" }, revoked: { type: "integer", minimum: 0 } },
        required: ["message", "csrfToken", "revoked"],
        additionalProperties: false,
      }),
      "Set-Cookie",
    ),
    ...errors(...unsafeMethodErrors, 401, 429, 503),
  },
};

/** The user's own sessions and password: GET /sessions, DELETE /sessions/:id, POST /sessions/revoke-others, POST /password. */
export function ownSessionRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const session = guard(ctx);

  app.get("/sessions", { preHandler: session, schema: listSchema }, async (request) => {
    const auth = authOf(request);
    const sessions = await ctx.stores.sessions.listUserSessions(auth.user.id, ctx.runtime.clock.now());
    // A sign-in still waiting for its code is not a session the user has.
    return { sessions: sessions.filter((s) => !s.pending).map((s) => listedSession(s, auth.session.id)) };
  });

  app.delete<{ Params: { id: string } }>("/sessions/:id", { preHandler: session, schema: deleteSchema }, async (request, reply) => {
    const auth = authOf(request);
    const { id } = request.params;
    // Another user's session and an unknown one look the same: 404, so ids cannot be probed.
    const target = isSessionId(id) ? await ctx.stores.sessions.findSession(id, ctx.runtime.clock.now()) : null;
    if (target === null || target.session.userId !== auth.user.id) throw new LatchError("not_found", "No such session.");
    await ctx.stores.sessions.deleteSession(id);
    recordEvent(ctx, request, "session_revoked", auth.user.id, { session: id });
    if (id === auth.session.id) reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
    return reply.code(204).send();
  });

  app.post("/sessions/revoke-others", { preHandler: session, schema: revokeOthersSchema }, async (request) => {
    const auth = authOf(request);
    const revoked = await ctx.stores.sessions.deleteUserSessions(auth.user.id, { exceptId: auth.session.id });
    recordEvent(ctx, request, "sessions_revoked", auth.user.id, { count: String(revoked), kept: auth.session.id });
    return { revoked };
  });

  app.post("/password", { preHandler: session, schema: passwordSchema }, async (request, reply) => {
    const auth = authOf(request);
    const body = bodyObject(request);
    if (typeof body.currentPassword !== "string" || typeof body.newPassword !== "string") {
      throw new LatchError("invalid_input", "Send currentPassword and newPassword as strings.");
    }
    const user = await ctx.stores.users.findUserById(auth.user.id);
    if (user === null) throw new LatchError("unauthenticated");
    // A stolen session must not become an unlimited password oracle.
    await countAccountAttempt(ctx, request, user.id, user.id);
    if (!(await ctx.accounts.checkCredentials(user, body.currentPassword))) {
      recordEvent(ctx, request, "sign_in_failed", user.id, { reason: "password change" });
      throw new LatchError("invalid_credentials", "The current password is wrong.");
    }
    await recordSuccess(ctx, user.id);
    await ctx.accounts.setPassword(user, body.newPassword, "newPassword");
    const rotated = await ctx.sessions.rotate(auth.session);
    if (rotated === null) throw new LatchError("unauthenticated", "The session ended while the password was being changed.");
    const revoked = await ctx.stores.sessions.deleteUserSessions(user.id, { exceptId: rotated.session.id });
    reply.header(
      "Set-Cookie",
      sessionCookie(ctx.cookieName, rotated.token, rotated.session.idleExpiresAt, ctx.runtime.clock.now(), ctx.cookieOptions),
    );
    recordEvent(ctx, request, "password_changed", user.id, { revoked: String(revoked) });
    // Voids every reset link of the user, with the notice, in one transaction.
    const notice = passwordChangedMessage(ctx, user, "changed");
    if (notice !== null) await queueQuietly(request.log, "password_changed", () => ctx.mail.queue(notice, { voidTokens: "reset" }));
    return { message: "Password changed", csrfToken: rotated.csrfToken, revoked };
  });
}
