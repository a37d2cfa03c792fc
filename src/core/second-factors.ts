import { openText, sealText } from "./key-sealing.js";
import type { Runtime } from "./runtime.js";
import type { SecondFactorStore } from "./store.js";
import {
  generateRecoveryCodes,
  generateTotpSecret,
  hashRecoveryCode,
  isRecoveryCodeShape,
  matchTotp,
  normaliseCode,
  totpUri,
} from "./totp.js";

/** How a second factor was proven. */
export type SecondFactorMethod = "totp" | "recovery_code";

export interface SecondFactorProof {
  code?: unknown;
  recoveryCode?: unknown;
}

export interface TotpSetup {
  /** Base32, shown to the user once (with the URI) to put in their app. */
  secret: string;
  uri: string;
}

export interface SecondFactors {
  /** Starts (or restarts) a TOTP setup; the confirmed TOTP, if any, stays in force until the new one is confirmed. */
  beginTotp(user: { id: string; username: string }): Promise<TotpSetup | null>;
  /** Confirms the pending setup with a code from it: the new recovery codes, or null for a wrong code or no setup. */
  confirmTotp(userId: string, code: string): Promise<string[] | null>;
  /** True when the user has a confirmed TOTP (so a password sign-in needs a second step). */
  hasTotp(userId: string): Promise<boolean>;
  /**
   * Checks a TOTP code or a recovery code and uses it up: the method that
   * matched, or null (wrong, malformed, replayed, or no TOTP).
   */
  verify(userId: string, proof: SecondFactorProof): Promise<SecondFactorMethod | null>;
  /** Ten new recovery codes; the old ones void. */
  regenerateRecoveryCodes(userId: string): Promise<string[]>;
}

const VARIABLE = { name: "MFA_KEY_SECRET", what: "TOTP secret" };

/**
 * TOTP and recovery codes over a {@link SecondFactorStore}: secrets sealed
 * at rest with `keySecret` (AES-256-GCM, the user id as associated data; see
 * key-sealing.ts), codes checked ±1 step and accepted once per account.
 *
 * @example
 * const factors = createSecondFactors({ store: stores.secondFactors, runtime, keySecret: config.mfaKeySecret });
 * const method = await factors.verify(user.id, { code: "123456" }); // "totp" | "recovery_code" | null
 */
export function createSecondFactors(options: { store: SecondFactorStore; runtime: Runtime; keySecret: string | null }): SecondFactors {
  const { store, runtime, keySecret } = options;
  const seal = (base32: string, userId: string): string =>
    keySecret === null ? base32 : sealText(base32, userId, keySecret, runtime.random, "latch-totp-secrets");
  const open = (stored: string, userId: string): string => openText(stored, userId, keySecret, "latch-totp-secrets", VARIABLE);

  async function newRecoveryCodes(userId: string): Promise<{ codes: string[]; hashes: string[] }> {
    const codes = generateRecoveryCodes(runtime.random);
    return { codes, hashes: codes.map((c) => hashRecoveryCode(userId, c)) };
  }

  return {
    async beginTotp(user) {
      const secret = generateTotpSecret(runtime.random);
      if (!(await store.beginTotp(user.id, seal(secret, user.id), runtime.clock.now()))) return null;
      return { secret, uri: totpUri(secret, user.username) };
    },

    async confirmTotp(userId, code) {
      const row = await store.findTotp(userId);
      if (row === null || row.pendingSecret === null) return null;
      const now = runtime.clock.now();
      const step = matchTotp(open(row.pendingSecret, userId), normaliseCode(code), now);
      if (step === null) return null;
      const { codes, hashes } = await newRecoveryCodes(userId);
      // The confirming code's step is recorded as used, so it cannot also sign in.
      return (await store.confirmTotp(userId, row.pendingSecret, step, hashes, now)) ? codes : null;
    },

    async hasTotp(userId) {
      const row = await store.findTotp(userId);
      return row !== null && row.secret !== null;
    },

    async verify(userId, proof) {
      if (typeof proof.code === "string") {
        const row = await store.findTotp(userId);
        if (row === null || row.secret === null) return null;
        const step = matchTotp(open(row.secret, userId), normaliseCode(proof.code), runtime.clock.now());
        // A code's step is used once: the store's compare-and-set decides
        // between two requests racing with the same code.
        return step !== null && (await store.useTotpStep(userId, step)) ? "totp" : null;
      }
      if (typeof proof.recoveryCode === "string") {
        if (!isRecoveryCodeShape(proof.recoveryCode)) return null;
        return (await store.useRecoveryCode(userId, hashRecoveryCode(userId, proof.recoveryCode))) ? "recovery_code" : null;
      }
      return null;
    },

    async regenerateRecoveryCodes(userId) {
      const { codes, hashes } = await newRecoveryCodes(userId);
      await store.replaceRecoveryCodes(userId, hashes);
      return codes;
    },
  };
}
