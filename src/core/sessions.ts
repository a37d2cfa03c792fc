import { LatchError } from "./errors.js";
import { csrfTokenFor, issueSessionToken, parseSessionToken, verifySessionSecret } from "./session-token.js";
import type { Runtime } from "./runtime.js";
import { isCachedSessionStore } from "./store.js";
import type { AuthMethod, CreateSessionOptions, Session, SessionStore, SessionWithUser, User } from "./store.js";

function unlessUnavailable(error: unknown): false {
  if (error instanceof LatchError && error.code === "unavailable") return false;
  throw error;
}

export interface SessionPolicy {
  idleTimeoutMs: number;
  absoluteTimeoutMs: number;
  /** Minimum time between two idle-expiry renewals of one session. */
  renewIntervalMs: number;
}

export interface SessionMetadata {
  userAgent: string | null;
  /** Already truncated by the caller. */
  ipAddress: string | null;
}

export interface NewSessionOptions extends CreateSessionOptions {
  /** How the holder signed in (RFC 8176). Default `["pwd"]`. */
  amr?: AuthMethod[];
  /**
   * A sign-in waiting for its second factor, ending after this many ms
   * (idle and absolute alike: it never slides past it).
   */
  pendingForMs?: number;
}

export interface NewSession {
  session: Session;
  /** The cookie value. Give it to the client; never store or log it. */
  token: string;
  csrfToken: string;
}

export interface ValidSession {
  session: Session;
  user: User;
  /** The presented secret, kept for the request so the CSRF token can be derived. */
  secret: string;
  /** True when this validation slid the idle expiry (the cookie should be re-sent with the new expiry). */
  renewed: boolean;
}

export interface SessionManager {
  readonly policy: SessionPolicy;
  /**
   * Starts a new session for the user. Never reuses an id presented by the
   * client. With `ifPasswordHash` (a sign-in: the hash its password was
   * verified against), the session is written only if that is still the
   * user's hash; otherwise, because a password change landed while the
   * sign-in ran, it rejects with `LatchError("invalid_credentials")`.
   * `amr` and `pendingForMs` set how the holder signed in and make a pending
   * sign-in (see {@link NewSessionOptions}).
   */
  create(userId: string, metadata: SessionMetadata, options?: NewSessionOptions): Promise<NewSession>;
  /**
   * The session and user for a cookie value, or null when the value is
   * malformed, unknown, expired or its secret does not match. Slides the idle
   * expiry at most once per renewal interval: most validations write nothing.
   */
  validate(token: string | undefined): Promise<ValidSession | null>;
  /**
   * {@link validate} without I/O, when the store can answer from memory (and,
   * when a renewal is due, can renew in memory: `renewCached`): the same
   * answer `validate` would give, or undefined when `validate` must be
   * called. Never waits for a write.
   */
  validateCached(token: string | undefined): ValidSession | null | undefined;
  /** A new id and secret for an existing session (password change); the old id stops working at once. */
  rotate(current: Session): Promise<NewSession | null>;
  csrfToken(valid: ValidSession): string;
}

/**
 * @example
 * const sessions = createSessionManager({ store, runtime, policy });
 * const { token } = await sessions.create(user.id, { userAgent: null, ipAddress: null });
 * const valid = await sessions.validate(token); // { session, user, secret }
 */
export function createSessionManager(options: { store: SessionStore; runtime: Runtime; policy: SessionPolicy }): SessionManager {
  const { store, runtime, policy } = options;
  const { clock } = runtime;

  // A store with an in-process cache hands out the same cached session on
  // every request: it remembers the first secret that matched that entry's
  // hash and compares later presentations with it in constant time, instead
  // of hashing again (SHA-256 was the largest single cost of a cached
  // validation: about 1.2 µs, 5% of the server's CPU under load). The secret
  // stays in this process's memory only as long as the cache keeps the entry,
  // like the cookie headers of requests in flight; docs/threat-model.md
  // weighs it. Any other store: the stored hash is checked every time.
  const verify = (secret: string, session: Session): boolean => verifySessionSecret(secret, session.secretHash);
  const cached = isCachedSessionStore(store) ? store : null;
  const peekVerified: ((id: string, now: number, secret: string) => SessionWithUser | null | undefined) | null =
    cached === null ? null : (id, now, secret) => cached.peekVerified(id, now, secret, verify);
  const renew: ((id: string, lastSeenAt: number, idleExpiresAt: number) => Session | undefined) | null =
    cached === null ? null : cached.renewCached.bind(cached);

  function build(
    userId: string,
    metadata: SessionMetadata,
    createdAt: number,
    absoluteExpiresAt: number,
    state: Pick<Session, "amr" | "pending">,
  ): NewSession {
    const issued = issueSessionToken(userId, runtime.random);
    const session: Session = {
      id: issued.id,
      userId,
      secretHash: issued.secretHash,
      createdAt,
      lastSeenAt: clock.now(),
      idleExpiresAt: Math.min(clock.now() + policy.idleTimeoutMs, absoluteExpiresAt),
      absoluteExpiresAt,
      userAgent: metadata.userAgent,
      ipAddress: metadata.ipAddress,
      amr: [...state.amr],
      pending: state.pending,
    };
    return { session, token: issued.token, csrfToken: csrfTokenFor(issued.secret) };
  }

  return {
    policy,
    async create(userId, metadata, createOptions = {}) {
      const now = clock.now();
      const pending = createOptions.pendingForMs !== undefined;
      const absoluteExpiresAt =
        now + (pending ? Math.min(createOptions.pendingForMs!, policy.absoluteTimeoutMs) : policy.absoluteTimeoutMs);
      const created = build(userId, metadata, now, absoluteExpiresAt, { amr: createOptions.amr ?? ["pwd"], pending });
      const storeOptions = createOptions.ifPasswordHash === undefined ? undefined : { ifPasswordHash: createOptions.ifPasswordHash };
      if (!(await store.createSession(created.session, storeOptions))) throw new LatchError("invalid_credentials");
      return created;
    },

    async validate(token) {
      const parsed = parseSessionToken(token);
      if (parsed === null) return null;
      const now = clock.now();
      let found = peekVerified?.(parsed.id, now, parsed.secret);
      if (found === null) return null;
      if (found === undefined) {
        found = await store.findSession(parsed.id, now);
        if (found === null || !verify(parsed.secret, found.session)) return null;
      }
      let { session } = found;
      let renewed = false;
      if (now - session.lastSeenAt >= policy.renewIntervalMs) {
        const idleExpiresAt = Math.min(now + policy.idleTimeoutMs, session.absoluteExpiresAt);
        // Copy rather than mutate: the store (or a cache in front of it) may
        // hand the same object to concurrent requests.
        // A renewal the store cannot take now (database down behind Redis)
        // leaves the session valid until its known idle expiry: a read is
        // never refused for a write that could not be made.
        if (await store.touchSession(session.id, now, idleExpiresAt).catch(unlessUnavailable)) {
          session = { ...session, lastSeenAt: now, idleExpiresAt };
          renewed = true;
        }
      }
      return { session, user: found.user, secret: parsed.secret, renewed };
    },

    validateCached(token) {
      const parsed = parseSessionToken(token);
      if (parsed === null) return null;
      const now = clock.now();
      const found = peekVerified?.(parsed.id, now, parsed.secret);
      if (found === undefined || found === null) return found;
      if (now - found.session.lastSeenAt < policy.renewIntervalMs)
        return { session: found.session, user: found.user, secret: parsed.secret, renewed: false };
      // A renewal due: done in memory when the store defers the write (the
      // session cache), else left to validate().
      const session = renew?.(found.session.id, now, Math.min(now + policy.idleTimeoutMs, found.session.absoluteExpiresAt));
      if (session === undefined) return undefined;
      return { session, user: found.user, secret: parsed.secret, renewed: true };
    },

    async rotate(current) {
      const next = build(current.userId, current, current.createdAt, current.absoluteExpiresAt, current);
      return (await store.rotateSession(current.id, next.session)) ? next : null;
    },

    csrfToken: (valid) => csrfTokenFor(valid.secret),
  };
}
