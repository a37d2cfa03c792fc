import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, preHandlerHookHandler } from "fastify";
import { CSRF_TOKEN_MESSAGE, csrfTokenPresented, isUnsafeMethod, sessionCookie } from "../auth/index.js";
import { LatchError } from "../core/errors.js";
import type { ValidSession } from "../core/sessions.js";
import type { Session, User } from "../core/store.js";
import { isBearerScheme } from "../core/tokens.js";
import type { ServerContext } from "./context.js";

/**
 * The Fastify side of request authentication: guards, and the request's
 * `auth`. What a cookie or token means is decided in src/auth/ (who is this
 * request, the cookie, the CSRF rules); this file turns its answers into
 * 401/403 and sets the renewed cookie.
 */

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

/** The request's auth for a validated cookie; re-sends the cookie when the idle expiry slid. */
function cookieAuth(ctx: ServerContext, token: string, valid: ValidSession, reply: FastifyReply): RequestAuth {
  if (valid.renewed) {
    reply.header(
      "Set-Cookie",
      sessionCookie(ctx.cookieName, token, valid.session.idleExpiresAt, ctx.runtime.clock.now(), ctx.cookieOptions),
    );
  }
  return { via: "session", user: valid.user, session: valid.session, cookie: valid };
}

/**
 * Validates the session cookie. On success, re-sends the cookie when the idle
 * expiry slid, so the browser's copy never outlives (nor underlives) the
 * session. Returns null for a missing, malformed, unknown or expired cookie.
 *
 * @example
 * const auth = await authenticateCookie(ctx, request, reply); // null: show the sign-in page
 */
export async function authenticateCookie(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<RequestAuth | null> {
  const who = await ctx.auth.identify(request.headers, { bearer: "deny" });
  return who.kind === "session" ? cookieAuth(ctx, who.token, who.valid, reply) : null;
}

/**
 * Authenticates an `Authorization: Bearer <jwt>` header value, or throws
 * `invalid_token` (401 with `WWW-Authenticate: Bearer error="invalid_token"`).
 *
 * The JWT proves who issued it and until when; the session it names decides
 * whether it still counts (src/auth/request-auth.ts): sign-out, revocation,
 * expiry and a password change end the token at once, not at its `exp`. The
 * user and roles come from the store, never from the token's claims, so a
 * role change applies to tokens as it does to cookies. A Bearer request does
 * not slide the session's idle expiry: only the session's own cookie does.
 */
async function authenticateBearer(ctx: ServerContext, authorization: string): Promise<RequestAuth> {
  const who = await ctx.auth.bearer(authorization);
  if (who.kind === "invalid_token") throw new LatchError("invalid_token", who.message);
  if (who.kind !== "bearer" || who.found === null) throw new LatchError("invalid_token");
  return { via: "bearer", user: who.found.user, session: who.found.session, cookie: null };
}

/**
 * A preHandler that requires a signed-in user: the session cookie (with its
 * CSRF token on unsafe methods) or, where allowed, a Bearer token. Sets
 * `request.auth`.
 *
 * It is a callback-style hook so that the hot path (a cookie whose session
 * is in the in-process cache, no renewal due) runs synchronously: no promise
 * and no trip through the microtask queue. Anything else takes the async path.
 *
 * @example
 * app.get("/admin", { preHandler: guard(ctx, { bearer: "allow", role: "admin" }) }, handler);
 */
export function guard(ctx: ServerContext, options: GuardOptions = {}): preHandlerHookHandler {
  const bearerAllowed = options.bearer === "allow";
  const role = options.role;

  function bearer(request: FastifyRequest, reply: FastifyReply, authorization: string, done: HookHandlerDoneFunction): void {
    // A token carries no ambient authority (the browser never attaches it
    // by itself), so it needs no CSRF token.
    // done() is called outside any try or catch, so that it runs once.
    authenticateBearer(ctx, authorization).then((auth) => {
      if (role !== undefined && !auth.user.roles.includes(role)) {
        reply.header("WWW-Authenticate", 'Bearer error="insufficient_scope"');
        return done(new LatchError("forbidden"));
      }
      request.auth = auth;
      done();
    }, done);
  }

  /** Checks what a cookie-authenticated request must also satisfy; throws. */
  function admit(request: FastifyRequest, reply: FastifyReply, token: string, valid: ValidSession | null): void {
    if (valid === null) {
      // RFC 6750 §3: a 401 where a token would have done names the scheme.
      if (bearerAllowed) reply.header("WWW-Authenticate", "Bearer");
      throw new LatchError("unauthenticated");
    }
    if (isUnsafeMethod(request.method) && !csrfTokenPresented(request.headers, valid.secret))
      throw new LatchError("csrf", CSRF_TOKEN_MESSAGE);
    if (role !== undefined && !valid.user.roles.includes(role)) throw new LatchError("forbidden");
    request.auth = cookieAuth(ctx, token, valid, reply);
  }

  return function requireAuth(request, reply, done) {
    const authorization = request.headers.authorization;
    if (bearerAllowed && isBearerScheme(authorization)) return bearer(request, reply, authorization!, done);
    const token = ctx.auth.cookieValue(request.headers.cookie) ?? "";
    // done() is called outside any try or catch, so that it runs once.
    let cached: ValidSession | null | undefined;
    try {
      cached = ctx.auth.cachedSession(token);
      if (cached !== undefined) admit(request, reply, token, cached);
    } catch (error) {
      return done(error as Error);
    }
    if (cached !== undefined) return done();
    ctx.auth.session(token).then((valid) => {
      try {
        admit(request, reply, token, valid);
      } catch (error) {
        return done(error as Error);
      }
      done();
    }, done);
  };
}

/** Runs a {@link guard} from inside a handler (where the route's preHandler cannot be used). */
export function runGuard(hook: preHandlerHookHandler, app: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  return new Promise((resolve, reject) => {
    hook.call(app, request, reply, (error?: Error) => (error === undefined ? resolve() : reject(error)));
  });
}

/** The guarded request's auth; for handlers behind {@link guard}. */
export function authOf(request: FastifyRequest): RequestAuth {
  if (request.auth === null) throw new LatchError("unauthenticated");
  return request.auth;
}
