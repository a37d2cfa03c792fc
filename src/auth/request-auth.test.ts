import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { before, describe, it } from "node:test";
import { createFakeClock } from "../core/runtime.js";
import { createSessionManager } from "../core/sessions.js";
import type { SessionManager } from "../core/sessions.js";
import type { Stores } from "../core/store.js";
import type { TokenVerification } from "../core/tokens.js";
import { createMemoryStores } from "../stores/memory/index.js";
import { testUser } from "../stores/test-fixtures.js";
import { createRequestAuthenticator, sessionKind } from "./request-auth.js";

describe("who is this request", () => {
  let stores: Stores;
  let sessions: SessionManager;
  let token: string;
  let otherToken: string;
  const clock = { now: () => Date.now() };

  before(async () => {
    stores = createMemoryStores();
    sessions = createSessionManager({
      store: stores.sessions,
      runtime: { clock, random: (bytes) => void randomFillSync(bytes) },
      policy: { idleTimeoutMs: 600_000, absoluteTimeoutMs: 3_600_000, renewIntervalMs: 60_000 },
    });
    const user = testUser();
    await stores.users.createUser(user);
    token = (await sessions.create(user.id, { userAgent: null, ipAddress: null })).token;
    otherToken = (await sessions.create(user.id, { userAgent: null, ipAddress: null })).token;
  });

  function authenticator(verify?: (token: string) => Promise<TokenVerification>) {
    return createRequestAuthenticator({
      sessions,
      cookieNames: ["__Host-sid", "sid"],
      bearer: verify === undefined ? null : { verify, sessions: stores.sessions, clock },
    });
  }

  it("is nobody without a cookie, and a session with one, under the name it came by", async () => {
    const auth = authenticator();
    assert.deepEqual(await auth.identify({}), { kind: "none" });
    const who = await auth.identify({ cookie: `x=1; sid=${token}` });
    assert.equal(who.kind, "session");
    if (who.kind === "session") {
      assert.equal(who.cookieName, "sid");
      assert.equal(who.token, token);
    }
  });

  it("lets the first session cookie present decide, valid or not", async () => {
    const auth = authenticator();
    assert.deepEqual(await auth.identify({ cookie: `__Host-sid=forged; sid=${token}` }), { kind: "none" });
    const who = await auth.identify({ cookie: `sid=${otherToken}; __Host-sid=${token}` });
    assert.ok(who.kind === "session" && who.cookieName === "__Host-sid" && who.token === token);
    assert.equal(auth.cookieValue(`sid=${otherToken}; __Host-sid=${token}`), token);
  });

  it("prefers a Bearer header to the cookie unless told to ignore it, and refuses one it cannot verify", async () => {
    const auth = authenticator(async () => ({ valid: false, reason: "malformed", message: "no" }) as TokenVerification);
    const headers = { authorization: "Bearer abc.def.ghi", cookie: `sid=${token}` };
    assert.deepEqual(await auth.identify(headers), { kind: "invalid_token", message: "no" });
    assert.equal((await auth.identify(headers, { bearer: "deny" })).kind, "session");
    const noBearer = authenticator();
    assert.deepEqual(await noBearer.identify(headers), { kind: "invalid_token", message: "This server does not accept Bearer tokens." });
  });

  it("answers from memory only what the store can tell from memory", () => {
    // The memory store has no in-process cache in front: nothing is known without a read.
    assert.equal(authenticator().cachedSession(token), undefined);
    assert.equal(authenticator().cachedSession("malformed"), null);
  });
});

describe("session kinds", () => {
  it("admit a pending sign-in only where its kind is asked for by name", async () => {
    const stores = createMemoryStores();
    const clock = createFakeClock(Date.now());
    const sessions = createSessionManager({
      store: stores.sessions,
      runtime: { clock, random: (b) => void randomFillSync(b) },
      policy: { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 },
    });
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
