import { errorCodes } from "../core/errors.js";

/**
 * The JSON schemas of the HTTP API: shared components (registered once with
 * `app.addSchema` and referenced as `{ $ref: "User#" }`) and helpers that
 * every route's `schema` is built from. @fastify/swagger turns them into
 * GET /openapi.json (src/server/openapi.ts).
 *
 * These schemas describe; they do not validate or serialise (see
 * openapi.ts for why). What keeps them true is src/server/openapi.test.ts:
 * every real answer of every documented status is checked against them,
 * and response objects are closed (`additionalProperties: false`), so a
 * field added to a response without its schema fails that test.
 */

type Schema = Record<string, unknown>;

const isoTime = { type: "string", format: "date-time" } as const;
const nullable = (schema: Schema): Schema => ({ ...schema, type: [schema.type as string, "null"] });
const closed = (properties: Record<string, Schema>, required: string[] = Object.keys(properties), extra: Schema = {}): Schema => ({
  type: "object",
  properties,
  required,
  additionalProperties: false,
  ...extra,
});

/** Shared components: each becomes `#/components/schemas/<$id>`. */
export const sharedSchemas: Schema[] = [
  {
    $id: "Error",
    description: "Every error: a machine code from the contract's table and a human message.",
    ...closed({
      error: closed({
        code: { type: "string", enum: Object.keys(errorCodes) },
        message: { type: "string" },
      }),
    }),
  },
  {
    $id: "User",
    description: "A user as responses show them; never a password hash.",
    ...closed({
      id: { type: "string", description: "UUID" },
      username: { type: "string" },
      email: nullable({ type: "string", format: "email" }),
      emailVerified: { type: "boolean", description: "The person proved they read mail at `email` (false when there is none)." },
      roles: { type: "array", items: { type: "string" }, description: '"user" always; "admin" for administrators.' },
      mfa: { type: "boolean", description: "The account has a second factor: TOTP or a passkey." },
      createdAt: isoTime,
    }),
  },
  {
    $id: "Session",
    description: "A session by its public handle (never the cookie's secret).",
    ...closed({
      id: { type: "string" },
      createdAt: isoTime,
      lastSeenAt: isoTime,
      idleExpiresAt: isoTime,
      absoluteExpiresAt: isoTime,
      amr: {
        type: "array",
        items: { type: "string", enum: ["pwd", "otp", "hwk", "mfa"] },
        description: "How the session signed in (RFC 8176).",
      },
    }),
  },
  {
    $id: "ListedSession",
    description: "One of the user's sessions, as GET /sessions lists them.",
    ...closed({
      id: { type: "string" },
      createdAt: isoTime,
      lastSeenAt: isoTime,
      idleExpiresAt: isoTime,
      absoluteExpiresAt: isoTime,
      amr: {
        type: "array",
        items: { type: "string", enum: ["pwd", "otp", "hwk", "mfa"] },
        description: "How the session signed in (RFC 8176).",
      },
      userAgent: nullable({ type: "string" }),
      ipAddress: nullable({ type: "string", description: "Truncated: an IPv4 /24 or IPv6 /48." }),
      current: { type: "boolean", description: "The session this request was made with." },
    }),
  },
  {
    $id: "SignedIn",
    description: "A new session: the user, and the CSRF token its state-changing requests must send in X-CSRF-Token.",
    ...closed({ user: { $ref: "User#" }, csrfToken: { type: "string" } }),
  },
  {
    $id: "MfaRequired",
    description:
      "The password was right and the account has TOTP: the cookie now holds a pending sign-in, which only POST /login/mfa accepts.",
    ...closed({
      mfaRequired: { type: "boolean", const: true },
      methods: { type: "array", items: { type: "string", enum: ["totp", "recovery_code"] } },
    }),
  },
  {
    $id: "RecoveryCodes",
    description: "Ten single-use recovery codes, shown once.",
    ...closed({ recoveryCodes: { type: "array", items: { type: "string" }, minItems: 10, maxItems: 10 } }),
  },
  {
    $id: "Passkey",
    description: "A passkey as the API shows it (never its public key or credential id).",
    ...closed({
      id: { type: "string" },
      name: { type: "string" },
      createdAt: isoTime,
      lastUsedAt: nullable({ type: "string", format: "date-time" }),
    }),
  },
  {
    $id: "WebAuthnOptions",
    description:
      "WebAuthn options in their JSON form (PublicKeyCredentialCreationOptionsJSON or PublicKeyCredentialRequestOptionsJSON), for @simplewebauthn/browser or PublicKeyCredential.parse…FromJSON.",
    ...closed({
      options: { type: "object", properties: { challenge: { type: "string" } }, required: ["challenge"], additionalProperties: true },
    }),
  },
  { $id: "Message", ...closed({ message: { type: "string" } }) },
  { $id: "UserView", ...closed({ message: { type: "string" }, user: { $ref: "User#" } }) },
  { $id: "Revoked", ...closed({ revoked: { type: "integer", minimum: 0, description: "How many sessions ended." } }) },
  {
    $id: "Jwk",
    description: "A public signing key (never a private member).",
    ...closed(
      {
        kty: { type: "string", enum: ["EC", "RSA", "OKP"] },
        kid: { type: "string" },
        alg: { type: "string", enum: ["ES256", "RS256", "EdDSA"] },
        use: { type: "string", const: "sig" },
        crv: { type: "string", enum: ["P-256", "Ed25519"] },
        x: { type: "string" },
        y: { type: "string" },
        n: { type: "string" },
        e: { type: "string" },
      },
      ["kty", "kid", "alg", "use"],
    ),
  },
];

/** A reference to a shared component by its `$id`. */
export const ref = (id: string): Schema => ({ $ref: `${id}#` });

/** A response whose body is `schema` (JSON), with a description. */
export function answer(description: string, schema: Schema, extra: Schema = {}): Schema {
  return { description, ...schema, ...extra };
}

/** A response with no body (204). */
export function noBody(description: string, extra: Schema = {}): Schema {
  return { description, type: "null", ...extra };
}

const setCookie = {
  "Set-Cookie": { type: "string", description: "The session cookie (sid, or __Host-sid in production): set, renewed or cleared." },
};
const retryAfter = { "Retry-After": { type: "integer", description: "Seconds to wait." } };
const wwwAuthenticate = {
  "WWW-Authenticate": { type: "string", description: 'Bearer, with error="invalid_token" for a bad token (RFC 6750).' },
};

/** Response headers to document beside a body: `withHeaders(answer(...), "Set-Cookie")`. */
export function withHeaders(response: Schema, ...names: Array<"Set-Cookie" | "Retry-After" | "WWW-Authenticate">): Schema {
  const all = { ...setCookie, ...retryAfter, ...wwwAuthenticate };
  return { ...response, headers: Object.fromEntries(names.map((n) => [n, all[n]])) };
}

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: "invalid_input: the body, query or a field is not valid (malformed JSON included).",
  401: "unauthenticated, invalid_credentials or invalid_token.",
  403: "csrf (a missing CSRF token, or a foreign Origin) or forbidden (not an admin).",
  404: "not_found.",
  409: "conflict: the username or email is taken.",
  413: "payload_too_large: the body is over the limit (16 KiB by default).",
  415: "unsupported_media_type: the body is not JSON.",
  429: "rate_limited: too many attempts; see Retry-After.",
  503: "unavailable: a store does not answer; nothing was changed.",
};

/** Error responses, each the shared `Error` shape; 401 and 429 document their headers. */
export function errors(...statuses: number[]): Record<string, Schema> {
  return Object.fromEntries(
    statuses.map((status) => {
      const response = answer(ERROR_DESCRIPTIONS[status] ?? "An error.", ref("Error"));
      if (status === 429) return [status, withHeaders(response, "Retry-After")];
      if (status === 401) return [status, withHeaders(response, "WWW-Authenticate")];
      return [status, response];
    }),
  );
}

/** What any state-changing request may get before its handler runs: bad JSON, a foreign Origin, too big, not JSON. */
export const unsafeMethodErrors = [400, 403, 413, 415] as const;

/** The security requirements of the contract's "who" column. */
export const security = {
  anyone: [],
  session: [{ sessionCookie: [] }],
  sessionWithCsrf: [{ sessionCookie: [], csrfToken: [] }],
  sessionOrBearer: [{ sessionCookie: [] }, { bearerToken: [] }],
  sessionWithCsrfOrBearer: [{ sessionCookie: [], csrfToken: [] }, { bearerToken: [] }],
} as const;

export const securitySchemes = {
  sessionCookie: {
    type: "apiKey",
    in: "cookie",
    name: "sid",
    description: "The session cookie set by sign-in: `sid`, or `__Host-sid` when NODE_ENV=production. HttpOnly, SameSite=Lax.",
  },
  csrfToken: {
    type: "apiKey",
    in: "header",
    name: "X-CSRF-Token",
    description:
      "The session's CSRF token (from sign-in or GET /csrf-token), required with the cookie on POST, PUT, PATCH and DELETE. `CSRF-Token` is accepted too.",
  },
  bearerToken: {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "An access token from POST /token, verifiable with /.well-known/jwks.json.",
  },
} as const;

export const idParam = (what: string): Schema => ({
  type: "object",
  properties: { id: { type: "string", description: what } },
  required: ["id"],
});
