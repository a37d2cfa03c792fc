/**
 * Rows written by 1,000 throttled sign-ins (issue 11, item 4): an in-process
 * server on a SQLite file with the default limits; one address fails 100
 * times (the address limit), then sends 1,000 more sign-ins, each refused
 * with 429. Counts the rows of every table before and after the 1,000.
 *
 *   node --import tsx bench/issue-11/throttle-rows.ts [latch source root]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { ROOT } from "../../test/support/latch-process.js";

const root = process.argv[2] ?? ROOT;
const { createTestServer } = (await import(join(root, "src/testing/test-server.ts"))) as typeof import("../../src/testing/test-server.js");
const { openSqliteStores } = (await import(join(root, "src/stores/sqlite/index.ts"))) as typeof import("../../src/stores/sqlite/index.js");
const dir = mkdtempSync(join(tmpdir(), "latch-throttle-rows-"));
const path = join(dir, "latch.db");
const t = await createTestServer({ stores: openSqliteStores({ path }) });
const reader = new BetterSqlite3(path, { readonly: true });
const rows = (): Record<string, number> =>
  Object.fromEntries(
    ["users", "sessions", "security_events", "rate_limits"].map((table) => [
      table,
      (reader.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n,
    ]),
  );
try {
  const login = (i: number) =>
    t.app.inject({ method: "POST", url: "/login", payload: { username: `stuffed.${i}`, password: "wrong password" } });
  for (let i = 0; i < 100; i += 1) await login(i);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const before = rows();
  const statuses = new Map<number, number>();
  for (let i = 0; i < 1000; i += 1) {
    const status = (await login(1000 + i)).statusCode;
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  const after = rows();
  const added = Object.values(after).reduce((a, b) => a + b, 0) - Object.values(before).reduce((a, b) => a + b, 0);
  console.log(JSON.stringify({ root, statuses: Object.fromEntries(statuses), before, after, rowsAdded: added }));
} finally {
  reader.close();
  await t.close();
  rmSync(dir, { recursive: true, force: true });
}
