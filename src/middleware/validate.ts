import { randomFillSync } from "node:crypto";
import { createRemoteJWKSet, customFetch } from "jose";
import type { FetchImplementation, JWTVerifyGetKey } from "jose";
import { ROLE_PATTERN } from "../core/accounts.js";
import {
  createRequestAuthenticator,
  CSRF_TOKEN_MESSAGE,
  csrfTokenPresented,
  hasSecurePrefix,
  isUnsafeMethod,
  originRefusal,
  sessionCookie,
} from "../auth/index.js";
import type { BearerVerifier, OriginPolicy } from "../auth/index.js";
import { errorCodes, isLatchError } from "../core/errors.js";
import type { Clock } from "../core/runtime.js";
import { createSessionManager } from "../core/sessions.js";
import type { SessionPolicy } from "../core/sessions.js";
import type { Session, SessionStore, User } from "../core/store.js";
import { cacheVerifiedTokens, jwkAlgorithm, pinKeyAlgorithm, verifyAccessToken } from "../core/tokens.js";
import type { AccessTokenClaims } from "../core/tokens.js";

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

// In production Latch only ever sets __Host-sid; a plain `sid` there can only
// have been planted (a sibling subdomain can set it for the parent domain).
const PRODUCTION_COOKIE_NAMES = ["__Host-sid"];
const DEVELOPMENT_COOKIE_NAMES = ["__Host-sid", "sid"];

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
  /**
   * Session cookie names, in order; the first one present in the request
   * decides (an invalid `__Host-sid` is refused, never passed over for a
   * plain `sid`). Default `["__Host-sid"]` when `production`, else
   * `["__Host-sid", "sid"]`.
   */
  cookieNames?: string[];
  /** Production defaults (see `cookieNames`). Default: `NODE_ENV === "production"`. */
  production?: boolean;
  /**
   * The origins whose pages may change state with the session cookie (this
   * resource server's own, and its front ends). When given, an unsafe
   * cookie-authenticated request whose Origin is present and not listed, or
   * that is cross-site without a listed Origin, gets 403 `csrf`, as on Latch.
   *
   * Off by default, unlike on Latch: a resource server usually lives on
   * another origin than Latch and the validator cannot know its public
   * origin (nor trust the Host header for it), so it relies on the CSRF
   * token, which a cross-site page cannot read.
   */
  origins?: string[];
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
  /** The account has a second factor; null on a JWKS-only server. */
  mfa: boolean | null;
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
  /** How the session signed in (RFC 8176: `pwd`, `otp`, `hwk`, `mfa`), from the store, or from the token on a JWKS-only server. */
  amr: string[];
}

/** What a route asks of the sign-in beyond being signed in. */
export interface AuthRequirement {
  /**
   * Only a sign-in with two factors (`amr` contains `mfa`: a password and a
   * code, or a passkey that verified its user) passes; a one-factor session
   * gets 403 `forbidden`, so the client can send the person to step up.
   */
  mfa?: boolean;
}

/** The 403 message for a one-factor sign-in where two are required. */
export const MFA_REQUIRED_MESSAGE =
  "This needs a sign-in with a second factor: sign in again with a passkey, or with your password and a code.";

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
  /** Null when `auth` meets `requirement`; else the 403 to send. */
  require(auth: LatchAuth, requirement: AuthRequirement): AuthFailure | null;
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
 * Validates an {@link AuthRequirement} at middleware creation.
 *
 * @example
 * checkRequirement({ mfa: true }); // { mfa: true }
 */
export function checkRequirement(value: unknown): AuthRequirement {
  if (value === undefined) return {};
  if (
    typeof value !== "object" ||
    value === null ||
    Object.keys(value).some((k) => k !== "mfa") ||
    !["undefined", "boolean"].includes(typeof (value as AuthRequirement).mfa)
  ) {
    throw new TypeError(`latch: the requirement must be like { mfa: true } (got ${JSON.stringify(value)})`);
  }
  return { ...(value as AuthRequirement) };
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

function userOf(user: User): LatchUser {
  return { id: user.id, username: user.username, email: user.email, roles: [...user.roles], mfa: user.mfa, createdAt: user.createdAt };
}

function sessionOf(session: Session): LatchSession {
  const { id, userId, createdAt, lastSeenAt, idleExpiresAt, absoluteExpiresAt } = session;
  return { id, userId, createdAt, lastSeenAt, idleExpiresAt, absoluteExpiresAt, amr: [...session.amr] };
}

function checkOptions(options: ValidatorOptions): void {
  if (options.sessions === undefined && options.jwks === undefined) {
    throw new TypeError("latch: give `sessions` (the session store), `jwks` ({ url, issuer }), or both");
  }
  if (options.jwks !== undefined) {
    const url = new URL(options.jwks.url);
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError("latch: jwks.url must be an http(s) URL");
    if (typeof options.jwks.issuer !== "string" || options.jwks.issuer === "")
      throw new TypeError("latch: jwks.issuer must name Latch's TOKEN_ISSUER");
  }
  const policy = options.policy;
  if (
    policy !== undefined &&
    !(policy.idleTimeoutMs > 0 && policy.absoluteTimeoutMs >= policy.idleTimeoutMs && policy.renewIntervalMs >= 0)
  ) {
    throw new TypeError("latch: policy must have idleTimeoutMs > 0, absoluteTimeoutMs >= idleTimeoutMs and renewIntervalMs >= 0");
  }
  if (options.cookieNames !== undefined && (options.cookieNames.length === 0 || !options.cookieNames.every((n) => /^[\w-]+$/.test(n)))) {
    throw new TypeError("latch: cookieNames must be a non-empty list of cookie names");
  }
  if (options.origins !== undefined && !options.origins.every((o) => typeof o === "string" && URL.canParse(o) && new URL(o).origin === o)) {
    throw new TypeError("latch: origins must be a list of origins like https://app.example.com");
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
  const production = options.production ?? process.env.NODE_ENV === "production";
  const cookieNames = options.cookieNames ?? (production ? PRODUCTION_COOKIE_NAMES : DEVELOPMENT_COOKIE_NAMES);
  const csrfRequired = options.csrf !== "off";
  const originPolicy: OriginPolicy | null =
    options.origins === undefined ? null : { trusted: new Set(options.origins), own: new Set(), loopback: "deny" };
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
  let bearer: BearerVerifier | null = null;
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
    const verify = cacheVerifiedTokens((token) => verifyAccessToken(token, keys, { issuer: jwks.issuer, now: clock.now() }), {
      size: options.tokenCacheSize ?? 10_000,
      clock,
    });
    bearer = { verify, sessions: store ?? null, clock };
  }
  const authenticator = createRequestAuthenticator({ sessions: manager, cookieNames, bearer });
  const unauthenticated = failure("unauthenticated", errorCodes.unauthenticated.message, bearer === null ? null : "Bearer");
  const refused = (code: "csrf", message: string): ValidationResult => ({ ok: false, failure: failure(code, message) });

  return {
    async validate(request) {
      const who = await authenticator.identify(request.headers);
      switch (who.kind) {
        case "none":
          return { ok: false, failure: unauthenticated };
        case "invalid_token":
          return { ok: false, failure: failure("invalid_token", who.message, 'Bearer error="invalid_token"') };
        case "bearer": {
          const { claims, found } = who;
          if (found === null) {
            // JWKS-only: the signature is all there is, so the claims are believed until exp.
            const user: LatchUser = { id: claims.sub, username: null, email: null, roles: [...claims.roles], mfa: null, createdAt: null };
            const session: LatchSession = {
              id: claims.sid,
              userId: claims.sub,
              createdAt: null,
              lastSeenAt: null,
              idleExpiresAt: null,
              absoluteExpiresAt: null,
              amr: [...claims.amr],
            };
            return { ok: true, auth: { via: "bearer", user, session, claims }, setCookie: null };
          }
          return {
            ok: true,
            auth: { via: "bearer", user: userOf(found.user), session: sessionOf(found.session), claims },
            setCookie: null,
          };
        }
        case "session": {
          const { valid, cookieName, token } = who;
          if (isUnsafeMethod(request.method.toUpperCase())) {
            if (csrfRequired && !csrfTokenPresented(request.headers, valid.secret)) return refused("csrf", CSRF_TOKEN_MESSAGE);
            const refusal = originPolicy === null ? null : originRefusal(originPolicy, request.headers, undefined);
            if (refusal !== null) return refused("csrf", refusal);
          }
          // Re-sent with Latch's attributes, so the browser's copy keeps pace
          // with the session when only this server sees the user's requests.
          const setCookie = valid.renewed
            ? sessionCookie(cookieName, token, valid.session.idleExpiresAt, clock.now(), { secure: hasSecurePrefix(cookieName) })
            : null;
          return {
            ok: true,
            auth: { via: "session", user: userOf(valid.user), session: sessionOf(valid.session), claims: null },
            setCookie,
          };
        }
      }
    },

    authorize(auth, role) {
      if (auth.user.roles.includes(role)) return null;
      return failure("forbidden", errorCodes.forbidden.message, auth.via === "bearer" ? 'Bearer error="insufficient_scope"' : null);
    },

    require(auth, requirement) {
      if (requirement.mfa !== true || auth.session.amr.includes("mfa")) return null;
      return failure("forbidden", MFA_REQUIRED_MESSAGE, auth.via === "bearer" ? 'Bearer error="insufficient_user_authentication"' : null);
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
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Validator).validate === "function" &&
    typeof (value as Validator).authorize === "function" &&
    typeof (value as Validator).require === "function"
  );
}
