import { randomFillSync } from "node:crypto";
import pino from "pino";
import { createAccounts, ensureAdmin } from "../core/accounts.js";
import { ConfigError } from "../core/config.js";
import type { Config } from "../core/config.js";
import { LatchError } from "../core/errors.js";
import { createPasswordHasher } from "../core/passwords.js";
import type { Runtime } from "../core/runtime.js";
import { buildServer } from "../server/app.js";
import { startServerMail } from "../server/mail.js";
import { startMaintenance } from "../server/maintenance.js";
import { openStores } from "../stores/open-stores.js";
import { webRoutes } from "../web/index.js";

export function systemRuntime(): Runtime {
  return { clock: { now: () => Date.now() }, random: (bytes) => void randomFillSync(bytes) };
}

/** Opens the stores, starts the server, and shuts both down cleanly on SIGTERM/SIGINT. */
export async function serve(config: Config): Promise<void> {
  const runtime = systemRuntime();
  const storeLogger = pino({ level: config.logLevel, base: { component: "stores" } });
  const stores = await openStores(config, { logger: storeLogger, clock: runtime.clock });
  const hasher = createPasswordHasher({ concurrency: config.hashConcurrency });
  const { app, context, drain } = await buildServer({ config, stores, runtime, hasher, routes: [webRoutes] });

  if (config.admin !== null) {
    try {
      const created = await ensureAdmin(createAccounts({ users: stores.users, hasher, runtime }), stores.users, config.admin);
      if (created !== null) app.log.info({ username: created.username }, "created the bootstrap admin");
    } catch (error) {
      await stores.close();
      if (error instanceof LatchError && error.code === "invalid_input") {
        const variable = error.details?.field === "username" ? "ADMIN_USERNAME" : "ADMIN_PASSWORD";
        throw new ConfigError(variable, error.message.replace(/^\w+ /, ""));
      }
      throw error;
    }
  }

  if (config.production && config.tokenKeySecret === null) {
    app.log.warn("TOKEN_KEY_SECRET is not set: JWT signing keys are stored unsealed in the database");
  }

  // A changed TOKEN_ALG takes effect now: a key of it signs from this start
  // (the old key stays in the JWKS until its tokens expire). Not fatal: with
  // the database down the server still validates, and issue() retries.
  try {
    const key = await context.tokens.prepare();
    app.log.info({ kid: key.kid, alg: key.alg }, "token signing key ready");
  } catch (error) {
    app.log.warn({ err: error }, "could not prepare the token signing key at start; it will be made when a token is first needed");
  }

  if (config.production && config.mail.smtpUrl === null) {
    app.log.warn({ outbox: config.mail.outbox }, "SMTP_URL is not set: mail is written as .eml files to MAIL_OUTBOX instead of being delivered");
  }
  const mailSender = startServerMail(context, app.log.child({ component: "mail" }));

  const stopMaintenance = startMaintenance({
    stores,
    tokens: context.tokens,
    clock: runtime.clock,
    logger: app.log,
    intervalMs: config.sweepIntervalMs,
    eventRetentionDays: config.eventRetentionDays,
  });

  let closing = false;
  async function shutdown(signal: string): Promise<void> {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, "shutting down: finishing in-flight requests");
    stopMaintenance();
    // close() stops accepting connections and waits for in-flight requests.
    await app.close();
    if (!(await drain(10_000))) app.log.warn("shutdown: state-changing requests still running after 10 s; closing the stores anyway");
    // Work deferred past a response (a reset request's look-up) and sends in
    // flight finish and are marked; what is still queued waits in the
    // database for the next start or another process.
    await context.mail.idle();
    await mailSender.stop();
    await stores.close();
    app.log.info("stopped");
  }
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));

  const address = await app.listen({ port: config.port, host: config.host });
  app.log.info({ address, database: config.database.kind, redis: config.redisUrl !== null }, "latch is listening");
}
