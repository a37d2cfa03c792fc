import type { IncomingMessage, ServerResponse } from "node:http";
import { sessionCookie } from "../auth/index.js";
import type { User } from "../core/store.js";
import type { ServerContext } from "./context.js";
import { dashboardBody, protectedBody } from "./routes/session-routes.js";

// The bodies are the routes' own (src/server/routes/session-routes.ts), so both paths answer alike.

const BODIES: ReadonlyArray<readonly [string, (user: User) => string]> = [
  ["/protected", protectedBody],
  ["/dashboard", dashboardBody],
];

interface Prepared {
  text: string;
  /** Flat [name, value, name, value, …], as ServerResponse.writeHead takes it. */
  headers: string[];
}

/**
 * A user's whole answer (body and header list), built once per user object:
 * the cache hands out the same user object until it changes, so a hit costs
 * no string building, no byte counting and no per-header setHeader() (which
 * validates and stores each one again).
 */
function preparedAnswers(body: (user: User) => string, fixedHeaders: readonly string[]): (user: User) => Prepared {
  const prepared = new WeakMap<User, Prepared>();
  // One header list per body length, shared by every user whose body has
  // that length (one list per distinct byte length: a handful for the bench's
  // 50,000 users): the list a hit hands to writeHead is then hot in the
  // CPU's caches, not one more cold array per user. writeHead
  // only reads it; a renewal's answer copies it before adding its cookie.
  const byLength = new Map<number, string[]>();
  const headersFor = (length: number): string[] => {
    let headers = byLength.get(length);
    if (headers === undefined) {
      headers = [...fixedHeaders, "content-type", "application/json; charset=utf-8", "content-length", String(length)];
      byLength.set(length, headers);
    }
    return headers;
  };
  return (user) => {
    let answer = prepared.get(user);
    if (answer === undefined) {
      const text = body(user);
      answer = { text, headers: headersFor(Buffer.byteLength(text)) };
      prepared.set(user, answer);
    }
    return answer;
  };
}

export interface FastPath {
  /** True when it answered the request; false when Fastify must. */
  (request: IncomingMessage, response: ServerResponse): boolean;
  /** From now on, answer nothing (the server is closing: Fastify answers 503). */
  stop(): void;
  /** Requests answered here so far. */
  readonly answered: number;
}

/**
 * The hot path, in front of Fastify: GET /protected and GET /dashboard with a
 * session cookie whose session the in-process cache holds and whose renewal
 * is not due are answered here, from the cache, with the same status, headers
 * and body the Fastify routes give (src/server/fast-path.test.ts compares them).
 *
 * Everything else goes to Fastify, untouched: another method or path, a query
 * string, an Authorization header, an Origin header (CORS), no cookie, a cache
 * miss, an invalid session (Fastify writes the 401), a renewal the cache
 * cannot defer. A renewal it can defer is answered here with the cookie
 * re-sent; nothing here waits for a store.
 *
 * Why bypass the framework: a validated GET is the request every signed-in
 * user makes all the time, and Fastify's per-request work (request and reply
 * objects, hook runners, routing) costs more than the validation itself:
 * measured in docs/performance.md.
 */
export function createFastPath(ctx: ServerContext, headers: Readonly<Record<string, string>>): FastPath {
  const fixed = Object.entries(headers).flat();
  let stopped = false;
  let answered = 0;

  const routes = new Map(BODIES.map(([path, body]) => [path, preparedAnswers(body, fixed)] as const));

  const fastPath = ((request: IncomingMessage, response: ServerResponse): boolean => {
    if (stopped || request.method !== "GET") return false;
    const answerFor = routes.get(request.url ?? "");
    if (answerFor === undefined) return false;
    const h = request.headers;
    if (h.authorization !== undefined || h.origin !== undefined) return false;
    const token = ctx.auth.cookieValue(h.cookie);
    if (token === undefined) return false;
    let valid;
    try {
      // Only a full session is answered here; any other kind is null (src/auth/request-auth.ts).
      valid = ctx.auth.cachedSession(token);
    } catch {
      return false; // Fastify's path reports the failure properly
    }
    if (valid === undefined || valid === null) return false;
    const answer = answerFor(valid.user);
    // writeHead with the whole list at once: no header was set before, so
    // Node writes the list as it is (still validating each name and value).
    // A renewal (done in memory, written behind) re-sends the cookie with the
    // new expiry, as the Fastify path does (src/server/auth.ts).
    response.writeHead(
      200,
      valid.renewed
        ? [
            ...answer.headers,
            "set-cookie",
            sessionCookie(ctx.cookieName, token, valid.session.idleExpiresAt, ctx.runtime.clock.now(), ctx.cookieOptions),
          ]
        : answer.headers,
    );
    response.end(answer.text);
    answered += 1;
    return true;
  }) as FastPath;
  fastPath.stop = () => {
    stopped = true;
  };
  Object.defineProperty(fastPath, "answered", { get: () => answered });
  return fastPath;
}
