import type { FastifyInstance } from "fastify";
import { LatchError } from "../../core/errors.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie } from "../../auth/index.js";
import { bodyObject, iso, sessionJson } from "../responses.js";
import { countAccountAttempt, recordSuccess } from "../throttle.js";

/** GDPR: GET /me/export (everything stored about the user) and DELETE /me (erasure). */
export function privacyRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const session = guard(ctx);

  app.get("/me/export", { preHandler: session }, async (request, reply) => {
    const { user: current } = authOf(request);
    const now = ctx.runtime.clock.now();
    const [user, sessions, events] = await Promise.all([
      ctx.stores.users.findUserById(current.id),
      ctx.stores.sessions.listUserSessions(current.id, now),
      ctx.stores.events.listUserEvents(current.id, 10_000),
    ]);
    if (user === null) throw new LatchError("unauthenticated");
    reply.header("Content-Disposition", 'attachment; filename="latch-export.json"');
    return {
      exportedAt: iso(now),
      // Everything held about the user except the password hash, which is a
      // credential rather than personal data and is never given out.
      profile: { id: user.id, username: user.username, email: user.email, roles: user.roles, createdAt: iso(user.createdAt), updatedAt: iso(user.updatedAt) },
      sessions: sessions.map((s) => ({ ...sessionJson(s), userAgent: s.userAgent, ipAddress: s.ipAddress })),
      securityEvents: events.map((e) => ({ type: e.type, at: iso(e.at), ipAddress: e.ipAddress, userAgent: e.userAgent, detail: e.detail })),
    };
  });

  app.delete("/me", { preHandler: session }, async (request, reply) => {
    const { user: current } = authOf(request);
    const body = bodyObject(request);
    if (typeof body.password !== "string") throw new LatchError("invalid_input", "Send your password to confirm.");
    const user = await ctx.stores.users.findUserById(current.id);
    if (user === null) throw new LatchError("unauthenticated");
    await countAccountAttempt(ctx, request, user.id, user.id);
    if (!(await ctx.accounts.checkCredentials(user, body.password))) throw new LatchError("invalid_credentials", "The password is wrong.");
    await recordSuccess(ctx, user.id);
    // One call erases the user, their sessions and their security events.
    await ctx.stores.users.deleteUser(user.id);
    reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
    return reply.code(204).send();
  });
}
