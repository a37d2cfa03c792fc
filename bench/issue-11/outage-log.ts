/**
 * Log volume of a 10 s PostgreSQL outage under light load (issue 11, item 8).
 *
 * A real Latch process on a throw-away database (created on the shared
 * PostgreSQL, dropped after), reached through a TCP proxy that is cut for
 * 10 s: to Latch that is a stopped server (connections reset, new ones
 * refused); the shared server itself is never touched. One client sends
 * about 40 requests a second (GET /protected with a session, and a wrong
 * sign-in, alternating). Counts the lines and bytes Latch writes from the
 * cut until 2 s after the restore.
 *
 *   node --import tsx bench/issue-11/outage-log.ts [latch source root]
 *
 * The optional root runs another checkout's `src/cli/main.ts` (an earlier
 * commit exported with `git archive`), for a before/after comparison.
 */
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { createTestDatabase } from "../../test/support/postgres-database.js";
import { freePort, ROOT } from "../../test/support/latch-process.js";
import { POSTGRES_URL } from "../../src/testing/services.js";
import { startTcpProxy } from "../../src/testing/tcp-proxy.js";

const root = process.argv[2] ?? ROOT;
const db = await createTestDatabase("latch_outage_log");
const target = new URL(POSTGRES_URL);
const proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
const url = new URL(db.url);
url.port = String(proxy.port);
const port = await freePort();
const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], {
  cwd: root,
  env: {
    PATH: process.env.PATH ?? "",
    DATABASE_URL: url.toString(),
    PORT: String(port),
    HOST: "127.0.0.1",
    LOG_LEVEL: "info",
    THROTTLE_ADDRESS_FAILURES: "1000000",
    THROTTLE_ACCOUNT_FAILURES: "1000000",
  },
  stdio: ["ignore", "pipe", "pipe"],
});
let output = "";
child.stdout.on("data", (d: Buffer) => (output += d.toString()));
child.stderr.on("data", (d: Buffer) => (output += d.toString()));
const base = `http://127.0.0.1:${port}`;
try {
  for (let i = 0; ; i += 1) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    if (i > 300) throw new Error(`no start: ${output}`);
    await sleep(100);
  }
  const registered = await fetch(`${base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "outage.user", password: "a long enough password" }),
  });
  const cookie = /sid=([^;]+)/.exec(registered.headers.get("set-cookie") ?? "")![1]!;
  let running = true;
  const statuses = new Map<number, number>();
  const load = (async () => {
    for (let i = 0; running; i += 1) {
      const started = Date.now();
      const response =
        i % 2 === 0
          ? await fetch(`${base}/protected`, { headers: { cookie: `sid=${cookie}` } }).catch(() => undefined)
          : await fetch(`${base}/login`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ username: "outage.user", password: "not the password" }),
            }).catch(() => undefined);
      await response?.text();
      if (response) statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      await sleep(Math.max(0, 25 - (Date.now() - started)));
    }
  })();
  await sleep(2000);
  const before = output.length;
  const startedAt = Date.now();
  proxy.cut();
  await sleep(10_000);
  proxy.restore();
  await sleep(2000);
  running = false;
  await load;
  const written = output.slice(before);
  const lines = written.split("\n").filter((line) => line.trim() !== "");
  console.log(
    JSON.stringify({
      root,
      outageMs: 10_000,
      windowMs: Date.now() - startedAt,
      lines: lines.length,
      bytes: Buffer.byteLength(written),
      statuses: Object.fromEntries(statuses),
      first: lines[0]?.slice(0, 160),
      last: lines.at(-1)?.slice(0, 160),
    }),
  );
} finally {
  child.kill("SIGTERM");
  await new Promise((resolve) => child.once("exit", resolve));
  await proxy.close();
  await db.drop();
}
