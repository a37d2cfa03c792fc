import { STATUS_CODES } from "node:http";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { LatchError, errorCodes } from "../core/errors.js";
import type { ErrorCode } from "../core/errors.js";
import type { OutageLog } from "./outages.js";

/** Fastify's own errors that are the client's fault, mapped onto the contract's codes (and a message when the code's default does not say it). */
const fastifyCodes: Record<string, { code: ErrorCode; message?: string }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: "unsupported_media_type" },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: "payload_too_large" },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: "invalid_input", message: "The request body is not valid JSON." },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: "invalid_input", message: "The Content-Length does not match the body." },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: "invalid_input", message: "The request body is not valid JSON." },
  FST_ERR_CTP_INVALID_CONTENT_TYPE: { code: "unsupported_media_type" },
  FST_ERR_BAD_URL: { code: "invalid_input", message: "The URL is not valid (a malformed percent-encoding)." },
  FST_ERR_MAX_PARAM_LENGTH: { code: "not_found" },
  FST_ERR_ASYNC_CONSTRAINT: { code: "invalid_input" },
};

/**
 * What Node's HTTP parser refuses before any route runs (Fastify's
 * `clientErrorHandler`): written straight to the socket in the contract's
 * shape, then the connection is closed, as Node itself does. Nothing from
 * the request is echoed.
 */
export function clientErrorResponse(error: NodeJS.ErrnoException): string {
  const code: ErrorCode =
    error.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? "request_timeout"
      : error.code === "HPE_HEADER_OVERFLOW"
        ? "headers_too_large"
        : "invalid_input";
  const message = code === "invalid_input" ? "The request is not valid HTTP." : errorCodes[code].message;
  const body = JSON.stringify({ error: { code, message } });
  const { status } = errorCodes[code];
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`;
}

function byStatus(status: number): ErrorCode {
  if (status === 413) return "payload_too_large";
  if (status === 415) return "unsupported_media_type";
  if (status === 404) return "not_found";
  if (status === 405) return "method_not_allowed";
  if (status === 429) return "rate_limited";
  return "invalid_input";
}

/**
 * Every error leaves as `{"error": {"code", "message"}}` with its status.
 * Client errors say what was wrong; anything else is logged with its cause
 * and leaves as a bare 500 (or 503 for an unavailable store): no stack, SQL
 * or path ever reaches the client.
 */
export function errorHandler(
  error: FastifyError | LatchError,
  request: FastifyRequest,
  reply: FastifyReply,
  outages?: OutageLog,
): FastifyReply {
  let code: ErrorCode;
  let message: string;
  if (error instanceof LatchError) {
    code = error.code;
    message = error.message;
    if (error.retryAfter !== undefined) reply.header("Retry-After", String(error.retryAfter));
    // A store outage is logged once by `outages`, not once per request.
    if ((code === "unavailable" || code === "internal") && outages?.failed(error, { reqId: request.id }) !== true) {
      request.log.error({ err: error, reqId: request.id }, "store failure");
    }
  } else if ("validation" in error && error.validation !== undefined) {
    // A route's JSON schema refused the input: say which part.
    code = "invalid_input";
    message = `Invalid ${error.validationContext ?? "request"}: ${error.message.replace(/^(body|params|querystring)\/?\s*/, "")}.`;
  } else if (error.code !== undefined && fastifyCodes[error.code] !== undefined) {
    const known = fastifyCodes[error.code]!;
    code = known.code;
    message = known.message ?? errorCodes[code].message;
  } else if (error instanceof SyntaxError || (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500)) {
    // JSON syntax errors and prototype-poisoning refusals from the body parser.
    code = byStatus(error.statusCode ?? 400);
    message = code === "invalid_input" ? "The request body is not valid JSON." : errorCodes[code].message;
  } else {
    request.log.error({ err: error, reqId: request.id }, "unhandled error");
    code = "internal";
    message = errorCodes.internal.message;
  }
  const status = errorCodes[code].status;
  if (status === 401 && code === "invalid_token") reply.header("WWW-Authenticate", 'Bearer error="invalid_token"');
  return reply.code(status).send({ error: { code, message } });
}
