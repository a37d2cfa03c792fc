import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SignJWT, decodeJwt, decodeProtectedHeader, importJWK } from "jose";
import type { JWK } from "jose";
import { openSqliteStores } from "../src/stores/sqlite/index.js";
import { Client, ROOT, freePort, runLatch, startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * Latch and the example resource server (examples/resource-server) as two
 * real processes on one SQLite file: sessions and tokens made on Latch work
 * there, and ending them on Latch ends them there.
 */

interface ResourceServer {
  url: string;
  output(): string;
  stop(): Promise<void>;
}

async function startResourceServer(env: Record<string, string>): Promise<ResourceServer> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "examples/resource-server/server.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`resource server exited with ${child.exitCode}: ${output}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`resource server did not start within 30 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

const dir = mkdtempSync(join(tmpdir(), "latch-resource-"));
const dbPath = join(dir, "shared.db");
const env = { DATABASE_URL: `sqlite:${dbPath}` };
const password = "a long enough password";
const INVALID_TOKEN = 'Bearer error="invalid_token"';
const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("the example resource server beside a real Latch", () => {
  let latch: LatchProcess;
  let resource: ResourceServer;
  before(async () => {
    latch = await startLatch(env);
    resource = await startResourceServer({ ...env, LATCH_URL: latch.url });
  });
  after(async () => {
    await resource?.stop();
    await latch?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function signedIn(username: string): Promise<Client> {
    const client = new Client(latch.url);
    const registered = await client.request("POST", "/register", { username, password });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    return client;
  }

  async function tokenOf(client: Client): Promise<string> {
    const response = await client.request("POST", "/token");
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.token as string;
  }

  async function get(
    base: string,
    path: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: any; headers: Headers }> {
    const response = await fetch(base + path, { headers });
    return { status: response.status, body: await response.json(), headers: response.headers };
  }

  async function assertRefusedEverywhere(token: string, what: string): Promise<void> {
    for (const [name, base] of [
      ["Latch", latch.url],
      ["resource server", resource.url],
    ] as const) {
      // The resource server sees Latch's commits to the shared SQLite file
      // within DATA_VERSION_CHECK_MS (10 ms); the contract allows a second.
      const deadline = Date.now() + 1000;
      let response = await get(base, "/dashboard", { authorization: `Bearer ${token}` });
      while (response.status === 200 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        response = await get(base, "/dashboard", { authorization: `Bearer ${token}` });
      }
      assert.equal(response.status, 401, `${what} on ${name}: ${JSON.stringify(response.body)}`);
      assert.equal(response.headers.get("www-authenticate"), INVALID_TOKEN, `${what} on ${name}`);
      assert.equal(response.body.error.code, "invalid_token", `${what} on ${name}`);
    }
  }

  it("accepts a session made on Latch, and refuses it within one second of signing out there", async () => {
    const client = await signedIn("rs.session");
    const cookie = { cookie: `sid=${client.cookie}` };
    const ok = await get(resource.url, "/dashboard", cookie);
    assert.equal(ok.status, 200, resource.output());
    assert.equal(ok.body.message, "Welcome, rs.session");
    assert.equal(ok.headers.get("cache-control"), "no-store");

    assert.equal((await client.request("POST", "/logout")).status, 200);
    const signedOutAt = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - signedOutAt < 1000) status = (await get(resource.url, "/dashboard", cookie)).status;
    assert.equal(status, 401, "refused within one second");
    const refused = await get(resource.url, "/dashboard", cookie);
    assert.equal(refused.body.error.code, "unauthenticated");
  });

  it("accepts a JWT from Latch, there and on Latch", async () => {
    const client = await signedIn("rs.bearer");
    const token = await tokenOf(client);
    for (const base of [latch.url, resource.url]) {
      const response = await get(base, "/dashboard", { authorization: `Bearer ${token}` });
      assert.equal(response.status, 200, base);
      assert.equal(response.body.message, "Welcome, rs.bearer");
    }
    const none = await get(resource.url, "/dashboard", {});
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), "Bearer");
  });

  it("refuses tampered, alg none, expired and ended-session tokens with invalid_token, on both servers", async () => {
    const client = await signedIn("rs.refusals");
    const token = await tokenOf(client);
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const claims = decodeJwt(token);
    await assertRefusedEverywhere(`${header}.${b64({ ...claims, roles: ["user", "admin"] })}.${signature}`, "tampered");
    await assertRefusedEverywhere(`${b64({ alg: "none", typ: "JWT" })}.${payload}.`, "alg none");
    await assertRefusedEverywhere(
      `${b64({ alg: "none", typ: "JWT", kid: decodeProtectedHeader(token).kid })}.${payload}.`,
      "alg none with kid",
    );

    // An expired token, signed with the server's own key read from the store,
    // for a session that is still live: only its exp is wrong.
    const stores = openSqliteStores({ path: dbPath });
    let expired: string;
    try {
      const key = (await stores.keys.listSigningKeys()).find((k) => k.kid === decodeProtectedHeader(token).kid)!;
      const now = Math.floor(Date.now() / 1000);
      expired = await new SignJWT({ sid: claims.sid, roles: claims.roles })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
        .setIssuer(claims.iss!)
        .setSubject(claims.sub!)
        .setIssuedAt(now - 960)
        .setExpirationTime(now - 60)
        .sign(await importJWK(JSON.parse(key.privateJwk) as JWK, key.alg));
    } finally {
      await stores.close();
    }
    await assertRefusedEverywhere(expired, "expired");
    assert.equal(
      (await get(resource.url, "/dashboard", { authorization: `Bearer ${token}` })).status,
      200,
      "the session itself is still live",
    );

    assert.equal((await client.request("POST", "/logout")).status, 200);
    await assertRefusedEverywhere(token, "ended session");
  });

  it("protects /admin by role for cookies and tokens", async () => {
    const client = await signedIn("rs.admin");
    assert.equal((await get(resource.url, "/admin", { cookie: `sid=${client.cookie}` })).status, 403);
    // Made an admin in the shared database, as `latch users roles` would.
    const stores = openSqliteStores({ path: dbPath });
    try {
      const me = (await get(latch.url, "/me", { cookie: `sid=${client.cookie}` })).body.user;
      await stores.users.updateUserRoles(me.id, ["user", "admin"], Date.now());
    } finally {
      await stores.close();
    }
    // Each process checks the file for other processes' commits at most
    // every 10 ms (DATA_VERSION_CHECK_MS): the change shows within a second.
    const deadline = Date.now() + 1000;
    let answer = await get(resource.url, "/admin", { cookie: `sid=${client.cookie}` });
    while (answer.status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      answer = await get(resource.url, "/admin", { cookie: `sid=${client.cookie}` });
    }
    assert.deepEqual(answer.body, { message: "Admin area" });
    assert.deepEqual((await get(resource.url, "/admin", { authorization: `Bearer ${await tokenOf(client)}` })).body, {
      message: "Admin area",
    });
  });

  it("after `latch keys rotate`, old tokens still verify on both servers and new tokens carry the new kid", async () => {
    const client = await signedIn("rs.rotate");
    const old = await tokenOf(client);
    const cli = runLatch(["keys", "rotate"], env);
    let out = "";
    cli.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => cli.once("exit", resolve));
    assert.equal(code, 0, out);
    const kid = /^rotated: (\S+)/.exec(out)?.[1];
    assert.ok(kid, out);
    assert.notEqual(kid, decodeProtectedHeader(old).kid);

    // Running servers pick the new key up within their key refresh interval (10 s).
    let fresh = await tokenOf(client);
    const deadline = Date.now() + 15_000;
    while (decodeProtectedHeader(fresh).kid !== kid && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      fresh = await tokenOf(client);
    }
    assert.equal(decodeProtectedHeader(fresh).kid, kid);
    for (const token of [old, fresh]) {
      for (const base of [latch.url, resource.url]) {
        assert.equal((await get(base, "/dashboard", { authorization: `Bearer ${token}` })).status, 200, base);
      }
    }
    const jwks = (await get(latch.url, "/.well-known/jwks.json", {})).body.keys as JWK[];
    assert.deepEqual(jwks.map((k) => k.kid).sort(), [decodeProtectedHeader(old).kid, kid].sort());
  });

  it("`latch keys` explains its usage with exit code 2", async () => {
    const child = runLatch(["keys", "spin"], env);
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    assert.equal(await new Promise((resolve) => child.once("exit", resolve)), 2);
    assert.match(err, /latch keys rotate/);
  });
});
