import type { FastifyInstance, FastifySchema } from "fastify";
import type { ServerContext } from "../context.js";
import { answer, errors, security } from "../api-schemas.js";

const healthSchema = {
  operationId: "getHealth",
  summary: "Liveness: the process runs",
  tags: ["operations"],
  security: security.anyone,
  response: {
    200: answer("Running.", {
      type: "object",
      properties: { status: { type: "string", const: "ok" } },
      required: ["status"],
      additionalProperties: false,
    }),
  },
};

const readySchema: FastifySchema = {
  operationId: "getReadiness",
  summary: "Readiness: the server can serve",
  tags: ["operations"],
  security: security.anyone,
  response: {
    200: answer("Serving; degraded when a secondary store (Redis, or the database while Redis serves) does not answer.", {
      type: "object",
      properties: {
        status: { type: "string", enum: ["ok", "degraded"] },
        stores: {
          type: "object",
          additionalProperties: { type: "string", enum: ["ok", "degraded", "down"] },
          description: "Each backend by name.",
        },
        workers: {
          type: "object",
          description: "With WORKERS above 1: the worker processes ready, of all.",
          properties: { ready: { type: "integer" }, total: { type: "integer" } },
          required: ["ready", "total"],
          additionalProperties: false,
        },
      },
      required: ["status", "stores"],
      additionalProperties: false,
    }),
    ...errors(503),
  },
};

/** GET /healthz (the process runs) and GET /readyz (the database answers, or Redis does). */
export function healthRoutes(app: FastifyInstance, ctx: ServerContext, workers?: () => { ready: number; total: number }): void {
  app.get("/healthz", { schema: healthSchema }, async () => ({ status: "ok" }));

  app.get("/readyz", { schema: readySchema }, async (_request, reply) => {
    const stores = await ctx.stores.health();
    // The database (or the memory store standing in for it) is what serving
    // needs; with Redis, validation goes on from Redis while the database is
    // down (writes answer 503), so that is "degraded", not unready.
    const database = stores.database ?? stores.memory;
    if (database !== "ok" && stores.redis !== "ok") {
      return reply.code(503).send({ error: { code: "unavailable", message: "The database is not answering." } });
    }
    const degraded = Object.values(stores).some((h) => h !== "ok");
    if (workers === undefined) return { status: degraded ? "degraded" : "ok", stores };
    // Several processes on one port: a probe reaches one of them, and
    // answers for all (a worker restarting makes the instance unready).
    const count = workers();
    if (count.ready < count.total) {
      return reply
        .code(503)
        .send({ error: { code: "unavailable", message: `${count.ready} of ${count.total} worker processes are ready.` } });
    }
    return { status: degraded ? "degraded" : "ok", stores, workers: count };
  });
}
