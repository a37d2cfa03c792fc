import type { FastifyInstance } from "fastify";
import { LatchError } from "../../core/errors.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie } from "../../auth/index.js";
import { bodyObject, iso, sessionJson } from "../responses.js";
import { countAccountAttempt, recordSuccess } from "../throttle.js";
import { answer, errors, noBody, security, unsafeMethodErrors, withHeaders } from "../api-schemas.js";

const nullableString = { type: ["string", "null"] };
const isoTime = { type: "string", format: "date-time" };

const exportSchema = {
  operationId: "exportMyData",
  summary: "Everything stored about the user (GDPR access and portability)",
  tags: ["privacy"],
  security: security.session,
  response: {
    200: answer("A JSON download (Content-Disposition: attachment).", {
      type: "object",
      properties: {
        exportedAt: isoTime,
        profile: {
          type: "object",
          properties: {
            id: { type: "string" },
            username: { type: "string" },
            email: nullableString,
            emailVerified: { type: "boolean" },
            roles: { type: "array", items: { type: "string" } },
            mfa: { type: "boolean" },
            createdAt: isoTime,
            updatedAt: isoTime,
          },
          required: ["id", "username", "email", "emailVerified", "roles", "mfa", "createdAt", "updatedAt"],
          additionalProperties: false,
        },
        sessions: {
          type: "array",
          items: {
            type: "object",
            properties: {
              id: { type: "string" },
              createdAt: isoTime,
              lastSeenAt: isoTime,
              idleExpiresAt: isoTime,
              absoluteExpiresAt: isoTime,
              amr: { type: "array", items: { type: "string" } },
              userAgent: nullableString,
              ipAddress: nullableString,
            },
            required: ["id", "createdAt", "lastSeenAt", "idleExpiresAt", "absoluteExpiresAt", "amr", "userAgent", "ipAddress"],
            additionalProperties: false,
          },
        },
        securityEvents: {
          type: "array",
          items: {
            type: "object",
            properties: {
              type: { type: "string" },
              at: isoTime,
              ipAddress: nullableString,
              userAgent: nullableString,
              detail: { type: ["object", "null"], additionalProperties: { type: "string" } },
            },
            required: ["type", "at", "ipAddress", "userAgent", "detail"],
            additionalProperties: false,
          },
        },
        secondFactors: {
          type: "object",
          description: "Whether TOTP is on and which passkeys exist; never a secret, code or key.",
          properties: {
            totp: {
              type: "object",
              properties: {
                enabled: { type: "boolean" },
                confirmedAt: { type: ["string", "null"], format: "date-time" },
                recoveryCodesLeft: { type: "integer", minimum: 0 },
              },
              required: ["enabled", "confirmedAt", "recoveryCodesLeft"],
              additionalProperties: false,
            },
            passkeys: { type: "array", items: { $ref: "Passkey#" } },
          },
          required: ["totp", "passkeys"],
          additionalProperties: false,
        },
        messages: {
          type: "array",
          description: "Mail queued or sent for the account: metadata only, never a body or a token.",
          items: {
            type: "object",
            properties: {
              id: { type: "string" },
              kind: { type: "string", enum: ["verify_email", "password_reset", "password_changed", "email_changed"] },
              to: { type: "string" },
              status: { type: "string", enum: ["queued", "sent", "failed"] },
              attempts: { type: "integer", minimum: 0 },
              queuedAt: isoTime,
              sentAt: { type: ["string", "null"], format: "date-time" },
            },
            required: ["id", "kind", "to", "status", "attempts", "queuedAt", "sentAt"],
            additionalProperties: false,
          },
        },
      },
      required: ["exportedAt", "profile", "sessions", "securityEvents", "secondFactors", "messages"],
      additionalProperties: false,
    }),
    ...errors(401, 503),
  },
};

const eraseSchema = {
  operationId: "deleteMe",
  summary: "Erase the account, its sessions and its personal data",
  tags: ["privacy"],
  security: security.sessionWithCsrf,
  body: { type: "object", properties: { password: { type: "string" } }, required: ["password"] },
  response: { 204: withHeaders(noBody("Erased; the cookie is cleared."), "Set-Cookie"), ...errors(...unsafeMethodErrors, 401, 429, 503) },
};

/** GDPR: GET /me/export (everything stored about the user) and DELETE /me (erasure). */
export function privacyRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const session = guard(ctx);

  app.get("/me/export", { preHandler: session, schema: exportSchema }, async (request, reply) => {
    const { user: current } = authOf(request);
    const now = ctx.runtime.clock.now();
    const [user, sessions, events, totp, recoveryCodesLeft, passkeys, messages] = await Promise.all([
      ctx.stores.users.findUserById(current.id),
      ctx.stores.sessions.listUserSessions(current.id, now),
      ctx.stores.events.listUserEvents(current.id, 10_000),
      ctx.stores.secondFactors.findTotp(current.id),
      ctx.stores.secondFactors.countRecoveryCodes(current.id),
      ctx.stores.secondFactors.listPasskeys(current.id),
      ctx.stores.mail.listUserMessages(current.id, 10_000),
    ]);
    if (user === null) throw new LatchError("unauthenticated");
    reply.header("Content-Disposition", 'attachment; filename="latch-export.json"');
    return {
      exportedAt: iso(now),
      // Everything held about the user except the password hash, which is a
      // credential rather than personal data and is never given out.
      profile: {
        id: user.id,
        username: user.username,
        email: user.email,
        emailVerified: user.emailVerified,
        roles: user.roles,
        mfa: user.mfa,
        createdAt: iso(user.createdAt),
        updatedAt: iso(user.updatedAt),
      },
      // Whether TOTP is on and which passkeys exist; never a secret, a code or a key.
      secondFactors: {
        totp: { enabled: totp?.secret != null, confirmedAt: totp?.confirmedAt == null ? null : iso(totp.confirmedAt), recoveryCodesLeft },
        passkeys: passkeys.map((p) => ({
          id: p.id,
          name: p.name,
          createdAt: iso(p.createdAt),
          lastUsedAt: p.lastUsedAt === null ? null : iso(p.lastUsedAt),
        })),
      },
      sessions: sessions.map((s) => ({ ...sessionJson(s), userAgent: s.userAgent, ipAddress: s.ipAddress })),
      securityEvents: events.map((e) => ({
        type: e.type,
        at: iso(e.at),
        ipAddress: e.ipAddress,
        userAgent: e.userAgent,
        detail: e.detail,
      })),
      // Metadata of the mail sent or queued for the account; never a body or a token.
      messages: messages.map((m) => ({
        id: m.id,
        kind: m.kind,
        to: m.to,
        status: m.status,
        attempts: m.attempts,
        queuedAt: iso(m.createdAt),
        sentAt: m.sentAt === null ? null : iso(m.sentAt),
      })),
    };
  });

  app.delete("/me", { preHandler: session, schema: eraseSchema }, async (request, reply) => {
    const { user: current } = authOf(request);
    const body = bodyObject(request);
    if (typeof body.password !== "string") throw new LatchError("invalid_input", "Send your password to confirm.");
    const user = await ctx.stores.users.findUserById(current.id);
    if (user === null) throw new LatchError("unauthenticated");
    await countAccountAttempt(ctx, request, user.id, user.id);
    if (!(await ctx.accounts.checkCredentials(user, body.password))) throw new LatchError("invalid_credentials", "The password is wrong.");
    await recordSuccess(ctx, user.id);
    // One call erases the user, their sessions, security events and second factors.
    // Queued messages first (a notice must not go out about an erased
    // account); then one call erases the user, their sessions, security
    // events, tokens and any message left.
    await ctx.stores.mail.deleteUserMessages(user.id);
    await ctx.stores.users.deleteUser(user.id);
    reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
    return reply.code(204).send();
  });
}
