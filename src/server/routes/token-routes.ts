import type { FastifyInstance, FastifyRequest } from "fastify";
import { LatchError } from "../../core/errors.js";
import type { AuthMethod, Session, User } from "../../core/store.js";
import { authOf, guard, runGuard } from "../auth.js";
import { throttleAddress, truncateAddress } from "../client-address.js";
import type { ServerContext } from "../context.js";
import { recordEvent, userAgentOf } from "../events.js";
import { bodyObject } from "../responses.js";
import { verifySecondFactor, verifySignIn } from "../sign-in.js";
import { refuseOver } from "../throttle.js";
import { answer, errors, ref, security, unsafeMethodErrors } from "../api-schemas.js";

/** The shape of a successful POST /token (RFC 6749 §5.1 names, plus `token` for the tutorials' clients). */
export interface TokenResponse {
  token: string;
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
}

function wantsCredentials(body: Record<string, unknown>): boolean {
  return "username" in body || "email" in body || "password" in body;
}

/**
 * Counts a token request with credentials against the client address. Every
 * request counts, not only failures (as for registration): each one mints a
 * session, so a flood of correct passwords is as much a problem as guesses.
 */
async function countTokenRequest(ctx: ServerContext, request: FastifyRequest): Promise<void> {
  const { addressFailures, addressWindowMs } = ctx.config.throttle;
  const now = ctx.runtime.clock.now();
  const state = await ctx.stores.limits.hit(`token:addr:${throttleAddress(request.ip)}`, addressWindowMs, now);
  refuseOver(ctx, request, state, addressFailures, { scope: "token", userId: null });
}

const tokenSchema = {
  operationId: "issueToken",
  summary: "Issue an access token (JWT) for this session, or for credentials",
  description:
    "With the session cookie (and its CSRF token): a token for that session. With `{username | email, password}` instead: " +
    "a new session (no cookie) and a token for it. Signed with TOKEN_ALG (ES256 by default); lifetime at most 15 minutes.",
  tags: ["tokens"],
  security: [...security.sessionWithCsrf, {}],
  "x-body-optional": true,
  body: {
    type: "object",
    properties: {
      username: { type: "string" },
      email: { type: "string" },
      password: { type: "string" },
      code: { type: "string", description: "For an account with TOTP: the 6-digit code (or send recoveryCode)." },
      recoveryCode: { type: "string" },
    },
  },
  response: {
    200: answer("The token, under both names (`token` and `access_token`).", {
      type: "object",
      properties: {
        token: { type: "string" },
        access_token: { type: "string" },
        token_type: { type: "string", const: "Bearer" },
        expires_in: { type: "integer", minimum: 1, maximum: 900, description: "Seconds." },
      },
      required: ["token", "access_token", "token_type", "expires_in"],
      additionalProperties: false,
    }),
    ...errors(...unsafeMethodErrors, 401, 429, 503),
  },
};

const jwksSchema = {
  operationId: "getJwks",
  summary: "The public keys that verify tokens (RFC 7517)",
  description: "The active key and retired ones until every token they signed has expired. Cacheable for 5 minutes.",
  tags: ["tokens"],
  security: security.anyone,
  response: {
    200: answer("The key set.", {
      type: "object",
      properties: { keys: { type: "array", items: ref("Jwk") } },
      required: ["keys"],
      additionalProperties: false,
    }),
    ...errors(503),
  },
};

/**
 * POST /token and GET /.well-known/jwks.json.
 *
 * POST /token with the session cookie (and its CSRF token) issues a token for
 * that session. With `{username | email, password}` instead, it signs in
 * like POST /login but sets no cookie: the new session exists so that the
 * token's `sid` names something that sign-out, revocation and the session
 * list can end, and it shows in the user's sessions like any other.
 *
 * @example
 * tokenRoutes(app, context); // in buildServer, beside the other route groups
 */
export function tokenRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const sessionGuard = guard(ctx);

  app.post("/token", { schema: tokenSchema }, async (request, reply): Promise<TokenResponse> => {
    const body = request.body === undefined ? {} : bodyObject(request);
    let user: User;
    let session: Session;
    let via: "session" | "credentials";
    if (wantsCredentials(body)) {
      await countTokenRequest(ctx, request);
      const signIn = await verifySignIn(ctx, request);
      user = signIn.user;
      // As for POST /login: the session is created only while the verified hash is still the user's.
      let amr: AuthMethod[] = ["pwd"];
      if (signIn.needsCode) {
        if (typeof body.code !== "string" && typeof body.recoveryCode !== "string") {
          recordEvent(ctx, request, "sign_in_failed", user.id, { reason: "mfa required", via: "token" });
          throw new LatchError("mfa_required");
        }
        amr = await verifySecondFactor(ctx, request, signIn.user, { code: body.code, recoveryCode: body.recoveryCode });
      }
      ({ session } = await ctx.sessions.create(
        user.id,
        { userAgent: userAgentOf(request), ipAddress: truncateAddress(request.ip) },
        { amr, ifPasswordHash: signIn.user.passwordHash },
      ));
      recordEvent(ctx, request, "sign_in", user.id, { session: session.id, via: "token" });
      via = "credentials";
    } else {
      await runGuard(sessionGuard, app, request, reply);
      ({ user, session } = authOf(request));
      via = "session";
    }
    // The token never outlives its session: a resource server that checks
    // only the signature then cannot accept it past the session's end either.
    const issued = await ctx.tokens.issue({
      userId: user.id,
      sessionId: session.id,
      roles: user.roles,
      amr: session.amr,
      notAfter: session.idleExpiresAt,
    });
    recordEvent(ctx, request, "token_issued", user.id, { session: session.id, kid: issued.kid, via });
    return { token: issued.token, access_token: issued.token, token_type: "Bearer", expires_in: issued.expiresIn };
  });

  app.get("/.well-known/jwks.json", { schema: jwksSchema }, async (_request, reply) => {
    // Public keys only, the same for everyone: cacheable, unlike every other response.
    reply.header("cache-control", "public, max-age=300");
    return ctx.tokens.jwks();
  });
}
