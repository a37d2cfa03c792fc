import { isCommonPassword } from "./common-passwords.js";
import { LatchError } from "./errors.js";

/**
 * Username and password rules from the contract. All text is NFKC-normalised
 * first, so that visually identical compatibility forms (fullwidth letters,
 * ligatures) are one identity.
 */
export const USERNAME_PATTERN = /^[\p{L}\p{N}._-]{3,64}$/u;
export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 256;
const EMAIL_PATTERN = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+\.[^\s@<>()[\]\\,;:".]{2,}$/u;

export interface NormalisedUsername {
  /** For display. */
  username: string;
  /** For uniqueness and look-up. */
  key: string;
}

function invalid(field: string, message: string): LatchError {
  return new LatchError("invalid_input", message, { details: { field } });
}

/** Throws `invalid_input` unless `value` is a valid username. */
export function normaliseUsername(value: unknown): NormalisedUsername {
  if (typeof value !== "string") throw invalid("username", "username must be a string.");
  const username = value.normalize("NFKC");
  if (!USERNAME_PATTERN.test(username)) {
    throw invalid("username", "username must be 3 to 64 letters, digits, '.', '_' or '-'.");
  }
  return { username, key: username.toLowerCase() };
}

/** Throws `invalid_input` unless `value` is a plausible email address (max 254 characters). */
export function normaliseEmail(value: unknown): NormalisedUsername {
  if (typeof value !== "string") throw invalid("email", "email must be a string.");
  const email = value.normalize("NFKC").trim();
  if (email.length > 254 || !EMAIL_PATTERN.test(email)) throw invalid("email", "email is not a valid address.");
  return { username: email, key: email.toLowerCase() };
}

/** The key to look a user up by on sign-in: a username or an email, normalised. Null when it cannot match anyone. */
export function loginKey(value: unknown): string | null {
  if (typeof value !== "string" || value.length === 0 || value.length > 254) return null;
  return value.normalize("NFKC").trim().toLowerCase();
}

/** Normalises a password given at sign-in; null when it cannot be valid. */
export function normalisePassword(value: unknown): string | null {
  if (typeof value !== "string" || value.length === 0 || value.length > PASSWORD_MAX_LENGTH * 4) return null;
  return value.normalize("NFKC");
}

/**
 * Checks a new password against the contract's policy and returns it
 * NFKC-normalised. Length counts Unicode code points, not UTF-16 units.
 */
export function checkNewPassword(value: unknown, usernameKey: string, field = "password"): string {
  if (typeof value !== "string") throw invalid(field, `${field} must be a string.`);
  const password = value.normalize("NFKC");
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH) throw invalid(field, `${field} must be at least ${PASSWORD_MIN_LENGTH} characters.`);
  if (length > PASSWORD_MAX_LENGTH) throw invalid(field, `${field} must be at most ${PASSWORD_MAX_LENGTH} characters.`);
  if (password.toLowerCase() === usernameKey) throw invalid(field, `${field} must not be the username.`);
  if (isCommonPassword(password)) throw invalid(field, `${field} is too common; choose another.`);
  return password;
}
