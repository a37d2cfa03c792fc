import type { FastifyInstance } from "fastify";
import type { ServerContext } from "../context.js";

/** GET /healthz (the process runs) and GET /readyz (the database answers). */
export function healthRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_request, reply) => {
    const stores = await ctx.stores.health();
    // The database (or the memory store standing in for it) is what serving needs; Redis only speeds it up.
    if ((stores.database ?? stores.memory) !== "ok") {
      return reply.code(503).send({ error: { code: "unavailable", message: "The database is not answering." } });
    }
    const degraded = Object.values(stores).some((h) => h !== "ok");
    return { status: degraded ? "degraded" : "ok", stores };
  });
}
