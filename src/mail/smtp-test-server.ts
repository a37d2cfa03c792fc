import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import type { ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";

/** A message the test SMTP server accepted, parsed by mailparser. */
export interface ReceivedMail {
  parsed: ParsedMail;
  messageId: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  /** The token in the message's link, when it has one. */
  token: string | null;
}

export interface TestSmtpServer {
  port: number;
  url: string;
  received: ReceivedMail[];
  /** Resolves once `count` messages in all have arrived (or rejects after `timeoutMs`). */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  /** Closes the port: connections are refused until `start`. */
  stop(): Promise<void>;
  /** Listens on the same port again. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** The token in a Latch link (`…#token=<43 characters>`), or null. */
export function tokenOf(text: string): string | null {
  return /#token=([A-Za-z0-9_-]{43})/.exec(text)?.[1] ?? null;
}

/**
 * A real SMTP peer for tests: the smtp-server package in this process, on a
 * free port (or `port`), with every message parsed by mailparser.
 *
 * @example
 * const smtp = await startTestSmtpServer();
 * const [mail] = await smtp.waitFor(1);
 */
export async function startTestSmtpServer(options: { port?: number } = {}): Promise<TestSmtpServer> {
  const received: ReceivedMail[] = [];
  const waiters: Array<() => void> = [];
  let server: SMTPServer;
  let port = options.port ?? 0;

  function make(): SMTPServer {
    return new SMTPServer({
      authOptional: true,
      // A stop is an outage: connections still open are cut after a second.
      closeTimeout: 1000,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData(stream, _session, callback) {
        simpleParser(stream).then(
          (parsed) => {
            const text = parsed.text ?? "";
            received.push({
              parsed,
              messageId: parsed.messageId ?? "",
              to: Array.isArray(parsed.to) ? parsed.to.map((a) => a.text).join(", ") : (parsed.to?.text ?? ""),
              subject: parsed.subject ?? "",
              text,
              html: typeof parsed.html === "string" ? parsed.html : "",
              token: tokenOf(text),
            });
            for (const wake of waiters.splice(0)) wake();
            callback();
          },
          (error: Error) => callback(error),
        );
      },
    });
  }

  async function start(): Promise<void> {
    // The port of a server just stopped can take a moment to be free again.
    for (let attempt = 0; ; attempt += 1) {
      server = make();
      server.on("error", () => {});
      const listening = once(server.server, "listening").then(() => null);
      const failed = once(server.server, "error").then(([error]) => error as Error);
      server.listen(port, "127.0.0.1");
      const error = await Promise.race([listening, failed]);
      if (error === null) break;
      if (attempt >= 50) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
    port = (server.server.address() as AddressInfo).port;
  }

  async function stop(): Promise<void> {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  await start();
  return {
    get port() {
      return port;
    },
    get url() {
      return `smtp://127.0.0.1:${port}`;
    },
    received,
    async waitFor(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expected ${count} messages, got ${received.length}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 250));
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return received.slice(0, count);
    },
    stop,
    start,
    close: stop,
  };
}
