import type { FastifyInstance } from "fastify";
import { normaliseRoles, publicUser, refuseRemovingLastAdmin } from "../../core/accounts.js";
import { LatchError } from "../../core/errors.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { recordEvent } from "../events.js";
import { bodyObject, userJson } from "../responses.js";

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

/** Administration: GET /admin, /admin/users, PATCH /admin/users/:id, POST /admin/users/:id/revoke-sessions, DELETE /users/:id. */
export function adminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const admin = guard(ctx, { bearer: "allow", role: "admin" });

  app.get("/admin", { preHandler: admin }, async () => ({ message: "Admin area" }));

  app.get<{ Querystring: { limit?: string; cursor?: string } }>("/admin/users", { preHandler: admin }, async (request) => {
    const limit = parseLimit(request.query.limit);
    const rows = await ctx.stores.users.listUsers({ limit: limit + 1, after: decodeCursor(request.query.cursor) });
    const page = rows.slice(0, limit);
    return {
      users: page.map((u) => userJson(publicUser(u))),
      nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  });

  app.patch<{ Params: { id: string } }>("/admin/users/:id", { preHandler: admin }, async (request) => {
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

  app.post<{ Params: { id: string } }>("/admin/users/:id/revoke-sessions", { preHandler: admin }, async (request) => {
    const target = await ctx.stores.users.findUserById(request.params.id);
    if (target === null) throw new LatchError("not_found", "No such user.");
    const revoked = await ctx.stores.sessions.deleteUserSessions(target.id);
    recordEvent(ctx, request, "sessions_revoked", target.id, { count: String(revoked), by: authOf(request).user.id });
    return { revoked };
  });

  app.delete<{ Params: { id: string } }>("/users/:id", { preHandler: admin }, async (request, reply) => {
    if (!(await ctx.stores.users.deleteUser(request.params.id))) throw new LatchError("not_found", "No such user.");
    // The target's own events went with them; the admin's trail keeps who did it.
    const actor = authOf(request).user.id;
    if (actor !== request.params.id) recordEvent(ctx, request, "user_deleted", actor, { target: request.params.id });
    return reply.code(204).send();
  });
}
