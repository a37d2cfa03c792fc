/**
 * A resource server protected by Latch: the tutorials' Express app, with its
 * hand-written `requireAuth`/`requireRole` replaced by Latch's middleware.
 *
 * It validates Latch's session cookie against the same store (DATABASE_URL,
 * REDIS_URL) and Latch's Bearer JWTs against Latch's JWKS (LATCH_URL), with
 * no call to Latch per request. Run it from the repository root:
 *
 *   DATABASE_URL=sqlite:./data/latch.db LATCH_URL=http://127.0.0.1:3000 PORT=4000 \
 *     node --import tsx examples/resource-server/server.ts
 *
 * Outside this repository, import from "latch/middleware/express",
 * "latch/stores/open" and "latch/core" instead of the relative paths below.
 */
import type { Server } from "node:http";
import express from "express";
import type { NextFunction, Request, Response } from "express";
import { ConfigError, loadConfig } from "../../src/core/config.js";
import type { Config } from "../../src/core/config.js";
import { createValidator, requireAuth, requireRole } from "../../src/middleware/express.js";
import { openStores } from "../../src/stores/open-stores.js";

/** LATCH_URL, as an origin; one line naming the variable when it is wrong. */
function latchUrl(env: NodeJS.ProcessEnv): URL {
  const value = env.LATCH_URL ?? "http://127.0.0.1:3000";
  try {
    const url = new URL(value);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http(s)");
    return url;
  } catch {
    throw new ConfigError("LATCH_URL", `must be the Latch server's URL, like https://auth.example.com (got "${value}")`);
  }
}

async function main(): Promise<void> {
  let config: Config;
  let latch: URL;
  try {
    // The same variables as the Latch server: DATABASE_URL, REDIS_URL, the
    // SESSION_* timeouts (renewal must follow Latch's policy exactly) and
    // TOKEN_ISSUER. PORT and HOST are this server's own.
    config = loadConfig({ PORT: "4000", ...process.env });
    latch = latchUrl(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`resource-server: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }

  const stores = await openStores(config);
  // One validator for every route, so they share one JWKS cache.
  const auth = createValidator({
    sessions: stores.sessions,
    policy: config.session,
    jwks: { url: new URL("/.well-known/jwks.json", latch), issuer: config.issuer },
  });

  const app = express();
  app.disable("x-powered-by");

  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });

  // The tutorials' protected route: session cookie or Bearer token.
  app.get("/dashboard", requireAuth(auth), (req, res) => {
    const { user } = req.latch!;
    res.json({ message: `Welcome, ${user.username ?? user.id}`, user: { id: user.id, username: user.username, roles: user.roles } });
  });

  // Admins only: 401 when signed out, 403 for other users.
  app.get("/admin", requireRole("admin", auth), (_req, res) => {
    res.json({ message: "Admin area" });
  });

  app.use((req, res) => {
    res.status(404).json({ error: { code: "not_found", message: `No route for ${req.method} ${req.path}.` } });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    process.stderr.write(`resource-server: ${error instanceof Error ? error.message : String(error)}\n`);
    res.status(500).json({ error: { code: "internal", message: "Internal error." } });
  });

  const server: Server = app.listen(config.port, config.host, () => {
    process.stdout.write(`resource server listening on http://${config.host}:${config.port} (Latch at ${latch.origin})\n`);
  });

  async function shutdown(): Promise<void> {
    server.close();
    await stores.close();
  }
  process.once("SIGTERM", () => void shutdown());
  process.once("SIGINT", () => void shutdown());
}

main().catch((error: unknown) => {
  process.stderr.write(`resource-server: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
