/**
 * `latch/core`: what an application or a third-party store needs from the
 * domain, by name. Internals (encodings, slot tags, CSRF derivation, hash
 * pool limits) stay inside; import them from their module in this
 * repository if you are extending Latch itself.
 */

// Configuration and errors.
export { ConfigError, loadConfig } from "./config.js";
export type { Config } from "./config.js";
export { errorCodes, isLatchError, LatchError } from "./errors.js";
export type { ErrorCode, LatchErrorOptions } from "./errors.js";

// Time and randomness, handed in.
export { createFakeClock } from "./runtime.js";
export type { Clock, FakeClock, RandomReader, Runtime } from "./runtime.js";

// The store contract (what src/stores/ implement; see latch/stores/conformance).
export { isCachedSessionStore } from "./store.js";
export { AUTH_METHODS } from "./store.js";
export type {
  AuthMethod,
  CachedSessionStore,
  ListUsersOptions,
  Passkey,
  RateLimitState,
  RateLimitStore,
  SecurityEvent,
  SecurityEventStore,
  SecurityEventType,
  SecondFactorStore,
  Session,
  SessionCacheStats,
  SessionStore,
  SessionWithUser,
  SigningKey,
  SigningKeyStore,
  StoreHealth,
  Stores,
  TotpCredential,
  User,
  UserRecord,
  UserStore,
  WebAuthnChallenge,
} from "./store.js";

// Sessions and their tokens.
export { createSessionManager } from "./sessions.js";
export type { NewSession, SessionManager, SessionMetadata, SessionPolicy, ValidSession } from "./sessions.js";
export { hashSessionSecret, isSessionId, parseSessionToken } from "./session-token.js";
export type { SessionToken } from "./session-token.js";

// Accounts and passwords.
export { createAccounts, ensureAdmin, publicUser, ROLE_PATTERN } from "./accounts.js";
export type { Accounts, RegisterInput } from "./accounts.js";
export { createPasswordHasher } from "./passwords.js";
export type { PasswordHasher, PasswordHasherOptions } from "./passwords.js";
export { checkNewPassword, loginKey, normaliseEmail, normaliseUsername } from "./identity.js";

// Access tokens (JWT).
export { createTokenService, verifyAccessToken } from "./tokens.js";
export type { AccessTokenClaims, IssuedAccessToken, TokenService, TokenServiceOptions, TokenVerification } from "./tokens.js";
