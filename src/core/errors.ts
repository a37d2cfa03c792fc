/**
 * The one table of error codes. Every error Latch reports, over HTTP or to a
 * caller of the core, carries one of these codes; the HTTP status and default
 * message live here and nowhere else.
 */
export const errorCodes = {
  invalid_input: { status: 400, message: "The request is invalid." },
  invalid_credentials: { status: 401, message: "Invalid username or password." },
  unauthenticated: { status: 401, message: "Authentication required." },
  invalid_token: { status: 401, message: "The access token is invalid or has expired." },
  csrf: { status: 403, message: "Missing or invalid CSRF token or origin." },
  forbidden: { status: 403, message: "You do not have permission to do this." },
  mfa_required: {
    status: 401,
    message: "This account has a second factor: send code (from the authenticator app) or recoveryCode as well.",
  },
  not_found: { status: 404, message: "Not found." },
  method_not_allowed: { status: 405, message: "Method not allowed." },
  request_timeout: { status: 408, message: "The request took too long to arrive." },
  conflict: { status: 409, message: "That resource already exists." },
  payload_too_large: { status: 413, message: "The request body is too large." },
  unsupported_media_type: { status: 415, message: "The request body must be JSON (Content-Type: application/json)." },
  rate_limited: { status: 429, message: "Too many attempts. Try again later." },
  headers_too_large: { status: 431, message: "The request headers are too large." },
  internal: { status: 500, message: "Internal error." },
  unavailable: { status: 503, message: "The service is temporarily unavailable." },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCodes;

export interface LatchErrorOptions {
  /** The underlying failure, kept for logs; never sent to clients. */
  cause?: unknown;
  /** Seconds the client should wait, for `rate_limited`. */
  retryAfter?: number;
  /** Field-level detail safe to show to the client. */
  details?: Record<string, string>;
  /** For `unavailable` from a store: which backend failed ("database", "redis"), so an outage is logged and counted once per backend. */
  backend?: string;
}

/**
 * An error with a code from {@link errorCodes}. Expected outcomes (a wrong
 * password, an unknown session) are values in the core's API, not errors;
 * LatchError is for refusals the caller must surface and for failures.
 *
 * @example
 * throw new LatchError("conflict", "That username is taken.");
 */
export class LatchError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfter: number | undefined;
  readonly details: Record<string, string> | undefined;
  readonly backend: string | undefined;

  constructor(code: ErrorCode, message?: string, options: LatchErrorOptions = {}) {
    super(message ?? errorCodes[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LatchError";
    this.code = code;
    this.status = errorCodes[code].status;
    this.retryAfter = options.retryAfter;
    this.details = options.details;
    this.backend = options.backend;
  }
}

/** Narrows an unknown thrown value to a LatchError with the given code. */
export function isLatchError(value: unknown, code?: ErrorCode): value is LatchError {
  return value instanceof LatchError && (code === undefined || value.code === code);
}
