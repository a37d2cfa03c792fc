// better-auth on SQLite, as its docs set it up for Node: betterAuth() over a
// better-sqlite3 file, email and password on, the handler mounted on
// node:http with toNodeHandler at /api/auth/*, and a protected route that
// calls auth.api.getSession({ headers }) per request with the cookie cache
// off, so every request reads the session (and its user) from the database.
// It is here because it is the product people compare Latch with (issue 16):
// every run shows Latch against it, beside the seed stack.
//
//   POST /login     {email, password} → auth.api.signInEmail; 200 with the
//                   better-auth.session_token cookie, or its error status
//   GET /protected  200 {"message":"Access granted", user} or 401
//
// Environment: PORT (on 127.0.0.1), BENCH_BETTER_AUTH_DB (the SQLite file,
// created and migrated at start with better-auth's own migration API),
// BETTER_AUTH_SECRET (default: a fixed bench value, the one
// seedBetterAuthSessions signs cookies with). The sign-in account
// (BETTER_AUTH_LOGIN) is created at start when missing.
//
// A devDependency-only baseline: nothing in src/ imports this.
import { createServer } from "node:http";
import Database from "better-sqlite3";
import { betterAuth } from "better-auth";
import { fromNodeHeaders, toNodeHandler } from "better-auth/node";
import { BETTER_AUTH_BENCH_SECRET, BETTER_AUTH_LOGIN, betterAuthOptions, migrateBetterAuth } from "../lib/better-auth-sessions.mjs";

const port = Number(process.env.PORT);
const dbPath = process.env.BENCH_BETTER_AUTH_DB;
if (!dbPath) throw new Error("BENCH_BETTER_AUTH_DB must name the SQLite file");

const db = new Database(dbPath);
await migrateBetterAuth(db);
const auth = betterAuth(
  betterAuthOptions({ db, secret: process.env.BETTER_AUTH_SECRET || BETTER_AUTH_BENCH_SECRET, baseURL: `http://127.0.0.1:${port}` }),
);
const authHandler = toNodeHandler(auth);

const known = db.prepare('SELECT 1 FROM "user" WHERE "email" = ?').get(BETTER_AUTH_LOGIN.email);
if (known === undefined) await auth.api.signUpEmail({ body: { name: "Bench User", ...BETTER_AUTH_LOGIN } });

function json(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return null;
  }
}

async function protectedRoute(req, res) {
  const session = await auth.api.getSession({ headers: fromNodeHeaders(req.headers) });
  if (session === null) return json(res, 401, { message: "Unauthorized" });
  json(res, 200, { message: "Access granted", user: session.user });
}

async function login(req, res) {
  const body = await readJson(req);
  if (body === null || typeof body.email !== "string" || typeof body.password !== "string") {
    return json(res, 400, { message: "Expected a JSON body {email, password}" });
  }
  const response = await auth.api.signInEmail({
    body: { email: body.email, password: body.password },
    headers: fromNodeHeaders(req.headers),
    asResponse: true,
  });
  const text = await response.text();
  res.writeHead(response.status, {
    "content-type": response.headers.get("content-type") ?? "application/json",
    "content-length": Buffer.byteLength(text),
    "set-cookie": response.headers.getSetCookie(),
  });
  res.end(text);
}

const server = createServer((req, res) => {
  const route =
    req.method === "GET" && req.url === "/protected"
      ? protectedRoute
      : req.method === "POST" && req.url === "/login"
        ? login
        : req.url?.startsWith("/api/auth/")
          ? authHandler
          : null;
  if (route === null) return json(res, 404, { message: "Not found" });
  route(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) json(res, 500, { message: "Internal error" });
    else res.destroy();
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, "127.0.0.1");
