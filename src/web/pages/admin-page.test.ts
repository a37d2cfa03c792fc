import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { uuidv7 } from "../../core/ids.js";
import { createTestServer } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";
import { assertPage, assertRedirect } from "../testing.js";

/** Adds users straight to the store: paging needs many, and hashing a password for each would be slow for nothing. */
async function addUsers(t: TestServer, count: number, prefix: string): Promise<void> {
  for (let i = 0; i < count; i += 1) {
    const username = `${prefix}${i}`;
    await t.stores.users.createUser({
      id: uuidv7(t.clock, (bytes) => void randomFillSync(bytes)),
      username,
      usernameKey: username,
      email: null,
      emailKey: null,
      emailVerified: false,
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
      roles: ["user"],
      mfa: false,
      createdAt: t.clock.now(),
      updatedAt: t.clock.now(),
    });
  }
}

function usernames(body: string): string[] {
  return [...body.matchAll(/<tr>\s*<td>([^<]+?)(?: <span|<\/td>)/g)].map((m) => m[1]!);
}

describe("GET /account/admin", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("sends a visitor without a session to sign in", async () => {
    assertRedirect(await t.app.inject({ url: "/account/admin" }), "/account/signin");
    assertRedirect(await t.app.inject({ url: "/account/admin", cookies: { sid: "garbage" } }), "/account/signin");
  });

  it("answers a signed-in user without the admin role with a 403 page", async () => {
    const user = await t.register();
    const response = await t.app.inject({ url: "/account/admin", cookies: { sid: user.cookie } });
    assertPage(response, 403);
    assert.match(response.body, /<h1>Not allowed<\/h1>/);
    assert.doesNotMatch(response.body, /data-action="set-roles"/);
  });

  it("lists users with their email, roles and creation date, and a roles form and force sign-out for each", async () => {
    const admin = await t.registerAdmin("page.admin");
    await t.app.inject({
      method: "POST",
      url: "/register",
      payload: { username: "listed.user", password: "a perfectly fine passphrase", email: "o'hara&`x`@example.com" },
    });
    const response = await t.app.inject({ url: "/account/admin", cookies: { sid: admin.cookie } });
    assertPage(response);
    const body = response.body;
    assert.match(body, /<meta name="csrf-token" content="[\w-]{43}">/);
    assert.match(body, /<td>page\.admin <span class="badge">you<\/span><\/td>/);
    assert.match(
      body,
      /<td>listed\.user<\/td>\s*<td>o&#39;hara&amp;&#96;x&#96;@example\.com<\/td>\s*<td><span class="role">user<\/span> <\/td>\s*<td class="nowrap"><time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">\d{4}-\d\d-\d\d<\/time><\/td>/,
    );
    const listed = await t.app.inject({ url: "/admin/users", cookies: { sid: admin.cookie } });
    for (const user of listed.json().users as Array<{ id: string; roles: string[] }>) {
      assert.match(body, new RegExp(`data-action="set-roles" data-user-id="${user.id}"[^>]*>.*?value="${user.roles.join(", ")}"`, "s"));
      assert.match(
        body,
        new RegExp(`data-action="revoke-user-sessions" data-user-id="${user.id}"[^>]* data-confirm="Sign [^"]+ out of every session\\?"`),
      );
    }
    const ids = [...body.matchAll(/<input [^>]*id="([^"]+)"/g)].map((m) => m[1]);
    for (const id of ids) assert.match(body, new RegExp(`<label[^>]* for="${id}"`), `#${id} is labelled`);
  });

  it("pages through every user with the API's cursor", async () => {
    const admin = await t.registerAdmin();
    await addUsers(t, 30, "paged");
    const total = (await t.stores.users.listUsers({ limit: 100 })).length;
    const seen: string[] = [];
    let url: string | undefined = "/account/admin";
    let pages = 0;
    while (url !== undefined) {
      const response = await t.app.inject({ url, cookies: { sid: admin.cookie } });
      assertPage(response);
      const names = usernames(response.body);
      assert.ok(names.length > 0 && names.length <= 25, `page ${pages}: ${names.length}`);
      seen.push(...names);
      pages += 1;
      if (pages > 1) assert.match(response.body, /<a href="\/account\/admin">First page<\/a>/);
      const next = /<a href="(\/account\/admin\?cursor=[^"]+)" rel="next">Next page<\/a>/.exec(response.body);
      url = next?.[1]?.replaceAll("&amp;", "&");
    }
    assert.equal(pages, Math.ceil(total / 25));
    assert.equal(seen.length, total);
    assert.equal(new Set(seen).size, total);
  });

  it("answers a tampered cursor with a 400 page in the API's words", async () => {
    const admin = await t.registerAdmin();
    const response = await t.app.inject({ url: "/account/admin?cursor=%25%25%25", cookies: { sid: admin.cookie } });
    assertPage(response, 400);
    assert.match(response.body, /cursor is not valid\./);
  });

  it("shows a notice after an action reloads it", async () => {
    const admin = await t.registerAdmin();
    const response = await t.app.inject({ url: "/account/admin?notice=roles-saved", cookies: { sid: admin.cookie } });
    assert.match(response.body, /<p class="notice" role="status">The roles have been saved\./);
  });

  it("lets a user promoted to admin in, on their next request, without signing in again", async () => {
    const admin = await t.registerAdmin();
    const user = await t.register();
    assert.equal((await t.app.inject({ url: "/account/admin", cookies: { sid: user.cookie } })).statusCode, 403);
    await t.app.inject({ method: "PATCH", url: `/admin/users/${user.userId}`, ...t.auth(admin), payload: { roles: ["admin"] } });
    assertPage(await t.app.inject({ url: "/account/admin", cookies: { sid: user.cookie } }));
  });
});
