import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { isoCBOR } from "@simplewebauthn/server/helpers";

/**
 * A WebAuthn authenticator in software, for tests and benchmarks that run
 * without a browser (the browser tests use Chromium's virtual authenticator):
 * one ES256 credential, user presence and verification always asserted,
 * "none" attestation, and the JSON a browser's `PublicKeyCredential.toJSON()`
 * gives. Only what the WebAuthn spec (§6.1 authenticator data, §6.5
 * attestation objects) requires, written out because no maintained package
 * emulates an authenticator outside a browser.
 */
export interface SoftwareAuthenticator {
  credentialId: string;
  /** `navigator.credentials.create()`'s answer to `challenge` for `origin`. */
  register(options: { challenge: string; rpId: string; origin: string }): Record<string, unknown>;
  /** `navigator.credentials.get()`'s answer; the counter moves by one each time. */
  assert(options: { challenge: string; rpId: string; origin: string; userHandle?: string }): Record<string, unknown>;
}

const b64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url");
const sha256 = (data: Uint8Array | string): Buffer => createHash("sha256").update(data).digest();

function coseKey(publicKey: KeyObject): Uint8Array {
  const jwk = publicKey.export({ format: "jwk" });
  return isoCBOR.encode(
    new Map<number, number | Uint8Array>([
      [1, 2], // kty: EC2
      [3, -7], // alg: ES256
      [-1, 1], // crv: P-256
      [-2, Buffer.from(jwk.x!, "base64url")],
      [-3, Buffer.from(jwk.y!, "base64url")],
    ]),
  );
}

/**
 * @example
 * const authenticator = createSoftwareAuthenticator();
 * const response = authenticator.register({ challenge: options.challenge, rpId: "localhost", origin: "http://localhost:3000" });
 */
export function createSoftwareAuthenticator(): SoftwareAuthenticator {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rawId = randomBytes(16);
  const credentialId = b64url(rawId);
  let counter = 0;
  const flags = (extra: number): Buffer => Buffer.from([0x01 | 0x04 | extra]); // UP | UV (| AT)
  const counterBytes = (): Buffer => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(counter);
    return bytes;
  };
  const clientData = (type: string, challenge: string, origin: string): Buffer =>
    Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }));

  return {
    credentialId,
    register({ challenge, rpId, origin }) {
      const idLength = Buffer.alloc(2);
      idLength.writeUInt16BE(rawId.length);
      const authData = Buffer.concat([sha256(rpId), flags(0x40), counterBytes(), Buffer.alloc(16), idLength, rawId, coseKey(publicKey)]);
      const attestationObject = isoCBOR.encode(
        new Map<string, unknown>([
          ["fmt", "none"],
          ["attStmt", new Map()],
          ["authData", authData],
        ]) as never,
      );
      return {
        id: credentialId,
        rawId: credentialId,
        type: "public-key",
        clientExtensionResults: {},
        authenticatorAttachment: "platform",
        response: {
          clientDataJSON: b64url(clientData("webauthn.create", challenge, origin)),
          attestationObject: b64url(attestationObject),
          transports: ["internal"],
        },
      };
    },
    assert({ challenge, rpId, origin, userHandle }) {
      counter += 1;
      const authenticatorData = Buffer.concat([sha256(rpId), flags(0), counterBytes()]);
      const data = clientData("webauthn.get", challenge, origin);
      const signature = sign("sha256", Buffer.concat([authenticatorData, sha256(data)]), privateKey);
      return {
        id: credentialId,
        rawId: credentialId,
        type: "public-key",
        clientExtensionResults: {},
        response: {
          authenticatorData: b64url(authenticatorData),
          clientDataJSON: b64url(data),
          signature: b64url(signature),
          ...(userHandle === undefined ? {} : { userHandle }),
        },
      };
    },
  };
}
