import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import { issueSessionToken } from "../../core/session-token.js";
import type { Session } from "../../core/store.js";
import { LUA_SESSION_LAYOUT } from "./redis-scripts.js";
import { packSession, SESSION_FIXED_LENGTH, SESSION_FLAGS, SESSION_LAYOUT, unpackSession } from "./session-codec.js";

function session(overrides: Partial<Session> = {}): Session {
  const issued = issueSessionToken("user-1", (b) => void randomFillSync(b));
  return {
    id: issued.id,
    userId: "user-1",
    secretHash: issued.secretHash,
    createdAt: 1_700_000_000_001,
    lastSeenAt: 1_700_000_000_002,
    idleExpiresAt: 1_700_000_000_003,
    absoluteExpiresAt: 1_700_000_000_004,
    userAgent: "Mozilla/5.0",
    ipAddress: "203.0.113.0",
    amr: ["pwd"],
    pending: false,
    ...overrides,
  };
}

describe("the Redis session layout", () => {
  it("tiles the fixed prefix with its fields, in order, without gaps or overlaps", () => {
    let next = 0;
    for (const [name, field] of Object.entries(SESSION_LAYOUT)) {
      assert.equal(field.offset, next, name);
      next = field.offset + field.size;
    }
    assert.equal(SESSION_FIXED_LENGTH, next);
  });

  it("packs every field where the table says, in both user-agent forms", () => {
    const s = session();
    const packed = packSession(s);
    for (const value of [packed.byReference, packed.inline]) {
      const at = (name: "idleExpiresAt" | "absoluteExpiresAt" | "lastSeenAt" | "createdAt"): number =>
        value.readUIntBE(SESSION_LAYOUT[name].offset, SESSION_LAYOUT[name].size);
      assert.equal(at("idleExpiresAt"), s.idleExpiresAt);
      assert.equal(at("absoluteExpiresAt"), s.absoluteExpiresAt);
      assert.equal(at("lastSeenAt"), s.lastSeenAt);
      assert.equal(at("createdAt"), s.createdAt);
      const { offset, size } = SESSION_LAYOUT.secretHash;
      assert.deepEqual(value.subarray(offset, offset + size), Buffer.from(s.secretHash));
      assert.ok((value[SESSION_LAYOUT.flags.offset]! & SESSION_FLAGS.address) !== 0);
    }
    assert.ok((packed.byReference[0]! & SESSION_FLAGS.agentRef) !== 0);
    assert.ok((packed.inline[0]! & SESSION_FLAGS.agentInline) !== 0);
    const back = unpackSession(s.id, packed.inline, null).session;
    assert.equal(back.idleExpiresAt, s.idleExpiresAt);
    assert.equal(back.lastSeenAt, s.lastSeenAt);
    assert.equal(back.userAgent, s.userAgent);
    assert.equal(back.ipAddress, s.ipAddress);
  });

  it("gives the Lua scripts the same offsets, 1-based, generated from the table", () => {
    const lua = LUA_SESSION_LAYOUT;
    const match = /local AT_IDLE, AT_ABS, AT_LAST = (\d+), (\d+), (\d+)/.exec(lua);
    assert.ok(match, lua);
    assert.deepEqual(match.slice(1).map(Number), [
      SESSION_LAYOUT.idleExpiresAt.offset + 1,
      SESSION_LAYOUT.absoluteExpiresAt.offset + 1,
      SESSION_LAYOUT.lastSeenAt.offset + 1,
    ]);
    assert.match(lua, new RegExp(`local FIXED, VAR = ${SESSION_FIXED_LENGTH}, ${SESSION_FIXED_LENGTH + 1}`));
    assert.match(lua, new RegExp(`local F_OWNER, F_AGENT_REF = ${SESSION_FLAGS.ownerInline}, ${SESSION_FLAGS.agentRef}`));
    // TOUCH rewrites idle and lastSeen in one splice that assumes idle comes first.
    assert.ok(SESSION_LAYOUT.idleExpiresAt.offset + 6 <= SESSION_LAYOUT.lastSeenAt.offset);
  });

  it("keeps amr and the pending state in a byte before the address, and reads a value without it as a password sign-in", () => {
    for (const state of [
      { amr: ["pwd"], pending: true },
      { amr: ["pwd", "otp", "mfa"], pending: false },
      { amr: ["hwk", "mfa"], pending: false },
    ] as const) {
      for (const ipAddress of [null, "198.51.100.0"]) {
        const s = session({ amr: [...state.amr], pending: state.pending, ipAddress, userAgent: null });
        const packed = packSession(s).byReference;
        assert.ok((packed[0]! & SESSION_FLAGS.state) !== 0);
        const back = unpackSession(s.id, packed, null).session;
        assert.deepEqual(back.amr, state.amr);
        assert.equal(back.pending, state.pending);
        assert.equal(back.ipAddress, ipAddress);
      }
    }
    // As written before second factors: no state flag, no state byte.
    const s = session({ userAgent: null });
    const packed = Buffer.from(packSession(s).byReference);
    const old = Buffer.concat([
      Buffer.from([packed[0]! & ~SESSION_FLAGS.state]),
      packed.subarray(1, SESSION_FIXED_LENGTH),
      packed.subarray(SESSION_FIXED_LENGTH + 1),
    ]);
    const back = unpackSession(s.id, old, null).session;
    assert.deepEqual(back.amr, ["pwd"]);
    assert.equal(back.pending, false);
    assert.equal(back.ipAddress, s.ipAddress);
  });
});
