import { createCipheriv, createDecipheriv, hkdfSync } from "node:crypto";
import { LatchError } from "./errors.js";
import type { RandomReader } from "./runtime.js";

/**
 * Private signing keys at rest. With a TOKEN_KEY_SECRET configured, each
 * private JWK is sealed with AES-256-GCM under a key derived from the secret
 * (HKDF-SHA256), the key id bound in as associated data; a copy of the
 * database then holds no usable signing key, so it cannot mint tokens.
 * Without a secret, keys are stored as plain JWK and the database must be
 * protected like the secret it then is (see docs/threat-model.md).
 *
 * Format: `sealed:v1:<iv>.<ciphertext>.<tag>`, each part base64url.
 */
const PREFIX = "sealed:v1:";

/** What a sealed value is for: each purpose gets its own key from the secret (HKDF salt), so one kind can never be opened as another. */
export type SealingPurpose = "latch-signing-keys" | "latch-totp-secrets";

function derive(secret: string, purpose: SealingPurpose = "latch-signing-keys"): Buffer {
  return Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), Buffer.from(purpose), Buffer.from("aes-256-gcm"), 32));
}

export function isSealed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

export function sealPrivateKey(privateJwk: string, kid: string, secret: string, random: RandomReader): string {
  return sealText(privateJwk, kid, secret, random, "latch-signing-keys");
}

/**
 * Seals `text` under a key derived from `secret` for `purpose`, binding
 * `context` (a key id, a user id) as associated data: a sealed value moved
 * to another row does not open.
 *
 * @example
 * const stored = sealText(base32Secret, user.id, config.mfaKeySecret, runtime.random, "latch-totp-secrets");
 */
export function sealText(text: string, context: string, secret: string, random: RandomReader, purpose: SealingPurpose): string {
  const iv = new Uint8Array(12);
  random(iv);
  const cipher = createCipheriv("aes-256-gcm", derive(secret, purpose), iv);
  cipher.setAAD(Buffer.from(context));
  const ciphertext = Buffer.concat([cipher.update(text, "utf8"), cipher.final()]);
  return `${PREFIX}${Buffer.from(iv).toString("base64url")}.${ciphertext.toString("base64url")}.${cipher.getAuthTag().toString("base64url")}`;
}

/** The private JWK as JSON; plain stored keys pass through unchanged. */
export function openPrivateKey(stored: string, kid: string, secret: string | null): string {
  return openText(stored, kid, secret, "latch-signing-keys", { name: "TOKEN_KEY_SECRET", what: "signing key" });
}

/**
 * Opens a value from {@link sealText}; plain stored values pass through
 * unchanged. Throws `unavailable` (naming `variable`) when the secret is
 * missing or is not the one it was sealed with.
 *
 * @example
 * const base32 = openText(row.secret, user.id, config.mfaKeySecret, "latch-totp-secrets", { name: "MFA_KEY_SECRET", what: "TOTP secret" });
 */
export function openText(
  stored: string,
  context: string,
  secret: string | null,
  purpose: SealingPurpose,
  variable: { name: string; what: string },
): string {
  if (!isSealed(stored)) return stored;
  if (secret === null) {
    throw new LatchError("unavailable", `A ${variable.what} is sealed and ${variable.name} is not set.`);
  }
  const [iv = "", ciphertext = "", tag = ""] = stored.slice(PREFIX.length).split(".");
  try {
    const decipher = createDecipheriv("aes-256-gcm", derive(secret, purpose), Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
  } catch (error) {
    throw new LatchError(
      "unavailable",
      `A ${variable.what} could not be unsealed: ${variable.name} does not match the one it was sealed with.`,
      { cause: error },
    );
  }
}
