import type { FastifyRequest } from "fastify";
import { uuidv7 } from "../core/ids.js";
import type { SecurityEventType } from "../core/store.js";
import { truncateAddress } from "./client-address.js";
import type { ServerContext } from "./context.js";

/**
 * Records a security event with the request's truncated address and user
 * agent. Never awaited by the response: an audit write that fails is logged,
 * not turned into a failed sign-in. `detail` must never hold a secret.
 */
export function recordEvent(
  ctx: ServerContext,
  request: FastifyRequest,
  type: SecurityEventType,
  userId: string | null,
  detail: Record<string, string> | null = null,
): void {
  const event = {
    id: uuidv7(ctx.runtime.clock, ctx.runtime.random),
    userId,
    type,
    at: ctx.runtime.clock.now(),
    ipAddress: truncateAddress(request.ip),
    userAgent: userAgentOf(request),
    detail,
  };
  ctx.stores.events.recordEvent(event).catch((error: unknown) => {
    if (!ctx.outages.failed(error, { event: type, reqId: request.id }))
      request.log.warn({ err: error, event: type, reqId: request.id }, "could not record security event");
  });
}

/** The User-Agent header, bounded so a client cannot make us store kilobytes. */
export function userAgentOf(request: FastifyRequest): string | null {
  const ua = request.headers["user-agent"];
  return typeof ua === "string" && ua.length > 0 ? ua.slice(0, 256) : null;
}
