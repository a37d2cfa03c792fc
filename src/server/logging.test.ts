import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../testing/test-server.js";

describe("logs", () => {
  it("never contain a password, cookie, session secret, CSRF token, JWT or hash, even at trace level and on errors", async () => {
    let output = "";
    const stream = new Writable({
      write(chunk, _encoding, done) {
        output += chunk.toString();
        done();
      },
    });
    const t = await createTestServer({ logger: { level: "trace", stream, redact: ["req.headers.cookie", "req.headers.authorization"] } });
    try {
      const me = await t.register("log.user");
      await t.app.inject({ method: "POST", url: "/login", payload: { username: "log.user", password: "a wrong password here" } });
      const login = await t.login("log.user");
      const token = (
        await t.app.inject({ method: "POST", url: "/token", payload: { username: "log.user", password: TEST_PASSWORD } })
      ).json().token as string;
      await t.app.inject({ url: "/me", headers: { authorization: `Bearer ${token}` } });
      await t.app.inject({ url: "/me", headers: { authorization: `Bearer ${token}x` } });
      await t.app.inject({
        method: "POST",
        url: "/password",
        ...t.auth(login),
        payload: { currentPassword: TEST_PASSWORD, newPassword: "the second passphrase" },
      });
      // A store failure mid-request is logged with its cause: that must not carry secrets either.
      const original = t.stores.sessions.findSession;
      t.stores.sessions.findSession = async () => {
        throw new Error("backend exploded");
      };
      const failed = await t.app.inject({ url: "/protected", cookies: { sid: me.cookie } });
      t.stores.sessions.findSession = original;
      assert.equal(failed.statusCode, 500);
      assert.ok(output.includes("backend exploded"), "the failure itself is logged");
      const user = await t.stores.users.findUserById(me.userId);
      const secrets = [
        TEST_PASSWORD,
        "a wrong password here",
        "the second passphrase",
        me.cookie,
        me.cookie.split(".")[1]!,
        me.csrfToken,
        login.cookie,
        login.csrfToken,
        token,
        token.split(".")[2]!,
        user!.passwordHash,
        setCookieValue(login.response)!,
      ];
      for (const secret of secrets) assert.ok(!output.includes(secret), `a secret leaked into the logs: ${secret.slice(0, 6)}…`);
    } finally {
      await t.close();
    }
  });
});
