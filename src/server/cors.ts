import type { FastifyReply, FastifyRequest } from "fastify";
import type { OriginPolicy } from "../auth/index.js";

/**
 * CORS for trusted origins. The Origin and Sec-Fetch-Site checks for
 * state-changing requests use the same policy and live with the other CSRF
 * rules in src/auth/csrf.ts.
 */

const ALLOWED_HEADERS = "Content-Type, X-CSRF-Token, CSRF-Token, Authorization";
const ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/**
 * Adds CORS headers for trusted origins (echoed, with credentials, never `*`).
 * Returns true when it answered a preflight.
 *
 * @example
 * if (applyCors(request, reply, ctx.origins)) return; // a preflight, answered
 */
export function applyCors(request: FastifyRequest, reply: FastifyReply, policy: OriginPolicy): boolean {
  const origin = request.headers.origin;
  if (origin === undefined) return false;
  reply.header("Vary", "Origin");
  const trusted = policy.trusted.has(origin);
  if (trusted) {
    reply.header("Access-Control-Allow-Origin", origin);
    reply.header("Access-Control-Allow-Credentials", "true");
  }
  if (request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined) {
    if (trusted) {
      reply.header("Access-Control-Allow-Methods", ALLOWED_METHODS);
      reply.header("Access-Control-Allow-Headers", ALLOWED_HEADERS);
      reply.header("Access-Control-Max-Age", "600");
    }
    void reply.code(204).send();
    return true;
  }
  return false;
}
