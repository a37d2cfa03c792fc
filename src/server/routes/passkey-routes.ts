import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { clearedSessionCookie, readCookie, sessionCookie } from "../../auth/index.js";
import { publicUser } from "../../core/accounts.js";
import { constantTimeEqual, sha256, toBase64Url } from "../../core/encoding.js";
import { LatchError } from "../../core/errors.js";
import { uuidv7 } from "../../core/ids.js";
import {
  assertionCredentialId,
  authenticationOptions,
  CHALLENGE_TTL_MS,
  registrationOptions,
  verifyAssertion,
  verifyRegistration,
} from "../../core/passkeys.js";
import type { Passkey, WebAuthnChallenge } from "../../core/store.js";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import { recordEvent } from "../events.js";
import { bodyObject, iso, userJson } from "../responses.js";
import { startSession } from "../sign-in.js";
import { checkAddress, recordFailure } from "../throttle.js";
import { passkeySchemas } from "./second-factor-schemas.js";

const MAX_NAME = 64;

/** A passkey as the API shows it: never the public key or the credential id. */
function passkeyJson(passkey: Passkey): { id: string; name: string; createdAt: string; lastUsedAt: string | null } {
  return {
    id: passkey.id,
    name: passkey.name,
    createdAt: iso(passkey.createdAt),
    lastUsedAt: passkey.lastUsedAt === null ? null : iso(passkey.lastUsedAt),
  };
}

function passkeyName(value: unknown, fallback: string): string {
  if (value === undefined || value === null) return fallback;
  const name = typeof value === "string" ? value.normalize("NFKC").trim() : "";
  if (name.length < 1 || name.length > MAX_NAME || /\p{Cc}/u.test(name)) {
    throw new LatchError("invalid_input", `name must be 1 to ${MAX_NAME} characters.`, { details: { field: "name" } });
  }
  return name;
}

/**
 * Passkeys: register (options, then the browser's response), list, rename,
 * delete; and sign in with one (options, then the assertion).
 *
 * Challenges are single use, last 5 minutes and are bound to the browser
 * that asked: the options' answer sets an HttpOnly cookie holding a random
 * id and secret, the store keeps the challenge under the id with only a
 * hash of the secret, and the response is checked against the challenge
 * that this browser's cookie names, taken from the store (so used once). A
 * response made for another browser's challenge, or replayed, fails.
 *
 * @example
 * passkeyRoutes(app, context);
 */
export function passkeyRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const session = guard(ctx);
  const cookieName = ctx.cookieOptions.secure ? "__Host-webauthn" : "webauthn";

  async function issueChallenge(
    reply: FastifyReply,
    purpose: WebAuthnChallenge["purpose"],
    userId: string | null,
    challenge: string,
  ): Promise<void> {
    const id = new Uint8Array(16);
    const secret = new Uint8Array(32);
    ctx.runtime.random(id);
    ctx.runtime.random(secret);
    const now = ctx.runtime.clock.now();
    const secretText = toBase64Url(secret);
    await ctx.stores.secondFactors.putChallenge({
      id: toBase64Url(id),
      purpose,
      userId,
      secretHash: sha256(secretText),
      challenge,
      expiresAt: now + CHALLENGE_TTL_MS,
    });
    reply.header(
      "Set-Cookie",
      sessionCookie(cookieName, `${toBase64Url(id)}.${secretText}`, now + CHALLENGE_TTL_MS, now, ctx.cookieOptions),
    );
  }

  /** This browser's challenge for `purpose`, used up; null when it has none (or it expired, or was used). */
  async function takeChallenge(
    request: FastifyRequest,
    reply: FastifyReply,
    purpose: WebAuthnChallenge["purpose"],
  ): Promise<WebAuthnChallenge | null> {
    const value = readCookie(request.headers.cookie, cookieName);
    const match = value === undefined ? null : /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (match === null) return null;
    reply.header("Set-Cookie", clearedSessionCookie(cookieName, ctx.cookieOptions));
    const challenge = await ctx.stores.secondFactors.takeChallenge(match[1]!, ctx.runtime.clock.now());
    if (challenge === null || challenge.purpose !== purpose || !constantTimeEqual(sha256(match[2]!), challenge.secretHash)) return null;
    return challenge;
  }

  app.post(
    "/passkeys/register/options",
    {
      preValidation: session,
      schema: passkeySchemas.registerOptions,
    },
    async (request, reply) => {
      const { user } = authOf(request);
      const existing = await ctx.stores.secondFactors.listPasskeys(user.id);
      const options = await registrationOptions(ctx.relyingParty, user, existing, ctx.runtime.random);
      await issueChallenge(reply, "register", user.id, options.challenge);
      return { options };
    },
  );

  app.post(
    "/passkeys/register",
    {
      preValidation: session,
      schema: passkeySchemas.register,
    },
    async (request, reply) => {
      const { user } = authOf(request);
      const body = bodyObject(request);
      const existing = await ctx.stores.secondFactors.listPasskeys(user.id);
      const name = passkeyName(body.name, `Passkey ${existing.length + 1}`);
      const challenge = await takeChallenge(request, reply, "register");
      if (challenge === null || challenge.userId !== user.id) {
        throw new LatchError(
          "invalid_input",
          "No passkey registration is in progress in this browser (or it expired): ask for options again.",
        );
      }
      const credential = await verifyRegistration(ctx.relyingParty, body.response, challenge.challenge);
      if (credential === null) throw new LatchError("invalid_input", "The passkey response does not verify.");
      const now = ctx.runtime.clock.now();
      const passkey: Passkey = {
        id: uuidv7(ctx.runtime.clock, ctx.runtime.random),
        userId: user.id,
        ...credential,
        name,
        createdAt: now,
        lastUsedAt: null,
      };
      await ctx.stores.secondFactors.createPasskey(passkey);
      recordEvent(ctx, request, "passkey_added", user.id, { passkey: passkey.id });
      return reply.code(201).send({ passkey: passkeyJson(passkey) });
    },
  );

  app.get(
    "/passkeys",
    {
      preValidation: session,
      schema: passkeySchemas.list,
    },
    async (request) => {
      const { user } = authOf(request);
      return { passkeys: (await ctx.stores.secondFactors.listPasskeys(user.id)).map(passkeyJson) };
    },
  );

  app.patch<{ Params: { id: string } }>(
    "/passkeys/:id",
    {
      preValidation: session,
      schema: passkeySchemas.rename,
    },
    async (request) => {
      const { user } = authOf(request);
      const name = passkeyName(bodyObject(request).name, "");
      if (!(await ctx.stores.secondFactors.renamePasskey(user.id, request.params.id, name)))
        throw new LatchError("not_found", "No such passkey.");
      recordEvent(ctx, request, "passkey_renamed", user.id, { passkey: request.params.id });
      const passkey = (await ctx.stores.secondFactors.listPasskeys(user.id)).find((p) => p.id === request.params.id);
      if (passkey === undefined) throw new LatchError("not_found", "No such passkey.");
      return { passkey: passkeyJson(passkey) };
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/passkeys/:id",
    {
      preValidation: session,
      schema: passkeySchemas.remove,
    },
    async (request, reply) => {
      const { user } = authOf(request);
      if (!(await ctx.stores.secondFactors.deletePasskey(user.id, request.params.id)))
        throw new LatchError("not_found", "No such passkey.");
      recordEvent(ctx, request, "passkey_removed", user.id, { passkey: request.params.id });
      return reply.code(204).send();
    },
  );

  app.post(
    "/passkeys/login/options",
    {
      schema: passkeySchemas.signInOptions,
    },
    async (request, reply) => {
      // Anyone may ask, and each answer is a stored row: bounded per address.
      const { addressFailures, addressWindowMs } = ctx.config.throttle;
      const now = ctx.runtime.clock.now();
      const state = await ctx.stores.limits.hit(`passkey-options:addr:${request.ip}`, addressWindowMs, now);
      if (state.count > addressFailures * 10) {
        throw new LatchError("rate_limited", undefined, { retryAfter: Math.max(1, Math.ceil((state.resetAt - now) / 1000)) });
      }
      const options = await authenticationOptions(ctx.relyingParty, ctx.runtime.random);
      await issueChallenge(reply, "sign_in", null, options.challenge);
      return { options };
    },
  );

  app.post(
    "/passkeys/login",
    {
      schema: passkeySchemas.signIn,
    },
    async (request, reply) => {
      // The address check first: a refused client learns nothing about its input.
      const release = await checkAddress(ctx, request);
      try {
        const body = bodyObject(request);
        const refuse = async (why: string, userId: string | null): Promise<never> => {
          await recordFailure(ctx, request);
          ctx.metrics.signIns.inc({ result: "failure" });
          recordEvent(ctx, request, "sign_in_failed", userId, { via: "passkey", reason: why });
          throw new LatchError("invalid_credentials", "The passkey sign-in did not verify. Try again.");
        };
        const challenge = await takeChallenge(request, reply, "sign_in");
        if (challenge === null) return await refuse("no challenge for this browser", null);
        const credentialId = assertionCredentialId(body.response);
        const passkey = credentialId === null ? null : await ctx.stores.secondFactors.findPasskeyByCredentialId(credentialId);
        if (passkey === null) return await refuse("unknown passkey", null);
        const counter = await verifyAssertion(ctx.relyingParty, body.response, challenge.challenge, passkey);
        if (counter === null) return await refuse("assertion does not verify", passkey.userId);
        // Compare-and-set: two requests with one assertion cannot both sign in.
        if (!(await ctx.stores.secondFactors.recordPasskeyUse(passkey.id, passkey.counter, counter, ctx.runtime.clock.now()))) {
          return await refuse("passkey changed meanwhile", passkey.userId);
        }
        const user = await ctx.stores.users.findUserById(passkey.userId);
        if (user === null) return await refuse("user gone", null);
        const { session, csrfToken } = await startSession(ctx, request, reply, user, { amr: ["hwk", "mfa"] });
        ctx.metrics.signIns.inc({ result: "success" });
        recordEvent(ctx, request, "sign_in", user.id, { session: session.id, via: "passkey", passkey: passkey.id });
        return { user: userJson(publicUser(user)), csrfToken };
      } finally {
        release();
      }
    },
  );
}
