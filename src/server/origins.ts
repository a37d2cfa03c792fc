import type { FastifyReply, FastifyRequest } from "fastify";
import { LatchError } from "../core/errors.js";

/**
 * Origin and Sec-Fetch-Site checks for state-changing requests (after hono's
 * csrf middleware), and CORS for trusted origins. Both live here because they
 * share one idea: the set of origins allowed to act with the user's cookies.
 */
export interface OriginPolicy {
  trusted: ReadonlySet<string>;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const ALLOWED_HEADERS = "Content-Type, X-CSRF-Token, CSRF-Token, Authorization";
const ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

export function isUnsafeMethod(method: string): boolean {
  return UNSAFE.has(method);
}

function ownOrigin(request: FastifyRequest): string {
  return `${request.protocol}://${request.headers.host ?? ""}`;
}

/**
 * Throws `csrf` when an unsafe request comes from an origin that is neither
 * this server's nor trusted, or is a cross-site browser request whose Origin
 * is not trusted (a missing Origin included). Sign-in and registration are
 * covered too: that is what stops login CSRF.
 */
export function checkOrigin(request: FastifyRequest, policy: OriginPolicy): void {
  const origin = request.headers.origin;
  const trusted = origin !== undefined && policy.trusted.has(origin);
  if (origin !== undefined && !trusted && origin !== ownOrigin(request)) {
    throw new LatchError("csrf", "Cross-origin request refused: the Origin is not trusted.");
  }
  if (request.headers["sec-fetch-site"] === "cross-site" && !trusted) {
    throw new LatchError("csrf", "Cross-site request refused.");
  }
}

/**
 * Adds CORS headers for trusted origins (echoed, with credentials, never `*`).
 * Returns true when it answered a preflight.
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
