import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { randomFillSync } from "node:crypto";
import { availableParallelism } from "node:os";
import pino from "pino";
import { createAccounts, ensureAdmin } from "../core/accounts.js";
import { ConfigError } from "../core/config.js";
import type { Config } from "../core/config.js";
import { LatchError } from "../core/errors.js";
import { createPasswordHasher } from "../core/passwords.js";
import { createTokenService } from "../core/tokens.js";
import type { Runtime } from "../core/runtime.js";
import type { StoreHealth } from "../core/store.js";
import { buildServer } from "../server/app.js";
import { startServerMail } from "../server/mail.js";
import { startMaintenance } from "../server/maintenance.js";
import { openStores } from "../stores/open-stores.js";
import { webRoutes } from "../web/index.js";

export function systemRuntime(): Runtime {
  return { clock: { now: () => Date.now() }, random: (bytes) => void randomFillSync(bytes) };
}

/** The number of server processes WORKERS asks for. */
export function workerCount(config: Pick<Config, "workers">): number {
  return config.workers === "auto" ? availableParallelism() : config.workers;
}

/**
 * Opens the stores, starts the server, and shuts both down cleanly on
 * SIGTERM/SIGINT. With WORKERS above 1, this process becomes the primary of
 * a node:cluster: it prepares the stores once (migrations, the bootstrap
 * admin), then runs that many workers on the one port, each a whole server
 * with its own stores and cache, acting as one through the stores exactly
 * as separate machines do (revocations reach each one's cache by the same
 * channel). Node 20 has no SO_REUSEPORT, so the primary hands connections
 * out round-robin.
 */
export async function serve(config: Config): Promise<void> {
  if (cluster.isPrimary && workerCount(config) > 1) return servePrimary(config);
  const runtime = systemRuntime();
  const storeLogger = pino({ level: config.logLevel, base: { component: "stores" } });
  const stores = await openStores(config, { logger: storeLogger, clock: runtime.clock });
  const hasher = createPasswordHasher({ concurrency: config.hashConcurrency });
  const workers = cluster.isWorker ? workerReadiness(stores) : undefined;
  const { app, context, drain } = await buildServer({
    config,
    stores,
    runtime,
    hasher,
    routes: [webRoutes],
    ...(workers === undefined ? {} : { workers: workers.count }),
  });

  // In a cluster the primary made the bootstrap admin before forking (one
  // writer, so two workers never race to create it).
  if (config.admin !== null && !cluster.isWorker) {
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
  if (config.production && config.mfaKeySecret === null) {
    app.log.warn("MFA_KEY_SECRET (or TOKEN_KEY_SECRET) is not set: TOTP secrets are stored unsealed in the database");
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
    app.log.warn(
      { outbox: config.mail.outbox },
      "SMTP_URL is not set: mail is written as .eml files to MAIL_OUTBOX instead of being delivered",
    );
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
    workers?.stop();
    // Work deferred past a response (a reset request's look-up) and sends in
    // flight finish and are marked; what is still queued waits in the
    // database for the next start or another process.
    await context.mail.idle();
    await mailSender.stop();
    await stores.close();
    app.log.info("stopped");
    // A worker's channel to the primary would keep it alive: let it go, and the process ends as a single one does.
    if (cluster.isWorker) cluster.worker?.disconnect();
  }
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));

  const address = await app.listen({ port: config.port, host: config.host });
  workers?.listening();
  app.log.info(
    {
      address,
      database: config.database.kind,
      redis: config.redisUrl !== null,
      ...(cluster.isWorker ? { worker: cluster.worker?.id } : {}),
    },
    "latch is listening",
  );
}

/** What a worker and the primary tell each other about readiness. */
type ClusterMessage = { latch: "ready"; ready: boolean } | { latch: "workers"; ready: number; total: number };

function isClusterMessage(message: unknown): message is ClusterMessage {
  return typeof message === "object" && message !== null && "latch" in message;
}

/**
 * A worker's side: every second it tells the primary whether it listens and
 * its stores answer (as its own /readyz would), and keeps the primary's
 * count of ready workers for /readyz.
 */
function workerReadiness(stores: Awaited<ReturnType<typeof openStores>>): {
  count: () => { ready: number; total: number };
  listening(): void;
  stop(): void;
} {
  let listening = false;
  let count = { ready: 0, total: 1 };
  const onMessage = (message: unknown): void => {
    if (isClusterMessage(message) && message.latch === "workers") count = { ready: message.ready, total: message.total };
  };
  process.on("message", onMessage);
  async function report(): Promise<void> {
    const health: Record<string, StoreHealth> = await stores.health().catch(() => ({ database: "down" }));
    const database = health.database ?? health.memory;
    const ready = listening && (database === "ok" || health.redis === "ok");
    if (process.connected) process.send?.({ latch: "ready", ready } satisfies ClusterMessage);
  }
  const timer = setInterval(() => void report(), 1_000);
  timer.unref();
  return {
    count: () => count,
    listening() {
      listening = true;
      void report();
    },
    stop() {
      clearInterval(timer);
      process.off("message", onMessage);
    },
  };
}

/** How long a worker's last "ready" counts for. */
const READY_FOR_MS = 3_000;

/**
 * The primary: prepares the stores, forks the workers, restarts one that
 * dies (with a pause, so a worker that cannot start does not spin), tells
 * every worker how many are ready, and on SIGTERM/SIGINT asks each to shut
 * down gracefully, then exits when all have.
 */
async function servePrimary(config: Config): Promise<void> {
  const log = pino({ level: config.logLevel, base: { component: "primary" } });
  const total = workerCount(config);
  // Migrations and the bootstrap admin once, before any worker opens the stores.
  const runtime = systemRuntime();
  const stores = await openStores(config, { logger: log, clock: runtime.clock });
  try {
    if (config.admin !== null) {
      const hasher = createPasswordHasher({ concurrency: 1 });
      try {
        const created = await ensureAdmin(createAccounts({ users: stores.users, hasher, runtime }), stores.users, config.admin);
        if (created !== null) log.info({ username: created.username }, "created the bootstrap admin");
      } catch (error) {
        if (error instanceof LatchError && error.code === "invalid_input") {
          const variable = error.details?.field === "username" ? "ADMIN_USERNAME" : "ADMIN_PASSWORD";
          throw new ConfigError(variable, error.message.replace(/^\w+ /, ""));
        }
        throw error;
      }
    }
    // A changed TOKEN_ALG's new key, made once here rather than by every worker at once.
    try {
      const tokens = createTokenService({
        keys: stores.keys,
        runtime,
        issuer: config.issuer,
        ttlSeconds: config.tokenTtlSeconds,
        keySecret: config.tokenKeySecret,
        algorithm: config.tokenAlgorithm,
      });
      const key = await tokens.prepare();
      log.info({ kid: key.kid, alg: key.alg }, "token signing key ready");
    } catch (error) {
      log.warn({ err: error }, "could not prepare the token signing key at start; a worker will make it when a token is first needed");
    }
  } finally {
    await stores.close();
  }

  const readyAt = new Map<number, number>();
  let stopping = false;
  function ready(): number {
    const now = Date.now();
    let n = 0;
    for (const [id, at] of readyAt) if (cluster.workers?.[id] !== undefined && now - at < READY_FOR_MS) n += 1;
    return n;
  }
  function fork(): Worker {
    const worker = cluster.fork();
    worker.on("message", (message: unknown) => {
      if (!isClusterMessage(message) || message.latch !== "ready") return;
      if (message.ready) readyAt.set(worker.id, Date.now());
      else readyAt.delete(worker.id);
    });
    return worker;
  }
  const broadcast = setInterval(() => {
    const message: ClusterMessage = { latch: "workers", ready: ready(), total };
    for (const worker of Object.values(cluster.workers ?? {})) if (worker?.isConnected()) worker.send(message);
  }, 500);
  broadcast.unref();

  cluster.on("exit", (worker, code, signal) => {
    readyAt.delete(worker.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        clearInterval(broadcast);
        log.info("stopped");
        // Nothing of the primary's own is left to finish (the stores were closed before forking).
        process.exit(0);
      }
      return;
    }
    log.error({ worker: worker.id, code, signal }, "worker exited; starting another in 1 s");
    setTimeout(() => {
      if (!stopping) fork();
    }, 1_000).unref();
  });

  function shutdown(signal: string): void {
    if (stopping) return;
    stopping = true;
    log.info({ signal, workers: total }, "shutting down every worker");
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGTERM");
    // A worker that does not finish in time is stopped hard.
    setTimeout(() => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGKILL");
    }, 20_000).unref();
  }
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));

  for (let i = 0; i < total; i += 1) fork();
  log.info({ workers: total, port: config.port }, "latch primary started its workers");
}
