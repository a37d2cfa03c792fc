import type { FastifyInstance, FastifySchema } from "fastify";
import type { ServerContext } from "../context.js";
import { answer, errors, security } from "../api-schemas.js";

const healthSchema = {
  operationId: "getHealth",
  summary: "Liveness: the process runs",
  tags: ["operations"],
  security: security.anyone,
  response: { 200: answer("Running.", { type: "object", properties: { status: { type: "string", const: "ok" } }, required: ["status"], additionalProperties: false }) },
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
        stores: { type: "object", additionalProperties: { type: "string", enum: ["ok", "degraded", "down"] }, description: "Each backend by name." },
      },
      required: ["status", "stores"],
      additionalProperties: false,
    }),
    ...errors(503),
  },
};

/** GET /healthz (the process runs) and GET /readyz (the database answers). */
export function healthRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get("/healthz", { schema: healthSchema }, async () => ({ status: "ok" }));

  app.get("/readyz", { schema: readySchema }, async (_request, reply) => {
    const stores = await ctx.stores.health();
    // The database (or the memory store standing in for it) is what serving needs; Redis only speeds it up.
    if ((stores.database ?? stores.memory) !== "ok") {
      return reply.code(503).send({ error: { code: "unavailable", message: "The database is not answering." } });
    }
    const degraded = Object.values(stores).some((h) => h !== "ok");
    return { status: degraded ? "degraded" : "ok", stores };
  });
}
