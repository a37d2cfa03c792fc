import { randomBytes, randomFillSync, randomUUID } from "node:crypto";
import { issueSessionToken } from "../core/session-token.js";
import type { Session, UserRecord } from "../core/store.js";

const MINUTE = 60_000;

/**
 * A user row with a fresh id and a random name, for store tests (and the
 * exported conformance suite). No email unless overridden.
 */
export function testUser(overrides: Partial<UserRecord> = {}): UserRecord {
  const tag = randomBytes(6).toString("hex");
  const now = Date.now();
  return {
    id: randomUUID(),
    username: `u_${tag}`,
    usernameKey: `u_${tag}`,
    email: null,
    emailKey: null,
    emailVerified: false,
    passwordHash: "$argon2id$x",
    roles: ["user"],
    mfa: false,
    createdAt: now,
    updatedAt: now,
    ...overrides,
  };
}

/** A live session row for the user, with a real token's id and secret hash (30 min idle, 24 h absolute). */
export function testSession(userId: string, overrides: Partial<Session> = {}): Session {
  const now = Date.now();
  const issued = issueSessionToken(userId, (bytes) => void randomFillSync(bytes));
  return {
    id: issued.id,
    userId,
    secretHash: issued.secretHash,
    createdAt: now,
    lastSeenAt: now,
    idleExpiresAt: now + 30 * MINUTE,
    absoluteExpiresAt: now + 24 * 60 * MINUTE,
    userAgent: "latch-test/1.0",
    ipAddress: "192.0.2.0",
    amr: ["pwd"],
    pending: false,
    ...overrides,
  };
}
