import type { NextFunction, Request, RequestHandler, Response } from "express";
import { checkRequirement, checkRole, createValidator, failureBody, failureFromError, isValidator } from "./validate.js";
import type { AuthFailure, AuthRequirement, LatchAuth, Validator, ValidatorOptions } from "./validate.js";

/**
 * Express middleware for resource servers: the drop-in replacement for the
 * `requireAuth` and `requireRole` that the session and JWT tutorials write
 * by hand, validating Latch's session cookie against the shared store and
 * Latch's Bearer JWTs against its JWKS, with no call to Latch per request.
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

declare global {
  // Express's documented way to type what middleware adds to the request.
  namespace Express {
    interface Request {
      /** Who made the request; set by `requireAuth` and `requireRole`. */
      latch?: LatchAuth;
    }
  }
}

/** Options to build a validator, or one already built (share one so its JWKS cache is shared). */
export type LatchMiddlewareOptions = ValidatorOptions | Validator;

function validatorOf(options: LatchMiddlewareOptions): Validator {
  return isValidator(options) ? options : createValidator(options);
}

function refuse(res: Response, failure: AuthFailure): void {
  if (failure.wwwAuthenticate !== null) res.set("WWW-Authenticate", failure.wwwAuthenticate);
  res.set("Cache-Control", "no-store");
  res.status(failure.status).json(failureBody(failure));
}

function middleware(validator: Validator, role: string | null, requirement: AuthRequirement): RequestHandler {
  async function run(req: Request, res: Response, next: NextFunction): Promise<void> {
    let auth = req.latch;
    // requireRole after requireAuth on the same request validates once.
    if (auth === undefined) {
      const result = await validator.validate(req);
      if (!result.ok) return refuse(res, result.failure);
      if (result.setCookie !== null) res.append("Set-Cookie", result.setCookie);
      // What an authenticated request gets back is the user's: no shared cache may keep it.
      res.set("Cache-Control", "no-store");
      auth = result.auth;
      req.latch = auth;
    }
    if (role !== null) {
      const refusal = validator.authorize(auth, role);
      if (refusal !== null) return refuse(res, refusal);
    }
    const refusal = validator.require(auth, requirement);
    if (refusal !== null) return refuse(res, refusal);
    next();
  }
  return function latchMiddleware(req, res, next) {
    // Handled here rather than left to Express 5's promise support, so the
    // middleware behaves the same under Express 4.
    run(req, res, next).catch((error: unknown) => {
      const refusal = failureFromError(error);
      if (refusal === null) next(error);
      else refuse(res, refusal);
    });
  };
}

/**
 * Requires a signed-in user: Latch's session cookie (with its CSRF token on
 * POST, PUT, PATCH and DELETE) or, when `jwks` is configured, a Bearer JWT.
 * Sets `req.latch = { via, user, session, claims }`; otherwise answers 401
 * (`unauthenticated`, or `invalid_token` with
 * `WWW-Authenticate: Bearer error="invalid_token"`), 403 `csrf`, or 503.
 *
 * @example
 * const latch = createValidator({ sessions: stores.sessions, policy: config.session, jwks: { url, issuer: "latch" } });
 * app.get("/dashboard", requireAuth(latch), (req, res) => {
 *   res.json({ message: `Welcome, ${req.latch!.user.username}` });
 * });
 * // Two factors (amr "mfa") or 403 forbidden: the step-up pattern in the README.
 * app.post("/transfers", requireAuth(latch, { mfa: true }), handler);
 */
export function requireAuth(options: LatchMiddlewareOptions, requirement?: AuthRequirement): RequestHandler {
  return middleware(validatorOf(options), null, checkRequirement(requirement));
}

/**
 * Requires a signed-in user with `role`: 401 as {@link requireAuth} when not
 * signed in, 403 `forbidden` when signed in without the role. Roles come
 * from the store, so a role change on Latch applies at the next request.
 *
 * @example
 * app.get("/admin", requireRole("admin", latch), (req, res) => res.json({ message: "Admin area" }));
 * app.delete("/admin/users/:id", requireRole("admin", latch, { mfa: true }), handler);
 */
export function requireRole(role: string, options: LatchMiddlewareOptions, requirement?: AuthRequirement): RequestHandler {
  return middleware(validatorOf(options), checkRole(role), checkRequirement(requirement));
}
