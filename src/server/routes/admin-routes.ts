import type { FastifyInstance } from "fastify";
import { ROLE_PATTERN, normaliseRoles, publicUser, refuseRemovingLastAdmin } from "../../core/accounts.js";
import { LatchError } from "../../core/errors.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { recordEvent } from "../events.js";
import { bodyObject, userJson } from "../responses.js";
import { answer, errors, idParam, noBody, ref, security, unsafeMethodErrors } from "../api-schemas.js";

const MAX_PAGE = 100;

function parseLimit(value: unknown): number {
  if (value === undefined) return 50;
  const limit = typeof value === "string" && /^\d{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(limit >= 1 && limit <= MAX_PAGE)) throw new LatchError("invalid_input", `limit must be a whole number from 1 to ${MAX_PAGE}.`);
  return limit;
}

// The cursor is the last id of the previous page, wrapped so clients treat it as opaque.
const encodeCursor = (id: string): string => Buffer.from(id).toString("base64url");
function decodeCursor(value: unknown): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]{1,200}$/.test(value)) throw new LatchError("invalid_input", "cursor is not valid.");
  return Buffer.from(value, "base64url").toString();
}

const userId = idParam("The user's id.");
const userBody = { type: "object", properties: { user: ref("User") }, required: ["user"], additionalProperties: false };

const adminSchema = {
  operationId: "getAdmin",
  summary: "The admin area",
  tags: ["admin"],
  security: security.sessionOrBearer,
  response: { 200: answer('"Admin area".', ref("Message")), ...errors(401, 403, 503) },
};

const listUsersSchema = {
  operationId: "listUsers",
  summary: "Every user, a page at a time",
  tags: ["admin"],
  security: security.sessionOrBearer,
  querystring: {
    type: "object",
    properties: {
      limit: { type: "integer", minimum: 1, maximum: MAX_PAGE, default: 50 },
      cursor: { type: "string", description: "nextCursor of the previous page." },
    },
  },
  response: {
    200: answer("A page of users; nextCursor is null on the last one.", {
      type: "object",
      properties: { users: { type: "array", items: ref("User") }, nextCursor: { type: ["string", "null"] } },
      required: ["users", "nextCursor"],
      additionalProperties: false,
    }),
    ...errors(400, 401, 403, 503),
  },
};

const rolesSchema = {
  operationId: "setUserRoles",
  summary: "Set a user's roles",
  description: "Their live sessions see the new roles on their next request. Only roles can be changed here.",
  tags: ["admin"],
  security: security.sessionWithCsrfOrBearer,
  params: userId,
  body: {
    type: "object",
    properties: {
      roles: { type: "array", items: { type: "string", pattern: ROLE_PATTERN.source }, description: '"user" is always kept.' },
    },
    required: ["roles"],
    additionalProperties: false,
  },
  response: { 200: answer("The user with the new roles.", userBody), ...errors(...unsafeMethodErrors, 401, 404, 503) },
};

const revokeSchema = {
  operationId: "revokeUserSessions",
  summary: "End every session of a user",
  tags: ["admin"],
  security: security.sessionWithCsrfOrBearer,
  params: userId,
  response: { 200: answer("How many sessions ended.", ref("Revoked")), ...errors(...unsafeMethodErrors, 401, 404, 503) },
};

const deleteUserSchema = {
  operationId: "deleteUser",
  summary: "Delete a user and all their sessions",
  tags: ["admin"],
  security: security.sessionWithCsrfOrBearer,
  params: userId,
  response: { 204: noBody("Deleted."), ...errors(...unsafeMethodErrors, 401, 404, 503) },
};

const resetMfaSchema = {
  operationId: "resetUserSecondFactors",
  summary: "Remove a user's TOTP, recovery codes and passkeys (a lost device) and end their sessions",
  tags: ["admin"],
  security: security.sessionWithCsrfOrBearer,
  params: userId,
  response: { 204: noBody("Removed; every session of the user ended."), ...errors(...unsafeMethodErrors, 401, 404, 503) },
};

/** Administration: GET /admin, /admin/users, PATCH /admin/users/:id, POST /admin/users/:id/revoke-sessions, DELETE /users/:id. */
export function adminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const admin = guard(ctx, { bearer: "allow", role: "admin" });

  app.get("/admin", { preHandler: admin, schema: adminSchema }, async () => ({ message: "Admin area" }));

  app.get<{ Querystring: { limit?: string; cursor?: string } }>(
    "/admin/users",
    { preHandler: admin, schema: listUsersSchema },
    async (request) => {
      const limit = parseLimit(request.query.limit);
      const rows = await ctx.stores.users.listUsers({ limit: limit + 1, after: decodeCursor(request.query.cursor) });
      const page = rows.slice(0, limit);
      return {
        users: page.map((u) => userJson(publicUser(u))),
        nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
      };
    },
  );

  app.patch<{ Params: { id: string } }>("/admin/users/:id", { preHandler: admin, schema: rolesSchema }, async (request) => {
    const body = bodyObject(request);
    // Only roles can be changed here; any other field is refused rather than ignored (no mass assignment).
    const extra = Object.keys(body).filter((k) => k !== "roles");
    if (extra.length > 0) throw new LatchError("invalid_input", `Only roles can be changed here; not ${extra.join(", ")}.`);
    const roles = normaliseRoles(body.roles);
    const target = await ctx.stores.users.findUserById(request.params.id);
    if (target === null) throw new LatchError("not_found", "No such user.");
    await refuseRemovingLastAdmin(ctx.stores.users, target, roles);
    const updated = await ctx.stores.users.updateUserRoles(target.id, roles, ctx.runtime.clock.now());
    if (updated === null) throw new LatchError("not_found", "No such user.");
    recordEvent(ctx, request, "roles_changed", updated.id, { roles: roles.join(","), by: authOf(request).user.id });
    return { user: userJson(publicUser(updated)) };
  });

  app.post<{ Params: { id: string } }>("/admin/users/:id/revoke-sessions", { preHandler: admin, schema: revokeSchema }, async (request) => {
    const target = await ctx.stores.users.findUserById(request.params.id);
    if (target === null) throw new LatchError("not_found", "No such user.");
    const revoked = await ctx.stores.sessions.deleteUserSessions(target.id);
    recordEvent(ctx, request, "sessions_revoked", target.id, { count: String(revoked), by: authOf(request).user.id });
    return { revoked };
  });

  app.delete<{ Params: { id: string } }>(
    "/admin/users/:id/mfa",
    {
      preHandler: admin,
      schema: resetMfaSchema,
    },
    async (request, reply) => {
      const target = await ctx.stores.users.findUserById(request.params.id);
      if (target === null) throw new LatchError("not_found", "No such user.");
      await ctx.stores.secondFactors.deleteSecondFactors(target.id);
      // Every session ends, the admin's own too when they reset themselves:
      // whoever holds the lost device may be signed in with it.
      const revoked = await ctx.stores.sessions.deleteUserSessions(target.id);
      recordEvent(ctx, request, "mfa_reset", target.id, { by: authOf(request).user.id, revoked: String(revoked) });
      return reply.code(204).send();
    },
  );

  app.delete<{ Params: { id: string } }>("/users/:id", { preHandler: admin, schema: deleteUserSchema }, async (request, reply) => {
    if (!(await ctx.stores.users.deleteUser(request.params.id))) throw new LatchError("not_found", "No such user.");
    // The target's own events went with them; the admin's trail keeps who did it.
    const actor = authOf(request).user.id;
    if (actor !== request.params.id) recordEvent(ctx, request, "user_deleted", actor, { target: request.params.id });
    return reply.code(204).send();
  });
}
