/**
 * Request authentication, shared by the Latch server (src/server/) and the
 * resource-server middleware (src/middleware/): the session cookie, the CSRF
 * defences and "who is this request". Imports only core/.
 */
export { clearedSessionCookie, hasSecurePrefix, readCookie, sessionCookie, sessionCookieName } from "./session-cookie.js";
export type { CookieOptions } from "./session-cookie.js";
export { createOriginPolicy, CSRF_TOKEN_MESSAGE, csrfTokenPresented, isOwnOrigin, isUnsafeMethod, originRefusal } from "./csrf.js";
export type { HeaderView, OriginPolicy } from "./csrf.js";
export { createRequestAuthenticator, sessionKind } from "./request-auth.js";
export type {
  BearerVerifier,
  Identity,
  IdentifyOptions,
  RequestAuthenticator,
  RequestAuthenticatorOptions,
  SessionKind,
} from "./request-auth.js";
