import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { startServerMail } from "../server/mail.js";
import { createTestServer, TEST_PASSWORD } from "../testing/test-server.js";
import { createMailTransport } from "./transport.js";

/** A port nobody listens on: connections are refused, as when the SMTP server is down. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const quiet = { info: () => {}, warn: () => {} };

describe("the outbox sender", () => {
  it("retries a message it cannot hand over for 30 minutes, then marks it failed with a security event and a metric", async () => {
    const port = await closedPort();
    const t = await createTestServer({ env: { SMTP_URL: `smtp://127.0.0.1:${port}` } });
    const sender = startServerMail(t.context, quiet, {
      transport: createMailTransport(t.context.config.mail),
      pollIntervalMs: 3_600_000,
      probeIntervalMs: 3_600_000,
      jitter: () => 0.5,
    });
    try {
      const registered = await t.app.inject({
        method: "POST",
        url: "/register",
        payload: { username: "undeliverable", password: TEST_PASSWORD, email: "undeliverable@example.com" },
      });
      assert.equal(registered.statusCode, 201, "the request does not fail because of mail");
      const userId = registered.json().user.id as string;
      await sender.runOnce();
      const attempts: number[] = [];
      // 29 minutes of retries: still queued, never failed.
      for (let elapsed = 0; elapsed < 29 * 60_000; elapsed += 60_000) {
        t.clock.advance(60_000);
        await sender.runOnce();
        attempts.push((await t.stores.mail.listUserMessages(userId, 1))[0]!.attempts);
      }
      const [pending] = await t.stores.mail.listUserMessages(userId, 1);
      assert.equal(pending?.status, "queued");
      assert.ok(pending!.attempts >= 6 && pending!.attempts <= 20, `exponential backoff: ${pending!.attempts} attempts in 29 minutes`);
      assert.equal(await t.stores.mail.queueDepth(), 1);

      t.clock.advance(6 * 60_000);
      await sender.runOnce();
      const [failed] = await t.stores.mail.listUserMessages(userId, 1);
      assert.equal(failed?.status, "failed");
      const events = await t.stores.events.listUserEvents(userId, 50);
      const event = events.find((e: { type: string }) => e.type === "mail_failed");
      assert.deepEqual(event?.detail, { message: failed!.id, kind: "verify_email" });
      const metrics = await t.context.metrics.registry.metrics();
      assert.match(metrics, /latch_mail_failed_total\{kind="verify_email"\} 1/);
      assert.match(metrics, /latch_mail_queue_depth 0/);
      t.clock.advance(3_600_000);
      assert.equal(await sender.runOnce(), 0, "a failed message is not tried again");
    } finally {
      await sender.stop();
      await t.close();
    }
  });

  it("backs off exponentially with jitter: half fixed, half random, capped", async () => {
    const port = await closedPort();
    const t = await createTestServer({ env: { SMTP_URL: `smtp://127.0.0.1:${port}` } });
    const low = startServerMail(t.context, quiet, {
      pollIntervalMs: 3_600_000,
      probeIntervalMs: 3_600_000,
      jitter: () => 0,
      baseBackoffMs: 1000,
      maxBackoffMs: 8000,
    });
    try {
      await t.app.inject({
        method: "POST",
        url: "/register",
        payload: { username: "backoff.user", password: TEST_PASSWORD, email: "backoff@example.com" },
      });
      await low.runOnce();
      const delays: number[] = [];
      for (let i = 0; i < 6; i += 1) {
        const due = (await t.stores.mail.nextDueAt())!;
        delays.push(due - t.clock.now());
        t.clock.set(due);
        await low.runOnce();
      }
      // With jitter 0 each delay is half its ceiling: 1, 2, 4, 8 s ceilings, then the cap.
      assert.deepEqual(delays, [500, 1000, 2000, 4000, 4000, 4000]);
    } finally {
      await low.stop();
      await t.close();
    }
  });
});
