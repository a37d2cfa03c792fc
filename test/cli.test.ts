import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { Secret, TOTP } from "otpauth";
import { Client, runLatch, startLatch } from "./support/latch-process.js";

const dir = mkdtempSync(join(tmpdir(), "latch-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const env = { DATABASE_URL: `sqlite:${join(dir, "cli.db")}` };

async function cli(args: string[], extra: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = runLatch(args, { ...env, ...extra });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { code, stdout, stderr };
}

describe("the admin CLI and second factors", () => {
  it("users reset-mfa removes a user's TOTP and ends their sessions", async () => {
    // A database of its own: the suite below counts every user's sessions.
    const own = { DATABASE_URL: `sqlite:${join(dir, "cli-mfa.db")}` };
    const server = await startLatch(own);
    try {
      const client = new Client(server.url);
      assert.equal((await client.request("POST", "/register", { username: "cli.mfa", password: "a long cli password" })).status, 201);
      const { secret } = (await client.request("POST", "/mfa/totp")).body;
      const code = TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() });
      assert.equal((await client.request("POST", "/mfa/totp/confirm", { code })).status, 200);
      assert.equal(
        (await new Client(server.url).request("POST", "/login", { username: "cli.mfa", password: "a long cli password" })).body.mfaRequired,
        true,
      );
      const reset = await cli(["users", "reset-mfa", "cli.mfa"], own);
      assert.equal(reset.code, 0, reset.stderr);
      // Its session and the pending sign-in that was waiting for a code.
      assert.match(reset.stdout, /removed the second factors of cli\.mfa and revoked 2 session/);
      assert.equal((await client.request("GET", "/me")).status, 401);
      const again = await new Client(server.url).request("POST", "/login", { username: "cli.mfa", password: "a long cli password" });
      assert.equal(again.status, 200);
      assert.equal(again.body.user.mfa, false);
    } finally {
      await server.stop();
    }
  });
});

describe("the admin CLI", () => {
  it("creates a user, sets roles, revokes sessions, purges and deletes, with clear exit codes", async () => {
    const created = await cli(["users", "create", "cli.admin", "--email", "cli@example.com", "--admin"], {
      LATCH_PASSWORD: "a long cli password",
    });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created cli\.admin .* with roles user,admin/);
    // A second admin, so that cli.admin is not the last one and may be demoted.
    const keeper = await cli(["users", "create", "cli.keeper", "--admin"], { LATCH_PASSWORD: "a long cli password" });
    assert.equal(keeper.code, 0, keeper.stderr);

    const server = await startLatch(env);
    try {
      const client = new Client(server.url);
      assert.equal((await client.request("POST", "/login", { username: "cli.admin", password: "a long cli password" })).status, 200);
      assert.equal((await client.request("GET", "/admin")).status, 200);

      const roles = await cli(["users", "roles", "cli@example.com", "user"]);
      assert.equal(roles.code, 0, roles.stderr);
      assert.equal((await client.request("GET", "/admin")).status, 403, "a role removed by the CLI applies on the next request");

      const revoked = await cli(["users", "revoke-sessions", "cli.admin"]);
      assert.equal(revoked.code, 0);
      assert.match(revoked.stdout, /revoked 1 session/);
      assert.equal((await client.request("GET", "/protected")).status, 401);

      // Every user signed out: two live sessions, then none.
      const again = new Client(server.url);
      assert.equal((await again.request("POST", "/login", { username: "cli.admin", password: "a long cli password" })).status, 200);
      const other = new Client(server.url);
      assert.equal(
        (await other.request("POST", "/register", { username: "cli.other", password: "another long cli password" })).status,
        201,
      );
      assert.equal((await again.request("GET", "/protected")).status, 200);
      assert.equal((await other.request("GET", "/protected")).status, 200);
      const everyone = await cli(["sessions", "revoke-all"]);
      assert.equal(everyone.code, 0, everyone.stderr);
      assert.match(everyone.stdout, /revoked 2 session\(s\) of every user/);
      assert.equal((await again.request("GET", "/protected")).status, 401);
      assert.equal((await other.request("GET", "/protected")).status, 401);
    } finally {
      await server.stop();
    }

    const purged = await cli(["sessions", "purge"]);
    assert.equal(purged.code, 0);
    assert.match(purged.stdout, /purged \d+ expired session/);

    const deleted = await cli(["users", "delete", "cli.admin"]);
    assert.equal(deleted.code, 0);
    assert.equal((await cli(["users", "delete", "cli.keeper"])).code, 0);
    const again = await cli(["users", "delete", "cli.admin"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no user "cli\.admin"/);
  });

  it("refuses to remove the last admin's admin role with exit 1 and one line, and changes nothing", async () => {
    const created = await cli(["users", "create", "cli.last.admin", "--admin"], { LATCH_PASSWORD: "a long cli password" });
    assert.equal(created.code, 0, created.stderr);
    // cli.admin and cli.keeper from the first test were deleted: this is the only admin.
    const refused = await cli(["users", "roles", "cli.last.admin", "user"]);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /^latch: .*last admin.*\n$/);
    assert.equal(refused.stderr.split("\n").length, 2, "one line");
    const second = await cli(["users", "create", "cli.second.admin", "--admin"], { LATCH_PASSWORD: "a long cli password" });
    assert.equal(second.code, 0, second.stderr);
    const demoted = await cli(["users", "roles", "cli.last.admin", "user"]);
    assert.equal(demoted.code, 0, demoted.stderr);
    assert.match(demoted.stdout, /now has roles user$/m);
  });

  it("refuses a weak password with exit 1 and bad usage with exit 2", async () => {
    const weak = await cli(["users", "create", "weak.user"], { LATCH_PASSWORD: "password" });
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /password/);
    const usage = await cli(["users", "frobnicate"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /Usage:/);
    const unknown = await cli(["nonsense"]);
    assert.equal(unknown.code, 2);
  });

  it("keys rotate makes a key of TOKEN_ALG, and keys list shows each key's algorithm", async () => {
    const keysEnv = { DATABASE_URL: `sqlite:${join(dir, "keys.db")}` };
    const rsa = await cli(["keys", "rotate"], { ...keysEnv, TOKEN_ALG: "RS256" });
    assert.equal(rsa.code, 0, rsa.stderr);
    assert.match(rsa.stdout, /^rotated: \S+ \(RS256\) signs new tokens/);
    const ec = await cli(["keys", "rotate"], keysEnv);
    assert.equal(ec.code, 0, ec.stderr);
    assert.match(ec.stdout, /\(ES256\)/, "TOKEN_ALG's default");
    const list = await cli(["keys", "list"], keysEnv);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /ES256 +active/);
    assert.match(list.stdout, /RS256 +published/);
  });
});
