import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from "@simplewebauthn/server";
import type {
  AuthenticationResponseJSON,
  AuthenticatorTransport,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from "@simplewebauthn/server";
import type { RandomReader } from "./runtime.js";
import type { Passkey } from "./store.js";

/**
 * WebAuthn ceremonies for passkeys, through @simplewebauthn/server (the
 * attestation, CBOR, COSE and signature work is its). Latch's rules: the
 * relying party is PUBLIC_URL (its host the RP ID, its origin the only
 * expected origin), credentials are discoverable (resident keys) and user
 * verification is required, so a passkey alone is two factors (something
 * held, and a PIN or biometric): `amr` `["hwk", "mfa"]`.
 */

export interface RelyingParty {
  id: string;
  name: string;
  origin: string;
}

/** The relying party of a PUBLIC_URL. */
export function relyingPartyOf(publicUrl: string): RelyingParty {
  const url = new URL(publicUrl);
  return { id: url.hostname, name: "Latch", origin: url.origin };
}

/** How long a challenge may be answered. The contract's bound is 5 minutes. */
export const CHALLENGE_TTL_MS = 5 * 60_000;

function challengeBytes(random: RandomReader): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(32);
  random(bytes);
  return bytes;
}

/**
 * Options for `navigator.credentials.create()`: this user's new passkey,
 * their existing ones excluded.
 */
export async function registrationOptions(
  rp: RelyingParty,
  user: { id: string; username: string },
  existing: readonly Passkey[],
  random: RandomReader,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: user.username,
    userDisplayName: user.username,
    // The user handle: the user id's bytes, which sign-in maps back to the account.
    userID: new TextEncoder().encode(user.id),
    challenge: challengeBytes(random),
    timeout: CHALLENGE_TTL_MS,
    attestationType: "none",
    excludeCredentials: existing.map((p) => ({ id: p.credentialId, transports: p.transports as AuthenticatorTransport[] })),
    authenticatorSelection: { residentKey: "required", requireResidentKey: true, userVerification: "required" },
  });
}

/** The credential a verified registration yields, or null when it does not verify. */
export async function verifyRegistration(
  rp: RelyingParty,
  response: unknown,
  expectedChallenge: string,
): Promise<{ credentialId: string; publicKey: Uint8Array; counter: number; transports: string[] } | null> {
  try {
    const result = await verifyRegistrationResponse({
      response: response as RegistrationResponseJSON,
      expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
    });
    if (!result.verified || result.registrationInfo === undefined) return null;
    const { credential } = result.registrationInfo;
    return {
      credentialId: credential.id,
      publicKey: credential.publicKey,
      counter: credential.counter,
      transports: credential.transports ?? [],
    };
  } catch {
    // Malformed or forged: the library throws for every way a response can be wrong.
    return null;
  }
}

/** Options for `navigator.credentials.get()`: no allowCredentials, so the browser offers the user's discoverable passkeys. */
export async function authenticationOptions(rp: RelyingParty, random: RandomReader): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return generateAuthenticationOptions({
    rpID: rp.id,
    challenge: challengeBytes(random),
    timeout: CHALLENGE_TTL_MS,
    userVerification: "required",
    allowCredentials: [],
  });
}

/** The credential id a sign-in response names, or null when it is not shaped like one. */
export function assertionCredentialId(response: unknown): string | null {
  if (typeof response !== "object" || response === null) return null;
  const id = (response as { id?: unknown }).id;
  return typeof id === "string" && /^[A-Za-z0-9_-]{1,1366}$/.test(id) ? id : null;
}

/**
 * Verifies a sign-in with `passkey`: the new signature counter, or null
 * when the assertion does not verify (wrong challenge, origin, RP,
 * signature, no user verification, or a counter that did not move forward
 * for an authenticator that keeps one).
 */
export async function verifyAssertion(
  rp: RelyingParty,
  response: unknown,
  expectedChallenge: string,
  passkey: Passkey,
): Promise<number | null> {
  try {
    const result = await verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: true,
      credential: {
        id: passkey.credentialId,
        publicKey: new Uint8Array(passkey.publicKey),
        counter: passkey.counter,
        transports: passkey.transports as AuthenticatorTransport[],
      },
    });
    if (!result.verified || !result.authenticationInfo.userVerified) return null;
    return result.authenticationInfo.newCounter;
  } catch {
    return null;
  }
}
