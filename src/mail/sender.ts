import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { uuidv7 } from "../core/ids.js";
import type { Runtime } from "../core/runtime.js";
import type { MailStore, OutboxEntry, SecurityEventStore } from "../core/store.js";
import type { MailTransport } from "./transport.js";

/** What the sender logs: a pino or Fastify logger fits. Lines name a message by id and kind only. */
export interface MailLogger {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
}

export interface MailSenderOptions {
  mail: MailStore;
  events: SecurityEventStore;
  transport: MailTransport;
  runtime: Runtime;
  logger: MailLogger;
  /** Called once per message handed over, and once per message given up on (for the metrics). */
  onSent?: ((message: OutboxEntry) => void) | undefined;
  onFailed?: ((message: OutboxEntry) => void) | undefined;
  /** How often the queue is looked at when nothing woke the sender. Default 1000 ms. */
  pollIntervalMs?: number | undefined;
  /** How long a claim holds a message against other senders. Default 120 s (sends abort at half of it). */
  leaseMs?: number | undefined;
  /** How long a message is retried, from when it was queued, before it fails. Default (and floor in production) 30 min. */
  retryForMs?: number | undefined;
  /** First retry delay; doubles per attempt up to `maxBackoffMs`. Defaults 2 s and 5 min. */
  baseBackoffMs?: number | undefined;
  maxBackoffMs?: number | undefined;
  /** While the transport is failing, how often it is probed; when it answers, waiting messages are due at once. Default 2 s. */
  probeIntervalMs?: number | undefined;
  /** Messages handed over at once. Default 4. */
  concurrency?: number | undefined;
  /** For tests: a source of jitter in [0, 1). */
  jitter?: (() => number) | undefined;
}

export interface MailSender {
  /** The lease owner this sender writes: host, pid and a random part. */
  readonly owner: string;
  /** Looks at the queue now (a request just queued a message). */
  wake(): void;
  /** Runs one claim-and-send round and resolves with how many messages it took; for tests and the shutdown flush. */
  runOnce(): Promise<number>;
  /** Stops claiming and waits for the sends in flight to finish and be marked. */
  stop(): Promise<void>;
}

/** A short, secret-free description of a send failure for the outbox row and the log. */
function describeFailure(error: unknown): string {
  if (typeof error !== "object" || error === null) return "error";
  const e = error as { code?: unknown; responseCode?: unknown; command?: unknown; name?: unknown };
  const parts = [e.code, e.responseCode, e.command].filter((p) => typeof p === "string" || typeof p === "number").map(String);
  return parts.length > 0 ? parts.join(" ") : typeof e.name === "string" ? e.name : "error";
}

/**
 * The outbox sender that runs in every server process. It claims due
 * messages under a lease (the store's `claimMessages`: PostgreSQL's FOR
 * UPDATE SKIP LOCKED, SQLite's single writer), hands each to the transport,
 * and marks it sent; a failure is retried with exponential backoff and
 * jitter until `retryForMs` after it was queued, then marked failed with a
 * security event.
 *
 * Delivery is at least once: a process that dies after the SMTP server
 * accepted a message and before it was marked sent leaves it to be sent
 * again once the lease runs out. Otherwise each message is handed over
 * once, however many processes share the queue. The Message-ID is the
 * message's id, so a receiver can tell a resend.
 *
 * @example
 * const sender = startMailSender({ mail: stores.mail, events: stores.events, transport, runtime, logger });
 * await sender.stop();
 */
export function startMailSender(options: MailSenderOptions): MailSender {
  const { mail, events, transport, runtime, logger } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const leaseMs = options.leaseMs ?? 120_000;
  const retryForMs = options.retryForMs ?? 30 * 60_000;
  const baseBackoffMs = options.baseBackoffMs ?? 2000;
  const maxBackoffMs = options.maxBackoffMs ?? 5 * 60_000;
  const probeIntervalMs = options.probeIntervalMs ?? 2000;
  const concurrency = options.concurrency ?? 4;
  const jitter = options.jitter ?? Math.random;
  const owner = `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;

  let stopped = false;
  let running: Promise<number> | null = null;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  /** Set while the transport fails; sends wait for a probe to succeed instead of piling up. */
  let transportDown = false;
  let lastProbe = 0;

  /** Exponential backoff with "equal jitter": half fixed, half random, so retries from many messages spread out. */
  function backoff(attempts: number): number {
    const ceiling = Math.min(maxBackoffMs, baseBackoffMs * 2 ** Math.max(0, attempts - 1));
    return Math.round(ceiling / 2 + jitter() * (ceiling / 2));
  }

  async function deliver(message: OutboxEntry): Promise<void> {
    const signal = AbortSignal.timeout(Math.floor(leaseMs / 2));
    try {
      await transport.send(message, signal);
    } catch (error) {
      transportDown = true;
      const now = runtime.clock.now();
      const reason = describeFailure(error);
      if (now - message.createdAt >= retryForMs) {
        if (await mail.markFailed(message.id, owner, now, reason)) {
          logger.warn(
            { message: message.id, kind: message.kind, attempts: message.attempts, reason },
            "mail failed: giving up after the retry window",
          );
          options.onFailed?.(message);
          await events
            .recordEvent({
              id: uuidv7(runtime.clock, runtime.random),
              userId: message.userId,
              type: "mail_failed",
              at: now,
              ipAddress: null,
              userAgent: null,
              detail: { message: message.id, kind: message.kind },
            })
            .catch((cause: unknown) => logger.warn({ err: cause, message: message.id }, "could not record the mail_failed event"));
        }
        return;
      }
      const delay = backoff(message.attempts);
      await mail.markRetry(message.id, owner, now + delay, reason);
      logger.warn(
        { message: message.id, kind: message.kind, attempts: message.attempts, retryInMs: delay, reason },
        "mail not handed over; will retry",
      );
      return;
    }
    if (await mail.markSent(message.id, owner, runtime.clock.now())) {
      logger.info({ message: message.id, kind: message.kind, attempts: message.attempts, via: transport.kind }, "mail sent");
      options.onSent?.(message);
    } else {
      // The lease ran out during the send and another sender may take it
      // too: the one case of a second hand-over in normal operation.
      logger.warn({ message: message.id, kind: message.kind }, "mail sent after its lease ran out; it may be sent again");
    }
    if (transportDown) {
      // A hand-over after failures: the server is back, so what waits out a
      // backoff is due now rather than minutes from now.
      transportDown = false;
      const due = await mail.retryNow(runtime.clock.now());
      logger.info({ via: transport.kind, due }, "mail transport answers again: sending what waited");
    }
  }

  /**
   * While the transport is down, probe it now and then; when it answers,
   * the messages waiting out their backoff are due at once, so delivery
   * resumes within a probe interval of the server's return rather than at
   * the next backoff step (up to 5 minutes).
   */
  async function probeIfDown(): Promise<void> {
    if (!transportDown) return;
    const now = runtime.clock.now();
    if (now - lastProbe < probeIntervalMs) return;
    lastProbe = now;
    try {
      await transport.verify();
    } catch {
      return;
    }
    transportDown = false;
    const due = await mail.retryNow(runtime.clock.now());
    logger.info({ via: transport.kind, due }, "mail transport answers again: sending what waited");
  }

  async function round(): Promise<number> {
    await probeIfDown();
    // A read first: an idle poll writes nothing (on SQLite a write would
    // tell every other process's session cache that the file changed).
    const due = await mail.nextDueAt();
    if (due === null || due > runtime.clock.now()) return 0;
    const claimed = await mail.claimMessages(owner, runtime.clock.now(), { leaseMs, limit: concurrency });
    await Promise.all(claimed.map((message) => deliver(message)));
    return claimed.length;
  }

  /** One round at a time; a wake during a round runs another right after it. */
  function runOnce(): Promise<number> {
    if (running !== null) {
      again = true;
      return running;
    }
    running = (async () => {
      let total = 0;
      try {
        for (;;) {
          again = false;
          const n = await round();
          total += n;
          // A full batch means more may be due; a wake meant a new message.
          if (stopped || (n < concurrency && !again)) break;
        }
      } catch (error) {
        logger.warn({ err: error }, "mail sender round failed; will retry");
      } finally {
        running = null;
      }
      return total;
    })();
    return running;
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(
      () => {
        void runOnce().finally(schedule);
      },
      transportDown ? Math.min(pollIntervalMs, probeIntervalMs) : pollIntervalMs,
    );
    timer.unref();
  }

  void runOnce().finally(schedule);

  return {
    owner,
    wake() {
      if (!stopped) void runOnce();
    },
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
      transport.close();
    },
  };
}
