import { createHmac } from "node:crypto";
import { constantTimeEqual, sha256, toBase64Url } from "./encoding.js";
import type { RandomReader } from "./runtime.js";

/**
 * A session token is `<id>.<secret>`.
 *
 * - `id` (30 characters) is the session's public handle and its lookup key. Its
 *   first {@link SLOT_TAG_LENGTH} characters are derived from the user id, so
 *   that every session of a user shares a Redis Cluster hash slot with the
 *   user's session index; the remaining 22 characters are 128 random bits.
 * - `secret` (43 characters) is 256 random bits. Only SHA-256(secret) is
 *   stored, so a copy of the store cannot be replayed as cookies.
 *
 * The design follows lucia's `id.secret` sessions: the id finds the row, the
 * secret is checked in constant time against the stored hash.
 */
export const SLOT_TAG_LENGTH = 8;
export const SESSION_ID_LENGTH = SLOT_TAG_LENGTH + 22;
export const SESSION_SECRET_LENGTH = 43;
export const SESSION_TOKEN_LENGTH = SESSION_ID_LENGTH + 1 + SESSION_SECRET_LENGTH;

const ID_PATTERN = /^[A-Za-z0-9_-]{30}$/;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{30}\.[A-Za-z0-9_-]{43}$/;

export interface SessionToken {
  id: string;
  secret: string;
}

export interface IssuedToken extends SessionToken {
  /** The cookie value: `id.secret`. Never stored, never logged. */
  token: string;
  /** SHA-256 of the secret: what the store keeps. */
  secretHash: Buffer;
}

/** The hash-slot tag shared by all sessions of one user. */
export function slotTagFor(userId: string): string {
  return toBase64Url(sha256(`latch-slot:${userId}`)).slice(0, SLOT_TAG_LENGTH);
}

/** Creates a fresh session token for a user from the CSPRNG. */
export function issueSessionToken(userId: string, random: RandomReader): IssuedToken {
  const idBytes = new Uint8Array(16);
  const secretBytes = new Uint8Array(32);
  random(idBytes);
  random(secretBytes);
  const id = slotTagFor(userId) + toBase64Url(idBytes);
  const secret = toBase64Url(secretBytes);
  return { id, secret, token: `${id}.${secret}`, secretHash: hashSessionSecret(secret) };
}

/**
 * Splits a cookie value into id and secret, or returns null when it is not a
 * well-formed token; malformed input is rejected here, before any I/O.
 */
export function parseSessionToken(value: string | undefined | null): SessionToken | null {
  if (typeof value !== "string" || value.length !== SESSION_TOKEN_LENGTH || !TOKEN_PATTERN.test(value)) {
    return null;
  }
  return { id: value.slice(0, SESSION_ID_LENGTH), secret: value.slice(SESSION_ID_LENGTH + 1) };
}

/** True when `value` has the shape of a session's public handle. */
export function isSessionId(value: unknown): value is string {
  return typeof value === "string" && ID_PATTERN.test(value);
}

export function hashSessionSecret(secret: string): Buffer {
  return sha256(secret);
}

/** Constant-time check of a presented secret against the stored hash. */
export function verifySessionSecret(secret: string, storedHash: Uint8Array): boolean {
  return constantTimeEqual(hashSessionSecret(secret), storedHash);
}

/**
 * The session's CSRF token: HMAC-SHA256 keyed by the session secret. It is
 * derived, so nothing extra is stored; only the holder of the cookie (and the
 * server while it handles a request) can compute it; and a new session id
 * (sign-in, password change) gives a new token by construction.
 */
export function csrfTokenFor(secret: string): string {
  return createHmac("sha256", secret).update("latch:csrf:v1").digest("base64url");
}

/** Constant-time check of a presented CSRF token. */
export function verifyCsrfToken(secret: string, presented: unknown): boolean {
  if (typeof presented !== "string" || presented.length !== 43) return false;
  return constantTimeEqual(Buffer.from(csrfTokenFor(secret)), Buffer.from(presented));
}
