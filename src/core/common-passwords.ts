import { dictionary } from "@zxcvbn-ts/language-common";

/**
 * The ~49,000 most common passwords from zxcvbn-ts's maintained list
 * (its sources include the top of several large breach corpora). Built once,
 * lazily, on first use.
 */
let commonPasswords: Set<string> | undefined;

export function isCommonPassword(password: string): boolean {
  commonPasswords ??= new Set((dictionary["passwords-common"] as string[]).map((p) => p.toLowerCase()));
  return commonPasswords.has(password.toLowerCase());
}
