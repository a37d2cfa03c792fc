import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";
import { assertPage, assertRedirect } from "../testing.js";

describe("GET /", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("sends a visitor without a session to sign in", async () => {
    assertRedirect(await t.app.inject({ url: "/" }), "/account/signin");
  });

  it("sends a visitor with a malformed, forged or ended session to sign in", async () => {
    const me = await t.register();
    await t.app.inject({ method: "POST", url: "/logout", ...t.auth(me) });
    for (const sid of ["garbage", `${"a".repeat(30)}.${"b".repeat(43)}`, me.cookie]) {
      assertRedirect(await t.app.inject({ url: "/", cookies: { sid } }), "/account/signin");
    }
  });

  it("sends a signed-in visitor to their account", async () => {
    const me = await t.register();
    const response = await t.app.inject({ url: "/", cookies: { sid: me.cookie } });
    assertRedirect(response, "/account");
    assert.equal(response.headers["cache-control"], "no-store");
  });
});

describe("GET /account/signin and /account/signup", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("shows the sign-in form with a labelled username-or-email and password, and a link to sign up", async () => {
    const response = await t.app.inject({ url: "/account/signin" });
    assertPage(response);
    const body = response.body;
    assert.match(body, /<form method="post" data-action="signin">/);
    assert.match(body, /<label for="signin-username">Username or email<\/label>/);
    assert.match(body, /<input type="text" id="signin-username" name="username" autocomplete="username"/);
    assert.match(body, /<label for="signin-password">Password<\/label>/);
    assert.match(body, /<input type="password" id="signin-password" name="password" autocomplete="current-password"/);
    assert.match(body, /href="\/account\/signup"/);
    assert.match(body, /role="alert"/);
    assert.doesNotMatch(body, /csrf-token/, "no session, so no CSRF token");
  });

  it("shows the sign-up form with username, optional email and a new password", async () => {
    const response = await t.app.inject({ url: "/account/signup" });
    assertPage(response);
    const body = response.body;
    assert.match(body, /<form method="post" data-action="signup">/);
    assert.match(body, /<label for="signup-username">Username<\/label>/);
    assert.match(body, /<label for="signup-email">Email \(optional\)<\/label>/);
    assert.match(body, /<input type="email" id="signup-email" name="email"(?![^>]*required)[^>]*>/);
    assert.match(
      body,
      /<input type="password" id="signup-password" name="password" autocomplete="new-password" required minlength="8" maxlength="256"/,
    );
    assert.match(body, /href="\/account\/signin"/);
  });

  it("labels every input", async () => {
    for (const url of ["/account/signin", "/account/signup"]) {
      const body = (await t.app.inject({ url })).body;
      const ids = [...body.matchAll(/<input [^>]*id="([^"]+)"/g)].map((m) => m[1]);
      assert.ok(ids.length >= 2, url);
      for (const id of ids) assert.match(body, new RegExp(`<label[^>]* for="${id}"`), `${url} #${id}`);
    }
  });

  it("sends a signed-in visitor on to their account", async () => {
    const me = await t.register();
    for (const url of ["/account/signin", "/account/signup"]) {
      assertRedirect(await t.app.inject({ url, cookies: { sid: me.cookie } }), "/account");
    }
  });

  it("shows a known notice and ignores any other text in the query", async () => {
    const known = await t.app.inject({ url: "/account/signin?notice=signed-out" });
    assert.match(known.body, /<p class="notice" role="status">You have signed out\.<\/p>/);
    const unknown = await t.app.inject({ url: `/account/signin?notice=${encodeURIComponent("<script>alert(1)</script>")}` });
    assertPage(unknown);
    assert.doesNotMatch(unknown.body, /class="notice"|alert\(1\)/);
    const inherited = await t.app.inject({ url: "/account/signin?notice=constructor" });
    assert.doesNotMatch(inherited.body, /class="notice"/);
  });

  it("answers HEAD like GET, without a body", async () => {
    const response = await t.app.inject({ method: "HEAD", url: "/account/signin" });
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, "");
  });
});
