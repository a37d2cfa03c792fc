import type { FastifyBaseLogger } from "fastify";
import { issueAccountToken } from "../core/account-tokens.js";
import { uuidv7 } from "../core/ids.js";
import type { MailKind, OutboxMessage, Stores, UserRecord } from "../core/store.js";
import { emailChangedMail, passwordChangedMail, passwordResetMail, verifyEmailMail } from "../mail/templates.js";
import type { RenderedMail } from "../mail/templates.js";
import { startMailSender } from "../mail/sender.js";
import type { MailLogger, MailSender, MailSenderOptions } from "../mail/sender.js";
import { createMailTransport } from "../mail/transport.js";
import type { MailQueue, ServerContext } from "./context.js";

/**
 * The messages requests queue. Each is rendered at once (templates in
 * src/mail/templates.ts) and inserted into the outbox, with the token it
 * carries in the same transaction; the sender (src/mail/sender.ts) does the
 * rest. Nothing here waits for SMTP. Log lines name a message by id and
 * kind only: never the token, the link or the address.
 */

/** The outbox, with a wake-up for this process's sender. */
export function createMailQueue(stores: Pick<Stores, "mail">): MailQueue {
  const listeners: Array<() => void> = [];
  const pending = new Set<Promise<void>>();
  return {
    defer(task) {
      // Tasks log their own failures; the catch only keeps one from crashing the process.
      const run = new Promise<void>((resolve) => setImmediate(resolve)).then(task).catch(() => {});
      const tracked = run.finally(() => pending.delete(tracked));
      pending.add(tracked);
    },
    async idle() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    async queue(message, options) {
      await stores.mail.queueMessage(message, options);
      for (const listener of listeners) listener();
    },
    wake() {
      for (const listener of listeners) listener();
    },
    onQueued(listener) {
      listeners.push(listener);
    },
  };
}

/**
 * Starts this process's outbox sender over the server's stores: SMTP_URL or
 * the MAIL_OUTBOX folder, the mail metrics, and a wake-up whenever a request
 * here queues a message (other processes' messages are found by polling).
 *
 * @example
 * const sender = startServerMail(context, app.log);
 * await sender.stop();
 */
export function startServerMail(
  ctx: ServerContext,
  logger: MailLogger,
  options: Partial<Omit<MailSenderOptions, "mail" | "events" | "runtime" | "logger">> = {},
): MailSender {
  const sender = startMailSender({
    mail: ctx.stores.mail,
    events: ctx.stores.events,
    runtime: ctx.runtime,
    logger,
    transport: options.transport ?? createMailTransport(ctx.config.mail),
    onSent: (m) => ctx.metrics.mailSent.inc({ kind: m.kind }),
    onFailed: (m) => ctx.metrics.mailFailed.inc({ kind: m.kind }),
    ...options,
  });
  ctx.mail.onQueued(() => sender.wake());
  return sender;
}

function message(ctx: ServerContext, user: UserRecord, kind: MailKind, to: string, mail: RenderedMail): OutboxMessage {
  return { id: uuidv7(ctx.runtime.clock, ctx.runtime.random), userId: user.id, kind, to, ...mail, createdAt: ctx.runtime.clock.now() };
}

const context = (ctx: ServerContext, user: UserRecord): { username: string; publicUrl: string } => ({
  username: user.username,
  publicUrl: ctx.config.publicUrl,
});

/** Queues a verification link for the user's current email (none: nothing). Returns the message id. */
export async function queueVerification(ctx: ServerContext, user: UserRecord): Promise<string | null> {
  if (user.email === null || user.emailKey === null) return null;
  const { token, record } = issueAccountToken(ctx.runtime, { purpose: "verify", userId: user.id, emailKey: user.emailKey });
  // The token rides in the fragment: browsers never send it to a server, so
  // it stays out of access logs, proxies and Referer headers, and a mail
  // scanner that fetches the link consumes nothing.
  const link = `${ctx.config.publicUrl}/account/verify-email#token=${token}`;
  const queued = message(ctx, user, "verify_email", user.email, verifyEmailMail(context(ctx, user), link));
  await ctx.mail.queue(queued, { token: record });
  return queued.id;
}

/** Queues a reset link, voiding the user's older reset links in the same transaction. */
export async function queuePasswordReset(ctx: ServerContext, user: UserRecord): Promise<string | null> {
  if (user.email === null) return null;
  const { token, record } = issueAccountToken(ctx.runtime, { purpose: "reset", userId: user.id, emailKey: null });
  const link = `${ctx.config.publicUrl}/account/reset#token=${token}`;
  const queued = message(ctx, user, "password_reset", user.email, passwordResetMail(context(ctx, user), link));
  await ctx.mail.queue(queued, { token: record, voidTokens: "reset" });
  return queued.id;
}

/** The notice of a password change, or null when the account has no email. */
export function passwordChangedMessage(ctx: ServerContext, user: UserRecord, how: "changed" | "reset"): OutboxMessage | null {
  if (user.email === null) return null;
  return message(ctx, user, "password_changed", user.email, passwordChangedMail(context(ctx, user), { at: ctx.runtime.clock.now(), how }));
}

/** The notice to the old address after an email change. */
export function emailChangedMessage(ctx: ServerContext, user: UserRecord, oldEmail: string, newEmail: string): OutboxMessage {
  return message(ctx, user, "email_changed", oldEmail, emailChangedMail(context(ctx, user), { at: ctx.runtime.clock.now(), newEmail }));
}

/**
 * Runs mail work whose failure must not fail the request that caused it
 * (the account change itself succeeded): logged by kind, never thrown.
 */
export async function queueQuietly(log: FastifyBaseLogger, kind: MailKind, work: () => Promise<unknown>): Promise<void> {
  try {
    await work();
  } catch (error) {
    log.warn({ err: error, kind }, "could not queue a message");
  }
}
