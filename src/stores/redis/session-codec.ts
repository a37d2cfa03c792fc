import { createHash } from "node:crypto";
import { LatchError } from "../../core/errors.js";
import { SLOT_TAG_LENGTH } from "../../core/session-token.js";
import type { AuthMethod, Session, User } from "../../core/store.js";

/**
 * The byte layout of what the Redis store keeps. Memory per session is the
 * product requirement here (see `redis-store.ts`), so values are packed
 * binary rather than JSON with repeated field names.
 *
 * A session value (offsets 0-based; the Lua scripts read the same offsets
 * 1-based and only ever touch the fixed-size prefix):
 *
 * | offset | size | field |
 * | --- | --- | --- |
 * | 0 | 1 | flags: 1 owner id inline, 2 user agent by reference, 4 user agent inline, 8 address present |
 * | 1 | 6 | idleExpiresAt, ms, big-endian |
 * | 7 | 6 | absoluteExpiresAt |
 * | 13 | 6 | lastSeenAt |
 * | 19 | 6 | createdAt |
 * | 25 | 32 | secretHash |
 * | 57 | 1 + n | owner's user id (only with flag 1; the Lua scripts insert it) |
 * | … | 6 | user agent reference (flag 2): the hash field `a<ref>` holds the text |
 * | … | 2 + n | user agent inline (flag 4) |
 * | … | 1 | sign-in state (flag 16): bits 1 pwd, 2 otp, 4 hwk, 8 mfa (the amr), 16 pending |
 * | … | rest | ipAddress, UTF-8 (flag 8) |
 *
 * A value without flag 16 (written before second factors existed) is a
 * password sign-in: amr `["pwd"]`, not pending. The scripts never read past
 * the user agent, so the state byte is invisible to them.
 *
 * A user snapshot: `"1"` (fresh) or `"0"` (must be re-read), one byte of id
 * length, the id, then JSON `[username, email, roles, createdAt, emailVerified, mfa]`.
 */
/**
 * The fixed-size prefix of a session value, field by field: the one source
 * of its offsets. The codec below reads and writes through it, and the Lua
 * scripts get their offsets generated from it (`LUA_SESSION_LAYOUT` in
 * redis-scripts.ts), so the two cannot drift; session-codec.test.ts checks
 * that packed values put each field where the table says.
 */
export const SESSION_LAYOUT = {
  flags: { offset: 0, size: 1 },
  idleExpiresAt: { offset: 1, size: 6 },
  absoluteExpiresAt: { offset: 7, size: 6 },
  lastSeenAt: { offset: 13, size: 6 },
  createdAt: { offset: 19, size: 6 },
  secretHash: { offset: 25, size: 32 },
} as const;

/** The flag bits of byte 0. */
export const SESSION_FLAGS = { ownerInline: 1, agentRef: 2, agentInline: 4, address: 8, state: 16 } as const;

/** Where the variable part (owner id, user agent, address) starts. */
export const SESSION_FIXED_LENGTH = SESSION_LAYOUT.secretHash.offset + SESSION_LAYOUT.secretHash.size;

const FLAG_OWNER_INLINE = SESSION_FLAGS.ownerInline;
const FLAG_AGENT_REF = SESSION_FLAGS.agentRef;
const FLAG_AGENT_INLINE = SESSION_FLAGS.agentInline;
const FLAG_ADDRESS = SESSION_FLAGS.address;
const FIXED_LENGTH = SESSION_FIXED_LENGTH;
const FLAG_STATE = SESSION_FLAGS.state;
const AMR_BITS: ReadonlyArray<readonly [AuthMethod, number]> = [
  ["pwd", 1],
  ["otp", 2],
  ["hwk", 4],
  ["mfa", 8],
];
const STATE_PENDING = 16;

function packState(session: Session): Buffer {
  let state = session.pending ? STATE_PENDING : 0;
  for (const [method, bit] of AMR_BITS) if (session.amr.includes(method)) state |= bit;
  return Buffer.from([state]);
}

function unpackState(state: number | null): { amr: AuthMethod[]; pending: boolean } {
  if (state === null) return { amr: ["pwd"], pending: false };
  return { amr: AMR_BITS.filter(([, bit]) => (state & bit) !== 0).map(([method]) => method), pending: (state & STATE_PENDING) !== 0 };
}
const MAX_TIME = 2 ** 48 - 1;

export interface PackedSession {
  /** The hash field: the session id without its slot tag (the tag is in the key). */
  field: string;
  /** The value when the user agent is stored by reference (or there is none). */
  byReference: Buffer;
  /** The value with the user agent inline: used if the reference collides with another agent. */
  inline: Buffer;
  /** `a` + 6 bytes of SHA-256(userAgent), or an empty buffer when there is no user agent. */
  agentField: Buffer;
  agent: string;
  /** min(idle, absolute) expiry: the key must live at least this long. */
  expiresAt: number;
}

function time(value: number, name: string): Buffer {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_TIME) {
    throw new LatchError("invalid_input", `${name} must be a whole number of milliseconds since the epoch.`);
  }
  const bytes = Buffer.alloc(6);
  bytes.writeUIntBE(value, 0, 6);
  return bytes;
}

/**
 * The hash field of a session id: the id without its slot tag (the tag is in the key).
 *
 * @example
 * sessionField(session.id); // the last 22 characters
 */
export function sessionField(id: string): string {
  return id.slice(SLOT_TAG_LENGTH);
}

/**
 * Packs a session for the PUT script, in both user-agent forms.
 *
 * @example
 * const { field, byReference } = packSession(session);
 */
export function packSession(session: Session): PackedSession {
  const L = SESSION_LAYOUT;
  const fixed = Buffer.alloc(L.secretHash.offset);
  time(session.idleExpiresAt, "idleExpiresAt").copy(fixed, L.idleExpiresAt.offset);
  time(session.absoluteExpiresAt, "absoluteExpiresAt").copy(fixed, L.absoluteExpiresAt.offset);
  time(session.lastSeenAt, "lastSeenAt").copy(fixed, L.lastSeenAt.offset);
  time(session.createdAt, "createdAt").copy(fixed, L.createdAt.offset);
  if (session.secretHash.byteLength !== SESSION_LAYOUT.secretHash.size)
    throw new LatchError("invalid_input", "secretHash must be 32 bytes.");
  const hash = Buffer.from(session.secretHash.buffer, session.secretHash.byteOffset, session.secretHash.byteLength);
  // The state byte goes before the address, whose bytes run to the end.
  const address = Buffer.concat([
    packState(session),
    session.ipAddress === null ? Buffer.alloc(0) : Buffer.from(session.ipAddress, "utf8"),
  ]);
  const baseFlags = FLAG_STATE | (session.ipAddress === null ? 0 : FLAG_ADDRESS);
  const expiresAt = Math.min(session.idleExpiresAt, session.absoluteExpiresAt);
  const field = sessionField(session.id);

  if (session.userAgent === null) {
    fixed[0] = baseFlags;
    const value = Buffer.concat([fixed, hash, address]);
    return { field, byReference: value, inline: value, agentField: Buffer.alloc(0), agent: "", expiresAt };
  }
  const agentBytes = Buffer.from(session.userAgent, "utf8");
  if (agentBytes.byteLength > 0xffff) throw new LatchError("invalid_input", "userAgent is too long.");
  const ref = createHash("sha256").update(agentBytes).digest().subarray(0, 6);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(agentBytes.byteLength);
  const byReference = Buffer.concat([Buffer.from([baseFlags | FLAG_AGENT_REF]), fixed.subarray(1), hash, ref, address]);
  const inline = Buffer.concat([Buffer.from([baseFlags | FLAG_AGENT_INLINE]), fixed.subarray(1), hash, length, agentBytes, address]);
  return { field, byReference, inline, agentField: Buffer.concat([Buffer.from("a"), ref]), agent: session.userAgent, expiresAt };
}

export interface UnpackedSession {
  session: Omit<Session, "userId" | "userAgent"> & { userAgent: string | null };
  /** The owner's id when stored inline (a second user sharing the slot tag); otherwise the snapshot's. */
  ownerId: string | null;
  /** The reference to look up when the user agent is stored by reference. */
  agentRef: boolean;
}

/**
 * Decodes a session value. `agent` is the referenced user-agent text, which
 * the scripts return next to the value.
 *
 * @example
 * const { session, ownerId } = unpackSession(id, value, agentText);
 */
export function unpackSession(id: string, value: Buffer, agent: Buffer | null): UnpackedSession {
  const flags = value[0]!;
  let offset = FIXED_LENGTH;
  let ownerId: string | null = null;
  if (flags & FLAG_OWNER_INLINE) {
    const length = value[offset]!;
    ownerId = value.toString("utf8", offset + 1, offset + 1 + length);
    offset += 1 + length;
  }
  let userAgent: string | null = null;
  if (flags & FLAG_AGENT_REF) {
    offset += 6;
    userAgent = agent === null ? "" : agent.toString("utf8");
  } else if (flags & FLAG_AGENT_INLINE) {
    const length = value.readUInt16BE(offset);
    userAgent = value.toString("utf8", offset + 2, offset + 2 + length);
    offset += 2 + length;
  }
  let state: number | null = null;
  if (flags & FLAG_STATE) {
    state = value[offset]!;
    offset += 1;
  }
  const ipAddress = flags & FLAG_ADDRESS ? value.toString("utf8", offset) : null;
  return {
    session: {
      id,
      // A copy: the reply buffer must not be shared with callers.
      secretHash: Buffer.from(value.subarray(SESSION_LAYOUT.secretHash.offset, FIXED_LENGTH)),
      createdAt: value.readUIntBE(SESSION_LAYOUT.createdAt.offset, 6),
      lastSeenAt: value.readUIntBE(SESSION_LAYOUT.lastSeenAt.offset, 6),
      idleExpiresAt: value.readUIntBE(SESSION_LAYOUT.idleExpiresAt.offset, 6),
      absoluteExpiresAt: value.readUIntBE(SESSION_LAYOUT.absoluteExpiresAt.offset, 6),
      userAgent,
      ipAddress,
      ...unpackState(state),
    },
    ownerId,
    agentRef: (flags & FLAG_AGENT_REF) !== 0,
  };
}

/**
 * The user id as the scripts compare it: one length byte, then the UTF-8 id.
 *
 * @example
 * ownerBytes("0193…"); // <Buffer 24 30 31 39 33 …>
 */
export function ownerBytes(userId: string): Buffer {
  const id = Buffer.from(userId, "utf8");
  if (id.byteLength === 0 || id.byteLength > 255)
    throw new LatchError("invalid_input", "User ids must be 1 to 255 bytes for the Redis store.");
  return Buffer.concat([Buffer.from([id.byteLength]), id]);
}

/**
 * The copy of a user kept next to their sessions.
 *
 * @example
 * const snapshot = packUser(publicUser(record), { fresh: true });
 */
export function packUser(user: User, options: { fresh: boolean }): Buffer {
  return Buffer.concat([
    Buffer.from(options.fresh ? "1" : "0"),
    ownerBytes(user.id),
    Buffer.from(JSON.stringify([user.username, user.email, user.roles, user.createdAt, user.emailVerified, user.mfa]), "utf8"),
  ]);
}

export interface UnpackedUser {
  user: User;
  /** False when a change may have raced the copy: read the user from the database. */
  fresh: boolean;
}

/**
 * @example
 * const { user, fresh } = unpackUser(snapshot);
 */
export function unpackUser(value: Buffer): UnpackedUser {
  const length = value[1]!;
  const id = value.toString("utf8", 2, 2 + length);
  const [username, email, roles, createdAt, emailVerified, mfa] = JSON.parse(value.toString("utf8", 2 + length)) as [
    string,
    string | null,
    string[],
    number,
    boolean?,
    boolean?,
  ];
  // A copy written before emailVerified or mfa existed is not fresh: read the database.
  return {
    user: { id, username, email, emailVerified: emailVerified === true, roles, mfa: mfa === true, createdAt },
    fresh: value[0] === 0x31 && emailVerified !== undefined && mfa !== undefined,
  };
}
