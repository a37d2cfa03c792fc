import { hash, timingSafeEqual } from "node:crypto";

/** URL-safe base64 without padding. */
export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

/** SHA-256 in one call (no Hash object: about half the cost of createHash on the hot path). */
export function sha256(input: string | Uint8Array): Buffer {
  return hash("sha256", input, "buffer");
}

/**
 * Constant-time equality of two byte strings. Lengths are not secret here
 * (every stored hash is 32 bytes), so a length mismatch returns early.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return timingSafeEqual(a, b);
}

/** Constant-time equality of two strings, compared as UTF-8. */
export function constantTimeEqualStrings(a: string, b: string): boolean {
  // Hash both sides first: equal-length inputs for timingSafeEqual without
  // leaking the expected length through an early return.
  return timingSafeEqual(sha256(a), sha256(b));
}

/**
 * Constant-time equality of two strings of code units, without hashing:
 * every position is compared, whatever differs first. For secrets whose
 * length is public (a session secret is always 43 characters), so a length
 * mismatch returns early.
 */
export function constantTimeEqualText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
