import type { FastifyInstance } from "fastify";
import { publicUser } from "../../core/accounts.js";
import { guard, authOf } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie } from "../../auth/index.js";
import { recordEvent } from "../events.js";
import { bodyObject, userJson } from "../responses.js";
import { startSession, verifySignIn } from "../sign-in.js";
import { countRegistration } from "../throttle.js";

/** POST /register, POST /login, POST /logout. */
export function accountRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/register", async (request, reply) => {
    const body = bodyObject(request);
    await countRegistration(ctx, request);
    const user = await ctx.accounts.register({ username: body.username, password: body.password, email: body.email });
    const { csrfToken } = await startSession(ctx, request, reply, user);
    recordEvent(ctx, request, "register", user.id);
    ctx.metrics.registrations.inc();
    return reply.code(201).send({ user: userJson(publicUser(user)), csrfToken });
  });

  app.post("/login", async (request, reply) => {
    const user = await verifySignIn(ctx, request);
    const { session, csrfToken } = await startSession(ctx, request, reply, user);
    recordEvent(ctx, request, "sign_in", user.id, { session: session.id });
    return { user: userJson(publicUser(user)), csrfToken };
  });

  app.post("/logout", { preHandler: guard(ctx) }, async (request, reply) => {
    const { session, user } = authOf(request);
    await ctx.stores.sessions.deleteSession(session.id);
    recordEvent(ctx, request, "sign_out", user.id, { session: session.id });
    reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
    return { message: "Signed out" };
  });
}
