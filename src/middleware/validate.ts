import { randomFillSync } from "node:crypto";
import { createRemoteJWKSet, customFetch } from "jose";
import type { FetchImplementation, JWTVerifyGetKey } from "jose";
import { ROLE_PATTERN } from "../core/accounts.js";
import { errorCodes, isLatchError } from "../core/errors.js";
import type { Clock } from "../core/runtime.js";
import { verifyCsrfToken } from "../core/session-token.js";
import { createSessionManager } from "../core/sessions.js";
import type { SessionPolicy } from "../core/sessions.js";
import type { Session, SessionStore, User } from "../core/store.js";
import { cacheVerifiedTokens, isBearerScheme, jwkAlgorithm, parseBearerHeader, pinKeyAlgorithm, verifyAccessToken } from "../core/tokens.js";
import type { AccessTokenClaims, TokenVerification } from "../core/tokens.js";

/**
 * The one validation behind the Express and Fastify middleware: a resource
 * server checks Latch's session cookie against the same session store, and
 * Latch's Bearer JWTs against its JWKS, without calling Latch per request.
 *
 * Revocation: the cookie is looked up in the store on every request, so a
 * session ended on Latch is refused here at the next request. A Bearer token
 * is refused as soon as its session ends too when `sessions` is given (its
 * `sid` is looked up). A JWKS-only resource server (no `sessions`) cannot
 * know about sign-out: it accepts a token until its `exp`, at most 15 minutes.
 */

/** Latch's defaults (SESSION_IDLE_TIMEOUT=1800, SESSION_ABSOLUTE_TIMEOUT=86400). */
export const DEFAULT_SESSION_POLICY: SessionPolicy = { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 };

const DEFAULT_COOKIE_NAMES = ["__Host-sid", "sid"];
const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export interface JwksOptions {
  /** Latch's `/.well-known/jwks.json`. */
  url: string | URL;
  /** Latch's TOKEN_ISSUER (default "latch"); tokens with another `iss` are refused. */
  issuer: string;
  /** Minimum time between refetches caused by an unknown `kid`. Default 5 s. */
  cooldownMs?: number;
  /** How long fetched keys are used before the set is fetched again. Default 5 minutes, as Latch's Cache-Control says. */
  cacheMaxAgeMs?: number;
  /** Abort a JWKS fetch after this long. Default 5 s. */
  timeoutMs?: number;
  /** A fetch implementation, for tests or proxies. */
  fetch?: FetchImplementation;
}

export interface ValidatorOptions {
  /**
   * The session store Latch uses (`(await openStores(config)).sessions`).
   * Needed for cookies, and for refusing tokens of ended sessions at once.
   */
  sessions?: SessionStore;
  /**
   * Must equal the Latch server's session settings (`loadConfig(env).session`):
   * this server slides idle expiries exactly as Latch would, never further.
   */
  policy?: SessionPolicy;
  /** Accept Bearer JWTs, verified against this JWKS. */
  jwks?: JwksOptions;
  /** Cookie names tried in order. Default `["__Host-sid", "sid"]`; pin `["__Host-sid"]` in production. */
  cookieNames?: string[];
  /**
   * "require" (default): POST, PUT, PATCH and DELETE authenticated by the
   * cookie must carry the session's CSRF token in X-CSRF-Token, as on Latch.
   */
  csrf?: "require" | "off";
  /**
   * Verified tokens remembered, so a client that presents the same token on
   * every request costs one signature check, not one per request. `exp` is
   * still checked each time, and the session check is never cached.
   * Default 10,000; 0 turns it off.
   */
  tokenCacheSize?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
}

/** The user on the request. Username, email and createdAt are null only on a JWKS-only server, where the token is all there is. */
export interface LatchUser {
  id: string;
  username: string | null;
  email: string | null;
  roles: string[];
  createdAt: number | null;
}

/** The session on the request (its public handle; never the secret). Times are null only on a JWKS-only server. */
export interface LatchSession {
  id: string;
  userId: string;
  createdAt: number | null;
  lastSeenAt: number | null;
  idleExpiresAt: number | null;
  absoluteExpiresAt: number | null;
}

/** What the middleware puts on the request as `latch`. */
export interface LatchAuth {
  via: "session" | "bearer";
  user: LatchUser;
  session: LatchSession;
  /** The verified token's claims, for Bearer requests. */
  claims: AccessTokenClaims | null;
}

/** A refusal, ready to send: the contract's `{error: {code, message}}` with its status and headers. */
export interface AuthFailure {
  status: number;
  code: "unauthenticated" | "invalid_token" | "csrf" | "forbidden" | "unavailable";
  message: string;
  /** The WWW-Authenticate header to send, if any. */
  wwwAuthenticate: string | null;
}

export type ValidationResult = { ok: true; auth: LatchAuth; setCookie: string | null } | { ok: false; failure: AuthFailure };

/** The parts of an HTTP request validation reads; Node's IncomingMessage fits. */
export interface RequestView {
  method: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface Validator {
  /**
   * Authenticates a request. Refusals are values; a store or JWKS outage
   * rejects with `LatchError("unavailable")` (see {@link failureFromError}).
   */
  validate(request: RequestView): Promise<ValidationResult>;
  /** Null when `auth` has `role`; else the 403 to send. */
  authorize(auth: LatchAuth, role: string): AuthFailure | null;
}

function failure(code: AuthFailure["code"], message: string, wwwAuthenticate: string | null = null): AuthFailure {
  return { status: errorCodes[code].status, code, message, wwwAuthenticate };
}

/**
 * The JSON body of a refusal, in the contract's shape.
 *
 * @example
 * if (!result.ok) res.status(result.failure.status).json(failureBody(result.failure));
 */
export function failureBody(failure: AuthFailure): { error: { code: string; message: string } } {
  return { error: { code: failure.code, message: failure.message } };
}

/**
 * Maps a rejection from {@link Validator.validate} to a refusal to send (503
 * `unavailable` for an outage), or null for errors that are bugs and belong
 * to the framework's error handler.
 *
 * @example
 * const result = await latch.validate(req).catch((error: unknown) => {
 *   const refusal = failureFromError(error);
 *   if (refusal === null) throw error;
 *   return { ok: false as const, failure: refusal };
 * });
 */
export function failureFromError(error: unknown): AuthFailure | null {
  if (isLatchError(error, "unavailable")) return failure("unavailable", errorCodes.unavailable.message);
  return null;
}

/**
 * Validates a role name at middleware creation, so a typo fails at start-up
 * rather than on every request.
 *
 * @example
 * checkRole("admin"); // "admin"
 * checkRole("Admins!"); // throws TypeError
 */
export function checkRole(role: unknown): string {
  if (typeof role !== "string" || !ROLE_PATTERN.test(role)) {
    throw new TypeError(`latch: role must be a role name like "admin" (got ${JSON.stringify(role)})`);
  }
  return role;
}

function header(request: RequestView, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** One cookie's value from a Cookie header, without building an object of them all. */
function readCookie(cookieHeader: string | undefined, name: string): string | undefined {
  if (cookieHeader === undefined) return undefined;
  for (const part of cookieHeader.split(";")) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
    }
  }
  return undefined;
}

/**
 * The cookie Latch would re-send after sliding the idle expiry, so the
 * browser's copy keeps pace with the session when only this server sees the
 * user's requests. Same attributes as Latch's: `__Host-` cookies are Secure.
 */
function renewedCookie(name: string, token: string, expiresAt: number, now: number): string {
  const maxAge = Math.max(0, Math.floor((expiresAt - now) / 1000));
  const secure = name.startsWith("__Host-") || name.startsWith("__Secure-") ? "; Secure" : "";
  return `${name}=${token}; Max-Age=${maxAge}; Expires=${new Date(now + maxAge * 1000).toUTCString()}; Path=/; HttpOnly; SameSite=Lax${secure}`;
}

function userOf(user: User): LatchUser {
  return { id: user.id, username: user.username, email: user.email, roles: [...user.roles], createdAt: user.createdAt };
}

function sessionOf(session: Session): LatchSession {
  const { id, userId, createdAt, lastSeenAt, idleExpiresAt, absoluteExpiresAt } = session;
  return { id, userId, createdAt, lastSeenAt, idleExpiresAt, absoluteExpiresAt };
}

function checkOptions(options: ValidatorOptions): void {
  if (options.sessions === undefined && options.jwks === undefined) {
    throw new TypeError("latch: give `sessions` (the session store), `jwks` ({ url, issuer }), or both");
  }
  if (options.jwks !== undefined) {
    const url = new URL(options.jwks.url);
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError("latch: jwks.url must be an http(s) URL");
    if (typeof options.jwks.issuer !== "string" || options.jwks.issuer === "") throw new TypeError("latch: jwks.issuer must name Latch's TOKEN_ISSUER");
  }
  const policy = options.policy;
  if (policy !== undefined && !(policy.idleTimeoutMs > 0 && policy.absoluteTimeoutMs >= policy.idleTimeoutMs && policy.renewIntervalMs >= 0)) {
    throw new TypeError("latch: policy must have idleTimeoutMs > 0, absoluteTimeoutMs >= idleTimeoutMs and renewIntervalMs >= 0");
  }
  if (options.cookieNames !== undefined && (options.cookieNames.length === 0 || !options.cookieNames.every((n) => /^[\w-]+$/.test(n)))) {
    throw new TypeError("latch: cookieNames must be a non-empty list of cookie names");
  }
}

/**
 * Creates the validator. Options are checked here, once, so a
 * misconfiguration stops start-up instead of failing every request.
 *
 * @example
 * const config = loadConfig(process.env);
 * const stores = await openStores(config);
 * const latch = createValidator({
 *   sessions: stores.sessions,
 *   policy: config.session,
 *   jwks: { url: "https://auth.example.com/.well-known/jwks.json", issuer: config.issuer },
 * });
 * const result = await latch.validate(req); // { ok: true, auth: { user, session } } or { ok: false, failure }
 */
export function createValidator(options: ValidatorOptions): Validator {
  checkOptions(options);
  const clock = options.clock ?? { now: () => Date.now() };
  const cookieNames = options.cookieNames ?? DEFAULT_COOKIE_NAMES;
  const csrfRequired = options.csrf !== "off";
  const store = options.sessions;
  // The same manager Latch uses, so renewal follows the same rule: at most
  // one write per renewal interval, never beyond the absolute expiry.
  const manager =
    store === undefined
      ? null
      : createSessionManager({
          store,
          runtime: { clock, random: (bytes) => void randomFillSync(bytes) },
          policy: options.policy ?? DEFAULT_SESSION_POLICY,
        });
  const jwks = options.jwks;
  let verify: ((token: string) => Promise<TokenVerification>) | null = null;
  if (jwks !== undefined) {
    const remote = createRemoteJWKSet(new URL(jwks.url), {
      cooldownDuration: jwks.cooldownMs ?? 5_000,
      cacheMaxAge: jwks.cacheMaxAgeMs ?? 300_000,
      timeoutDuration: jwks.timeoutMs ?? 5_000,
      ...(jwks.fetch === undefined ? {} : { [customFetch]: jwks.fetch }),
    });
    // The algorithm is the key's, never the token's: jose already skips JWKS
    // entries whose `alg` differs from the header's, but would infer one for
    // a key without `alg`. Latch publishes `alg` on every key, so a key
    // without one (or whose material contradicts it) is refused here.
    const keys: JWTVerifyGetKey = async (protectedHeader, token) => {
      const key = await remote(protectedHeader, token);
      const jwk = remote.jwks()?.keys.find((k) => k.kid === protectedHeader.kid && k.alg === protectedHeader.alg);
      pinKeyAlgorithm(protectedHeader, jwk === undefined ? undefined : (jwkAlgorithm(jwk) ?? undefined));
      return key;
    };
    verify = cacheVerifiedTokens((token) => verifyAccessToken(token, keys, { issuer: jwks.issuer, now: clock.now() }), {
      size: options.tokenCacheSize ?? 10_000,
      clock,
    });
  }
  const unauthenticated = failure("unauthenticated", errorCodes.unauthenticated.message, verify === null ? null : "Bearer");
  const invalid = (message: string): ValidationResult => ({ ok: false, failure: failure("invalid_token", message, 'Bearer error="invalid_token"') });

  async function bearer(authorization: string): Promise<ValidationResult> {
    if (verify === null) return invalid("This server does not accept Bearer tokens.");
    const token = parseBearerHeader(authorization);
    if (token === null) return invalid("The Authorization header is not a Bearer token.");
    const result = await verify(token);
    if (!result.valid) return invalid(result.message);
    const { claims } = result;
    if (store === undefined) {
      // JWKS-only: the signature is all there is, so the claims are believed until exp.
      const user: LatchUser = { id: claims.sub, username: null, email: null, roles: [...claims.roles], createdAt: null };
      const session: LatchSession = { id: claims.sid, userId: claims.sub, createdAt: null, lastSeenAt: null, idleExpiresAt: null, absoluteExpiresAt: null };
      return { ok: true, auth: { via: "bearer", user, session, claims }, setCookie: null };
    }
    // Read-only: a token does not slide its session (Latch's own rule).
    const found = await store.findSession(claims.sid, clock.now());
    if (found === null || found.session.userId !== claims.sub) return invalid("The session this access token belongs to has ended.");
    return { ok: true, auth: { via: "bearer", user: userOf(found.user), session: sessionOf(found.session), claims }, setCookie: null };
  }

  async function cookie(request: RequestView): Promise<ValidationResult> {
    if (manager === null) return { ok: false, failure: unauthenticated };
    const cookieHeader = header(request, "cookie");
    for (const name of cookieNames) {
      const token = readCookie(cookieHeader, name);
      if (token === undefined) continue;
      const valid = await manager.validate(token);
      if (valid === null) continue;
      if (csrfRequired && UNSAFE_METHODS.has(request.method.toUpperCase())) {
        const presented = header(request, "x-csrf-token") ?? header(request, "csrf-token");
        if (!verifyCsrfToken(valid.secret, presented)) return { ok: false, failure: failure("csrf", "Missing or invalid CSRF token.") };
      }
      const setCookie = valid.renewed ? renewedCookie(name, token, valid.session.idleExpiresAt, clock.now()) : null;
      return { ok: true, auth: { via: "session", user: userOf(valid.user), session: sessionOf(valid.session), claims: null }, setCookie };
    }
    return { ok: false, failure: unauthenticated };
  }

  return {
    async validate(request) {
      const authorization = header(request, "authorization");
      // An explicit token wins over an ambient cookie.
      if (isBearerScheme(authorization)) return bearer(authorization!);
      return cookie(request);
    },

    authorize(auth, role) {
      if (auth.user.roles.includes(role)) return null;
      return failure("forbidden", errorCodes.forbidden.message, auth.via === "bearer" ? 'Bearer error="insufficient_scope"' : null);
    },
  };
}

/**
 * True for a {@link Validator} (as opposed to options to build one).
 *
 * @example
 * const validator = isValidator(options) ? options : createValidator(options);
 */
export function isValidator(value: unknown): value is Validator {
  return typeof value === "object" && value !== null && typeof (value as Validator).validate === "function" && typeof (value as Validator).authorize === "function";
}
