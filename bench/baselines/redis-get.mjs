// Bare node:http plus one Redis GET per request: the cost of a round trip to
// Redis and of the client library, with nothing else around it.
//
// BENCH_REDIS_CLIENT picks the client:
//   ioredis     (Latch's client; no per-command timeout unless asked for)
//   node-redis  (redis@6 with its default options: a 5 s command timeout,
//                which creates an AbortSignal.timeout() for every command;
//                see shared/PERFORMANCE-NOTES.md point 2)
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

const kind = process.env.BENCH_REDIS_CLIENT ?? "ioredis";
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PREFIX = "latch-bench:redis-get:";
const user = { id: "1", username: "bench.user", email: null, roles: ["user"], createdAt: new Date(0).toISOString() };

let get;
let setex;
if (kind === "node-redis") {
  const { createClient } = await import("redis");
  const client = createClient({ url });
  client.on("error", (error) => console.error(error.message));
  await client.connect();
  get = (key) => client.get(key);
  setex = (key, seconds, value) => client.set(key, value, { EX: seconds });
} else {
  const { Redis } = await import("ioredis");
  const client = new Redis(url, { lazyConnect: true });
  client.on("error", (error) => console.error(error.message));
  await client.connect();
  get = (key) => client.get(key);
  setex = (key, seconds, value) => client.set(key, value, "EX", seconds);
}

function sid(cookieHeader) {
  if (cookieHeader === undefined) return undefined;
  const at = cookieHeader.indexOf("sid=");
  if (at === -1) return undefined;
  const end = cookieHeader.indexOf(";", at);
  return cookieHeader.slice(at + 4, end === -1 ? undefined : end);
}

function json(res, status, body) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/protected") {
    const id = sid(req.headers.cookie);
    if (id === undefined) return json(res, 401, { error: { code: "unauthenticated" } });
    get(PREFIX + id).then(
      (value) => {
        if (value === null) return json(res, 401, { error: { code: "unauthenticated" } });
        const session = JSON.parse(value);
        json(res, 200, { message: "Access granted", user: session.user });
      },
      () => json(res, 503, { error: { code: "unavailable" } }),
    );
    return;
  }
  if (req.method === "POST" && req.url === "/login") {
    req.resume();
    req.on("end", () => {
      const id = randomBytes(32).toString("base64url");
      setex(PREFIX + id, 1800, JSON.stringify({ user, expiresAt: Date.now() + 1_800_000 })).then(() => {
        res.setHeader("set-cookie", `sid=${id}; Path=/; HttpOnly; SameSite=Lax`);
        json(res, 200, { user });
      });
    });
    return;
  }
  json(res, 404, { error: { code: "not_found" } });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), "127.0.0.1");
