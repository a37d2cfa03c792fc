import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Starts real Latch server processes for cross-process tests: the same entry
 * point `npm start` uses, run from source through tsx so tests never run a
 * stale build.
 */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface LatchProcess {
  url: string;
  port: number;
  child: ChildProcess;
  output(): string;
  /** Sends the signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function runLatch(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: ROOT,
    // Mail from test processes goes to a scratch folder unless a test names one (or SMTP_URL).
    env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "warn", MAIL_OUTBOX: join(tmpdir(), "latch-test-outbox"), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

export async function startLatch(env: Record<string, string>, options: { port?: number } = {}): Promise<LatchProcess> {
  const port = options.port ?? (await freePort());
  const child = runLatch(["serve"], { ...env, PORT: String(port), HOST: "127.0.0.1" });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`latch exited with ${child.exitCode}: ${output}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`latch did not start within 30 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    child,
    output: () => output,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A tiny cookie-keeping HTTP client for tests. */
export class Client {
  cookie: string | undefined;
  csrfToken: string | undefined;
  constructor(
    readonly base: string,
    readonly cookieName = "sid",
  ) {}

  async request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: any; headers: Headers }> {
    const response = await fetch(this.base + path, {
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(this.cookie ? { cookie: `${this.cookieName}=${this.cookie}` } : {}),
        ...(this.csrfToken && method !== "GET" ? { "x-csrf-token": this.csrfToken } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const setCookie = response.headers.get("set-cookie");
    const match = setCookie ? new RegExp(`${this.cookieName}=([^;]*)`).exec(setCookie) : null;
    if (match) this.cookie = match[1] || undefined;
    const text = await response.text();
    const parsed = text ? JSON.parse(text) : null;
    if (parsed && typeof parsed.csrfToken === "string") this.csrfToken = parsed.csrfToken;
    return { status: response.status, body: parsed, headers: response.headers };
  }
}
