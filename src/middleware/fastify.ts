import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from "fastify";
import fp from "fastify-plugin";
import { checkRequirement, checkRole, createValidator, failureBody, failureFromError } from "./validate.js";
import type { AuthFailure, AuthRequirement, LatchAuth, Validator, ValidatorOptions } from "./validate.js";

/**
 * A Fastify plugin for resource servers: decorates `request.latch` and
 * offers `app.requireAuth` and `app.requireRole(role)` preHandlers over the
 * same validation as the Express middleware.
 */

export type {
  AuthFailure,
  AuthRequirement,
  JwksOptions,
  LatchAuth,
  LatchSession,
  LatchUser,
  Validator,
  ValidatorOptions,
} from "./validate.js";
export type { AccessTokenClaims } from "../core/tokens.js";
export { createValidator, DEFAULT_SESSION_POLICY } from "./validate.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Who made the request; set by `requireAuth` and `requireRole`, null before. */
    latch: LatchAuth | null;
  }
  interface FastifyInstance {
    /**
     * preHandler: a signed-in user (session cookie or Bearer JWT), else 401.
     * Called with a requirement instead (`app.requireAuth({ mfa: true })`), it
     * returns a preHandler that also needs a two-factor sign-in, else 403.
     */
    requireAuth: RequireAuth;
    /** preHandler: a signed-in user with `role` (and, with `{ mfa: true }`, two factors), else 401 or 403. Checks its arguments now. */
    requireRole(role: string, requirement?: AuthRequirement): preHandlerAsyncHookHandler;
  }
}

/** `app.requireAuth`: a preHandler itself, or a factory of one for a requirement. */
export type RequireAuth = preHandlerAsyncHookHandler & ((requirement: AuthRequirement) => preHandlerAsyncHookHandler);

/** Options to build a validator, or `{ validator }` to share one already built. */
export type LatchPluginOptions = ValidatorOptions | { validator: Validator };

function refuse(reply: FastifyReply, failure: AuthFailure): FastifyReply {
  if (failure.wwwAuthenticate !== null) void reply.header("WWW-Authenticate", failure.wwwAuthenticate);
  return reply.code(failure.status).header("Cache-Control", "no-store").send(failureBody(failure));
}

async function latchPlugin(app: FastifyInstance, options: LatchPluginOptions): Promise<void> {
  const validator = "validator" in options ? options.validator : createValidator(options);
  app.decorateRequest("latch", null);

  /** The request's auth, or null once a refusal has been sent. */
  async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<LatchAuth | null> {
    if (request.latch !== null) return request.latch;
    let result;
    try {
      result = await validator.validate(request);
    } catch (error) {
      const refusal = failureFromError(error);
      if (refusal === null) throw error;
      refuse(reply, refusal);
      return null;
    }
    if (!result.ok) {
      refuse(reply, result.failure);
      return null;
    }
    if (result.setCookie !== null) void reply.header("Set-Cookie", result.setCookie);
    void reply.header("Cache-Control", "no-store");
    request.latch = result.auth;
    return result.auth;
  }

  function guard(role: string | null, requirement: AuthRequirement): preHandlerAsyncHookHandler {
    return async function latchGuard(request, reply) {
      const auth = await authenticate(request, reply);
      if (auth === null) return reply;
      const refusal = (role === null ? null : validator.authorize(auth, role)) ?? validator.require(auth, requirement);
      if (refusal !== null) return refuse(reply, refusal);
    };
  }

  const plain = guard(null, {});
  // Fastify calls a preHandler with (request, reply); a requirement comes alone.
  const requireAuth = function requireAuth(this: FastifyInstance, first: FastifyRequest | AuthRequirement, reply?: FastifyReply) {
    if (reply === undefined) return guard(null, checkRequirement(first));
    return plain.call(this, first as FastifyRequest, reply);
  } as RequireAuth;

  app.decorate("requireAuth", requireAuth);
  app.decorate("requireRole", function requireRole(role: string, requirement?: AuthRequirement): preHandlerAsyncHookHandler {
    return guard(checkRole(role), checkRequirement(requirement));
  });
}

/**
 * Register once; then use `app.requireAuth` / `app.requireRole(role)` as
 * preHandlers. Wrapped with fastify-plugin, so the decorators are visible to
 * the whole app rather than only inside the plugin's own scope.
 *
 * @example
 * await app.register(latchFastify, { sessions: stores.sessions, policy: config.session, jwks: { url, issuer: "latch" } });
 * app.get("/dashboard", { preHandler: app.requireAuth }, async (request) => ({ message: `Welcome, ${request.latch!.user.username}` }));
 * app.get("/admin", { preHandler: app.requireRole("admin") }, async () => ({ message: "Admin area" }));
 * app.post("/transfers", { preHandler: app.requireAuth({ mfa: true }) }, handler); // 403 for a one-factor sign-in
 */
export const latchFastify: FastifyPluginAsync<LatchPluginOptions> = fp(latchPlugin, { name: "latch", fastify: "5.x" });

export default latchFastify;
