import type { FastifyInstance, FastifyRequest } from "fastify";

/**
 * The pages read through the JSON API, in-process (`app.inject`, no socket),
 * rather than from the stores: what a page lists is then exactly what the API
 * would give the same user (the same guard, the same fields, the same opaque
 * admin cursor), and a page can never show more than its visitor may see.
 */

/** A JSON API answer: its status and parsed body. */
export interface ApiAnswer<T> {
  status: number;
  body: T;
}

/** The API's error body. */
export interface ApiErrorBody {
  error: { code: string; message: string };
}

/** A user as the API returns it. */
export interface ApiUser {
  id: string;
  username: string;
  email: string | null;
  roles: string[];
  mfa: boolean;
  createdAt: string;
}

/** A session as `GET /sessions` returns it. */
export interface ApiSession {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  idleExpiresAt: string;
  absoluteExpiresAt: string;
  userAgent: string | null;
  current: boolean;
}

/**
 * GETs an API path as the visitor: only their session cookie is passed on,
 * so the API authorises the read exactly as it would from the browser.
 *
 * @example
 * const answer = await readApi<{ sessions: ApiSession[] }>(app, request, "/sessions");
 */
export async function readApi<T>(app: FastifyInstance, request: FastifyRequest, path: string): Promise<ApiAnswer<T | ApiErrorBody>> {
  const cookie = request.headers.cookie;
  const response = await app.inject({ method: "GET", url: path, headers: cookie === undefined ? {} : { cookie } });
  return { status: response.statusCode, body: response.json() as T | ApiErrorBody };
}

/** Narrows an answer to success (2xx). */
export function isOk<T>(answer: ApiAnswer<T | ApiErrorBody>): answer is ApiAnswer<T> {
  return answer.status >= 200 && answer.status < 300;
}
