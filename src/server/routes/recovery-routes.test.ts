import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startTestSmtpServer } from "../../mail/smtp-test-server.js";
import type { ReceivedMail, TestSmtpServer } from "../../mail/smtp-test-server.js";
import type { MailSender } from "../../mail/sender.js";
import { verifyEmailMail } from "../../mail/templates.js";
import { startServerMail } from "../mail.js";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../../testing/test-server.js";
import type { SignedIn, TestServer } from "../../testing/test-server.js";
import { FORGOT_MESSAGE } from "./recovery-routes.js";

const PUBLIC_URL = "http://localhost:3999";
const quiet = { info: () => {}, warn: () => {} };
let counter = 0;
const fresh = (): { username: string; email: string } => {
  counter += 1;
  const tag = `${Date.now().toString(36)}${counter}`;
  return { username: `rec${tag}`, email: `rec${tag}@example.com` };
};

describe("account recovery and verified email (real SMTP server)", () => {
  let smtp: TestSmtpServer;
  let t: TestServer;
  let sender: MailSender;

  before(async () => {
    smtp = await startTestSmtpServer();
    t = await createTestServer({ env: { SMTP_URL: smtp.url, PUBLIC_URL, MAIL_FROM: "Latch Test <auth@latch.test>" } });
    sender = startServerMail(t.context, quiet, { pollIntervalMs: 50 });
  });
  after(async () => {
    await sender.stop();
    await t.close();
    await smtp.close();
  });

  /** Waits for the next message to `to` (by count of messages to that address). */
  async function mailTo(to: string, nth = 1): Promise<ReceivedMail> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const mine = smtp.received.filter((m) => m.to.includes(to));
      if (mine.length >= nth) return mine[nth - 1]!;
      if (Date.now() > deadline) throw new Error(`no message ${nth} to ${to}; got ${mine.length}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const countTo = (to: string): number => smtp.received.filter((m) => m.to.includes(to)).length;

  async function register(withEmail = true): Promise<SignedIn & { email: string }> {
    const { username, email } = fresh();
    const response = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: withEmail ? { username, password: TEST_PASSWORD, email } : { username, password: TEST_PASSWORD },
    });
    assert.equal(response.statusCode, 201, response.body);
    const body = response.json();
    return { response, cookie: setCookieValue(response)!, csrfToken: body.csrfToken, userId: body.user.id, username, email };
  }

  const post = (url: string, payload: unknown, signedIn?: SignedIn) =>
    t.app.inject({ method: "POST", url, payload: payload as Record<string, unknown>, ...(signedIn ? t.auth(signedIn) : {}) });

  it("registration with an email sends a verification message whose link carries the token in the fragment; verifying marks the user", async () => {
    const me = await register();
    assert.equal(me.response.json().user.emailVerified, false);
    const mail = await mailTo(me.email);
    assert.deepEqual(
      mail.parsed.from?.value.map((a) => [a.name, a.address]),
      [["Latch Test", "auth@latch.test"]],
    );
    assert.equal(mail.subject, "Confirm your email address");
    assert.ok(mail.text.length > 0 && mail.html.length > 0, "a text and an HTML part");
    assert.ok(mail.text.includes(`${PUBLIC_URL}/account/verify-email#token=${mail.token}`));
    assert.ok(mail.html.includes(`${PUBLIC_URL}/account/verify-email#token=${mail.token}`));
    assert.doesNotMatch(mail.text + mail.html, /\?token=/);
    assert.match(mail.messageId, /@latch\.test>?$/);

    const verified = await post("/email/verify", { token: mail.token });
    assert.equal(verified.statusCode, 200, verified.body);
    assert.equal(verified.json().user.emailVerified, true);
    const me2 = await t.app.inject({ url: "/me", cookies: { sid: me.cookie } });
    assert.equal(me2.json().user.emailVerified, true, "live sessions see it at once");
    const again = await post("/email/verify", { token: mail.token });
    assert.equal(again.statusCode, 400);
    assert.equal(again.json().error.code, "invalid_input");
  });

  it("forgot-password answers 202 with one body whether or not the account exists or has an email; only a real account with an email gets mail", async () => {
    const me = await register();
    const noEmail = await register(false);
    const answers = await Promise.all([
      post("/password/forgot", { username: me.username }),
      post("/password/forgot", { email: me.email.toUpperCase() }),
      post("/password/forgot", { username: "nobody-has-this-name" }),
      post("/password/forgot", { email: "nobody@example.com" }),
      post("/password/forgot", { username: noEmail.username }),
    ]);
    for (const answer of answers) {
      assert.equal(answer.statusCode, 202);
      assert.deepEqual(answer.json(), { message: FORGOT_MESSAGE });
    }
    await t.context.mail.idle();
    const first = await mailTo(me.email, 2);
    const second = await mailTo(me.email, 3);
    assert.deepEqual([first.subject, second.subject], ["Reset your password", "Reset your password"]);
    assert.ok(first.text.includes(`${PUBLIC_URL}/account/reset#token=`));
  });

  it("a reset sets the password, ends every session, signs nobody in, sends a notice, and its token works once", async () => {
    const me = await register();
    const other = await t.login(me.username);
    await mailTo(me.email);
    await post("/password/forgot", { username: me.username });
    await t.context.mail.idle();
    const { token } = await mailTo(me.email, 2);
    const reset = await t.app.inject({
      method: "POST",
      url: "/password/reset",
      payload: { token, newPassword: "a brand new passphrase" },
      cookies: { sid: me.cookie },
    });
    assert.equal(reset.statusCode, 200, reset.body);
    assert.equal(typeof reset.json().message, "string");
    assert.doesNotMatch(String(reset.headers["set-cookie"] ?? ""), /sid=[^;]+\./, "no new session cookie");
    for (const cookie of [me.cookie, other.cookie])
      assert.equal((await t.app.inject({ url: "/me", cookies: { sid: cookie } })).statusCode, 401);
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { username: me.username, password: TEST_PASSWORD } })).statusCode,
      401,
    );
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { username: me.username, password: "a brand new passphrase" } }))
        .statusCode,
      200,
    );
    const notice = await mailTo(me.email, 3);
    assert.equal(notice.subject, "Your password was changed");
    assert.doesNotMatch(notice.text + notice.html, /brand new passphrase/);
    const reuse = await post("/password/reset", { token, newPassword: "yet another passphrase" });
    assert.equal(reuse.statusCode, 400);
    assert.equal(reuse.json().error.code, "invalid_input");
  });

  it("a newer reset voids the older link; a rejected password leaves the link usable", async () => {
    const me = await register();
    await mailTo(me.email);
    await post("/password/forgot", { username: me.username });
    await t.context.mail.idle();
    const older = (await mailTo(me.email, 2)).token;
    await post("/password/forgot", { username: me.username });
    await t.context.mail.idle();
    const newer = (await mailTo(me.email, 3)).token;
    assert.equal((await post("/password/reset", { token: older, newPassword: "a brand new passphrase" })).statusCode, 400);
    const weak = await post("/password/reset", { token: newer, newPassword: "password" });
    assert.equal(weak.statusCode, 400);
    assert.match(weak.json().error.message, /newPassword/);
    assert.equal((await post("/password/reset", { token: newer, newPassword: "a brand new passphrase" })).statusCode, 200);
  });

  it("a reset link expires after 30 minutes and a password change voids it", async () => {
    const me = await register();
    await mailTo(me.email);
    await post("/password/forgot", { username: me.username });
    await t.context.mail.idle();
    const expiring = (await mailTo(me.email, 2)).token;
    t.clock.advance(30 * 60_000 + 1);
    assert.equal((await post("/password/reset", { token: expiring, newPassword: "a brand new passphrase" })).statusCode, 400);

    const signedIn = await t.login(me.username);
    await post("/password/forgot", { username: me.username });
    await t.context.mail.idle();
    const voided = (await mailTo(me.email, 3)).token;
    const changed = await post("/password", { currentPassword: TEST_PASSWORD, newPassword: "changed passphrase here" }, signedIn);
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal((await mailTo(me.email, 4)).subject, "Your password was changed");
    assert.equal((await post("/password/reset", { token: voided, newPassword: "a brand new passphrase" })).statusCode, 400);
  });

  it("a verification link lasts 24 hours", async () => {
    const me = await register();
    const { token } = await mailTo(me.email);
    t.clock.advance(24 * 60 * 60_000 + 1);
    assert.equal((await post("/email/verify", { token })).statusCode, 400);
  });

  it("at most 3 reset messages per account per hour; later requests still get 202", async () => {
    const me = await register();
    await mailTo(me.email);
    for (let i = 0; i < 5; i += 1) assert.equal((await post("/password/forgot", { username: me.username })).statusCode, 202);
    await t.context.mail.idle();
    await mailTo(me.email, 4);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(countTo(me.email), 4, "one verification and three resets");
  });

  it("POST /email/verify/send queues a new link; refuses without a session, without an email, and once verified", async () => {
    const me = await register();
    const first = await mailTo(me.email);
    assert.equal((await t.app.inject({ method: "POST", url: "/email/verify/send" })).statusCode, 401);
    const sent = await post("/email/verify/send", undefined, me);
    assert.equal(sent.statusCode, 202, sent.body);
    const second = await mailTo(me.email, 2);
    assert.notEqual(second.token, first.token);
    assert.equal((await post("/email/verify", { token: second.token })).statusCode, 200);
    const verified = await post("/email/verify/send", undefined, me);
    assert.equal(verified.statusCode, 400);
    assert.equal(verified.json().error.code, "invalid_input");
    const noEmail = await register(false);
    assert.equal((await post("/email/verify/send", undefined, noEmail)).statusCode, 400);
  });

  it("POST /me/email replaces the email, unverified, sends a link to the new address and a notice to the old; the old link dies", async () => {
    const me = await register();
    const oldLink = (await mailTo(me.email)).token;
    const next = fresh().email;
    assert.equal((await post("/me/email", { email: next, password: "wrong password!" }, me)).statusCode, 401);
    assert.equal((await post("/me/email", { email: "not an email", password: TEST_PASSWORD }, me)).statusCode, 400);
    const taken = await register();
    const conflict = await post("/me/email", { email: taken.email, password: TEST_PASSWORD }, me);
    assert.equal(conflict.statusCode, 409);
    assert.equal(conflict.json().error.code, "conflict");
    assert.equal(
      (await post("/me/email", { email: taken.username, password: TEST_PASSWORD }, me)).statusCode,
      400,
      "a username is not an email",
    );
    assert.equal(
      (
        await t.app.inject({
          method: "POST",
          url: "/me/email",
          payload: { email: next, password: TEST_PASSWORD },
          cookies: { sid: me.cookie },
        })
      ).statusCode,
      403,
      "CSRF token required",
    );

    const changed = await post("/me/email", { email: next, password: TEST_PASSWORD }, me);
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal(changed.json().user.email, next);
    assert.equal(changed.json().user.emailVerified, false);
    const link = await mailTo(next);
    assert.equal(link.subject, "Confirm your email address");
    const notice = await mailTo(me.email, 2);
    assert.equal(notice.subject, "Your email address was changed");
    assert.equal(notice.token, null);
    assert.equal((await post("/email/verify", { token: oldLink })).statusCode, 400, "the old address's link is void");
    assert.equal((await post("/email/verify", { token: link.token })).statusCode, 200);
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { email: next, password: TEST_PASSWORD } })).statusCode,
      200,
      "signs in with the new email",
    );
    assert.equal(
      (await t.app.inject({ method: "POST", url: "/login", payload: { email: me.email, password: TEST_PASSWORD } })).statusCode,
      401,
      "not with the old one",
    );
  });

  it("bad input: every refusal in the contract's error shape", async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ["/password/forgot", {}, 400, "invalid_input"],
      ["/password/forgot", { username: 42 }, 400, "invalid_input"],
      ["/password/reset", { token: "short", newPassword: "a brand new passphrase" }, 400, "invalid_input"],
      ["/password/reset", { token: "A".repeat(43), newPassword: "a brand new passphrase" }, 400, "invalid_input"],
      ["/password/reset", { token: "A".repeat(43) }, 400, "invalid_input"],
      ["/email/verify", { token: "A".repeat(43) }, 400, "invalid_input"],
      ["/email/verify", {}, 400, "invalid_input"],
      ["/email/verify", [], 400, "invalid_input"],
    ];
    for (const [url, payload, status, code] of cases) {
      const answer = await post(url, payload);
      assert.equal(answer.statusCode, status, `${url} ${JSON.stringify(payload)}`);
      assert.equal(answer.json().error.code, code);
      assert.equal(typeof answer.json().error.message, "string");
    }
    const text = await t.app.inject({
      method: "POST",
      url: "/password/forgot",
      payload: "username=x",
      headers: { "content-type": "text/plain" },
    });
    assert.equal(text.statusCode, 415);
    const foreign = await t.app.inject({
      method: "POST",
      url: "/password/forgot",
      payload: { username: "x" },
      headers: { origin: "https://evil.example" },
    });
    assert.equal(foreign.statusCode, 403);
    assert.equal(foreign.json().error.code, "csrf");
  });

  it("GET /me/export lists the messages' metadata, never a body or token; DELETE /me removes queued messages", async () => {
    const me = await register();
    const mail = await mailTo(me.email);
    const exported = await t.app.inject({ url: "/me/export", cookies: { sid: me.cookie } });
    const body = exported.json();
    assert.equal(body.profile.emailVerified, false);
    assert.equal(body.messages.length, 1);
    assert.equal(body.messages[0].kind, "verify_email");
    assert.equal(body.messages[0].status, "sent");
    assert.ok(!exported.body.includes(mail.token!));
    // A message still queued (the sender does not run for it in time) is gone with the account.
    await t.stores.mail.queueMessage({
      id: "0190f000-0000-7000-8000-000000000001",
      userId: me.userId,
      kind: "password_changed",
      to: me.email,
      subject: "s",
      text: "t",
      html: "h",
      createdAt: t.clock.now() + 3_600_000,
    });
    const deleted = await t.app.inject({ method: "DELETE", url: "/me", ...t.auth(me), payload: { password: TEST_PASSWORD } });
    assert.equal(deleted.statusCode, 204);
    assert.deepEqual(await t.stores.mail.listUserMessages(me.userId, 10), []);
  });

  it("forgot-password takes about the same time for known and unknown accounts (medians of 50, generous bound)", async () => {
    // A fresh hour for the per-address counter the tests above used up.
    t.clock.advance(3_600_000);
    const me = await register();
    await mailTo(me.email);
    const time = async (username: string): Promise<number> => {
      const start = process.hrtime.bigint();
      const answer = await post("/password/forgot", { username });
      assert.equal(answer.statusCode, 202);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      await t.context.mail.idle();
      return ms;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 50; i += 1) {
      known.push(await time(me.username));
      unknown.push(await time(`nobody${i}`));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const [k, u] = [median(known), median(unknown)];
    // The look-up and the queueing run after the answer, so both sides do the same work before it.
    assert.ok(k < u * 3 + 1 && u < k * 3 + 1, `known ${k.toFixed(3)} ms vs unknown ${u.toFixed(3)} ms`);
  });
});

describe("forgot-password throttling per address", () => {
  it("answers 429 with Retry-After past THROTTLE_PASSWORD_RESETS per address", async () => {
    const t = await createTestServer({ env: { THROTTLE_PASSWORD_RESETS: "3", MAIL_OUTBOX: "/nonexistent/never-written" } });
    try {
      for (let i = 0; i < 3; i += 1)
        assert.equal((await t.app.inject({ method: "POST", url: "/password/forgot", payload: { username: `u${i}` } })).statusCode, 202);
      const refused = await t.app.inject({ method: "POST", url: "/password/forgot", payload: { username: "u9" } });
      assert.equal(refused.statusCode, 429);
      assert.equal(refused.json().error.code, "rate_limited");
      assert.ok(Number(refused.headers["retry-after"]) > 0);
    } finally {
      await t.context.mail.idle();
      await t.close();
    }
  });
});

describe("mail templates", () => {
  it("escape what a user chose in the HTML part", () => {
    const mail = verifyEmailMail(
      { username: `<img src=x onerror="alert(1)">`, publicUrl: PUBLIC_URL },
      `${PUBLIC_URL}/account/verify-email#token=abc`,
    );
    assert.ok(!mail.html.includes("<img"));
    assert.ok(mail.html.includes("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"));
  });
});
