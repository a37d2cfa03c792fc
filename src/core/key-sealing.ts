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

function derive(secret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), Buffer.from("latch-signing-keys"), Buffer.from("aes-256-gcm"), 32));
}

export function isSealed(stored: string): boolean {
  return stored.startsWith(PREFIX);
}

export function sealPrivateKey(privateJwk: string, kid: string, secret: string, random: RandomReader): string {
  const iv = new Uint8Array(12);
  random(iv);
  const cipher = createCipheriv("aes-256-gcm", derive(secret), iv);
  cipher.setAAD(Buffer.from(kid));
  const ciphertext = Buffer.concat([cipher.update(privateJwk, "utf8"), cipher.final()]);
  return `${PREFIX}${Buffer.from(iv).toString("base64url")}.${ciphertext.toString("base64url")}.${cipher.getAuthTag().toString("base64url")}`;
}

/** The private JWK as JSON; plain stored keys pass through unchanged. */
export function openPrivateKey(stored: string, kid: string, secret: string | null): string {
  if (!isSealed(stored)) return stored;
  if (secret === null) {
    throw new LatchError("unavailable", "The signing keys are sealed and TOKEN_KEY_SECRET is not set.");
  }
  const [iv = "", ciphertext = "", tag = ""] = stored.slice(PREFIX.length).split(".");
  try {
    const decipher = createDecipheriv("aes-256-gcm", derive(secret), Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(kid));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]).toString("utf8");
  } catch (error) {
    throw new LatchError("unavailable", "A signing key could not be unsealed: TOKEN_KEY_SECRET does not match the one it was sealed with.", { cause: error });
  }
}
