import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from "fastify";
import { LatchError } from "../core/errors.js";
import type { ValidSession } from "../core/sessions.js";
import type { Session, User } from "../core/store.js";
import { verifyCsrfToken } from "../core/session-token.js";
import { isBearerScheme } from "../core/tokens.js";
import { authenticateBearer } from "./bearer.js";
import type { ServerContext } from "./context.js";
import { readCookie, sessionCookie } from "./cookies.js";
import { isUnsafeMethod } from "./origins.js";

/** Who made the request, once a guard has run. */
export interface RequestAuth {
  via: "session" | "bearer";
  user: User;
  session: Session;
  /** Present when authenticated by the session cookie. */
  cookie: ValidSession | null;
}

declare module "fastify" {
  interface FastifyRequest {
    auth: RequestAuth | null;
  }
}

export interface GuardOptions {
  /** Accept `Authorization: Bearer` tokens as well as the session cookie. */
  bearer?: "allow" | "deny";
  /** A role the user must have. */
  role?: string;
}

/**
 * Validates the session cookie. On success, re-sends the cookie when the idle
 * expiry slid, so the browser's copy never outlives (nor underlives) the
 * session. Returns null for a missing, malformed, unknown or expired cookie.
 */
export async function authenticateCookie(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<RequestAuth | null> {
  const token = readCookie(request.headers.cookie, ctx.cookieName);
  if (token === undefined) return null;
  const valid = await ctx.sessions.validate(token);
  if (valid === null) return null;
  if (valid.renewed) {
    reply.header("Set-Cookie", sessionCookie(ctx.cookieName, token, valid.session.idleExpiresAt, ctx.runtime.clock.now(), ctx.cookieOptions));
  }
  return { via: "session", user: valid.user, session: valid.session, cookie: valid };
}

/**
 * A preHandler that requires a signed-in user: the session cookie (with its
 * CSRF token on unsafe methods) or, where allowed, a Bearer token. Sets
 * `request.auth`.
 *
 * @example
 * app.get("/admin", { preHandler: guard(ctx, { bearer: "allow", role: "admin" }) }, handler);
 */
export function guard(ctx: ServerContext, options: GuardOptions = {}): preHandlerAsyncHookHandler {
  const bearerAllowed = options.bearer === "allow";
  return async function requireAuth(request, reply) {
    const authorization = request.headers.authorization;
    if (bearerAllowed && isBearerScheme(authorization)) {
      // A token carries no ambient authority (the browser never attaches it
      // by itself), so it needs no CSRF token.
      const auth = await authenticateBearer(ctx, authorization!);
      if (options.role !== undefined && !auth.user.roles.includes(options.role)) {
        reply.header("WWW-Authenticate", 'Bearer error="insufficient_scope"');
        throw new LatchError("forbidden");
      }
      request.auth = auth;
      return;
    }
    const auth = await authenticateCookie(ctx, request, reply);
    if (auth === null) {
      // RFC 6750 §3: a 401 where a token would have done names the scheme.
      if (bearerAllowed) reply.header("WWW-Authenticate", "Bearer");
      throw new LatchError("unauthenticated");
    }
    if (isUnsafeMethod(request.method)) {
      const presented = request.headers["x-csrf-token"] ?? request.headers["csrf-token"];
      if (!verifyCsrfToken(auth.cookie!.secret, presented)) throw new LatchError("csrf", "Missing or invalid CSRF token.");
    }
    if (options.role !== undefined && !auth.user.roles.includes(options.role)) throw new LatchError("forbidden");
    request.auth = auth;
  };
}

/** The guarded request's auth; for handlers behind {@link guard}. */
export function authOf(request: FastifyRequest): RequestAuth {
  if (request.auth === null) throw new LatchError("unauthenticated");
  return request.auth;
}
