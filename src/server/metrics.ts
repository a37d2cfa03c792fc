import type { FastifyInstance } from "fastify";
import { Counter, Registry, collectDefaultMetrics } from "prom-client";
import { LatchError } from "../core/errors.js";

export interface Metrics {
  registry: Registry;
  signIns: Counter<"result">;
  registrations: Counter;
}

/** One registry per server, so several servers in one process (tests) do not collide. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "latch_" });
  return {
    registry,
    signIns: new Counter({ name: "latch_sign_ins_total", help: "Sign-in attempts by result.", labelNames: ["result"], registers: [registry] }),
    registrations: new Counter({ name: "latch_registrations_total", help: "Accounts created.", registers: [registry] }),
  };
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  return v4.startsWith("127.") || address === "::1";
}

/**
 * GET /metrics in Prometheus text format, for loopback clients only. Both the
 * socket's address and the client address must be loopback: the socket's, so
 * that a spoofed X-Forwarded-For from afar counts for nothing; the client's
 * (X-Forwarded-For from a TRUST_PROXY proxy), so that a reverse proxy on the
 * same host does not turn every remote client into a loopback one.
 */
export function metricsRoute(app: FastifyInstance, metrics: Metrics): void {
  app.get("/metrics", async (request, reply) => {
    if (!isLoopback(request.socket.remoteAddress) || !isLoopback(request.ip)) throw new LatchError("forbidden", "Metrics are served to loopback clients only.");
    reply.header("Content-Type", metrics.registry.contentType);
    return metrics.registry.metrics();
  });
}
