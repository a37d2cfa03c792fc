/**
 * POST /password/forgot against a real Latch process (SQLite, mail to a
 * scratch outbox): the time for a known account with an email versus an
 * unknown one, interleaved, medians over 50 each and their ratio. Printed
 * for the closing note and docs; not a test (speed is never asserted in one).
 *
 *   node --import tsx bench/forgot-timing.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLatch } from "../test/support/latch-process.js";

const ROUNDS = Number(process.env.ROUNDS ?? 50);
const dir = mkdtempSync(join(tmpdir(), "latch-forgot-"));
const server = await startLatch({
  DATABASE_URL: `sqlite:${join(dir, "forgot.db")}`,
  MAIL_OUTBOX: join(dir, "outbox"),
  THROTTLE_PASSWORD_RESETS: "100000",
  THROTTLE_RESET_MESSAGES: "1000",
});
try {
  const post = async (path: string, body: unknown): Promise<number> => {
    const start = process.hrtime.bigint();
    const response = await fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    await response.arrayBuffer();
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (path === "/password/forgot" && response.status !== 202) throw new Error(`status ${response.status}`);
    return ms;
  };
  await post("/register", { username: "known.person", password: "a long enough password", email: "known.person@example.com" });
  // Warm-up: JIT, prepared statements, connection.
  for (let i = 0; i < 20; i += 1) {
    await post("/password/forgot", { username: "known.person" });
    await post("/password/forgot", { username: `warm${i}` });
  }
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < ROUNDS; i += 1) {
    // Alternate which goes first, so drift favours neither.
    if (i % 2 === 0) {
      known.push(await post("/password/forgot", { username: "known.person" }));
      unknown.push(await post("/password/forgot", { username: `nobody${i}` }));
    } else {
      unknown.push(await post("/password/forgot", { username: `nobody${i}` }));
      known.push(await post("/password/forgot", { username: "known.person" }));
    }
    // Let the deferred look-up and the sender's hand-over finish, as between real requests.
    await new Promise((r) => setTimeout(r, 20));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const [k, u] = [median(known), median(unknown)];
  console.log(
    `POST /password/forgot over ${ROUNDS} each: known ${k.toFixed(3)} ms, unknown ${u.toFixed(3)} ms (medians), ratio known/unknown ${(k / u).toFixed(3)}`,
  );
} finally {
  await server.stop("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}
