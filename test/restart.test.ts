import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Client, runLatch, startLatch } from "./support/latch-process.js";

const dir = mkdtempSync(join(tmpdir(), "latch-restart-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("a real server process on SQLite", () => {
  it("keeps a session across a graceful restart on the same file", async () => {
    const env = { DATABASE_URL: `sqlite:${join(dir, "graceful.db")}` };
    let server = await startLatch(env);
    const client = new Client(server.url);
    try {
      assert.equal(
        (await client.request("POST", "/register", { username: "restart.user", password: "a long enough password" })).status,
        201,
      );
      assert.equal((await client.request("POST", "/login", { username: "restart.user", password: "a long enough password" })).status, 200);
      assert.equal((await client.request("GET", "/protected")).status, 200);
      assert.equal(await server.stop("SIGTERM"), 0);
      server = await startLatch(env, { port: server.port });
      const again = await client.request("GET", "/protected");
      assert.equal(again.status, 200);
      assert.equal(again.body.user.username, "restart.user");
      assert.equal((await client.request("POST", "/logout")).status, 200);
      assert.equal((await client.request("GET", "/protected")).status, 401);
    } finally {
      await server.stop("SIGKILL");
    }
  });

  it("loses no acknowledged session when killed with SIGKILL", async () => {
    const env = { DATABASE_URL: `sqlite:${join(dir, "killed.db")}` };
    let server = await startLatch(env);
    const client = new Client(server.url);
    try {
      assert.equal(
        (await client.request("POST", "/register", { username: "killed.user", password: "a long enough password" })).status,
        201,
      );
      await server.stop("SIGKILL");
      server = await startLatch(env, { port: server.port });
      assert.equal((await client.request("GET", "/protected")).status, 200);
    } finally {
      await server.stop("SIGKILL");
    }
  });

  it("stores no row from which a cookie could be rebuilt", async () => {
    const path = join(dir, "leak.db");
    const server = await startLatch({ DATABASE_URL: `sqlite:${path}` });
    const client = new Client(server.url);
    try {
      await client.request("POST", "/register", { username: "leak.check", password: "a long enough password" });
      await client.request("GET", "/protected");
    } finally {
      await server.stop("SIGTERM");
    }
    const [, secret] = client.cookie!.split(".");
    const files = readdirSync(dir).filter((f) => f.startsWith("leak.db"));
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(dir, f))));
    assert.ok(!bytes.includes(client.cookie!), "the cookie value is not stored");
    assert.ok(!bytes.includes(secret!), "the secret is not stored");
    assert.ok(!bytes.includes(Buffer.from(secret!, "base64url")), "the secret's bytes are not stored");
  });

  it("refuses invalid configuration with one line naming the variable and no stack trace", async () => {
    const child = runLatch(["serve"], { PORT: "not-a-port" });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 2);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(stderr, /PORT/);
    assert.doesNotMatch(stderr, /\n\s+at /);
  });
});
