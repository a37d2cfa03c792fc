import { Secret, TOTP } from "otpauth";
import { sha256 } from "./encoding.js";
import type { RandomReader } from "./runtime.js";

/**
 * TOTP (RFC 6238) as authenticator apps expect it: SHA-1, 6 digits, 30 s
 * steps, a 160-bit secret (RFC 4226 §4's recommended length). The code
 * arithmetic is otpauth's (a maintained library); this file only fixes the
 * parameters and turns "valid within ±1 step" into the step number, which
 * the store keeps so that each code is accepted once per account.
 */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
export const TOTP_ISSUER = "Latch";
const SECRET_BYTES = 20;

/** A fresh secret, base32 (32 characters for 160 bits). */
export function generateTotpSecret(random: RandomReader): string {
  const bytes = new Uint8Array(SECRET_BYTES);
  random(bytes);
  return new Secret({ buffer: bytes.buffer }).base32;
}

function totpFor(base32: string, label: string): TOTP {
  return new TOTP({
    issuer: TOTP_ISSUER,
    label,
    algorithm: "SHA1",
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
    secret: Secret.fromBase32(base32),
  });
}

/**
 * The `otpauth://totp/Latch:<label>?secret=…&issuer=Latch…` URI an
 * authenticator app scans.
 *
 * @example
 * totpUri(secret, "alice"); // "otpauth://totp/Latch:alice?issuer=Latch&secret=…&algorithm=SHA1&digits=6&period=30"
 */
export function totpUri(base32: string, label: string): string {
  return totpFor(base32, label).toString();
}

/** The RFC 6238 time step of `now` (ms). */
export function totpStep(now: number): number {
  return Math.floor(now / 1000 / TOTP_PERIOD_SECONDS);
}

/**
 * The time step whose code `code` is, within one step either side of `now`,
 * or null. Malformed input (not 6 digits) is refused before any HMAC. The
 * comparison is otpauth's constant-time one.
 *
 * @example
 * const step = matchTotp(secret, "123456", Date.now()); // null, or the step to record as used
 */
export function matchTotp(base32: string, code: string, now: number): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const delta = TOTP.validate({
    token: code,
    secret: Secret.fromBase32(base32),
    algorithm: "SHA1",
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
    timestamp: now,
    window: 1,
  });
  return delta === null ? null : totpStep(now) + delta;
}

/** A code's text as people type it: spaces and dashes dropped. */
export function normaliseCode(value: string): string {
  return value.replace(/[\s-]/g, "");
}

const RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"; // no 0/o, 1/l/i: read aloud or copied by hand
export const RECOVERY_CODE_COUNT = 10;
const RECOVERY_CODE_LENGTH = 16;

/**
 * Ten single-use recovery codes, `xxxx-xxxx-xxxx-xxxx` from a 31-letter
 * alphabet: 79 bits each, so a hash of one cannot be reversed by search and
 * SHA-256 suffices (unlike passwords, which need argon2id because people
 * choose them).
 */
export function generateRecoveryCodes(random: RandomReader): string[] {
  const codes: string[] = [];
  const bytes = new Uint8Array(RECOVERY_CODE_LENGTH * 2);
  while (codes.length < RECOVERY_CODE_COUNT) {
    random(bytes);
    let text = "";
    // Rejection sampling keeps every letter equally likely (256 is not a multiple of 31).
    for (const byte of bytes) {
      if (byte >= 248) continue;
      text += RECOVERY_ALPHABET[byte % RECOVERY_ALPHABET.length];
      if (text.length === RECOVERY_CODE_LENGTH) break;
    }
    if (text.length < RECOVERY_CODE_LENGTH) continue;
    codes.push(text.match(/.{4}/g)!.join("-"));
  }
  return codes;
}

/**
 * What the store keeps of a recovery code: hex SHA-256 of the user id and the
 * normalised code (lower case, no dashes or spaces), so the same code of two
 * users hashes apart.
 */
export function hashRecoveryCode(userId: string, code: string): string {
  return sha256(`latch-recovery-code\0${userId}\0${normaliseCode(code).toLowerCase()}`).toString("hex");
}

/** True for input shaped like a recovery code (checked before any I/O). */
export function isRecoveryCodeShape(code: string): boolean {
  return new RegExp(`^[${RECOVERY_ALPHABET}]{${RECOVERY_CODE_LENGTH}}$`).test(normaliseCode(code).toLowerCase());
}
