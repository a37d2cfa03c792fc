import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer } from "../../testing/test-server.js";
import type { TestServer } from "../../testing/test-server.js";

describe("administration", () => {
  let t: TestServer;
  before(async () => (t = await createTestServer()));
  after(() => t.close());

  it("GET /admin lets an admin in and gives an ordinary user 403 and no one 401", async () => {
    const admin = await t.registerAdmin();
    const user = await t.register();
    assert.deepEqual((await t.app.inject({ url: "/admin", cookies: { sid: admin.cookie } })).json(), { message: "Admin area" });
    assert.equal((await t.app.inject({ url: "/admin", cookies: { sid: user.cookie } })).statusCode, 403);
    assert.equal((await t.app.inject({ url: "/admin" })).statusCode, 401);
  });

  it("gives an ordinary user 403 forbidden on every admin route", async () => {
    const user = await t.register();
    const target = await t.register();
    const routes = [
      ["GET", "/admin"],
      ["GET", "/admin/users"],
      ["PATCH", `/admin/users/${target.userId}`],
      ["POST", `/admin/users/${target.userId}/revoke-sessions`],
      ["DELETE", `/users/${target.userId}`],
    ] as const;
    for (const [method, url] of routes) {
      const response = await t.app.inject({
        method,
        url,
        ...t.auth(user),
        ...(method === "PATCH" ? { payload: { roles: ["admin"] } } : {}),
      });
      assert.equal(response.statusCode, 403, `${method} ${url}`);
      assert.equal(response.json().error.code, "forbidden");
    }
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: target.cookie } })).json().user.roles.includes("admin"), false);
  });

  it("GET /admin/users pages through every user with an opaque cursor", async () => {
    const admin = await t.registerAdmin();
    for (let i = 0; i < 5; i += 1) await t.register();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/admin/users?limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const response = await t.app.inject({ url, cookies: { sid: admin.cookie } });
      assert.equal(response.statusCode, 200);
      const body = response.json();
      assert.ok(body.users.length <= 2);
      for (const u of body.users) assert.equal("passwordHash" in u, false);
      seen.push(...body.users.map((u: { id: string }) => u.id));
      cursor = body.nextCursor;
    } while (cursor !== null);
    assert.equal(new Set(seen).size, seen.length);
    assert.ok(seen.includes(admin.userId));
    assert.ok(seen.length >= 6);
    for (const bad of ["limit=0", "limit=101", "limit=abc", "cursor=%%%"]) {
      assert.equal((await t.app.inject({ url: `/admin/users?${bad}`, cookies: { sid: admin.cookie } })).statusCode, 400, bad);
    }
  });

  it("PATCH /admin/users/:id changes roles, and the target's live session sees them on its next request", async () => {
    const admin = await t.registerAdmin();
    const target = await t.register();
    assert.equal((await t.app.inject({ url: "/admin", cookies: { sid: target.cookie } })).statusCode, 403);
    const response = await t.app.inject({
      method: "PATCH",
      url: `/admin/users/${target.userId}`,
      ...t.auth(admin),
      payload: { roles: ["admin"] },
    });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json().user.roles, ["user", "admin"]);
    assert.equal((await t.app.inject({ url: "/admin", cookies: { sid: target.cookie } })).statusCode, 200);
    await t.app.inject({ method: "PATCH", url: `/admin/users/${target.userId}`, ...t.auth(admin), payload: { roles: [] } });
    assert.equal((await t.app.inject({ url: "/admin", cookies: { sid: target.cookie } })).statusCode, 403);
  });

  it("PATCH /admin/users/:id refuses other fields (no mass assignment), bad roles, and unknown users", async () => {
    const admin = await t.registerAdmin();
    const target = await t.register();
    for (const payload of [
      { roles: ["admin"], username: "renamed" },
      { passwordHash: "x" },
      { roles: "admin" },
      { roles: ["Not A Role!"] },
      {},
    ]) {
      const response = await t.app.inject({ method: "PATCH", url: `/admin/users/${target.userId}`, ...t.auth(admin), payload });
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
    }
    const unknown = await t.app.inject({
      method: "PATCH",
      url: "/admin/users/00000000-0000-7000-8000-000000000000",
      ...t.auth(admin),
      payload: { roles: [] },
    });
    assert.equal(unknown.statusCode, 404);
  });

  it("POST /admin/users/:id/revoke-sessions ends all the user's sessions", async () => {
    const admin = await t.registerAdmin();
    const target = await t.register();
    const second = await t.login(target.username);
    const response = await t.app.inject({ method: "POST", url: `/admin/users/${target.userId}/revoke-sessions`, ...t.auth(admin) });
    assert.deepEqual(response.json(), { revoked: 2 });
    for (const cookie of [target.cookie, second.cookie])
      assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: cookie } })).statusCode, 401);
    assert.equal((await t.app.inject({ method: "POST", url: "/admin/users/nope/revoke-sessions", ...t.auth(admin) })).statusCode, 404);
  });

  it("DELETE /users/:id removes the user and all their sessions", async () => {
    const admin = await t.registerAdmin();
    const target = await t.register();
    const response = await t.app.inject({ method: "DELETE", url: `/users/${target.userId}`, ...t.auth(admin) });
    assert.equal(response.statusCode, 204);
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: target.cookie } })).statusCode, 401);
    assert.equal(await t.stores.users.findUserById(target.userId), null);
    assert.equal((await t.app.inject({ method: "DELETE", url: `/users/${target.userId}`, ...t.auth(admin) })).statusCode, 404);
  });

  it("refuses with 409 conflict to remove the admin role from the last admin, and allows it while another admin remains", async () => {
    const t = await createTestServer();
    try {
      const only = await t.registerAdmin();
      const demote = (target: string, by: typeof only) =>
        t.app.inject({ method: "PATCH", url: `/admin/users/${target}`, ...t.auth(by), payload: { roles: ["user"] } });
      const refused = await demote(only.userId, only);
      assert.equal(refused.statusCode, 409);
      assert.equal(refused.json().error.code, "conflict");
      assert.match(refused.json().error.message, /last admin/i);
      assert.deepEqual((await t.stores.users.findUserById(only.userId))?.roles, ["user", "admin"]);
      // Other roles of the last admin can still change, as long as admin stays.
      const kept = await t.app.inject({
        method: "PATCH",
        url: `/admin/users/${only.userId}`,
        ...t.auth(only),
        payload: { roles: ["admin", "support"] },
      });
      assert.equal(kept.statusCode, 200, kept.body);

      const second = await t.registerAdmin();
      assert.equal((await demote(only.userId, second)).statusCode, 200, "with a second admin, the first can be demoted");
      assert.equal((await demote(second.userId, second)).statusCode, 409, "and then the second is the last one");
      assert.deepEqual((await t.stores.users.findUserById(second.userId))?.roles, ["user", "admin"]);
    } finally {
      await t.close();
    }
  });
});
