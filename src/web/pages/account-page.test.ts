import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, setCookieValue, TEST_PASSWORD } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";
import { assertPage, assertRedirect } from "../testing.js";

const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const IPHONE =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/** Signs in from a given user agent and returns the cookie. */
async function signInFrom(t: TestServer, username: string, userAgent: string): Promise<string> {
  const response = await t.app.inject({
    method: "POST",
    url: "/login",
    payload: { username, password: TEST_PASSWORD },
    headers: { "user-agent": userAgent },
  });
  assert.equal(response.statusCode, 200, response.body);
  return setCookieValue(response)!;
}

describe("GET /account", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer({ env: { SESSION_IDLE_TIMEOUT: "600", SESSION_ABSOLUTE_TIMEOUT: "3600" } })));
  after(() => t.close());

  it("sends a visitor without a valid session to sign in", async () => {
    for (const cookies of [{} as Record<string, string>, { sid: "garbage" }, { sid: `${"a".repeat(30)}.${"b".repeat(43)}` }]) {
      assertRedirect(await t.app.inject({ url: "/account", cookies }), "/account/signin");
    }
  });

  it("shows who is signed in: username, email and roles, with the session's CSRF token in a meta tag", async () => {
    const register = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "Shown.User", password: TEST_PASSWORD, email: "shown@example.com" },
    });
    const cookie = setCookieValue(register)!;
    const response = await t.app.inject({ url: "/account", cookies: { sid: cookie } });
    assertPage(response);
    assert.match(response.body, /<dd data-field="username">Shown\.User<\/dd>/);
    assert.match(response.body, /<span data-field="email">shown@example\.com<\/span>/);
    assert.match(response.body, /<dd data-field="roles"><span class="role">user<\/span><\/dd>/);
    assert.match(response.body, new RegExp(`<meta name="csrf-token" content="${register.json().csrfToken}">`));
    assert.ok(!response.body.includes(cookie.split(".")[1]!), "the cookie's secret never appears in the page");
  });

  it("lists every session of the user, marks this device once, and lists no one else's", async () => {
    const me = await t.register();
    const phone = await signInFrom(t, me.username, IPHONE);
    const laptop = await signInFrom(t, me.username, FIREFOX);
    const stranger = await t.register();
    await signInFrom(t, stranger.username, "Stranger/1.0");
    const response = await t.app.inject({ url: "/account", cookies: { sid: laptop }, headers: { "user-agent": FIREFOX } });
    assertPage(response);
    const rows = [...response.body.matchAll(/<tr( class="current")?>\s*<td>(.*?)<\/td>/gs)];
    assert.equal(rows.length, 3);
    assert.equal(rows.filter((r) => r[1] !== undefined).length, 1);
    assert.match(rows[0]![2]!, /Firefox on Linux<\/span><span class="badge">This device<\/span>/, "this device comes first");
    assert.match(response.body, /Safari on iOS/);
    assert.doesNotMatch(response.body, /Stranger/);
    const forms = [...response.body.matchAll(/data-action="revoke-session" data-session-id="([^"]+)" data-current="(true|false)"/g)];
    assert.equal(forms.length, 3);
    assert.deepEqual(forms.map((f) => f[2]).sort(), ["false", "false", "true"]);
    // Each listed handle is one the API would let this user revoke.
    const listed = (await t.app.inject({ url: "/sessions", cookies: { sid: phone } }))
      .json()
      .sessions.map((s: { id: string }) => s.id)
      .sort();
    assert.deepEqual(forms.map((f) => f[1]).sort(), listed);
  });

  it("shows when each session was last seen", async () => {
    const me = await t.register();
    const other = await signInFrom(t, me.username, FIREFOX);
    t.clock.advance(5 * 60_000);
    const response = await t.app.inject({ url: "/account", cookies: { sid: me.cookie } });
    assert.match(
      response.body,
      /<span title="[^"]*">Firefox on Linux<\/span><\/td>\s*<td class="nowrap" data-label="[^"]+"><time[^>]*>[^<]+<\/time><\/td>\s*<td class="nowrap" data-label="[^"]+"><time datetime="[^"]+" title="[^"]+">5 minutes ago<\/time>/,
    );
    assert.match(
      response.body,
      /<span class="badge">This device<\/span><\/td>\s*<td class="nowrap" data-label="[^"]+"><time[^>]*>[^<]+<\/time><\/td>\s*<td class="nowrap" data-label="[^"]+"><time[^>]*>just now<\/time>/,
    );
    assert.ok(other);
  });

  it("escapes a hostile user agent in the text and in the title attribute", async () => {
    const me = await t.register();
    const hostile = `<script>alert(1)</script>" onmouseover="alert(2)' x=\`y`;
    await signInFrom(t, me.username, hostile);
    const response = await t.app.inject({ url: "/account", cookies: { sid: me.cookie } });
    assertPage(response);
    assert.ok(!response.body.includes("<script>alert(1)"));
    assert.ok(!response.body.includes('" onmouseover="'));
    const escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;alert(2)&#39; x=&#96;y";
    assert.ok(response.body.includes(`title="${escaped}"`), "the full user agent, escaped, in the title");
    assert.ok(
      response.body.includes(`>&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;…</span>`),
      "its start, escaped, as the device",
    );
  });

  it("escapes an email with the quote, ampersand and backtick the address pattern allows", async () => {
    const email = "o'neil&`co`@example.com";
    const register = await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "email.escape", password: TEST_PASSWORD, email },
    });
    assert.equal(register.statusCode, 201, register.body);
    const response = await t.app.inject({ url: "/account", cookies: { sid: setCookieValue(register)! } });
    assertPage(response);
    assert.match(response.body, /<span data-field="email">o&#39;neil&amp;&#96;co&#96;@example\.com<\/span>/);
  });

  it("escapes a username even if one slipped past the username pattern into the store", async () => {
    const me = await t.register();
    const record = (await t.stores.users.findUserById(me.userId))!;
    await t.stores.users.deleteUser(me.userId);
    await t.stores.users.createUser({ ...record, username: "<img src=x onerror=alert(1)>", usernameKey: "hostile-key" });
    const cookie = await signInFrom(t, "hostile-key", FIREFOX);
    const response = await t.app.inject({ url: "/account", cookies: { sid: cookie } });
    assertPage(response);
    assert.ok(!response.body.includes("<img"));
    assert.match(response.body, /<strong>&lt;img src=x onerror=alert\(1\)&gt;<\/strong>/);
  });

  it("has every action: sign out, sign out of other sessions, change password, download my data, delete account", async () => {
    const me = await t.register();
    const body = (await t.app.inject({ url: "/account", cookies: { sid: me.cookie } })).body;
    for (const action of ["signout", "revoke-others", "revoke-session", "change-password", "delete-account"]) {
      assert.match(body, new RegExp(`<form method="post" data-action="${action}"`), action);
    }
    assert.match(body, /<a href="\/me\/export" download="latch-export\.json">Download my data<\/a>/);
    assert.match(body, /data-action="delete-account" data-confirm="[^"]+">.*<input type="password" id="delete-password" name="password"/s);
    assert.match(body, /name="currentPassword".*name="newPassword".*name="confirmPassword"/s);
    const ids = [...body.matchAll(/<input [^>]*id="([^"]+)"/g)].map((m) => m[1]);
    for (const id of ids) assert.match(body, new RegExp(`<label[^>]* for="${id}"`), `#${id} is labelled`);
  });

  it("links admins, and only admins, to the admin area", async () => {
    const admin = await t.registerAdmin();
    const user = await t.register();
    assert.match((await t.app.inject({ url: "/account", cookies: { sid: admin.cookie } })).body, /href="\/account\/admin"/);
    assert.doesNotMatch((await t.app.inject({ url: "/account", cookies: { sid: user.cookie } })).body, /\/account\/admin/);
  });

  it("shows a notice after an action reloads it", async () => {
    const me = await t.register();
    const response = await t.app.inject({ url: "/account?notice=password-changed", cookies: { sid: me.cookie } });
    assert.match(response.body, /<p class="notice" role="status">Your password has been changed/);
  });

  it("sends an expired session to sign in, and re-sends the cookie when the idle expiry slides", async () => {
    const me = await t.register();
    t.clock.advance(400_000);
    const slid = await t.app.inject({ url: "/account", cookies: { sid: me.cookie } });
    assertPage(slid);
    assert.equal(setCookieValue(slid), me.cookie);
    t.clock.advance(601_000);
    assertRedirect(await t.app.inject({ url: "/account", cookies: { sid: me.cookie } }), "/account/signin");
  });
});
