import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import { decodeJwt } from "jose";
import { Secret, TOTP } from "otpauth";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSessionToken, csrfTokenFor } from "../../core/session-token.js";
import { openStores } from "../../stores/open-stores.js";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../../testing/test-server.js";
import type { SignedIn, TestServer } from "../../testing/test-server.js";

/** The code an authenticator app would show for `secret` at `at` (ms): computed here, from the secret alone. */
function codeAt(secret: string, at: number): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30, timestamp: at });
}

const STEP = 30_000;

describe("TOTP, recovery codes and the pending sign-in", () => {
  let t: TestServer;
  before(
    async () =>
      (t = await createTestServer({
        env: {
          THROTTLE_ADDRESS_FAILURES: "1000",
          THROTTLE_ACCOUNT_FAILURES: "10",
          MFA_KEY_SECRET: "a test key for sealing TOTP secrets at rest, 32+ chars",
        },
      })),
  );
  after(() => t.close());

  async function post(user: SignedIn, url: string, payload?: object, method: "POST" | "DELETE" = "POST"): Promise<LightMyRequestResponse> {
    return t.app.inject({ method, url, ...t.auth(user), ...(payload === undefined ? {} : { payload }) });
  }

  /** A user with TOTP on: their secret and recovery codes. The clock is moved past the confirming code's step. */
  async function withTotp(): Promise<{ user: SignedIn; secret: string; recoveryCodes: string[] }> {
    const user = await t.register();
    const setup = (await post(user, "/mfa/totp")).json() as { secret: string; uri: string };
    const confirm = await post(user, "/mfa/totp/confirm", { code: codeAt(setup.secret, t.clock.now()) });
    assert.equal(confirm.statusCode, 200, confirm.body);
    t.clock.advance(STEP);
    return { user, secret: setup.secret, recoveryCodes: confirm.json().recoveryCodes };
  }

  async function passwordStep(username: string): Promise<{ response: LightMyRequestResponse; cookie: string }> {
    const response = await t.app.inject({ method: "POST", url: "/login", payload: { username, password: TEST_PASSWORD } });
    return { response, cookie: setCookieValue(response)! };
  }

  const secondStep = (cookie: string, payload: object): Promise<LightMyRequestResponse> =>
    t.app.inject({ method: "POST", url: "/login/mfa", cookies: { sid: cookie }, payload });

  it("sets up TOTP: a base32 secret of at least 160 bits and its otpauth URI, pending until confirmed", async () => {
    const user = await t.register();
    const response = await post(user, "/mfa/totp");
    assert.equal(response.statusCode, 200, response.body);
    const { secret, uri } = response.json();
    assert.match(secret, /^[A-Z2-7]{32,}$/);
    const url = new URL(uri);
    assert.equal(url.protocol, "otpauth:");
    assert.equal(url.host, "totp");
    assert.equal(url.searchParams.get("secret"), secret);
    assert.equal(url.searchParams.get("issuer"), "Latch");
    // Not confirmed: sign-in is unchanged.
    const signIn = await passwordStep(user.username);
    assert.equal(signIn.response.statusCode, 200);
    assert.ok(signIn.response.json().user);
    assert.equal(signIn.response.json().user.mfa, false);
  });

  it("confirms only with a code of the new secret, then answers 10 recovery codes once and sets mfa", async () => {
    const user = await t.register();
    const { secret } = (await post(user, "/mfa/totp")).json();
    const wrong = await post(user, "/mfa/totp/confirm", { code: "000000" === codeAt(secret, t.clock.now()) ? "111111" : "000000" });
    assert.equal(wrong.statusCode, 400);
    assert.equal(wrong.json().error.code, "invalid_input");
    const right = await post(user, "/mfa/totp/confirm", { code: codeAt(secret, t.clock.now()) });
    assert.equal(right.statusCode, 200);
    const codes = right.json().recoveryCodes as string[];
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    const me = (await t.app.inject({ url: "/me", cookies: { sid: user.cookie } })).json();
    assert.equal(me.user.mfa, true);
    assert.deepEqual(me.session.amr, ["pwd"]);
    // No second confirmation of the same setup.
    const again = await post(user, "/mfa/totp/confirm", { code: codeAt(secret, t.clock.now() + STEP) });
    assert.equal(again.statusCode, 400);
  });

  it("asks for the code after the password, and the pending cookie authenticates nothing until POST /login/mfa", async () => {
    const { user, secret } = await withTotp();
    const { response, cookie } = await passwordStep(user.username);
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { mfaRequired: true, methods: ["totp", "recovery_code"] });
    assert.ok(cookie);
    for (const url of ["/me", "/protected", "/sessions", "/csrf-token"]) {
      const refused = await t.app.inject({ url, cookies: { sid: cookie } });
      assert.equal(refused.statusCode, 401, url);
    }
    const done = await secondStep(cookie, { code: codeAt(secret, t.clock.now()) });
    assert.equal(done.statusCode, 200, done.body);
    const body = done.json();
    assert.equal(body.user.id, user.userId);
    assert.equal(body.user.mfa, true);
    assert.equal(typeof body.csrfToken, "string");
    const fresh = setCookieValue(done)!;
    assert.notEqual(parseSessionToken(fresh)!.id, parseSessionToken(cookie)!.id, "a new session id, not the pending one promoted");
    const me = (await t.app.inject({ url: "/me", cookies: { sid: fresh } })).json();
    assert.deepEqual(me.session.amr, ["pwd", "otp", "mfa"]);
    // The pending one is gone.
    assert.equal((await secondStep(cookie, { code: codeAt(secret, t.clock.now() + STEP) })).statusCode, 401);
    const sessions = (await t.app.inject({ url: "/sessions", cookies: { sid: fresh } })).json().sessions as Array<{
      amr: string[];
      current: boolean;
    }>;
    assert.deepEqual(sessions.find((s) => s.current)?.amr, ["pwd", "otp", "mfa"]);
  });

  it("accepts each code once per account, one step either side of now, and no further", async () => {
    const { user, secret } = await withTotp();
    // Past the confirming code's step and its neighbours.
    t.clock.advance(2 * STEP);
    const now = t.clock.now();
    let pending = await passwordStep(user.username);
    assert.equal((await secondStep(pending.cookie, { code: codeAt(secret, now - STEP) })).statusCode, 200, "one step behind");
    pending = await passwordStep(user.username);
    const replay = await secondStep(pending.cookie, { code: codeAt(secret, now - STEP) });
    assert.equal(replay.statusCode, 401, "the same code again");
    assert.equal(replay.json().error.code, "invalid_credentials");
    assert.equal((await secondStep(pending.cookie, { code: codeAt(secret, now - 2 * STEP) })).statusCode, 401, "two steps behind");
    assert.equal((await secondStep(pending.cookie, { code: codeAt(secret, now + 2 * STEP) })).statusCode, 401, "two steps ahead");
    assert.equal((await secondStep(pending.cookie, { code: codeAt(secret, now + STEP) })).statusCode, 200, "one step ahead");
  });

  it("takes a recovery code once, with or without dashes", async () => {
    const { user, recoveryCodes } = await withTotp();
    let pending = await passwordStep(user.username);
    const used = await secondStep(pending.cookie, { recoveryCode: recoveryCodes[0]!.replace(/-/g, "").toUpperCase() });
    assert.equal(used.statusCode, 200, used.body);
    const me = (await t.app.inject({ url: "/me", cookies: { sid: setCookieValue(used)! } })).json();
    assert.deepEqual(me.session.amr, ["pwd", "otp", "mfa"]);
    pending = await passwordStep(user.username);
    assert.equal((await secondStep(pending.cookie, { recoveryCode: recoveryCodes[0] })).statusCode, 401);
    assert.equal((await secondStep(pending.cookie, { recoveryCode: recoveryCodes[1] })).statusCode, 200);
    const events = (await t.stores.events.listUserEvents(user.userId, 100)).map((e) => e.type);
    assert.ok(events.includes("recovery_code_used"));
    assert.ok(events.includes("mfa_failed"));
    assert.ok(events.includes("totp_enabled"));
  });

  it("ends a pending sign-in after 5 wrong codes, and after 5 minutes", async () => {
    const { user, secret } = await withTotp();
    const pending = await passwordStep(user.username);
    const wrong = codeAt(secret, t.clock.now() - 10 * STEP);
    for (let i = 1; i <= 5; i += 1) {
      const response = await secondStep(pending.cookie, { code: wrong });
      assert.equal(response.statusCode, 401, `wrong code ${i}`);
      assert.equal(response.json().error.code, "invalid_credentials");
    }
    const gone = await secondStep(pending.cookie, { code: codeAt(secret, t.clock.now()) });
    assert.equal(gone.statusCode, 401);
    assert.equal(gone.json().error.code, "unauthenticated");

    const later = await passwordStep(user.username);
    t.clock.advance(5 * 60_000 + 1);
    const expired = await secondStep(later.cookie, { code: codeAt(secret, t.clock.now()) });
    assert.equal(expired.json().error.code, "unauthenticated");
  });

  it("counts wrong codes against the per-account limit, so the password does not buy fresh guesses", async () => {
    const { user, secret } = await withTotp();
    const wrong = codeAt(secret, t.clock.now() - 10 * STEP);
    let last: LightMyRequestResponse | undefined;
    // Each round: a right password (no reset of the account counter) and wrong codes.
    for (let round = 0; round < 4 && last?.statusCode !== 429; round += 1) {
      const pending = await passwordStep(user.username);
      if (pending.response.statusCode === 429) {
        last = pending.response;
        break;
      }
      for (let i = 0; i < 3; i += 1) {
        last = await secondStep(pending.cookie, { code: wrong });
        if (last.statusCode === 429) break;
      }
    }
    assert.equal(last?.statusCode, 429);
    assert.ok(Number(last?.headers["retry-after"]) > 0);
    // Even the right password and code are refused until the window passes.
    assert.equal((await passwordStep(user.username)).response.statusCode, 429);
    t.clock.advance(15 * 60_000 + 1);
    const pending = await passwordStep(user.username);
    assert.equal((await secondStep(pending.cookie, { code: codeAt(secret, t.clock.now()) })).statusCode, 200);
  });

  it("without a pending sign-in, POST /login/mfa is 401 unauthenticated, even with a full session's cookie", async () => {
    const user = await t.register();
    const none = await t.app.inject({ method: "POST", url: "/login/mfa", payload: { code: "123456" } });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().error.code, "unauthenticated");
    const full = await secondStep(user.cookie, { code: "123456" });
    assert.equal(full.json().error.code, "unauthenticated");
    const foreign = await t.app.inject({
      method: "POST",
      url: "/login/mfa",
      headers: { origin: "https://evil.example" },
      payload: { code: "123456" },
    });
    assert.equal(foreign.statusCode, 403);
    assert.equal(foreign.json().error.code, "csrf");
  });

  it("POST /token with credentials needs a code: mfa_required without, invalid_credentials with a wrong one, amr in the token", async () => {
    const { user, secret } = await withTotp();
    const token = (payload: object) =>
      t.app.inject({ method: "POST", url: "/token", payload: { username: user.username, password: TEST_PASSWORD, ...payload } });
    const without = await token({});
    assert.equal(without.statusCode, 401);
    assert.equal(without.json().error.code, "mfa_required");
    const wrong = await token({ code: codeAt(secret, t.clock.now() - 10 * STEP) });
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().error.code, "invalid_credentials");
    const right = await token({ code: codeAt(secret, t.clock.now()) });
    assert.equal(right.statusCode, 200, right.body);
    assert.deepEqual(decodeJwt(right.json().access_token).amr, ["pwd", "otp", "mfa"]);
    const badPassword = await t.app.inject({
      method: "POST",
      url: "/token",
      payload: { username: user.username, password: "not the password at all", code: "123456" },
    });
    assert.equal(badPassword.json().error.code, "invalid_credentials");
    // A one-factor session's token says so.
    const plain = await t.register();
    const plainToken = await t.app.inject({ method: "POST", url: "/token", ...t.auth(plain) });
    assert.deepEqual(decodeJwt(plainToken.json().access_token).amr, ["pwd"]);
  });

  it("turns TOTP off with the password (its recovery codes void), and gives new recovery codes that void the old", async () => {
    const { user, recoveryCodes } = await withTotp();
    const session = await (async () => {
      const pending = await passwordStep(user.username);
      return secondStep(pending.cookie, { recoveryCode: recoveryCodes[0] });
    })();
    const me: SignedIn = { ...user, cookie: setCookieValue(session)!, csrfToken: session.json().csrfToken };
    const wrongPassword = await post(me, "/mfa/recovery-codes", { password: "definitely not it" });
    assert.equal(wrongPassword.statusCode, 401);
    const renewed = await post(me, "/mfa/recovery-codes", { password: TEST_PASSWORD });
    assert.equal(renewed.statusCode, 200);
    const fresh = renewed.json().recoveryCodes as string[];
    let pending = await passwordStep(user.username);
    assert.equal((await secondStep(pending.cookie, { recoveryCode: recoveryCodes[1] })).statusCode, 401, "old codes are void");
    assert.equal((await secondStep(pending.cookie, { recoveryCode: fresh[0] })).statusCode, 200);

    assert.equal((await post(me, "/mfa/totp", undefined, "DELETE")).statusCode, 400, "the password is required");
    const off = await post(me, "/mfa/totp", { password: TEST_PASSWORD }, "DELETE");
    assert.equal(off.statusCode, 204, off.body);
    const signIn = await passwordStep(user.username);
    assert.ok(signIn.response.json().user, "a password alone signs in again");
    assert.equal(signIn.response.json().user.mfa, false);
    pending = await passwordStep(user.username);
    assert.equal(await t.stores.secondFactors.countRecoveryCodes(user.userId), 0);
  });

  it("lists second factors in /me/export without secrets, and DELETE /me erases them", async () => {
    const { user, secret, recoveryCodes } = await withTotp();
    const exported = await t.app.inject({ url: "/me/export", cookies: { sid: user.cookie } });
    assert.equal(exported.statusCode, 200);
    const body = exported.json();
    assert.equal(body.secondFactors.totp.enabled, true);
    assert.equal(body.secondFactors.totp.recoveryCodesLeft, 10);
    assert.deepEqual(body.secondFactors.passkeys, []);
    assert.ok(!exported.body.includes(secret), "never the TOTP secret");
    for (const code of recoveryCodes) assert.ok(!exported.body.includes(code), "never a recovery code");
    const row = await t.stores.secondFactors.findTotp(user.userId);
    assert.ok(row?.secret && !row.secret.includes(secret), "not the base32 text at rest either, with a key configured");
    const erased = await post(user, "/me", { password: TEST_PASSWORD }, "DELETE");
    assert.equal(erased.statusCode, 204);
    assert.equal(await t.stores.secondFactors.findTotp(user.userId), null);
    assert.equal(await t.stores.secondFactors.countRecoveryCodes(user.userId), 0);
  });

  it("lets an admin remove a user's second factors and end their sessions; others get 403, unknown ids 404", async () => {
    const { user } = await withTotp();
    const admin = await t.registerAdmin();
    const stranger = await t.register();
    assert.equal((await post(stranger, `/admin/users/${user.userId}/mfa`, undefined, "DELETE")).statusCode, 403);
    assert.equal((await post(admin, `/admin/users/00000000-0000-7000-8000-000000000000/mfa`, undefined, "DELETE")).statusCode, 404);
    const reset = await post(admin, `/admin/users/${user.userId}/mfa`, undefined, "DELETE");
    assert.equal(reset.statusCode, 204, reset.body);
    assert.equal((await t.app.inject({ url: "/me", cookies: { sid: user.cookie } })).statusCode, 401, "their sessions ended");
    const signIn = await passwordStep(user.username);
    assert.equal(signIn.response.json().user.mfa, false);
    const listed = (await t.app.inject({ url: "/admin/users?limit=100", cookies: { sid: admin.cookie } })).json().users as Array<{
      id: string;
      mfa: boolean;
    }>;
    assert.equal(listed.find((u) => u.id === user.userId)?.mfa, false);
    assert.ok((await t.stores.events.listUserEvents(user.userId, 100)).some((e) => e.type === "mfa_reset"));
  });
});

describe("a pending sign-in's cookie", () => {
  let t: TestServer;
  let dir: string;
  before(async () => {
    // SQLite behind the session cache, as `npm start` runs: the fast path answers from that cache.
    dir = mkdtempSync(join(tmpdir(), "latch-pending-"));
    const stores = await openStores({ database: { kind: "sqlite", path: join(dir, "latch.db") }, redisUrl: null });
    t = await createTestServer({ stores, env: { THROTTLE_ADDRESS_FAILURES: "1000" } });
  });
  after(async () => {
    await t.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Every contract route that needs a session, a token or an admin.
  const ROUTES: ReadonlyArray<readonly [string, string]> = [
    ["POST", "/logout"],
    ["GET", "/protected"],
    ["GET", "/dashboard"],
    ["GET", "/me"],
    ["GET", "/csrf-token"],
    ["GET", "/sessions"],
    ["DELETE", "/sessions/SESSION"],
    ["POST", "/sessions/revoke-others"],
    ["POST", "/password"],
    ["POST", "/token"],
    ["GET", "/me/export"],
    ["DELETE", "/me"],
    ["GET", "/admin"],
    ["GET", "/admin/users"],
    ["PATCH", "/admin/users/USER"],
    ["POST", "/admin/users/USER/revoke-sessions"],
    ["DELETE", "/users/USER"],
    ["POST", "/email/verify/send"],
    ["POST", "/me/email"],
    ["POST", "/mfa/totp"],
    ["POST", "/mfa/totp/confirm"],
    ["DELETE", "/mfa/totp"],
    ["POST", "/mfa/recovery-codes"],
    ["DELETE", "/admin/users/USER/mfa"],
    ["POST", "/passkeys/register/options"],
    ["POST", "/passkeys/register"],
    ["GET", "/passkeys"],
    ["DELETE", "/passkeys/PASSKEY"],
  ];

  it("gets 401 on every contract route but POST /login/mfa, even with the CSRF token its secret would give, from an admin's account", async () => {
    const admin = await t.registerAdmin();
    const setup = (await t.app.inject({ method: "POST", url: "/mfa/totp", ...t.auth(admin) })).json();
    const code = TOTP.generate({ secret: Secret.fromBase32(setup.secret), timestamp: t.clock.now() });
    assert.equal((await t.app.inject({ method: "POST", url: "/mfa/totp/confirm", ...t.auth(admin), payload: { code } })).statusCode, 200);
    t.clock.advance(STEP);
    const login = await t.app.inject({ method: "POST", url: "/login", payload: { username: admin.username, password: TEST_PASSWORD } });
    assert.equal(login.json().mfaRequired, true);
    const cookie = setCookieValue(login)!;
    const parsed = parseSessionToken(cookie)!;
    const csrf = csrfTokenFor(parsed.secret);
    let walked = 0;
    for (const [method, template] of ROUTES) {
      const url = template
        .replace("SESSION", parsed.id)
        .replace("USER", admin.userId)
        .replace("PASSKEY", "0193aaaa-0000-7000-8000-000000000000");
      if (
        !t.app.hasRoute({
          method: method as "GET",
          url: url.replace(admin.userId, ":id").replace(parsed.id, ":id").replace("0193aaaa-0000-7000-8000-000000000000", ":id"),
        })
      )
        continue;
      walked += 1;
      const response = await t.app.inject({
        method: method as "GET",
        url,
        cookies: { sid: cookie },
        headers: { "x-csrf-token": csrf },
        ...(method === "GET" || template === "/token"
          ? {}
          : {
              payload: {
                password: TEST_PASSWORD,
                currentPassword: TEST_PASSWORD,
                newPassword: "another fine passphrase",
                roles: ["user"],
                code,
                email: "x@example.com",
              },
            }),
      });
      assert.equal(response.statusCode, 401, `${method} ${template}: ${response.body}`);
      assert.equal(response.json().error.code, "unauthenticated", `${method} ${template}`);
    }
    assert.ok(walked >= ROUTES.length - 2, `walked ${walked} routes`);
    // The pages treat it as signed out; and nothing changed meanwhile.
    const page = await t.app.inject({ url: "/account", cookies: { sid: cookie } });
    assert.equal(page.statusCode, 302);
    assert.equal(page.headers.location, "/account/signin");
    assert.ok(await t.stores.users.findUserById(admin.userId));
    // Still usable for its one purpose.
    const done = await t.app.inject({
      method: "POST",
      url: "/login/mfa",
      cookies: { sid: cookie },
      payload: { code: TOTP.generate({ secret: Secret.fromBase32(setup.secret), timestamp: t.clock.now() }) },
    });
    assert.equal(done.statusCode, 200, done.body);
  });

  it("is refused by the fast path (answered by Fastify's 401) over a real socket", async () => {
    const user = await t.register();
    const setup = (await t.app.inject({ method: "POST", url: "/mfa/totp", ...t.auth(user) })).json();
    await t.app.inject({
      method: "POST",
      url: "/mfa/totp/confirm",
      ...t.auth(user),
      payload: { code: TOTP.generate({ secret: Secret.fromBase32(setup.secret), timestamp: t.clock.now() }) },
    });
    const login = await t.app.inject({ method: "POST", url: "/login", payload: { username: user.username, password: TEST_PASSWORD } });
    const cookie = setCookieValue(login)!;
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    const address = t.app.server.address() as { port: number };
    const before = t.fastPath.answered;
    for (const path of ["/protected", "/dashboard"]) {
      // Twice: the second request would be a cache hit for a full session.
      for (let i = 0; i < 2; i += 1) {
        const response = await fetch(`http://127.0.0.1:${address.port}${path}`, { headers: { cookie: `sid=${cookie}` } });
        assert.equal(response.status, 401, path);
      }
    }
    const full = await fetch(`http://127.0.0.1:${address.port}/protected`, { headers: { cookie: `sid=${user.cookie}` } });
    assert.equal(full.status, 200);
    await fetch(`http://127.0.0.1:${address.port}/protected`, { headers: { cookie: `sid=${user.cookie}` } });
    assert.ok(t.fastPath.answered > before, "the fast path does answer full sessions");
  });
});
