import { mkdir, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createTransport } from "nodemailer";
import type { OutboxEntry } from "../core/store.js";

/** Where a message is handed over: an SMTP server, or the `.eml` folder. */
export interface MailTransport {
  /** "smtp" or "outbox", for logs. */
  readonly kind: "smtp" | "outbox";
  /** Hands the message over; rejects when it was not accepted. `signal` aborts a send that takes too long. */
  send(message: OutboxEntry, signal: AbortSignal): Promise<void>;
  /** Resolves when the peer answers (SMTP: connects and greets), rejects otherwise. */
  verify(): Promise<void>;
  close(): void;
}

export interface MailTransportOptions {
  /** SMTP_URL, or null for the `.eml` folder. */
  smtpUrl: string | null;
  /** MAIL_FROM. */
  from: string;
  /** MAIL_OUTBOX. */
  outbox: string;
}

/** The domain of the sender address: Message-IDs are `<message id>@<domain>`. */
function fromDomain(from: string): string {
  const match = /@([^>\s]+)>?\s*$/.exec(from);
  return match?.[1] ?? "localhost";
}

/** The message as nodemailer takes it. The Message-ID is the outbox id, so a resend is recognisable as one. */
function mailOptions(message: OutboxEntry, from: string): Record<string, unknown> {
  return {
    from,
    to: message.to,
    subject: message.subject,
    text: message.text,
    html: message.html,
    messageId: `<${message.id}@${fromDomain(from)}>`,
    date: new Date(message.createdAt),
    headers: { "X-Latch-Kind": message.kind, "Auto-Submitted": "auto-generated" },
  };
}

// Well under the sender's lease, so a send never outlives the claim that
// protects it from a second sender.
const TIMEOUTS = { connectionTimeout: 10_000, greetingTimeout: 10_000, socketTimeout: 30_000, dnsTimeout: 10_000 };

/**
 * nodemailer over SMTP (a new connection per send, so a server that went
 * away and came back needs no pool recovery), or nodemailer's stream
 * transport writing each message as one RFC 5322 `.eml` file named by the
 * message id (written under a temporary name, then renamed, so a reader
 * never sees half a file and a resend replaces rather than duplicates).
 *
 * @example
 * const transport = createMailTransport({ smtpUrl: null, from: "Latch <no-reply@localhost>", outbox: "./data/outbox" });
 */
export function createMailTransport(options: MailTransportOptions): MailTransport {
  const { from } = options;
  if (options.smtpUrl !== null) {
    const smtp = createTransport({ url: options.smtpUrl, ...TIMEOUTS, disableFileAccess: true, disableUrlAccess: true });
    return {
      kind: "smtp",
      async send(message, signal) {
        await smtp.sendMail({ ...mailOptions(message, from), signal });
      },
      async verify() {
        await smtp.verify();
      },
      close: () => smtp.close(),
    };
  }
  const folder = resolve(options.outbox);
  const stream = createTransport({ streamTransport: true, buffer: true, newline: "windows" });
  return {
    kind: "outbox",
    async send(message) {
      const info = await stream.sendMail({ ...mailOptions(message, from), disableFileAccess: true, disableUrlAccess: true });
      await mkdir(folder, { recursive: true });
      const final = join(folder, `${message.id}.eml`);
      const temporary = `${final}.${process.pid}.tmp`;
      await writeFile(temporary, info.message as Buffer, { mode: 0o600 });
      await rename(temporary, final);
    },
    async verify() {
      await mkdir(folder, { recursive: true });
    },
    close: () => stream.close(),
  };
}
