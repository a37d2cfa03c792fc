import { sha256, toBase64Url } from "./encoding.js";
import type { Runtime } from "./runtime.js";
import type { AccountToken, AccountTokenPurpose } from "./store.js";

/** A reset link works for 30 minutes (the contract). */
export const RESET_TOKEN_TTL_MS = 30 * 60_000;
/** A verification link works for 24 hours (the contract). */
export const VERIFY_TOKEN_TTL_MS = 24 * 60 * 60_000;

/** 32 random bytes as unpadded base64url: always 43 characters. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface IssuedAccountToken {
  /** The text that goes into the link's fragment. Never stored, never logged. */
  token: string;
  /** What the store keeps: the hash, never the token. */
  record: AccountToken;
}

/**
 * A new single-use account token: 256 bits from the CSPRNG (twice the
 * contract's floor, and the same shape as a session secret), URL-safe.
 *
 * @example
 * const { token, record } = issueAccountToken(runtime, { purpose: "reset", userId: user.id, emailKey: null });
 */
export function issueAccountToken(
  runtime: Runtime,
  options: { purpose: AccountTokenPurpose; userId: string; emailKey: string | null },
): IssuedAccountToken {
  const bytes = new Uint8Array(32);
  runtime.random(bytes);
  const token = toBase64Url(bytes);
  const now = runtime.clock.now();
  const ttl = options.purpose === "reset" ? RESET_TOKEN_TTL_MS : VERIFY_TOKEN_TTL_MS;
  return {
    token,
    record: {
      hash: sha256(token),
      purpose: options.purpose,
      userId: options.userId,
      emailKey: options.emailKey,
      createdAt: now,
      expiresAt: now + ttl,
    },
  };
}

/**
 * The hash to look a presented token up by, or null when the text cannot be
 * a token (checked before any I/O, so junk costs nothing). The look-up is by
 * the hash as primary key: the database compares hashes, never the secret,
 * so there is no timing signal about the token itself.
 *
 * @example
 * const hash = accountTokenHash(body.token); // null → 400 invalid_input
 */
export function accountTokenHash(value: unknown): Uint8Array | null {
  if (typeof value !== "string" || !TOKEN_PATTERN.test(value)) return null;
  return sha256(value);
}
