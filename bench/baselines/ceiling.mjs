// The ceiling: bare node:http, the session looked up in a Map from the
// cookie. No framework, no store, no I/O: what validating a session costs
// when it costs nothing. POST /login (no password) creates a session and
// sets the cookie so the harness can sign in the same way everywhere.
// With BENCH_COOKIE_FILE (the many-sessions scenario), the Map starts with
// one session per line of that file, so it holds as many sessions as the
// Latch store it is compared with. With BENCH_CEILING_HEADERS (a JSON object:
// the many-sessions scenario passes Latch's SECURITY_HEADERS), every answer
// also carries those headers, before its own two, in Latch's order: the
// same bytes Latch answers, so the ratio to it measures the session path
// rather than eight header lines.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const sessions = new Map();
const user = { id: "1", username: "bench.user", email: null, roles: ["user"], createdAt: new Date(0).toISOString() };
if (process.env.BENCH_COOKIE_FILE) {
  let n = 0;
  for (const line of readFileSync(process.env.BENCH_COOKIE_FILE, "utf8").split("\n")) {
    if (line === "") continue;
    n += 1;
    // A user object per session, as a store would hand out.
    sessions.set(line, { user: { ...user, id: String(n), username: `many.${n}` }, expiresAt: Date.now() + 1_800_000 });
  }
}

function sid(cookieHeader) {
  if (cookieHeader === undefined) return undefined;
  const at = cookieHeader.indexOf("sid=");
  if (at === -1) return undefined;
  const end = cookieHeader.indexOf(";", at);
  return cookieHeader.slice(at + 4, end === -1 ? undefined : end);
}

const extraHeaders = Object.entries(JSON.parse(process.env.BENCH_CEILING_HEADERS || "{}")).flat();

function json(res, status, body) {
  const text = JSON.stringify(body);
  if (extraHeaders.length === 0) {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  } else {
    res.writeHead(status, [...extraHeaders, "content-type", "application/json; charset=utf-8", "content-length", String(Buffer.byteLength(text))]);
  }
  res.end(text);
}

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/protected") {
    const session = sessions.get(sid(req.headers.cookie));
    if (session === undefined) return json(res, 401, { error: { code: "unauthenticated" } });
    return json(res, 200, { message: "Access granted", user: session.user });
  }
  if (req.method === "POST" && req.url === "/login") {
    req.resume();
    req.on("end", () => {
      const id = randomBytes(32).toString("base64url");
      sessions.set(id, { user, expiresAt: Date.now() + 1_800_000 });
      res.setHeader("set-cookie", `sid=${id}; Path=/; HttpOnly; SameSite=Lax`);
      json(res, 200, { user });
    });
    return;
  }
  json(res, 404, { error: { code: "not_found" } });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), "127.0.0.1");
