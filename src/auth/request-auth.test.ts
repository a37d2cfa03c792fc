import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { describe, it } from "node:test";
import { createFakeClock } from "../core/runtime.js";
import { createSessionManager } from "../core/sessions.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { testUser } from "../stores/test-fixtures.js";
import { createRequestAuthenticator, sessionKind } from "./request-auth.js";

describe("session kinds", () => {
  it("admit a pending sign-in only where its kind is asked for by name", async () => {
    const stores = createMemoryStores();
    const clock = createFakeClock(Date.now());
    const sessions = createSessionManager({ store: stores.sessions, runtime: { clock, random: (b) => void randomFillSync(b) }, policy: { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 } });
    const auth = createRequestAuthenticator({ sessions, cookieNames: ["sid"], bearer: null });
    const user = testUser();
    await stores.users.createUser(user);
    const pending = await sessions.create(user.id, { userAgent: null, ipAddress: null }, { amr: ["pwd"], pendingForMs: 300_000 });
    const full = await sessions.create(user.id, { userAgent: null, ipAddress: null }, { amr: ["pwd", "otp", "mfa"] });
    assert.equal(sessionKind(pending.session), "pending_mfa");
    assert.equal(sessionKind(full.session), "session");
    assert.equal(pending.session.absoluteExpiresAt, clock.now() + 300_000, "5 minutes, idle and absolute alike");
    assert.equal(pending.session.idleExpiresAt, clock.now() + 300_000);

    assert.deepEqual(await auth.identify({ cookie: `sid=${pending.token}` }), { kind: "none" });
    assert.equal(await auth.session(pending.token), null);
    assert.equal((await auth.session(pending.token, "pending_mfa"))?.session.id, pending.session.id);
    assert.equal(await auth.session(full.token, "pending_mfa"), null, "a full session is not a pending one");
    const who = await auth.identify({ cookie: `sid=${full.token}` });
    assert.equal(who.kind, "session");
    assert.deepEqual(who.kind === "session" ? who.valid.session.amr : null, ["pwd", "otp", "mfa"]);
    clock.advance(300_001);
    assert.equal(await auth.session(pending.token, "pending_mfa"), null, "gone after 5 minutes");
  });
});
