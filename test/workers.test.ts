import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DATA_VERSION_CHECK_MS } from "../src/stores/open-stores.js";
import { Client, startLatch } from "./support/latch-process.js";

const dir = mkdtempSync(join(tmpdir(), "latch-workers-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** One GET on a connection of its own, so the primary's round-robin spreads them over the workers. */
function freshGet(url: string, cookie: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { cookie } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The worker processes (tsx also runs an esbuild child: not a worker). */
function childPids(pid: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(pid), "-f", "cli/main"], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

describe("WORKERS=2: two server processes on one port", () => {
  it("serve one session together, refuse it on every worker once signed out, report both ready, and stop together", async () => {
    const server = await startLatch({
      DATABASE_URL: `sqlite:${join(dir, "workers.db")}`,
      WORKERS: "2",
      ADMIN_USERNAME: "workers.admin",
      ADMIN_PASSWORD: "a long enough password",
    });
    try {
      const workers = childPids(server.child.pid!);
      assert.equal(workers.length, 2, "the primary runs two workers");

      // /readyz counts both once each has reported (every second).
      let ready: { status: number; body: any } = { status: 0, body: null };
      const client = new Client(server.url);
      for (let i = 0; i < 200; i += 1) {
        ready = await client.request("GET", "/readyz");
        if (ready.status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.deepEqual(ready.body.workers, { ready: 2, total: 2 });

      // The bootstrap admin was made once, by the primary.
      assert.equal((await client.request("POST", "/login", { username: "workers.admin", password: "a long enough password" })).status, 200);
      assert.equal(
        (await client.request("POST", "/register", { username: "workers.user", password: "a long enough password" })).status,
        201,
      );
      const cookie = `sid=${client.cookie}`;
      // Twenty fresh connections: both workers serve (and cache) the session.
      for (let i = 0; i < 20; i += 1) assert.equal(await freshGet(`${server.url}/protected`, cookie), 200, `request ${i}`);
      assert.equal((await client.request("POST", "/logout")).status, 200);
      // Whichever worker answers, the session is gone from its cache too, once
      // its SQLite data_version check has run (at most every DATA_VERSION_CHECK_MS,
      // 10 ms, as for any other process on the file: well within the contract's second).
      await new Promise((r) => setTimeout(r, DATA_VERSION_CHECK_MS * 5));
      for (let i = 0; i < 20; i += 1) assert.equal(await freshGet(`${server.url}/protected`, cookie), 401, `after sign-out, request ${i}`);

      // A worker that dies is replaced, and /readyz says so until it is back.
      process.kill(workers[0]!, "SIGKILL");
      let replaced: number[] = [];
      for (let i = 0; i < 100 && !(replaced.length === 2 && !replaced.includes(workers[0]!)); i += 1) {
        await new Promise((r) => setTimeout(r, 100));
        replaced = childPids(server.child.pid!);
      }
      assert.equal(replaced.length, 2, "a new worker took the dead one's place");
      assert.ok(!replaced.includes(workers[0]!));

      assert.equal(await server.stop("SIGTERM"), 0, "the primary exits 0 once every worker has shut down");
      for (const pid of replaced) assert.throws(() => process.kill(pid, 0), "no worker is left running");
    } finally {
      await server.stop("SIGKILL");
    }
  });
});
