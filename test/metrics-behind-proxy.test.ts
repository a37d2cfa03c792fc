import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";

/**
 * /metrics behind a reverse proxy on the same host (the nginx setup in
 * docs/stores.md with TRUST_PROXY=loopback). The contract: "The client
 * address is the socket's unless TRUST_PROXY names the proxies whose
 * X-Forwarded-For may be believed", and /metrics is for loopback clients
 * only. A request that nginx forwards for a remote client arrives from
 * 127.0.0.1 with that client in X-Forwarded-For.
 * Both the socket's and the client address must be loopback.
 */

const dir = mkdtempSync(join(tmpdir(), "latch-metrics-proxy-"));

describe("/metrics behind a trusted proxy on the same host", () => {
  let latch: LatchProcess | undefined;
  before(async () => {
    latch = await startLatch({ DATABASE_URL: `sqlite:${join(dir, "latch.db")}`, TRUST_PROXY: "loopback" });
  });
  after(async () => {
    await latch?.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("still serves a loopback client the proxy forwards", async () => {
    const response = await fetch(`${latch!.url}/metrics`, { headers: { "x-forwarded-for": "127.0.0.1" } });
    assert.equal(response.status, 200);
    await response.text();
  });

  it("refuses a remote client that the proxy forwards", async () => {
    const response = await fetch(`${latch!.url}/metrics`, { headers: { "x-forwarded-for": "203.0.113.9" } });
    const body = await response.text();
    assert.equal(response.status, 403, `a remote client got /metrics through the proxy: ${body.slice(0, 80)}…`);
  });
});
