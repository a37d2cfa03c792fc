import { verifyCsrfToken } from "../core/session-token.js";

/**
 * The CSRF defences, all of them: which methods change state, the session's
 * CSRF token on cookie-authenticated changes, and the Origin and
 * Sec-Fetch-Site rule for every change (after hono's csrf middleware). The
 * token itself is derived from the session secret in core/session-token.ts
 * (`csrfTokenFor`), so nothing extra is stored.
 *
 * Callers: src/server/app.ts runs {@link originRefusal} on every unsafe
 * request (sign-in included: that stops login CSRF); src/server/auth.ts and
 * src/middleware/validate.ts run {@link csrfTokenPresented} on unsafe
 * requests authenticated by the cookie. A Bearer token carries no ambient
 * authority (the browser never attaches it by itself), so it needs neither.
 */

const UNSAFE_METHODS: ReadonlySet<string> = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Headers as Node gives them: lower-case names. */
export type HeaderView = Readonly<Record<string, string | string[] | undefined>>;

/**
 * True for the methods that change state (POST, PUT, PATCH, DELETE). The
 * method in upper case, as Node gives it.
 *
 * @example
 * isUnsafeMethod("POST"); // true
 */
export function isUnsafeMethod(method: string): boolean {
  return UNSAFE_METHODS.has(method);
}

/**
 * True when the request carries the session's CSRF token in `X-CSRF-Token`
 * (or `CSRF-Token`), compared in constant time.
 *
 * @example
 * if (isUnsafeMethod(request.method) && !csrfTokenPresented(request.headers, valid.secret)) throw new LatchError("csrf", CSRF_TOKEN_MESSAGE);
 */
export function csrfTokenPresented(headers: HeaderView, secret: string): boolean {
  return verifyCsrfToken(secret, headers["x-csrf-token"] ?? headers["csrf-token"]);
}

export const CSRF_TOKEN_MESSAGE = "Missing or invalid CSRF token.";

/**
 * The set of origins allowed to act with the user's cookies. The server's own
 * origin comes from configuration (PUBLIC_URL), never from the Host header:
 * Host is whatever name the client used, so a DNS-rebinding page (evil.test
 * resolved to this server's address) would otherwise count as same-origin.
 */
export interface OriginPolicy {
  /** TRUSTED_ORIGINS: may act cross-site and get credentialed CORS. */
  trusted: ReadonlySet<string>;
  /** The server's own origins (PUBLIC_URL's). */
  own: ReadonlySet<string>;
  /**
   * "allow" outside production: `http(s)://localhost`, `127.0.0.1` and `[::1]`
   * on the port the request came in on are own origins too, so a developer
   * can open the server by any loopback name. A rebinding page cannot have
   * one of those origins.
   */
  loopback: "allow" | "deny";
}

/**
 * The policy from configuration.
 *
 * @example
 * const origins = createOriginPolicy({ trustedOrigins: config.trustedOrigins, publicUrl: config.publicUrl, production: config.production });
 */
export function createOriginPolicy(options: { trustedOrigins: readonly string[]; publicUrl: string; production: boolean }): OriginPolicy {
  return {
    trusted: new Set(options.trustedOrigins),
    own: new Set([new URL(options.publicUrl).origin]),
    loopback: options.production ? "deny" : "allow",
  };
}

const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * True when `origin` is one of the server's own. `localPort` is the port the
 * connection reached (the socket's, not the Host header's); undefined where
 * there is no socket (in-process `inject`).
 */
export function isOwnOrigin(policy: OriginPolicy, origin: string, localPort: number | undefined): boolean {
  if (policy.own.has(origin)) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" and other opaque origins
  }
  // An Origin with its default port spelled out ("http://localhost:80") is the same origin.
  if (policy.own.has(url.origin)) return true;
  if (policy.loopback === "deny" || localPort === undefined || !LOOPBACK_HOSTS.has(url.hostname)) return false;
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  return port === localPort;
}

/**
 * Why a state-changing request must be refused with 403 `csrf`, or null: its
 * Origin is present and neither the server's own nor trusted, or it is a
 * cross-site browser request whose Origin is not trusted (a missing Origin
 * included).
 *
 * @example
 * const refusal = originRefusal(policy, request.headers, request.socket.localPort);
 * if (refusal !== null) throw new LatchError("csrf", refusal);
 */
export function originRefusal(policy: OriginPolicy, headers: HeaderView, localPort: number | undefined): string | null {
  const origin = headers.origin;
  if (Array.isArray(origin)) return "Cross-origin request refused: the Origin is not trusted.";
  const trusted = origin !== undefined && policy.trusted.has(origin);
  if (origin !== undefined && !trusted && !isOwnOrigin(policy, origin, localPort)) {
    return "Cross-origin request refused: the Origin is not trusted.";
  }
  if (headers["sec-fetch-site"] === "cross-site" && !trusted) return "Cross-site request refused.";
  return null;
}
