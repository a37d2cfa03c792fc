import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../context.js";

/** GET /healthz (the process runs) and GET /readyz (the database answers, or Redis does). */
export function healthRoutes(app: FastifyInstance, ctx: ServerContext, workers?: () => { ready: number; total: number }): void {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_request, reply) => {
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
      return reply.code(503).send({ error: { code: "unavailable", message: `${count.ready} of ${count.total} worker processes are ready.` } });
    }
    return { status: degraded ? "degraded" : "ok", stores, workers: count };
  });
}
