import { answer, errors, idParam, noBody, ref, security, unsafeMethodErrors, withHeaders } from "../api-schemas.js";

/**
 * The OpenAPI descriptions of the second-factor and passkey routes, in the
 * conventions of src/server/api-schemas.ts (shared components, the shared
 * Error shape, security per the contract's "who" column). They describe;
 * handlers validate (src/server/openapi.ts says why).
 */

const password = { type: "object", properties: { password: { type: "string" } }, required: ["password"] } as const;
const webAuthnResponse = {
  type: "object",
  description: "What PublicKeyCredential.toJSON() gives in the browser.",
  additionalProperties: true,
} as const;

export const secondFactorSchemas = {
  status: {
    operationId: "getSecondFactors",
    summary: "Which second factors the signed-in user has (not in the contract: what the account page shows)",
    tags: ["second factors"],
    security: security.session,
    response: {
      200: answer("TOTP on or off, a setup pending, recovery codes left, passkeys.", {
        type: "object",
        properties: {
          totp: { type: "boolean" },
          totpSetupPending: { type: "boolean" },
          recoveryCodesLeft: { type: "integer", minimum: 0 },
          passkeys: { type: "integer", minimum: 0 },
        },
        required: ["totp", "totpSetupPending", "recoveryCodesLeft", "passkeys"],
        additionalProperties: false,
      }),
      ...errors(401, 503),
    },
  },
  begin: {
    operationId: "beginTotpSetup",
    summary: "Start setting up TOTP: a new secret and its otpauth:// URI, pending until confirmed",
    tags: ["second factors"],
    security: security.sessionWithCsrf,
    response: {
      200: answer("The secret (base32, 160 bits) and its URI; sign-in is unchanged until confirmed.", {
        type: "object",
        properties: { secret: { type: "string", pattern: "^[A-Z2-7]{32,}$" }, uri: { type: "string", pattern: "^otpauth://totp/" } },
        required: ["secret", "uri"],
        additionalProperties: false,
      }),
      ...errors(...unsafeMethodErrors, 401, 503),
    },
  },
  confirm: {
    operationId: "confirmTotpSetup",
    summary: "Confirm the pending TOTP with a code from it",
    tags: ["second factors"],
    security: security.sessionWithCsrf,
    body: {
      type: "object",
      properties: { code: { type: "string", description: "6 digits from the authenticator app." } },
      required: ["code"],
    },
    response: {
      200: answer("The 10 recovery codes, shown once; sign-in now needs a second step.", ref("RecoveryCodes")),
      ...errors(...unsafeMethodErrors, 401, 503),
    },
  },
  disable: {
    operationId: "disableTotp",
    summary: "Turn TOTP off (its recovery codes become void)",
    tags: ["second factors"],
    security: security.sessionWithCsrf,
    body: password,
    response: { 204: noBody("TOTP off."), ...errors(...unsafeMethodErrors, 401, 429, 503) },
  },
  recoveryCodes: {
    operationId: "regenerateRecoveryCodes",
    summary: "Ten new recovery codes; the old ones become void",
    tags: ["second factors"],
    security: security.sessionWithCsrf,
    body: password,
    response: { 200: answer("The new codes, shown once.", ref("RecoveryCodes")), ...errors(...unsafeMethodErrors, 401, 429, 503) },
  },
  completeSignIn: {
    operationId: "completeSignIn",
    summary: "The second step of a password sign-in: a TOTP code or a recovery code",
    description:
      "Authenticated by the pending sign-in's cookie that POST /login set; no CSRF token (as POST /login), the Origin checks apply. Five wrong codes end the pending sign-in.",
    tags: ["second factors"],
    security: security.session,
    body: { type: "object", properties: { code: { type: "string" }, recoveryCode: { type: "string" } } },
    response: {
      200: withHeaders(answer("Signed in: a new session (never the pending one promoted).", ref("SignedIn")), "Set-Cookie"),
      ...errors(...unsafeMethodErrors, 401, 429, 503),
    },
  },
} as const;

export const passkeySchemas = {
  registerOptions: {
    operationId: "passkeyRegistrationOptions",
    summary: "Options for navigator.credentials.create(): a new passkey for this user (their existing ones excluded)",
    tags: ["passkeys"],
    security: security.sessionWithCsrf,
    response: {
      200: withHeaders(answer("The options; the challenge is bound to this browser by a cookie.", ref("WebAuthnOptions")), "Set-Cookie"),
      ...errors(...unsafeMethodErrors, 401, 503),
    },
  },
  register: {
    operationId: "registerPasskey",
    summary: "Register a passkey: the browser's response to the options this browser was given",
    tags: ["passkeys"],
    security: security.sessionWithCsrf,
    body: {
      type: "object",
      properties: { response: webAuthnResponse, name: { type: "string", minLength: 1, maxLength: 64 } },
      required: ["response"],
    },
    response: {
      201: answer("Registered.", {
        type: "object",
        properties: { passkey: ref("Passkey") },
        required: ["passkey"],
        additionalProperties: false,
      }),
      ...errors(...unsafeMethodErrors, 401, 409, 503),
    },
  },
  list: {
    operationId: "listPasskeys",
    summary: "The signed-in user's passkeys",
    tags: ["passkeys"],
    security: security.session,
    response: {
      200: answer("Oldest first.", {
        type: "object",
        properties: { passkeys: { type: "array", items: ref("Passkey") } },
        required: ["passkeys"],
        additionalProperties: false,
      }),
      ...errors(401, 503),
    },
  },
  rename: {
    operationId: "renamePasskey",
    summary: "Rename one of the signed-in user's passkeys (not in the contract)",
    tags: ["passkeys"],
    security: security.sessionWithCsrf,
    params: idParam("The passkey's id (from GET /passkeys)."),
    body: { type: "object", properties: { name: { type: "string", minLength: 1, maxLength: 64 } }, required: ["name"] },
    response: {
      200: answer("Renamed.", {
        type: "object",
        properties: { passkey: ref("Passkey") },
        required: ["passkey"],
        additionalProperties: false,
      }),
      ...errors(...unsafeMethodErrors, 401, 404, 503),
    },
  },
  remove: {
    operationId: "deletePasskey",
    summary: "Remove one of the signed-in user's passkeys; another user's or an unknown id is 404",
    tags: ["passkeys"],
    security: security.sessionWithCsrf,
    params: idParam("The passkey's id (from GET /passkeys)."),
    response: { 204: noBody("Removed."), ...errors(...unsafeMethodErrors, 401, 404, 503) },
  },
  signInOptions: {
    operationId: "passkeySignInOptions",
    summary: "Options for navigator.credentials.get() (no allowCredentials), the challenge bound to this browser",
    tags: ["passkeys"],
    security: security.anyone,
    response: {
      200: withHeaders(answer("The options.", ref("WebAuthnOptions")), "Set-Cookie"),
      ...errors(...unsafeMethodErrors, 429, 503),
    },
  },
  signIn: {
    operationId: "signInWithPasskey",
    summary: "Sign in with a passkey: a full sign-in (amr hwk, mfa), no TOTP step",
    tags: ["passkeys"],
    security: security.anyone,
    body: { type: "object", properties: { response: webAuthnResponse }, required: ["response"] },
    response: {
      200: withHeaders(answer("Signed in: a new session cookie.", ref("SignedIn")), "Set-Cookie"),
      ...errors(...unsafeMethodErrors, 401, 429, 503),
    },
  },
} as const;
