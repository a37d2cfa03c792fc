import { LatchError } from "../../core/errors.js";
import type {
  AccountToken,
  ListUsersOptions,
  Passkey,
  OutboxEntry,
  OutboxMessage,
  RateLimitState,
  SecurityEvent,
  Session,
  SessionWithUser,
  SigningKey,
  StoreHealth,
  Stores,
  TotpCredential,
  UserRecord,
  WebAuthnChallenge,
} from "../../core/store.js";
import { publicUser } from "../../core/accounts.js";

/**
 * An in-process store for tests and single-process development. It behaves
 * like a real one (after express-session's MemoryStore): it copies data in and
 * out so callers cannot mutate stored state, expires on read, and stays async.
 */
export function createMemoryStores(): Stores {
  const users = new Map<string, UserRecord>();
  const sessions = new Map<string, Session>();
  const events: SecurityEvent[] = [];
  const limits = new Map<string, RateLimitState>();
  let keys: SigningKey[] = [];
  const totps = new Map<string, TotpCredential>();
  /** userId → recovery code hashes. */
  const recoveryCodes = new Map<string, Set<string>>();
  const passkeys = new Map<string, Passkey>();
  const challenges = new Map<string, WebAuthnChallenge>();

  /** Recomputes the user's `mfa` flag from what they have, as the SQL stores do in the same write. */
  function refreshMfa(userId: string): void {
    const user = users.get(userId);
    if (!user) return;
    const mfa = totps.get(userId)?.secret != null || [...passkeys.values()].some((p) => p.userId === userId);
    if (user.mfa !== mfa) users.set(userId, { ...user, mfa });
  }

  function removeSecondFactors(userId: string): boolean {
    let removed = totps.delete(userId);
    removed = recoveryCodes.delete(userId) || removed;
    for (const [id, p] of passkeys) {
      if (p.userId === userId) {
        passkeys.delete(id);
        removed = true;
      }
    }
    for (const [id, c] of challenges) if (c.userId === userId) challenges.delete(id);
    refreshMfa(userId);
    return removed;
  }
  let flushMark = 0;
  /** Keyed by the token hash in hex. */
  const tokens = new Map<string, AccountToken>();
  const outbox = new Map<string, OutboxEntry & { nextAttemptAt: number; leaseOwner: string | null; sentAt: number | null }>();
  const hex = (hash: Uint8Array): string => Buffer.from(hash).toString("hex");

  const copy = <T>(value: T): T => structuredClone(value);
  const live = (s: Session, now: number): boolean => s.idleExpiresAt > now && s.absoluteExpiresAt > now;
  const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  function taken(user: UserRecord): boolean {
    for (const other of users.values()) {
      if (other.id === user.id) continue;
      const keysOfOther = [other.usernameKey, other.emailKey];
      if (keysOfOther.includes(user.usernameKey) || (user.emailKey !== null && keysOfOther.includes(user.emailKey))) return true;
    }
    return false;
  }

  function voidTokens(userId: string, purpose: AccountToken["purpose"]): void {
    for (const [key, token] of tokens) if (token.userId === userId && token.purpose === purpose) tokens.delete(key);
  }

  function enqueue(message: OutboxMessage): void {
    outbox.set(message.id, {
      ...copy(message),
      status: "queued",
      attempts: 0,
      nextAttemptAt: message.createdAt,
      leaseOwner: null,
      sentAt: null,
    });
  }

  /** Takes the token if it is the user's and of this purpose; null when it is not there or has expired. */
  function take(userId: string, hash: Uint8Array, purpose: AccountToken["purpose"], now: number): AccountToken | null {
    const token = tokens.get(hex(hash));
    if (token === undefined || token.userId !== userId || token.purpose !== purpose) return null;
    tokens.delete(hex(hash));
    return token.expiresAt > now ? token : null;
  }

  function leased(
    id: string,
    owner: string,
  ): (OutboxEntry & { nextAttemptAt: number; leaseOwner: string | null; sentAt: number | null }) | null {
    const entry = outbox.get(id);
    return entry !== undefined && entry.status === "queued" && entry.leaseOwner === owner ? entry : null;
  }

  function removeUserSessions(userId: string, exceptId?: string): number {
    let removed = 0;
    for (const [id, s] of sessions) {
      if (s.userId === userId && id !== exceptId) {
        sessions.delete(id);
        removed += 1;
      }
    }
    return removed;
  }

  return {
    users: {
      async createUser(user) {
        await tick();
        if (users.has(user.id) || taken(user)) throw new LatchError("conflict", "That username or email is already registered.");
        users.set(user.id, copy(user));
      },
      async findUserById(id) {
        await tick();
        const user = users.get(id);
        return user ? copy(user) : null;
      },
      async findUserByLogin(key) {
        await tick();
        for (const user of users.values()) {
          if (user.usernameKey === key || user.emailKey === key) return copy(user);
        }
        return null;
      },
      async updateUserPassword(id, passwordHash, updatedAt) {
        await tick();
        const user = users.get(id);
        if (!user) return false;
        users.set(id, { ...user, passwordHash, updatedAt });
        return true;
      },
      async updateUserRoles(id, roles, updatedAt) {
        await tick();
        const user = users.get(id);
        if (!user) return null;
        const next = { ...user, roles: [...roles], updatedAt };
        users.set(id, next);
        return copy(next);
      },
      async updateUserEmail(id, email, updatedAt) {
        await tick();
        const user = users.get(id);
        if (!user) return null;
        if (email !== null) {
          for (const other of users.values()) {
            if (other.id !== id && (other.usernameKey === email.emailKey || other.emailKey === email.emailKey)) {
              throw new LatchError("conflict", "That email is already registered.");
            }
          }
          if (user.usernameKey === email.emailKey) throw new LatchError("conflict", "That email is already registered.");
        }
        const next = { ...user, email: email?.email ?? null, emailKey: email?.emailKey ?? null, emailVerified: false, updatedAt };
        users.set(id, next);
        voidTokens(id, "verify");
        return copy(next);
      },
      async verifyEmail(id, tokenHash, now) {
        await tick();
        const token = take(id, tokenHash, "verify", now);
        const user = users.get(id);
        if (token === null || !user || user.emailKey === null || token.emailKey !== user.emailKey) return null;
        const next = { ...user, emailVerified: true, updatedAt: now };
        users.set(id, next);
        return copy(next);
      },
      async resetPassword(id, tokenHash, passwordHash, now, notice) {
        await tick();
        const user = users.get(id);
        if (!user || take(id, tokenHash, "reset", now) === null) return null;
        const next = { ...user, passwordHash, updatedAt: now };
        users.set(id, next);
        voidTokens(id, "reset");
        if (notice !== null) enqueue(notice);
        return copy(next);
      },
      async deleteUser(id) {
        await tick();
        if (!users.has(id)) return false;
        removeSecondFactors(id);
        users.delete(id);
        removeUserSessions(id);
        for (const [key, token] of tokens) if (token.userId === id) tokens.delete(key);
        for (const [key, entry] of outbox) if (entry.userId === id) outbox.delete(key);
        for (let i = events.length - 1; i >= 0; i -= 1) if (events[i]!.userId === id) events.splice(i, 1);
        return true;
      },
      async listUsers(options: ListUsersOptions) {
        await tick();
        const after = options.after;
        return [...users.values()]
          .filter((u) => after === undefined || u.id > after)
          .sort((a, b) => (a.id < b.id ? -1 : 1))
          .slice(0, options.limit)
          .map(copy);
      },
    },

    sessions: {
      async createSession(session, options) {
        await tick();
        if (options?.ifPasswordHash !== undefined && users.get(session.userId)?.passwordHash !== options.ifPasswordHash) return false;
        sessions.set(session.id, copy(session));
        return true;
      },
      async findSession(id, now): Promise<SessionWithUser | null> {
        await tick();
        const session = sessions.get(id);
        if (!session) return null;
        if (!live(session, now)) {
          sessions.delete(id);
          return null;
        }
        const user = users.get(session.userId);
        if (!user) return null;
        return { session: copy(session), user: copy(publicUser(user)) };
      },
      async touchSession(id, lastSeenAt, idleExpiresAt) {
        await tick();
        const session = sessions.get(id);
        if (!session || !live(session, lastSeenAt)) return false;
        sessions.set(id, { ...session, lastSeenAt, idleExpiresAt: Math.min(idleExpiresAt, session.absoluteExpiresAt) });
        return true;
      },
      async touchSessions(touches) {
        await tick();
        return touches.map(({ id, lastSeenAt, idleExpiresAt }) => {
          const session = sessions.get(id);
          if (!session || !live(session, lastSeenAt)) return false;
          sessions.set(id, { ...session, lastSeenAt, idleExpiresAt: Math.min(idleExpiresAt, session.absoluteExpiresAt) });
          return true;
        });
      },
      async deleteSession(id) {
        await tick();
        const session = sessions.get(id);
        if (!session) return null;
        sessions.delete(id);
        return session.userId;
      },
      async rotateSession(oldId, next) {
        await tick();
        if (!sessions.delete(oldId)) return false;
        sessions.set(next.id, copy(next));
        return true;
      },
      async listUserSessions(userId, now) {
        await tick();
        return [...sessions.values()]
          .filter((s) => s.userId === userId && live(s, now))
          .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
          .map(copy);
      },
      async deleteUserSessions(userId, options) {
        await tick();
        return removeUserSessions(userId, options?.exceptId);
      },
      async deleteExpiredSessions(now, limit) {
        await tick();
        let removed = 0;
        for (const [id, s] of sessions) {
          if (removed >= limit) break;
          if (!live(s, now)) {
            sessions.delete(id);
            removed += 1;
          }
        }
        return removed;
      },
    },

    events: {
      async recordEvent(event) {
        await tick();
        events.push(copy(event));
      },
      async listUserEvents(userId, limit) {
        await tick();
        return events
          .filter((e) => e.userId === userId)
          .sort((a, b) => b.at - a.at)
          .slice(0, limit)
          .map(copy);
      },
      async deleteUserEvents(userId) {
        await tick();
        const before = events.length;
        for (let i = events.length - 1; i >= 0; i -= 1) if (events[i]!.userId === userId) events.splice(i, 1);
        return before - events.length;
      },
      async deleteEventsBefore(before, limit) {
        await tick();
        let removed = 0;
        for (let i = events.length - 1; i >= 0 && removed < limit; i -= 1) {
          if (events[i]!.at < before) {
            events.splice(i, 1);
            removed += 1;
          }
        }
        return removed;
      },
    },

    limits: {
      async hit(key, windowMs, now) {
        await tick();
        const current = limits.get(key);
        const next =
          current && current.resetAt > now ? { count: current.count + 1, resetAt: current.resetAt } : { count: 1, resetAt: now + windowMs };
        limits.set(key, next);
        return { ...next };
      },
      async peek(key, now) {
        await tick();
        const current = limits.get(key);
        return current && current.resetAt > now ? { ...current } : null;
      },
      async reset(key) {
        await tick();
        limits.delete(key);
      },
      async deleteClosedWindows(now, limit) {
        await tick();
        let removed = 0;
        for (const [key, state] of limits) {
          if (removed >= limit) break;
          if (state.resetAt <= now) {
            limits.delete(key);
            removed += 1;
          }
        }
        return removed;
      },
    },

    keys: {
      async listSigningKeys() {
        await tick();
        return [...keys].sort((a, b) => b.createdAt - a.createdAt).map(copy);
      },
      async addSigningKey(key) {
        await tick();
        keys = keys.map((k) => (k.retiredAt === null ? { ...k, retiredAt: key.createdAt } : k));
        keys.push(copy(key));
      },
      async deleteSigningKeysRetiredBefore(before) {
        await tick();
        const n = keys.length;
        keys = keys.filter((k) => k.retiredAt === null || k.retiredAt >= before);
        return n - keys.length;
      },
    },

    secondFactors: {
      async findTotp(userId) {
        await tick();
        const row = totps.get(userId);
        return row ? copy(row) : null;
      },
      async beginTotp(userId, pendingSecret, now) {
        await tick();
        if (!users.has(userId)) return false;
        const row = totps.get(userId);
        totps.set(userId, {
          userId,
          secret: row?.secret ?? null,
          lastUsedStep: row?.lastUsedStep ?? 0,
          pendingSecret,
          confirmedAt: row?.confirmedAt ?? null,
          updatedAt: now,
        });
        return true;
      },
      async confirmTotp(userId, pendingSecret, step, hashes, now) {
        await tick();
        const row = totps.get(userId);
        if (!row || row.pendingSecret !== pendingSecret) return false;
        totps.set(userId, { userId, secret: pendingSecret, lastUsedStep: step, pendingSecret: null, confirmedAt: now, updatedAt: now });
        recoveryCodes.set(userId, new Set(hashes));
        refreshMfa(userId);
        return true;
      },
      async useTotpStep(userId, step) {
        await tick();
        const row = totps.get(userId);
        if (!row || row.secret === null || row.lastUsedStep >= step) return false;
        totps.set(userId, { ...row, lastUsedStep: step });
        return true;
      },
      async deleteTotp(userId) {
        await tick();
        const removed = totps.delete(userId);
        recoveryCodes.delete(userId);
        refreshMfa(userId);
        return removed;
      },
      async replaceRecoveryCodes(userId, hashes) {
        await tick();
        if (users.has(userId)) recoveryCodes.set(userId, new Set(hashes));
      },
      async useRecoveryCode(userId, hash) {
        await tick();
        return recoveryCodes.get(userId)?.delete(hash) ?? false;
      },
      async countRecoveryCodes(userId) {
        await tick();
        return recoveryCodes.get(userId)?.size ?? 0;
      },
      async createPasskey(passkey) {
        await tick();
        if (!users.has(passkey.userId)) throw new LatchError("not_found", "No such user.");
        for (const p of passkeys.values()) {
          if (p.credentialId === passkey.credentialId) throw new LatchError("conflict", "That passkey is registered already.");
        }
        passkeys.set(passkey.id, copy(passkey));
        refreshMfa(passkey.userId);
      },
      async listPasskeys(userId) {
        await tick();
        return [...passkeys.values()]
          .filter((p) => p.userId === userId)
          .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
          .map(copy);
      },
      async findPasskeyByCredentialId(credentialId) {
        await tick();
        for (const p of passkeys.values()) if (p.credentialId === credentialId) return copy(p);
        return null;
      },
      async recordPasskeyUse(id, expectedCounter, counter, at) {
        await tick();
        const p = passkeys.get(id);
        if (!p || p.counter !== expectedCounter) return false;
        passkeys.set(id, { ...p, counter, lastUsedAt: at });
        return true;
      },
      async renamePasskey(userId, id, name) {
        await tick();
        const p = passkeys.get(id);
        if (!p || p.userId !== userId) return false;
        passkeys.set(id, { ...p, name });
        return true;
      },
      async deletePasskey(userId, id) {
        await tick();
        const p = passkeys.get(id);
        if (!p || p.userId !== userId) return false;
        passkeys.delete(id);
        refreshMfa(userId);
        return true;
      },
      async deleteSecondFactors(userId) {
        await tick();
        return removeSecondFactors(userId);
      },
      async putChallenge(challenge) {
        await tick();
        challenges.set(challenge.id, copy(challenge));
      },
      async takeChallenge(id, now) {
        await tick();
        const c = challenges.get(id);
        if (!c) return null;
        challenges.delete(id);
        return c.expiresAt > now ? c : null;
      },
      async deleteExpiredChallenges(now, limit) {
        await tick();
        let removed = 0;
        for (const [id, c] of challenges) {
          if (removed >= limit) break;
          if (c.expiresAt <= now) {
            challenges.delete(id);
            removed += 1;
          }
        }
        return removed;
      },
    },

    marks: {
      async raiseFlushMark() {
        await tick();
        flushMark += 1;
        return flushMark;
      },
      async readFlushMark() {
        await tick();
        return flushMark;
      },
    },

    mail: {
      async queueMessage(message, options) {
        await tick();
        if (options?.voidTokens !== undefined && message.userId !== null) voidTokens(message.userId, options.voidTokens);
        if (options?.token !== undefined) tokens.set(hex(options.token.hash), copy(options.token));
        enqueue(message);
      },
      async findToken(hash, now) {
        await tick();
        const token = tokens.get(hex(hash));
        return token !== undefined && token.expiresAt > now ? copy(token) : null;
      },
      async claimMessages(owner, now, { leaseMs, limit }) {
        await tick();
        const due = [...outbox.values()]
          .filter((e) => e.status === "queued" && e.nextAttemptAt <= now)
          .sort((a, b) => a.nextAttemptAt - b.nextAttemptAt)
          .slice(0, limit);
        for (const entry of due) {
          entry.leaseOwner = owner;
          entry.nextAttemptAt = now + leaseMs;
          entry.attempts += 1;
        }
        return due.map(({ nextAttemptAt: _n, leaseOwner: _l, sentAt: _s, ...entry }) => copy(entry));
      },
      async markSent(id, owner, now) {
        await tick();
        const entry = leased(id, owner);
        if (entry === null) return false;
        Object.assign(entry, { status: "sent", sentAt: now, text: "", html: "", leaseOwner: null });
        return true;
      },
      async markRetry(id, owner, nextAttemptAt) {
        await tick();
        const entry = leased(id, owner);
        if (entry === null) return false;
        Object.assign(entry, { nextAttemptAt, leaseOwner: null });
        return true;
      },
      async markFailed(id, owner) {
        await tick();
        const entry = leased(id, owner);
        if (entry === null) return false;
        Object.assign(entry, { status: "failed", text: "", html: "", leaseOwner: null });
        return true;
      },
      async retryNow(now) {
        await tick();
        let n = 0;
        for (const e of outbox.values()) {
          if (e.status === "queued" && e.leaseOwner === null && e.attempts > 0 && e.nextAttemptAt > now) {
            e.nextAttemptAt = now;
            n += 1;
          }
        }
        return n;
      },
      async queueDepth() {
        await tick();
        return [...outbox.values()].filter((e) => e.status === "queued").length;
      },
      async nextDueAt() {
        await tick();
        const due = [...outbox.values()].filter((e) => e.status === "queued").map((e) => e.nextAttemptAt);
        return due.length === 0 ? null : Math.min(...due);
      },
      async listUserMessages(userId, limit) {
        await tick();
        return [...outbox.values()]
          .filter((e) => e.userId === userId)
          .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1))
          .slice(0, limit)
          .map((e) => ({
            id: e.id,
            kind: e.kind,
            to: e.to,
            status: e.status,
            attempts: e.attempts,
            createdAt: e.createdAt,
            sentAt: e.sentAt,
          }));
      },
      async deleteUserMessages(userId) {
        await tick();
        let removed = 0;
        for (const [key, entry] of outbox) {
          if (entry.userId === userId) {
            outbox.delete(key);
            removed += 1;
          }
        }
        return removed;
      },
      async deleteMessagesBefore(before, limit) {
        await tick();
        let removed = 0;
        for (const [key, entry] of outbox) {
          if (removed >= limit) break;
          if (entry.status !== "queued" && entry.createdAt < before) {
            outbox.delete(key);
            removed += 1;
          }
        }
        return removed;
      },
      async deleteExpiredTokens(now, limit) {
        await tick();
        let removed = 0;
        for (const [key, token] of tokens) {
          if (removed >= limit) break;
          if (token.expiresAt <= now) {
            tokens.delete(key);
            removed += 1;
          }
        }
        return removed;
      },
    },

    async health(): Promise<Record<string, StoreHealth>> {
      return { memory: "ok" };
    },
    async close() {},
  };
}
