import type { FastifyInstance } from "fastify";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { isCachedSessionStore } from "../core/store.js";
import type { Stores } from "../core/store.js";
import { LatchError } from "../core/errors.js";
import { ref, security } from "./api-schemas.js";

export interface Metrics {
  registry: Registry;
  signIns: Counter<"result">;
  registrations: Counter;
  storeFailures: Counter<"store">;
  mailSent: Counter<"kind">;
  mailFailed: Counter<"kind">;
}

/**
 * One registry per server, so several servers in one process (tests) do not
 * collide. With `stores` that have an in-process session cache, its state
 * too: whether it serves (0 while its invalidation channel is down: every
 * validation reads the store), its entries, hits and misses, read when
 * scraped.
 */
export function createMetrics(stores?: Partial<Pick<Stores, "sessions" | "mail">>): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "latch_" });
  const sessions = stores?.sessions;
  const cacheStats = sessions !== undefined && isCachedSessionStore(sessions) ? () => sessions.cacheStats() : undefined;
  if (cacheStats !== undefined) {
    new Gauge({
      name: "latch_session_cache_serving",
      help: "1 while the in-process session cache serves from memory; 0 while it fails closed (invalidation channel down).",
      registers: [registry],
      collect() {
        this.set(cacheStats().serving ? 1 : 0);
      },
    });
    new Gauge({
      name: "latch_session_cache_entries",
      help: "Sessions held by the in-process cache.",
      registers: [registry],
      collect() {
        this.set(cacheStats().entries);
      },
    });
    new Counter({
      name: "latch_session_cache_lookups_total",
      help: "Session validations by where they were answered: hit (memory) or miss (the store).",
      labelNames: ["result"],
      registers: [registry],
      collect() {
        const { hits, misses } = cacheStats();
        this.reset();
        this.inc({ result: "hit" }, hits);
        this.inc({ result: "miss" }, misses);
      },
    });
    new Counter({
      name: "latch_session_store_writes_total",
      help: "Session renewals written to the store (the cache batches them: see SessionCacheOptions.writeBehindMs).",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cacheStats().writes);
      },
    });
  }
  const mail = stores?.mail;
  if (mail !== undefined) {
    new Gauge({
      name: "latch_mail_queue_depth",
      help: "Messages in the outbox not yet handed over (due, leased or waiting to be retried).",
      registers: [registry],
      async collect() {
        // A scrape during a database outage reports the last value rather than failing the whole scrape.
        try {
          this.set(await mail.queueDepth());
        } catch {
          /* keep the previous value */
        }
      },
    });
  }
  return {
    registry,
    mailSent: new Counter({
      name: "latch_mail_sent_total",
      help: "Messages handed over to SMTP or the outbox folder, by kind.",
      labelNames: ["kind"],
      registers: [registry],
    }),
    mailFailed: new Counter({
      name: "latch_mail_failed_total",
      help: "Messages given up on after the retry window, by kind.",
      labelNames: ["kind"],
      registers: [registry],
    }),
    signIns: new Counter({
      name: "latch_sign_ins_total",
      help: "Sign-in attempts by result.",
      labelNames: ["result"],
      registers: [registry],
    }),
    registrations: new Counter({ name: "latch_registrations_total", help: "Accounts created.", registers: [registry] }),
    storeFailures: new Counter({
      name: "latch_store_failures_total",
      help: "Store calls that failed because a backend was unavailable (each answered 503), by backend: database or redis.",
      labelNames: ["store"],
      registers: [registry],
    }),
  };
}

const metricsSchema = {
  operationId: "getMetrics",
  summary: "Prometheus metrics (loopback clients only)",
  tags: ["operations"],
  security: security.anyone,
  produces: ["text/plain"],
  response: {
    200: { description: "Prometheus text exposition format.", content: { "text/plain": { schema: { type: "string" } } } },
    403: { description: "forbidden: not a loopback client.", content: { "application/json": { schema: ref("Error") } } },
  },
};

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return v4.startsWith("127.") || address === "::1";
}

/**
 * True for a Host header naming this machine's loopback interface. A
 * DNS-rebinding page (evil.test resolved to 127.0.0.1) reaches a loopback
 * socket too, but its requests carry its own name in Host.
 */
function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d*$/, "");
  return /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i.test(name);
}

/**
 * GET /metrics in Prometheus text format, for loopback clients only, asked
 * for by a loopback name (see isLoopbackHost). Both the
 * socket's address and the client address must be loopback: the socket's, so
 * that a spoofed X-Forwarded-For from afar counts for nothing; the client's
 * (X-Forwarded-For from a TRUST_PROXY proxy), so that a reverse proxy on the
 * same host does not turn every remote client into a loopback one.
 */
export function metricsRoute(app: FastifyInstance, metrics: Metrics): void {
  app.get("/metrics", { schema: metricsSchema }, async (request, reply) => {
    if (!isLoopback(request.socket.remoteAddress) || !isLoopback(request.ip) || !isLoopbackHost(request.headers.host))
      throw new LatchError("forbidden", "Metrics are served to loopback clients only.");
    reply.header("Content-Type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
