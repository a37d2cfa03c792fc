import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createTestServer, TEST_PASSWORD } from "../testing/test-server.js";
import type { SignedIn, TestServer } from "../testing/test-server.js";

/**
 * Several hundred hostile bodies against every endpoint that takes one: never
 * a 5xx, always the contract's error shape, and the server healthy after.
 */
const hostileValues: unknown[] = [
  0,
  -1,
  1e308,
  -0,
  3.14,
  true,
  false,
  null,
  [],
  {},
  [[]],
  [{}],
  { a: { b: { c: [] } } },
  [TEST_PASSWORD],
  "",
  " ",
  "\t\n",
  "\u0000",
  "a\u0000b",
  "admin\u0000",
  "x".repeat(15_000),
  "' OR '1'='1",
  "'; DROP TABLE users; --",
  '" OR ""="',
  "1; SELECT pg_sleep(10)",
  "%00",
  "%27%20OR%201=1",
  "../../etc/passwd",
  "<script>alert(1)</script>",
  "{{7*7}}",
  "${process.exit()}",
  "$where",
  "__proto__",
  "constructor",
  "ａｄｍｉｎ",
  "аdmin",
  "ᴬᴰᴹᴵᴺ",
  "admin\u200b",
  "\u202eadmin",
  "Ａ".repeat(64),
  "🔐".repeat(300),
  "\ud800",
  "\udfff\ud800",
  "\uffff",
  "\u0085",
  "é",
  "e\u0301",
  { $gt: "" },
  { $ne: null },
  ["admin", "user"],
  { toString: "x" },
  { valueOf: 1 },
];

const fieldsOf: Record<string, string[]> = {
  "POST /register": ["username", "password", "email"],
  "POST /login": ["username", "email", "password"],
  "POST /password": ["currentPassword", "newPassword"],
  "PATCH /admin/users/:id": ["roles"],
  "DELETE /me": ["password"],
};

const rawBodies: Array<string | Buffer> = [
  '{"__proto__": {"admin": true}}',
  '{"constructor": {"prototype": {"admin": true}}}',
  '{"username": "a", "__proto__": {"roles": ["admin"]}, "password": "x"}',
  '{"a": 1, "a": 2}',
  "[".repeat(5000) + "]".repeat(5000),
  '{"x":' + "[".repeat(3000) + "]".repeat(3000) + "}",
  "{",
  "}",
  "nul",
  '"just a string"',
  "1e999999",
  '{"username": "\\ud800"}',
  Buffer.from([0x7b, 0x22, 0x75, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc0, 0xaf, 0x22, 0x7d]),
  Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]),
  Buffer.alloc(20_000, 0x20),
  '{"username":"' + "a".repeat(16_300) + '"}',
];

describe("hostile input", () => {
  let t: TestServer;
  let admin: SignedIn;
  let victim: SignedIn;
  let target: SignedIn;
  let requests = 0;
  let address = 0;
  const statuses = new Map<number, number>();

  before(async () => {
    t = await createTestServer({ env: { THROTTLE_REGISTRATIONS: "100000", THROTTLE_ADDRESS_FAILURES: "100000" } });
    admin = await t.registerAdmin("hostile.admin");
    victim = await t.register("hostile.victim");
    target = await t.register("hostile.target");
  });
  after(() => t.close());

  async function send(method: string, path: string, payload: string | Buffer, user: SignedIn | null): Promise<void> {
    address += 1;
    const response = await t.app.inject({
      method: method as "POST",
      url: path,
      payload,
      headers: { "content-type": "application/json", ...(user ? { "x-csrf-token": user.csrfToken } : {}) },
      cookies: user ? { sid: user.cookie } : {},
      remoteAddress: `10.${(address >> 16) & 255}.${(address >> 8) & 255}.${address & 255}`,
    });
    requests += 1;
    statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
    const label = `${method} ${path} ${String(payload).slice(0, 80)}`;
    assert.ok(response.statusCode < 500, `${label} -> ${response.statusCode} ${response.body}`);
    assert.match(String(response.headers["content-type"] ?? "application/json"), /application\/json/, label);
    if (response.statusCode >= 400) {
      const body = response.json() as { error?: { code?: unknown; message?: unknown } };
      assert.deepEqual(Object.keys(body), ["error"], label);
      assert.equal(typeof body.error?.code, "string", label);
      assert.equal(typeof body.error?.message, "string", label);
      assert.doesNotMatch(response.body, /\bat \S+:\d+:\d+|node_modules|SQLITE_|syntax error at/, label);
    }
  }

  it("never answers a hostile body with a 5xx or outside the error shape", async () => {
    for (const [endpoint, fields] of Object.entries(fieldsOf)) {
      const [method, template] = endpoint.split(" ") as [string, string];
      // The admin's role changes go to a separate target: granting roles is what that endpoint is for.
      const path = template.replace(":id", target.userId);
      const user = endpoint.startsWith("PATCH") ? admin : endpoint === "POST /register" || endpoint === "POST /login" ? null : victim;
      for (const field of fields) {
        for (const value of hostileValues) {
          const base: Record<string, unknown> = {
            username: "hostile.victim",
            password: "wrong password",
            email: "x@example.com",
            currentPassword: "wrong password",
            newPassword: TEST_PASSWORD,
            roles: ["user"],
          };
          const body = Object.fromEntries(fields.map((f) => [f, base[f]]));
          body[field] = value;
          await send(method, path, JSON.stringify(body), user);
        }
      }
      for (const raw of rawBodies) await send(method, path, raw, user);
    }
    assert.ok(requests >= 300, `sent ${requests} bodies`);
  });

  it("is healthy afterwards: the victim's session, sign-in and the admin still work", async () => {
    assert.deepEqual((await t.app.inject({ url: "/healthz" })).json(), { status: "ok" });
    assert.equal((await t.app.inject({ url: "/protected", cookies: { sid: victim.cookie } })).statusCode, 200);
    assert.equal((await t.app.inject({ url: "/admin", cookies: { sid: admin.cookie } })).statusCode, 200);
    const login = await t.app.inject({
      method: "POST",
      url: "/login",
      payload: { username: "hostile.admin", password: TEST_PASSWORD },
      remoteAddress: "192.0.2.200",
    });
    assert.equal(login.statusCode, 200);
    const roles = (await t.app.inject({ url: "/me", cookies: { sid: victim.cookie } })).json().user.roles;
    assert.ok(Array.isArray(roles) && !roles.includes("admin"), "no hostile body granted a role");
    assert.equal(({} as Record<string, unknown>).admin, undefined, "Object.prototype is untouched");
  });
});
