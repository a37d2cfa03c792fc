import type { FastifyRequest } from "fastify";
import { LatchError } from "../core/errors.js";
import type { Session, User } from "../core/store.js";

/** Timestamps leave the server as ISO 8601 strings. */
export const iso = (ms: number): string => new Date(ms).toISOString();

/** The contract's user object: `{id, username, email, emailVerified, roles, mfa, createdAt}`; never a hash. */
export function userJson(user: User): {
  id: string;
  username: string;
  email: string | null;
  emailVerified: boolean;
  roles: string[];
  mfa: boolean;
  createdAt: string;
} {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    emailVerified: user.emailVerified,
    roles: user.roles,
    mfa: user.mfa,
    createdAt: iso(user.createdAt),
  };
}

const userTexts = new WeakMap<User, string>();

/**
 * {@link userJson} as JSON text, remembered per user object. The session
 * cache hands the same user object to every request of a session until the
 * user changes (a role change or deletion replaces it), so the hot path
 * (GET /protected, /dashboard) serialises nothing. User objects are never
 * mutated in place; a changed user is a new object.
 */
export function userJsonText(user: User): string {
  let text = userTexts.get(user);
  if (text === undefined) {
    text = JSON.stringify(userJson(user));
    userTexts.set(user, text);
  }
  return text;
}

export function sessionJson(session: Session): {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  idleExpiresAt: string;
  absoluteExpiresAt: string;
  amr: string[];
} {
  return {
    id: session.id,
    createdAt: iso(session.createdAt),
    lastSeenAt: iso(session.lastSeenAt),
    idleExpiresAt: iso(session.idleExpiresAt),
    absoluteExpiresAt: iso(session.absoluteExpiresAt),
    amr: [...session.amr],
  };
}

/** The JSON body as a plain object, or `invalid_input`. */
export function bodyObject(request: FastifyRequest): Record<string, unknown> {
  const body = request.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new LatchError("invalid_input", "The request body must be a JSON object.");
  }
  return body as Record<string, unknown>;
}
