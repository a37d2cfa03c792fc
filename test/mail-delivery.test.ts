import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { simpleParser } from "mailparser";
import { startTestSmtpServer, tokenOf } from "../src/mail/smtp-test-server.js";
import type { TestSmtpServer } from "../src/mail/smtp-test-server.js";
import { serviceSkip } from "../src/testing/services.js";
import { Client, freePort, startLatch } from "./support/latch-process.js";
import type { LatchProcess } from "./support/latch-process.js";
import { createTestDatabase } from "./support/postgres-database.js";

/**
 * Mail through real server processes: the `.eml` folder, a real SMTP server
 * (smtp-server in this process) that goes down and comes back, a restart
 * with a message still queued, and two processes sharing one PostgreSQL
 * outbox while SMTP flaps.
 */

const dir = mkdtempSync(join(tmpdir(), "latch-mail-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const PASSWORD = "a long enough password";

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A port with an SMTP server that is stopped: connections are refused until it starts. */
async function downSmtp(): Promise<TestSmtpServer> {
  const smtp = await startTestSmtpServer({ port: await freePort() });
  await smtp.stop();
  return smtp;
}

describe("mail from a real server process on SQLite", () => {
  it("without SMTP_URL, writes each message as one .eml file to MAIL_OUTBOX; its link verifies the email", async () => {
    const outbox = join(dir, "outbox");
    const server = await startLatch({ DATABASE_URL: `sqlite:${join(dir, "eml.db")}`, MAIL_OUTBOX: outbox });
    const client = new Client(server.url);
    try {
      const registered = await client.request("POST", "/register", {
        username: "eml.user",
        password: PASSWORD,
        email: "eml.user@example.com",
      });
      assert.equal(registered.status, 201);
      const file = await until(".eml file", () => {
        try {
          return readdirSync(outbox).find((f) => f.endsWith(".eml"));
        } catch {
          return undefined; // the folder is made with the first message
        }
      });
      const raw = readFileSync(join(outbox, file));
      assert.match(raw.toString("latin1"), /\r\n\r\n/, "RFC 5322 line endings");
      const parsed = await simpleParser(raw);
      assert.deepEqual(
        parsed.from?.value.map((a) => a.address),
        ["no-reply@localhost"],
      );
      assert.equal(parsed.subject, "Confirm your email address");
      assert.ok(parsed.text && parsed.html, "plain text and HTML parts");
      assert.ok(
        parsed.text.includes(`http://localhost:${server.port}/account/verify-email#token=`),
        "PUBLIC_URL defaults to http://localhost:PORT",
      );
      const verified = await client.request("POST", "/email/verify", { token: tokenOf(parsed.text) });
      assert.equal(verified.status, 200);
      assert.equal(verified.body.user.emailVerified, true);
      assert.doesNotMatch(server.output(), new RegExp(tokenOf(parsed.text)!), "the token is in no log line");
    } finally {
      await server.stop("SIGTERM");
    }
  });

  it("SMTP down, then up: the request does not wait, and the message arrives once", async () => {
    const smtp = await downSmtp();
    const server = await startLatch({ DATABASE_URL: `sqlite:${join(dir, "flap.db")}`, SMTP_URL: smtp.url, LOG_LEVEL: "info" });
    const client = new Client(server.url);
    try {
      const started = Date.now();
      const registered = await client.request("POST", "/register", {
        username: "flap.user",
        password: PASSWORD,
        email: "flap.user@example.com",
      });
      assert.equal(registered.status, 201);
      assert.ok(Date.now() - started < 5000, "registration does not wait for SMTP");
      await sleep(3000);
      assert.equal(smtp.received.length, 0);
      const up = Date.now();
      await smtp.start();
      const [mail] = await smtp.waitFor(1, 20_000);
      const delay = Date.now() - up;
      console.log(`# delivery ${delay} ms after the SMTP server came back`);
      await sleep(2500);
      assert.equal(smtp.received.length, 1, "exactly once");
      assert.equal(mail!.subject, "Confirm your email address");
      assert.doesNotMatch(server.output(), new RegExp(mail!.token!), "no token in any log line");
      assert.match(server.output(), /mail not handed over; will retry/);
    } finally {
      await server.stop("SIGTERM");
      await smtp.close().catch(() => {});
    }
  });

  it("a message still queued when the process is killed arrives after the restart", async () => {
    const smtp = await downSmtp();
    const env = { DATABASE_URL: `sqlite:${join(dir, "restart.db")}`, SMTP_URL: smtp.url };
    let server: LatchProcess = await startLatch(env);
    try {
      const client = new Client(server.url);
      assert.equal(
        (await client.request("POST", "/register", { username: "queued.user", password: PASSWORD, email: "queued.user@example.com" }))
          .status,
        201,
      );
      await sleep(500);
      await server.stop("SIGKILL");
      await smtp.start();
      await sleep(1500);
      assert.equal(smtp.received.length, 0, "nobody sent it while no process ran");
      server = await startLatch(env, { port: server.port });
      const [mail] = await smtp.waitFor(1, 20_000);
      assert.equal(mail!.to, "queued.user@example.com");
      await sleep(1500);
      assert.equal(smtp.received.length, 1);
    } finally {
      await server.stop("SIGTERM");
      await smtp.close().catch(() => {});
    }
  });
});

const skip = await serviceSkip("postgres");

describe("two server processes on one PostgreSQL outbox", { skip }, () => {
  it("hand over each of 1,000 messages once while SMTP flaps", async () => {
    const db = await createTestDatabase("latch_mail");
    const smtp = await startTestSmtpServer({ port: await freePort() });
    const env = { DATABASE_URL: db.url, SMTP_URL: smtp.url };
    const a = await startLatch(env);
    const b = await startLatch(env);
    let flapping = true;
    try {
      const client = new Client(a.url);
      assert.equal((await client.request("POST", "/register", { username: "bulk.user", password: PASSWORD })).status, 201);
      const userId = (await client.request("GET", "/me")).body.user.id as string;
      // 1,000 messages queued at once, as requests would: straight into the table.
      await db.query(
        `INSERT INTO mail_outbox (id, user_id, kind, recipient, subject, text_body, html_body, status, attempts, next_attempt_at, created_at)
         SELECT '0190f000-0000-7000-8000-' || lpad(n::text, 12, '0'), $1, 'password_changed', 'bulk' || n || '@example.com',
                'Message ' || n, 'text ' || n, '<p>html ' || n || '</p>', 'queued', 0, $2, $2
         FROM generate_series(1, 1000) AS n`,
        [userId, Date.now()],
      );
      // Down 300 ms of every 700 for the first 15 s, then up.
      const flapUntil = Date.now() + 15_000;
      const flaps = (async () => {
        while (flapping && Date.now() < flapUntil) {
          await sleep(400);
          if (!flapping) break;
          await smtp.stop();
          await sleep(300);
          await smtp.start();
        }
      })();
      const started = Date.now();
      // MAIL_DEBUG=1 prints progress and the queue's state every 5 s.
      const progress = setInterval(() => {
        if (process.env.MAIL_DEBUG !== "1") return;
        console.log(`# progress ${smtp.received.length} ${Date.now() - started} ms`);
        void db
          .query("SELECT status, attempts, count(*) FROM mail_outbox GROUP BY 1, 2", [])
          .then((r) => console.log(JSON.stringify(r.rows)));
      }, 5000);
      after(() => clearInterval(progress));
      await until(
        "1,000 distinct messages",
        () => (new Set(smtp.received.map((m) => m.messageId)).size >= 1000 ? true : undefined),
        120_000,
      );
      flapping = false;
      await flaps;
      await sleep(3000);
      const ids = smtp.received.map((m) => m.messageId);
      const duplicates = ids.length - new Set(ids).size;
      console.log(
        `# 1,000 messages by two processes during SMTP flaps: ${ids.length} received, ${duplicates} duplicates, ${Date.now() - started} ms`,
      );
      assert.equal(duplicates, 0);
      const left = await db.query<{ n: string }>("SELECT count(*) AS n FROM mail_outbox WHERE status <> 'sent'");
      assert.equal(Number(left.rows[0]!.n), 0);
      const metrics = (await Promise.all([a, b].map(async (p) => (await fetch(`${p.url}/metrics`)).text()))).map((text) =>
        Number(/latch_mail_sent_total\{kind="password_changed"\} (\d+)/.exec(text)?.[1] ?? 0),
      );
      assert.equal(metrics[0]! + metrics[1]!, 1000, `sent counters ${metrics.join(" + ")}`);
      assert.ok(metrics[0]! > 0 && metrics[1]! > 0, "both processes sent");
    } finally {
      flapping = false;
      await a.stop("SIGTERM");
      await b.stop("SIGTERM");
      await smtp.close().catch(() => {});
      await db.drop();
    }
  });
});
