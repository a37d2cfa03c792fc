import { SignJWT, decodeProtectedHeader, errors, exportJWK, generateKeyPair, importJWK, jwtVerify } from "jose";
import type { JWTHeaderParameters } from "jose";
import { openPrivateKey, sealPrivateKey } from "./key-sealing.js";
import type { CryptoKey, JSONWebKeySet, JWK, JWTVerifyGetKey } from "jose";
import { toBase64Url } from "./encoding.js";
import { LatchError, isLatchError } from "./errors.js";
import type { Runtime } from "./runtime.js";
import { isSessionId } from "./session-token.js";
import type { SigningKey, SigningKeyStore } from "./store.js";

/**
 * Access tokens: short-lived JWTs signed with asymmetric keys of TOKEN_ALG
 * (ES256 by default, RS256 or EdDSA) that live in the database, so every
 * Latch process signs and verifies with the same keys and `latch keys rotate`
 * reaches all of them.
 *
 * A token names its session (`sid`), and Latch refuses a token whose session
 * has ended, so tokens are as revocable as cookies wherever the session store
 * is consulted. Verification here checks only the JWT itself; the session
 * check belongs to the caller (the server's Bearer guard, the middleware).
 */

/**
 * The algorithms a signing key may have (TOKEN_ALG). ES256 is the default
 * because every JWT library resource servers reach for verifies it
 * (jsonwebtoken and what is built on it cannot verify EdDSA). No `none`, no
 * HMAC: a token is only ever checked with the algorithm of the key its `kid`
 * names, so neither its header nor a key-confusion trick chooses one.
 */
export const TOKEN_ALGORITHMS: readonly ["ES256", "RS256", "EdDSA"] = ["ES256", "RS256", "EdDSA"];
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];
export const DEFAULT_TOKEN_ALGORITHM: TokenAlgorithm = "ES256";
/** NIST SP 800-131A and jose's own floor; generated RSA keys have exactly this. */
export const MIN_RSA_MODULUS_BITS = 2048;

/** The contract's ceiling on a token's lifetime. */
export const MAX_TOKEN_TTL_SECONDS = 900;

const DEFAULT_REFRESH_INTERVAL_MS = 10_000;
const DEFAULT_UNKNOWN_KID_COOLDOWN_MS = 1_000;
/** Longer than any JWT Latch issues (~700 bytes); anything bigger is refused before parsing. */
const MAX_TOKEN_LENGTH = 4096;
const BEARER_PATTERN = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The claims of a Latch access token. Times are seconds since the epoch, as JWT has them. */
export interface AccessTokenClaims {
  iss: string;
  /** The user id. */
  sub: string;
  /** The public handle of the session the token was issued for. */
  sid: string;
  roles: string[];
  /** How the session signed in (RFC 8176), as the session's `amr`. Tokens issued before it existed read as `["pwd"]`. */
  amr: string[];
  iat: number;
  exp: number;
}

/** Why a token was refused. Expected outcomes, so values rather than exceptions. */
export type TokenRejection = "malformed" | "algorithm" | "unknown_key" | "signature" | "expired" | "issuer" | "claims";

export type TokenVerification =
  | { valid: true; claims: AccessTokenClaims; kid: string }
  | { valid: false; reason: TokenRejection; message: string };

export interface TokenSubject {
  userId: string;
  /** The session's public handle (`Session.id`). */
  sessionId: string;
  roles: string[];
  /** The session's `amr`. Default `["pwd"]`. */
  amr?: readonly string[];
  /** Milliseconds; the token never outlives this (the session's expiry). */
  notAfter?: number;
}

export interface IssuedAccessToken {
  token: string;
  /** Seconds until `exp`. */
  expiresIn: number;
  kid: string;
  claims: AccessTokenClaims;
}

/** A signing key as operators see it; never the private half. */
export interface SigningKeyInfo {
  kid: string;
  alg: TokenAlgorithm;
  createdAt: number;
  retiredAt: number | null;
  /** `active` signs; `published` is retired but still in the JWKS; `expired` verifies nothing any more. */
  status: "active" | "published" | "expired";
}

export interface TokenServiceOptions {
  keys: SigningKeyStore;
  runtime: Runtime;
  issuer: string;
  /** 1..{@link MAX_TOKEN_TTL_SECONDS}. */
  ttlSeconds: number;
  /**
   * How often the key list is re-read from the store, so a rotation made by
   * another process (or the CLI) is picked up. Default 10 s.
   */
  refreshIntervalMs?: number;
  /** Minimum time between two reloads caused by tokens naming an unknown `kid`. Default 1 s. */
  unknownKidCooldownMs?: number;
  /** Seals private keys at rest (TOKEN_KEY_SECRET); see `key-sealing.ts`. */
  keySecret?: string | null;
  /** Verified tokens remembered so their signature is checked once (see {@link cacheVerifiedTokens}). Default 10,000; 0 turns it off. */
  verifiedCacheSize?: number;
  /**
   * TOKEN_ALG: the algorithm of new keys. When the active key has another,
   * this process's start ({@link TokenService.prepare}, or else its first
   * need of a key) adds a key of this one; the old key stays published until
   * its tokens have expired.
   * Default ES256.
   */
  algorithm?: TokenAlgorithm;
}

export interface TokenService {
  readonly issuer: string;
  readonly ttlSeconds: number;
  /** How long a retired key stays in the JWKS: the longest token lifetime plus the key refresh interval. */
  readonly retentionMs: number;
  /**
   * At start: makes sure there is an active key of TOKEN_ALG, creating the
   * first one or switching from a key of another algorithm (the old key
   * stays published). Done lazily by issue() and jwks() otherwise.
   */
  prepare(): Promise<SigningKeyInfo>;
  /** Signs a token for the session with the active key, creating the first key if the store has none. */
  issue(subject: TokenSubject): Promise<IssuedAccessToken>;
  /** Checks signature, algorithm, `kid`, `iss`, `exp` and claim shapes. Rejects only when the store fails. */
  verify(token: string): Promise<TokenVerification>;
  /** The public keys that verify live tokens: the active key and recently retired ones. */
  jwks(): Promise<JSONWebKeySet>;
  /** Adds a new active key of the configured algorithm (retiring the current one) and deletes keys no token can need any more. */
  rotate(): Promise<SigningKeyInfo>;
  list(): Promise<SigningKeyInfo[]>;
  /** Deletes retired keys past retention; returns how many. */
  prune(): Promise<number>;
}

/**
 * A fresh signing key of `alg` (default ES256) with a random `kid`. The
 * public JWK carries `kid`, `alg` and `use: "sig"`, as the JWKS publishes it.
 *
 * @example
 * const key = await generateSigningKey({ runtime, alg: "RS256" });
 * await stores.keys.addSigningKey(key);
 */
export async function generateSigningKey(options: {
  runtime: Runtime;
  keySecret?: string | null;
  alg?: TokenAlgorithm;
}): Promise<SigningKey> {
  const alg = options.alg ?? DEFAULT_TOKEN_ALGORITHM;
  // "EdDSA" gives Ed25519 and "ES256" P-256 in jose; RSA is given its modulus explicitly.
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === "RS256" ? { modulusLength: MIN_RSA_MODULUS_BITS } : {}),
  });
  const kidBytes = new Uint8Array(16);
  options.runtime.random(kidBytes);
  const kid = toBase64Url(kidBytes);
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg });
  return {
    kid,
    alg,
    publicJwk: JSON.stringify({ ...publicJwk, kid, alg, use: "sig" }),
    privateJwk: options.keySecret ? sealPrivateKey(privateJwk, kid, options.keySecret, options.runtime.random) : privateJwk,
    createdAt: options.runtime.clock.now(),
    retiredAt: null,
  };
}

/**
 * The algorithm a public JWK can verify, read from the key material itself
 * (`kty`, `crv`, RSA modulus size) and required to agree with its `alg`
 * when it has one; null for anything else (an unknown curve, a short RSA
 * key, an `alg` that contradicts the key). This is what pins a token to its
 * key's algorithm: the header may only repeat it.
 *
 * @example
 * jwkAlgorithm({ kty: "EC", crv: "P-256", x: "…", y: "…", alg: "ES256" }); // "ES256"
 * jwkAlgorithm({ kty: "EC", crv: "P-256", x: "…", y: "…", alg: "RS256" }); // null
 */
export function jwkAlgorithm(jwk: JWK): TokenAlgorithm | null {
  let derived: TokenAlgorithm | null = null;
  if (jwk.kty === "EC" && jwk.crv === "P-256") derived = "ES256";
  else if (jwk.kty === "OKP" && jwk.crv === "Ed25519") derived = "EdDSA";
  else if (jwk.kty === "RSA" && typeof jwk.n === "string" && rsaModulusBits(jwk.n) >= MIN_RSA_MODULUS_BITS) derived = "RS256";
  if (derived === null || (jwk.alg !== undefined && jwk.alg !== derived)) return null;
  return derived;
}

function rsaModulusBits(n: string): number {
  const bytes = Buffer.from(n, "base64url");
  let start = 0;
  while (start < bytes.length && bytes[start] === 0) start += 1;
  if (start === bytes.length) return 0;
  return (bytes.length - start - 1) * 8 + (32 - Math.clz32(bytes[start]!));
}

/** A stored key's algorithm, from its record and its public JWK, which must agree; null when they do not. */
function storedKeyAlgorithm(key: SigningKey): TokenAlgorithm | null {
  let jwk: JWK;
  try {
    jwk = JSON.parse(key.publicJwk) as JWK;
  } catch {
    return null;
  }
  const alg = jwkAlgorithm(jwk);
  return alg !== null && alg === key.alg ? alg : null;
}

/**
 * The token in an `Authorization: Bearer <token>` header value (RFC 6750
 * b64token syntax), or null when the header is not a Bearer credential.
 *
 * @example
 * parseBearerHeader("Bearer eyJhbGciOi..."); // "eyJhbGciOi..."
 */
export function parseBearerHeader(value: string | undefined): string | null {
  if (value === undefined || value.length > MAX_TOKEN_LENGTH + 16) return null;
  return BEARER_PATTERN.exec(value)?.[1] ?? null;
}

/**
 * True when the header value uses the Bearer scheme at all, well-formed or
 * not: such a request asked to be judged by its token, so a malformed one is
 * `invalid_token` rather than a fall-back to the cookie.
 *
 * @example
 * isBearerScheme("Bearer x"); // true
 * isBearerScheme("Basic dXNlcjpwYXNz"); // false
 */
export function isBearerScheme(value: string | undefined): boolean {
  return value !== undefined && /^bearer(?: |$)/i.test(value);
}

function reject(reason: TokenRejection, message: string): TokenVerification {
  return { valid: false, reason, message };
}

function isClaims(payload: Record<string, unknown>): boolean {
  const { sub, sid, roles, amr, iat, exp } = payload;
  return (
    (amr === undefined || (Array.isArray(amr) && amr.every((m) => typeof m === "string"))) &&
    typeof sub === "string" &&
    sub.length > 0 &&
    isSessionId(sid) &&
    Array.isArray(roles) &&
    roles.every((r) => typeof r === "string") &&
    typeof iat === "number" &&
    typeof exp === "number"
  );
}

/**
 * Verifies a Latch access token against a key resolver (the server's key
 * cache, or a resource server's remote JWKS). Only {@link TOKEN_ALGORITHMS}
 * get as far as the resolver, and the resolver must pin the algorithm to the
 * key it returns (see {@link pinKeyAlgorithm}); `iss`
 * must match; `exp` is checked against `now` (an injected clock), with no
 * leeway. Key-fetch failures are not the token's fault: they reject with
 * `LatchError("unavailable")` instead of refusing the token.
 *
 * @example
 * const result = await verifyAccessToken(token, createRemoteJWKSet(url), { issuer: "latch", now: Date.now() });
 * if (result.valid) console.log(result.claims.sub);
 */
export async function verifyAccessToken(
  token: string,
  resolveKey: JWTVerifyGetKey,
  options: { issuer: string; now: number },
): Promise<TokenVerification> {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH || token.split(".").length !== 3) {
    return reject("malformed", "The access token is malformed.");
  }
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return reject("malformed", "The access token is malformed.");
  }
  // Checked before any key is looked up, so `alg: none` or an HMAC header
  // never reaches a key resolver (and never makes a remote JWKS refetch).
  if (!(TOKEN_ALGORITHMS as readonly unknown[]).includes(header.alg))
    return reject("algorithm", "The access token's algorithm is not accepted.");
  if (typeof header.kid !== "string" || header.kid.length === 0) return reject("unknown_key", "The access token names no signing key.");
  try {
    const { payload } = await jwtVerify(token, resolveKey, {
      algorithms: [...TOKEN_ALGORITHMS],
      issuer: options.issuer,
      typ: "JWT",
      currentDate: new Date(options.now),
      requiredClaims: ["sub", "sid", "iat", "exp"],
    });
    if (!isClaims(payload)) return reject("claims", "The access token's claims are invalid.");
    const claims = payload as unknown as AccessTokenClaims;
    if (claims.amr === undefined) claims.amr = ["pwd"];
    return { valid: true, claims, kid: header.kid };
  } catch (error) {
    if (isLatchError(error)) throw error;
    if (error instanceof errors.JWTExpired) return reject("expired", "The access token has expired.");
    if (error instanceof errors.JWKSNoMatchingKey) return reject("unknown_key", "The access token's signing key is unknown.");
    if (error instanceof errors.JWSSignatureVerificationFailed) return reject("signature", "The access token's signature is invalid.");
    if (error instanceof errors.JOSEAlgNotAllowed) return reject("algorithm", "The access token's algorithm is not accepted.");
    if (error instanceof errors.JWTClaimValidationFailed) {
      return error.claim === "iss"
        ? reject("issuer", "The access token was issued by someone else.")
        : reject("claims", `The access token's ${error.claim} is invalid.`);
    }
    if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid || error instanceof errors.JOSENotSupported) {
      return reject("malformed", "The access token is malformed.");
    }
    // A JWKS that cannot be fetched, times out or is garbage says nothing about the token.
    throw new LatchError("unavailable", "The signing keys could not be loaded.", { cause: error });
  }
}

/**
 * Throws jose's `JOSEAlgNotAllowed` unless the token header's `alg` is the
 * key's. For key resolvers: whatever the header says, a key verifies only
 * with its own algorithm.
 *
 * @example
 * const resolve: JWTVerifyGetKey = async (header) => { pinKeyAlgorithm(header, "ES256"); return key; };
 */
export function pinKeyAlgorithm(header: Pick<JWTHeaderParameters, "alg">, keyAlg: string | undefined): void {
  if (keyAlg === undefined || header.alg !== keyAlg) throw new errors.JOSEAlgNotAllowed("The token's alg is not its key's.");
}

/**
 * Remembers tokens that verified, so a client presenting the same token on
 * every request pays for the signature check once rather than each time
 * (60–140 µs by algorithm on a small server; npm run bench:tokens). Only
 * successes are kept, keyed by the whole token string, and `exp` is checked again on every hit, so a cached
 * token is accepted exactly as long as a fresh verification would accept it
 * (its key stays published until after its exp). Bounded: the oldest entry
 * goes first.
 *
 * @example
 * const verify = cacheVerifiedTokens((token) => verifyAccessToken(token, keys, { issuer, now: Date.now() }), { size: 10_000, clock });
 */
export function cacheVerifiedTokens(
  verify: (token: string) => Promise<TokenVerification>,
  options: { size: number; clock: { now(): number } },
): (token: string) => Promise<TokenVerification> {
  const { size, clock } = options;
  if (size <= 0) return verify;
  const verified = new Map<string, TokenVerification & { valid: true }>();
  return async (token) => {
    const hit = verified.get(token);
    if (hit !== undefined) {
      if (hit.claims.exp * 1000 > clock.now()) return hit;
      verified.delete(token);
      return reject("expired", "The access token has expired.");
    }
    const result = await verify(token);
    if (result.valid) {
      if (verified.size >= size) verified.delete(verified.keys().next().value!);
      verified.set(token, result);
    }
    return result;
  };
}

interface KeyCache {
  loadedAt: number;
  keys: SigningKey[];
}

/**
 * The token service: issues, verifies and publishes. Keys are read from the
 * store and kept in memory; the list is re-read every `refreshIntervalMs`
 * and, at most once per `unknownKidCooldownMs`, when a token names a key
 * this process has not seen (another process rotated).
 *
 * @example
 * const tokens = createTokenService({ keys: stores.keys, runtime, issuer: "latch", ttlSeconds: 900 });
 * const { token } = await tokens.issue({ userId: user.id, sessionId: session.id, roles: user.roles });
 * const result = await tokens.verify(token); // { valid: true, claims, kid }
 */
export function createTokenService(options: TokenServiceOptions): TokenService {
  const { keys: store, runtime, issuer, ttlSeconds } = options;
  const algorithm = options.algorithm ?? DEFAULT_TOKEN_ALGORITHM;
  if (!TOKEN_ALGORITHMS.includes(algorithm)) throw new RangeError(`algorithm must be one of ${TOKEN_ALGORITHMS.join(", ")}`);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TOKEN_TTL_SECONDS) {
    throw new RangeError(`ttlSeconds must be a whole number from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
  }
  if (issuer.length === 0) throw new RangeError("issuer must not be empty");
  const refreshIntervalMs = options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS;
  const cooldownMs = options.unknownKidCooldownMs ?? DEFAULT_UNKNOWN_KID_COOLDOWN_MS;
  // A process may go on signing with a key for up to one refresh interval
  // after another process retired it, and each of those tokens lives up to
  // the contract's maximum: the key must stay published that long. The
  // ceiling, not this process's TOKEN_TTL, so processes configured with
  // different lifetimes never drop a key another still needs.
  const retentionMs = MAX_TOKEN_TTL_SECONDS * 1000 + refreshIntervalMs;
  const { clock } = runtime;

  let cache: KeyCache | null = null;
  let loading: Promise<KeyCache> | null = null;
  let lastUnknownReload = -Infinity;
  const privateKeys = new Map<string, Promise<CryptoKey>>();
  const publicKeys = new Map<string, Promise<CryptoKey>>();

  function load(): Promise<KeyCache> {
    // One read in flight at a time: a burst of requests after the cache goes
    // stale, or of tokens with an unknown kid, costs one query.
    loading ??= store
      .listSigningKeys()
      .then((keys) => (cache = { loadedAt: clock.now(), keys }))
      .finally(() => (loading = null));
    return loading;
  }

  /** A read that starts after the caller's own writes: never joins a read already in flight. */
  async function reload(): Promise<KeyCache> {
    if (loading !== null) await loading.catch(() => undefined);
    return load();
  }

  async function current(): Promise<KeyCache> {
    if (cache !== null && clock.now() - cache.loadedAt < refreshIntervalMs) return cache;
    const known = cache;
    if (known === null) return load();
    // The store down (database outage behind Redis): the keys already known
    // stay good. Keys are only added or retired, and deleted long after the
    // last token they signed expired, so a stale list can only miss a key
    // rotated in meanwhile (its tokens are refused as unknown_key until the
    // store answers), never accept one it should not.
    return load().catch((error: unknown) => {
      if (isLatchError(error) && error.code === "unavailable") return known;
      throw error;
    });
  }

  const activeOf = (keys: SigningKey[]): SigningKey | undefined => keys.find((k) => k.retiredAt === null);
  const publishedAt = (key: SigningKey, now: number): boolean => key.retiredAt === null || now - key.retiredAt < retentionMs;

  async function addKey(): Promise<SigningKey> {
    await store.addSigningKey(await generateSigningKey({ runtime, keySecret: options.keySecret ?? null, alg: algorithm }));
    // Re-read rather than trust our own key: another process may have
    // added one at the same moment, and whichever the store holds as
    // active is the one every process must converge on. The loser's key
    // is retired, not lost, so anything it signed still verifies.
    const winner = activeOf((await reload()).keys);
    if (winner === undefined) throw new LatchError("unavailable", "No active signing key after adding one.");
    return winner;
  }

  let creating: Promise<SigningKey> | null = null;
  // Whether this process has compared the active key's algorithm with
  // TOKEN_ALG yet: once, at its first need of a key, so a changed TOKEN_ALG
  // takes effect from the next start (and processes still running with the
  // old setting do not rotate back and forth: they follow the active key).
  let algorithmChecked = false;
  async function activeKey(): Promise<SigningKey> {
    const found = activeOf((await current()).keys);
    if (found !== undefined && (algorithmChecked || found.alg === algorithm)) {
      algorithmChecked = true;
      return found;
    }
    creating ??= (async () => {
      // A fresh read: another process may have switched algorithms already.
      const active = activeOf((await reload()).keys);
      const key = active !== undefined && active.alg === algorithm ? active : await addKey();
      algorithmChecked = true;
      return key;
    })().finally(() => (creating = null));
    return creating;
  }

  function importOnce(map: Map<string, Promise<CryptoKey>>, key: SigningKey, jwk: () => string): Promise<CryptoKey> {
    let imported = map.get(key.kid);
    if (imported === undefined) {
      const alg = storedKeyAlgorithm(key);
      imported =
        alg === null
          ? Promise.reject(new LatchError("unavailable", `Signing key ${key.kid} is not a valid ${key.alg} key.`))
          : (Promise.resolve().then(() => importJWK(JSON.parse(jwk()) as JWK, alg)) as Promise<CryptoKey>);
      // A failed import is not remembered: the next request tries again.
      imported.catch(() => map.delete(key.kid));
      map.set(key.kid, imported);
    }
    return imported;
  }

  async function findVerificationKey(kid: string): Promise<SigningKey | undefined> {
    const now = clock.now();
    const pick = (c: KeyCache): SigningKey | undefined => c.keys.find((k) => k.kid === kid && publishedAt(k, now));
    const found = pick(await current());
    if (found !== undefined || now - lastUnknownReload < cooldownMs) return found;
    lastUnknownReload = now;
    return pick(await reload());
  }

  const resolveKey: JWTVerifyGetKey = async (header) => {
    const key = typeof header.kid === "string" ? await findVerificationKey(header.kid) : undefined;
    // A stored key that is not what it says it is verifies nothing.
    if (key === undefined || storedKeyAlgorithm(key) === null) throw new errors.JWKSNoMatchingKey();
    // The key's algorithm, never the header's: a header naming another is refused.
    pinKeyAlgorithm(header, key.alg);
    return importOnce(publicKeys, key, () => key.publicJwk);
  };

  const verifyCached = cacheVerifiedTokens((token) => verifyAccessToken(token, resolveKey, { issuer, now: clock.now() }), {
    size: options.verifiedCacheSize ?? 10_000,
    clock,
  });

  function info(key: SigningKey, now: number): SigningKeyInfo {
    const status = key.retiredAt === null ? "active" : publishedAt(key, now) ? "published" : "expired";
    return { kid: key.kid, alg: key.alg, createdAt: key.createdAt, retiredAt: key.retiredAt, status };
  }

  async function prune(): Promise<number> {
    // +1: a key is unpublished from the moment its retention has fully passed (see publishedAt).
    return store.deleteSigningKeysRetiredBefore(clock.now() - retentionMs + 1);
  }

  return {
    issuer,
    ttlSeconds,
    retentionMs,

    async prepare() {
      return info(await activeKey(), clock.now());
    },

    async issue(subject) {
      const key = await activeKey();
      const now = clock.now();
      const iat = Math.floor(now / 1000);
      const notAfter = subject.notAfter === undefined ? Infinity : Math.floor(subject.notAfter / 1000);
      const exp = Math.max(iat + 1, Math.min(iat + ttlSeconds, notAfter));
      const claims: AccessTokenClaims = {
        iss: issuer,
        sub: subject.userId,
        sid: subject.sessionId,
        roles: [...subject.roles],
        amr: [...(subject.amr ?? ["pwd"])],
        iat,
        exp,
      };
      const signingKey = await importOnce(privateKeys, key, () => openPrivateKey(key.privateJwk, key.kid, options.keySecret ?? null));
      const token = await new SignJWT({ sid: claims.sid, roles: claims.roles, amr: claims.amr })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
        .setIssuer(issuer)
        .setSubject(claims.sub)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(signingKey);
      return { token, expiresIn: exp - iat, kid: key.kid, claims };
    },

    verify: verifyCached,

    async jwks() {
      // Publish the key before the first token uses it, so a resource server
      // that fetched the set at start-up already knows it.
      await activeKey();
      const now = clock.now();
      const keys = (await current()).keys.filter((k) => publishedAt(k, now) && storedKeyAlgorithm(k) !== null);
      return { keys: keys.map((k) => JSON.parse(k.publicJwk) as JWK) };
    },

    async rotate() {
      const key = await generateSigningKey({ runtime, keySecret: options.keySecret ?? null, alg: algorithm });
      await store.addSigningKey(key);
      await prune();
      await reload();
      return info(key, clock.now());
    },

    async list() {
      const now = clock.now();
      return (await reload()).keys.map((k) => info(k, now));
    },

    prune,
  };
}
