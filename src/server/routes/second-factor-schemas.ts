/**
 * JSON schemas of the second-factor and passkey routes, for Fastify's input
 * validation and the OpenAPI document. Objects the contract defines
 * elsewhere (the user) allow further properties, so a field added to them
 * later is not stripped by the response serializer.
 */

export const errorSchema = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: { code: { type: "string" }, message: { type: "string" } },
    },
  },
} as const;

/** The error responses of `statuses`, each the contract's error shape. */
export function errors(...statuses: number[]): Record<number, typeof errorSchema> {
  return Object.fromEntries(statuses.map((status) => [status, errorSchema]));
}

export const userSchema = {
  type: "object",
  required: ["id", "username", "email", "roles", "mfa", "createdAt"],
  additionalProperties: true,
  properties: {
    id: { type: "string" },
    username: { type: "string" },
    email: { type: ["string", "null"] },
    roles: { type: "array", items: { type: "string" } },
    mfa: { type: "boolean" },
    createdAt: { type: "string", format: "date-time" },
  },
} as const;

export const signedInSchema = {
  type: "object",
  required: ["user", "csrfToken"],
  properties: { user: userSchema, csrfToken: { type: "string" } },
} as const;

export const recoveryCodesSchema = {
  type: "object",
  required: ["recoveryCodes"],
  properties: { recoveryCodes: { type: "array", items: { type: "string" }, minItems: 10, maxItems: 10 } },
} as const;

export const passwordBodySchema = {
  type: "object",
  required: ["password"],
  properties: { password: { type: "string", maxLength: 1024 } },
} as const;

export const codeBodySchema = {
  type: "object",
  properties: { code: { type: "string", maxLength: 64 }, recoveryCode: { type: "string", maxLength: 64 } },
} as const;

export const passkeySchema = {
  type: "object",
  required: ["id", "name", "createdAt", "lastUsedAt"],
  properties: {
    id: { type: "string" },
    name: { type: "string" },
    createdAt: { type: "string", format: "date-time" },
    lastUsedAt: { type: ["string", "null"], format: "date-time" },
  },
} as const;

/** WebAuthn's options and responses are the browser's JSON forms: objects whose inner shape the WebAuthn spec and @simplewebauthn define. */
export const webAuthnJsonSchema = { type: "object", additionalProperties: true } as const;

export const idParamsSchema = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "string", maxLength: 200 } },
} as const;

// The OpenAPI fields routes declare (as @fastify/swagger declares them, so the two merge).
declare module "fastify" {
  interface FastifySchema {
    tags?: readonly string[];
    summary?: string;
    description?: string;
    operationId?: string;
  }
}
