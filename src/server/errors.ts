import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { LatchError, errorCodes } from "../core/errors.js";
import type { ErrorCode } from "../core/errors.js";

/** Fastify's own errors that are the client's fault, mapped onto the contract's codes. */
const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_BODY_TOO_LARGE: "payload_too_large",
  FST_ERR_CTP_EMPTY_JSON_BODY: "invalid_input",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "invalid_input",
  FST_ERR_CTP_INVALID_JSON_BODY: "invalid_input",
  FST_ERR_BAD_URL: "not_found",
};

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
export function errorHandler(error: FastifyError | LatchError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  let code: ErrorCode;
  let message: string;
  if (error instanceof LatchError) {
    code = error.code;
    message = error.message;
    if (error.retryAfter !== undefined) reply.header("Retry-After", String(error.retryAfter));
    if (code === "unavailable" || code === "internal") request.log.error({ err: error, reqId: request.id }, "store failure");
  } else if ("validation" in error && error.validation !== undefined) {
    // A route's JSON schema refused the input: say which part.
    code = "invalid_input";
    message = `Invalid ${error.validationContext ?? "request"}: ${error.message.replace(/^(body|params|querystring)\/?\s*/, "")}.`;
  } else if (error.code !== undefined && fastifyCodes[error.code] !== undefined) {
    code = fastifyCodes[error.code]!;
    message = code === "invalid_input" ? "The request body is not valid JSON." : errorCodes[code].message;
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
