import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { createTestServer } from "../src/testing/test-server.js";
import type { TestServer } from "../src/testing/test-server.js";

/**
 * Every error the server can answer, the framework's and Node's HTTP
 * parser's included, leaves in the contract's shape
 * `{"error": {"code", "message"}}` as JSON. Raw sockets, because the
 * parser's refusals (a malformed request line, a bad header) never reach
 * `app.inject`.
 */
interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function parse(raw: string): RawAnswer {
  const split = raw.indexOf("\r\n\r\n");
  const [statusLine = "", ...lines] = raw.slice(0, split).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const at = line.indexOf(":");
    headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
  }
  let body = raw.slice(split + 4);
  if (headers["transfer-encoding"] === "chunked") {
    let out = "";
    for (let rest = body; ; ) {
      const eol = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, eol), 16);
      if (!size) break;
      out += rest.slice(eol + 2, eol + 2 + size);
      rest = rest.slice(eol + 4 + size);
    }
    body = out;
  }
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

function send(port: number, text: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let raw = "";
    const socket = connect(port, "127.0.0.1", () => socket.write(text));
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      raw += chunk;
    });
    socket.on("error", () => {});
    socket.on("close", () => (raw.startsWith("HTTP/1.1") ? resolve(parse(raw)) : reject(new Error(`no answer: ${JSON.stringify(raw)}`))));
    setTimeout(() => socket.destroy(), 3000).unref();
  });
}

const json = (path: string, body: string, contentType = "application/json"): string =>
  `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;

const cases: Array<{ name: string; request: string; status: number; code: string }> = [
  {
    name: "a malformed URL",
    request: "GET /%E0%A4%A HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    status: 400,
    code: "invalid_input",
  },
  { name: "a malformed URL on a POST", request: json("/login/%E0%A4%A", "{}"), status: 400, code: "invalid_input" },
  { name: "a text/plain body", request: json("/login", "hi", "text/plain"), status: 415, code: "unsupported_media_type" },
  { name: "a form body", request: json("/login", "a=b", "application/x-www-form-urlencoded"), status: 415, code: "unsupported_media_type" },
  {
    name: "a body without a content type",
    request: "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    status: 415,
    code: "unsupported_media_type",
  },
  { name: "malformed JSON", request: json("/login", "{x"), status: 400, code: "invalid_input" },
  { name: "JSON with __proto__", request: json("/login", '{"__proto__":{"a":1}}'), status: 400, code: "invalid_input" },
  {
    name: "a body over the limit",
    request:
      "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n{}",
    status: 413,
    code: "payload_too_large",
  },
  {
    name: "a method the route does not have (an unknown route, as the contract says)",
    request: "PUT /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    status: 404,
    code: "not_found",
  },
  {
    name: "a method HTTP does not know",
    request: "FROB /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    status: 400,
    code: "invalid_input",
  },
  {
    name: "an unknown route",
    request: "GET /no/such/thing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    status: 404,
    code: "not_found",
  },
  {
    name: "a path parameter over the limit",
    request: `DELETE /sessions/${"a".repeat(300)} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    status: 404,
    code: "not_found",
  },
  { name: "a malformed request line", request: "GARBAGE\r\n\r\n", status: 400, code: "invalid_input" },
  {
    name: "a malformed header",
    request: "GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header: y\r\n\r\n",
    status: 400,
    code: "invalid_input",
  },
  {
    name: "a non-numeric Content-Length",
    request: "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n",
    status: 400,
    code: "invalid_input",
  },
  {
    name: "a malformed chunked body",
    request: "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    status: 400,
    code: "invalid_input",
  },
  {
    name: "headers over Node's limit",
    request: `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"b".repeat(20_000)}\r\n\r\n`,
    status: 431,
    code: "headers_too_large",
  },
];

describe("the shape of every error", () => {
  let t: TestServer;
  let port: number;
  before(async () => {
    t = await createTestServer();
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    port = (t.app.server.address() as { port: number }).port;
  });
  after(() => t.close());

  it("answers framework and HTTP-parser errors as {error: {code, message}} JSON with the right status", async () => {
    const wrong: string[] = [];
    for (const { name, request, status, code } of cases) {
      const answer = await send(port, request);
      let body: unknown;
      try {
        body = JSON.parse(answer.body);
      } catch {
        body = answer.body;
      }
      const error = (body as { error?: Record<string, unknown> } | null)?.error;
      const shaped =
        typeof body === "object" &&
        body !== null &&
        Object.keys(body).length === 1 &&
        typeof error === "object" &&
        error !== null &&
        Object.keys(error).sort().join() === "code,message" &&
        typeof error.message === "string" &&
        error.message.length > 0;
      const ok =
        answer.status === status && shaped && error?.code === code && /^application\/json/.test(answer.headers["content-type"] ?? "");
      if (!ok) wrong.push(`${name}: ${answer.status} ${answer.headers["content-type"]} ${answer.body.slice(0, 160)}`);
      // Nothing internal leaks: no Fastify code, stack or path.
      assert.doesNotMatch(answer.body, /FST_|at .*\.js|node_modules|statusCode/, name);
    }
    assert.deepEqual(wrong, []);
  });

  it("sets the security headers on a refused URL too", async () => {
    const answer = await send(port, "GET /%E0%A4%A HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert.equal(answer.status, 400);
    assert.equal(answer.headers["x-content-type-options"], "nosniff");
    assert.equal(answer.headers["cache-control"], "no-store");
  });
});

describe("slow clients", () => {
  let t: TestServer;
  let port: number;
  before(async () => {
    t = await createTestServer({ env: { REQUEST_TIMEOUT: "1", HEADERS_TIMEOUT: "1" } });
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    port = (t.app.server.address() as { port: number }).port;
  });
  after(() => t.close());

  /** Sends `text` and then nothing more; resolves with what came back and when the server closed the connection. */
  function stall(text: string): Promise<{ raw: string; ms: number }> {
    return new Promise((resolve) => {
      const started = performance.now();
      let raw = "";
      const socket = connect(port, "127.0.0.1", () => socket.write(text));
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => (raw += chunk));
      socket.on("error", () => {});
      socket.on("close", () => resolve({ raw, ms: performance.now() - started }));
      // Far beyond the timeouts: if the server never closes, the test fails on this.
      setTimeout(() => socket.destroy(), 8000).unref();
    });
  }

  it("closes a connection whose body never finishes, with 408 request_timeout", async () => {
    const { raw, ms } = await stall(
      'POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"username":',
    );
    assert.ok(ms < 6000, `closed after ${Math.round(ms)} ms`);
    const answer = parse(raw);
    assert.equal(answer.status, 408, raw);
    assert.deepEqual(JSON.parse(answer.body).error.code, "request_timeout");
  });

  it("closes a connection whose headers never finish", async () => {
    const { raw, ms } = await stall("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    assert.ok(ms < 6000, `closed after ${Math.round(ms)} ms`);
    assert.equal(parse(raw).status, 408, raw);
  });

  it("has timeouts by default: 30 s for a request, 10 s for its headers", async () => {
    const server = await createTestServer();
    try {
      assert.equal(server.app.server.requestTimeout, 30_000);
      assert.equal(server.app.server.headersTimeout, 10_000);
    } finally {
      await server.close();
    }
  });
});
