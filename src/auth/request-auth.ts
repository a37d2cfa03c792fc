import type { Clock } from "../core/runtime.js";
import type { SessionManager, ValidSession } from "../core/sessions.js";
import type { Session, SessionStore, SessionWithUser } from "../core/store.js";
import { isBearerScheme, parseBearerHeader } from "../core/tokens.js";
import type { AccessTokenClaims, TokenVerification } from "../core/tokens.js";
import { readCookie } from "./session-cookie.js";

/**
 * "Who is this request": nobody, a session (with its user), or a Bearer
 * token. The Latch server's guard (src/server/auth.ts), its fast path
 * (src/server/fast-path.ts), its pages and the resource-server middleware
 * (src/middleware/validate.ts) all ask here, so what a session
 * authenticates is decided in one place: {@link sessionKind}.
 */

/**
 * What a live session lets its holder do: `"session"`, a full sign-in, or
 * `"pending_mfa"`, a sign-in whose password was right and whose second
 * factor is still owed (`Session.pending`). Every lookup below admits only
 * the kind its caller names, `"session"` unless it says otherwise, so a
 * pending sign-in authenticates nothing anywhere (the guard, the fast path,
 * the pages, Bearer issuance and checks, the Express and Fastify
 * middleware) except the one route that asks for it by name: POST /login/mfa.
 */
export type SessionKind = "session" | "pending_mfa";

/**
 * The kind of a stored session; the only place that reads a session's state.
 *
 * @example
 * sessionKind(found.session); // "session", or "pending_mfa" for a sign-in waiting for its code
 */
export function sessionKind(session: Session): SessionKind {
  return session.pending ? "pending_mfa" : "session";
}

/** The outcome of looking at a request's credentials. */
export type Identity =
  /** No credential, or one that names no live session of the kind asked for. */
  | { kind: "none" }
  /** A session cookie. `cookieName` is the name it came under (the middleware may read several). */
  | { kind: "session"; cookieName: string; token: string; valid: ValidSession }
  /**
   * A verified Bearer token. `found` is its live session and user from the
   * store, or null on a JWKS-only resource server (no store to ask: the
   * claims are all there is, believed until `exp`).
   */
  | { kind: "bearer"; claims: AccessTokenClaims; found: SessionWithUser | null }
  /** A Bearer header that does not verify, or whose session has ended: 401 `invalid_token`. */
  | { kind: "invalid_token"; message: string };

export interface BearerVerifier {
  /** Checks the JWT's signature, issuer and expiry. */
  verify(token: string): Promise<TokenVerification>;
  /**
   * Where the token's session is looked up, so sign-out, revocation and a
   * password change end the token at once rather than at its `exp`; null
   * only for a JWKS-only resource server.
   */
  sessions: Pick<SessionStore, "findSession"> | null;
  clock: Clock;
}

export interface RequestAuthenticatorOptions {
  /** Validates session cookies; null where there is no store (JWKS-only). */
  sessions: SessionManager | null;
  /**
   * Session cookie names, in order. The first one present in the request
   * decides: an invalid `__Host-sid` is never passed over for a plain `sid`,
   * which a sibling subdomain could have planted (cookie tossing).
   */
  cookieNames: readonly string[];
  /** Accepts Bearer tokens; null refuses every Bearer header as `invalid_token`. */
  bearer: BearerVerifier | null;
}

export interface IdentifyOptions {
  /**
   * "deny": an Authorization header is ignored and only the cookie counts
   * (the server's cookie-only routes). Default "allow": a Bearer header wins
   * over the cookie, since an explicit token is the client's choice and a
   * cookie is ambient.
   */
  bearer?: "allow" | "deny";
  /** The session kind admitted; default "session". */
  kind?: SessionKind;
}

export interface RequestAuthenticator {
  readonly cookieNames: readonly string[];
  /**
   * The value of the first session cookie present, or undefined. For the hot
   * path: allocates nothing beyond the value.
   */
  cookieValue(cookieHeader: string | undefined): string | undefined;
  /**
   * The session for a cookie value answered from memory, without I/O: a
   * session of `kind`, null when the value authenticates nothing, or
   * undefined when only {@link RequestAuthenticator.session} can tell (cache
   * miss, renewal due). Never writes.
   */
  cachedSession(token: string | undefined, kind?: SessionKind): ValidSession | null | undefined;
  /** The session of `kind` for a cookie value, or null. Slides the idle expiry when due. */
  session(token: string | undefined, kind?: SessionKind): Promise<ValidSession | null>;
  /** Verifies an `Authorization: Bearer` value: `bearer` or `invalid_token`. */
  bearer(authorization: string): Promise<Identity>;
  /** Who made the request. Store and JWKS outages reject (`LatchError("unavailable")`). */
  identify(headers: Readonly<Record<string, string | string[] | undefined>>, options?: IdentifyOptions): Promise<Identity>;
}

const NONE: Identity = Object.freeze({ kind: "none" });

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Builds the authenticator. `cookieNames` are checked by the caller.
 *
 * @example
 * const auth = createRequestAuthenticator({ sessions: manager, cookieNames: ["sid"], bearer: { verify, sessions: store, clock } });
 * const who = await auth.identify(request.headers); // { kind: "session", valid, … } | { kind: "bearer", … } | …
 */
export function createRequestAuthenticator(options: RequestAuthenticatorOptions): RequestAuthenticator {
  const { sessions, bearer: verifier } = options;
  const cookieNames = [...options.cookieNames];
  const onlyName = cookieNames.length === 1 ? cookieNames[0]! : null;

  function presentedName(cookieHeader: string | undefined): string | null {
    for (const name of cookieNames) if (readCookie(cookieHeader, name) !== undefined) return name;
    return null;
  }

  function cookieValue(cookieHeader: string | undefined): string | undefined {
    if (onlyName !== null) return readCookie(cookieHeader, onlyName);
    for (const name of cookieNames) {
      const value = readCookie(cookieHeader, name);
      if (value !== undefined) return value;
    }
    return undefined;
  }

  // Admission by kind: a session that is not of the kind asked for is treated
  // as no session at all (as if signed out).
  function admitted<T extends ValidSession | null | undefined>(valid: T, kind: SessionKind): T | null {
    if (valid === null || valid === undefined) return valid;
    return sessionKind(valid.session) === kind ? valid : null;
  }

  async function session(token: string | undefined, kind: SessionKind = "session"): Promise<ValidSession | null> {
    if (sessions === null) return null;
    return admitted(await sessions.validate(token), kind);
  }

  async function bearer(authorization: string): Promise<Identity> {
    if (verifier === null) return { kind: "invalid_token", message: "This server does not accept Bearer tokens." };
    const token = parseBearerHeader(authorization);
    if (token === null) return { kind: "invalid_token", message: "The Authorization header is not a Bearer token." };
    const result = await verifier.verify(token);
    if (!result.valid) return { kind: "invalid_token", message: result.message };
    const { claims } = result;
    if (verifier.sessions === null) return { kind: "bearer", claims, found: null };
    // Read-only: a token does not slide its session (only the session's own cookie does).
    const found = await verifier.sessions.findSession(claims.sid, verifier.clock.now());
    if (found === null || found.session.userId !== claims.sub || sessionKind(found.session) !== "session") {
      return { kind: "invalid_token", message: "The session this access token belongs to has ended." };
    }
    return { kind: "bearer", claims, found };
  }

  return {
    cookieNames,
    cookieValue,
    cachedSession(token, kind = "session") {
      if (sessions === null) return null;
      return admitted(sessions.validateCached(token), kind);
    },
    session,
    bearer,
    async identify(headers, identifyOptions = {}) {
      const authorization = firstValue(headers.authorization);
      if (identifyOptions.bearer !== "deny" && isBearerScheme(authorization)) return bearer(authorization!);
      const cookieHeader = firstValue(headers.cookie);
      const name = presentedName(cookieHeader);
      if (name === null) return NONE;
      const token = readCookie(cookieHeader, name)!;
      const valid = await session(token, identifyOptions.kind);
      return valid === null ? NONE : { kind: "session", cookieName: name, token, valid };
    },
  };
}
