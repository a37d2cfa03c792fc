import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import createClient from "openapi-fetch";
import type { paths } from "../src/client/api-types.js";
import { startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * The proof that the document is usable: a client generated from it
 * (openapi-typescript types, openapi-fetch), with no hand-written types,
 * drives a real Latch. `npm run typecheck` checks that this file compiles
 * against the generated types; the run checks the answers. Cookies are the
 * only glue: Node's fetch keeps none, so the test carries the one it got.
 */

describe("a client generated from /openapi.json against a running Latch", () => {
  const dir = mkdtempSync(join(tmpdir(), "latch-typed-client-"));
  let latch: LatchProcess;
  before(async () => (latch = await startLatch({ DATABASE_URL: `sqlite:${join(dir, "latch.db")}` })));
  after(async () => {
    await latch?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("registers, signs in, reads /me with the cookie, and gets a token that /me accepts", async () => {
    const client = createClient<paths>({ baseUrl: latch.url });
    const password = "a long enough password";

    const registered = await client.POST("/register", { body: { username: "typed.client", password, email: "typed@example.com" } });
    assert.equal(registered.response.status, 201);
    assert.equal(registered.data?.user.username, "typed.client");
    const taken = await client.POST("/register", { body: { username: "typed.client", password } });
    assert.equal(taken.response.status, 409);
    assert.equal(taken.error?.error.code, "conflict");

    const signedIn = await client.POST("/login", { body: { username: "typed.client", password } });
    assert.equal(signedIn.response.status, 200);
    // A 200 is a session, or (for an account with TOTP) the code step: the types make the client tell them apart.
    const answer = signedIn.data!;
    assert.ok("user" in answer, "no second factor here: signed in");
    const { user, csrfToken } = answer;
    const cookie = /^(sid=[^;]+)/.exec(signedIn.response.headers.get("set-cookie") ?? "")![1]!;

    const me = await client.GET("/me", { headers: { cookie } });
    assert.equal(me.data?.user.id, user.id);
    const sessionId: string = me.data!.session.id;
    assert.ok(sessionId.length > 0);

    const issued = await client.POST("/token", { headers: { cookie, "x-csrf-token": csrfToken } });
    assert.equal(issued.data?.token_type, "Bearer");
    const token = issued.data!.access_token;
    assert.ok(issued.data!.expires_in <= 900);

    const viaToken = await client.GET("/me", { headers: { authorization: `Bearer ${token}` } });
    assert.equal(viaToken.data?.user.username, "typed.client");
    assert.equal(viaToken.data?.session.id, sessionId);

    const byCredentials = await client.POST("/token", { body: { username: "typed.client", password } });
    assert.equal(byCredentials.response.status, 200);
    const jwks = await client.GET("/.well-known/jwks.json");
    assert.ok(jwks.data?.keys.every((k) => k.use === "sig" && typeof k.kid === "string"));

    const refused = await client.GET("/me", { headers: { authorization: "Bearer not.a.token" } });
    assert.equal(refused.response.status, 401);
    assert.equal(refused.error?.error.code, "invalid_token");
  });
});
