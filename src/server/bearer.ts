import { LatchError } from "../core/errors.js";
import { parseBearerHeader } from "../core/tokens.js";
import type { RequestAuth } from "./auth.js";
import type { ServerContext } from "./context.js";

/**
 * Authenticates an `Authorization: Bearer <jwt>` header value, or throws
 * `invalid_token` (401 with `WWW-Authenticate: Bearer error="invalid_token"`).
 *
 * The JWT proves who issued it and until when; the session it names decides
 * whether it still counts. The session must be live in the store and belong
 * to the token's subject, so sign-out, revocation, expiry and a password
 * change (which gives the session a new id) end the token at once, not at
 * its `exp`. The user and roles come from the store, never from the token's
 * claims, so a role change applies to tokens as it does to cookies.
 *
 * A Bearer request does not slide the session's idle expiry: only the
 * session's own cookie does (including the POST /token that refreshes a
 * token), so tokens cannot keep a session alive that its owner has left.
 *
 * @example
 * const auth = await authenticateBearer(ctx, request.headers.authorization!);
 */
export async function authenticateBearer(ctx: ServerContext, authorization: string): Promise<RequestAuth> {
  const token = parseBearerHeader(authorization);
  if (token === null) throw new LatchError("invalid_token", "The Authorization header is not a Bearer token.");
  const result = await ctx.tokens.verify(token);
  if (!result.valid) throw new LatchError("invalid_token", result.message);
  const found = await ctx.stores.sessions.findSession(result.claims.sid, ctx.runtime.clock.now());
  if (found === null || found.session.userId !== result.claims.sub) {
    throw new LatchError("invalid_token", "The session this access token belongs to has ended.");
  }
  return { via: "bearer", user: found.user, session: found.session, cookie: null };
}
