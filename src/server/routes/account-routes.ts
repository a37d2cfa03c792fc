import type { FastifyInstance } from "fastify";
import { publicUser } from "../../core/accounts.js";
import { guard, authOf } from "../auth.js";
import type { ServerContext } from "../context.js";
import { clearedSessionCookie } from "../../auth/index.js";
import { recordEvent } from "../events.js";
import { bodyObject, userJson } from "../responses.js";
import { queueQuietly, queueVerification } from "../mail.js";
import { PENDING_SIGN_IN_MS, startSession, verifySignIn } from "../sign-in.js";
import { countRegistration } from "../throttle.js";
import { answer, errors, ref, security, unsafeMethodErrors, withHeaders } from "../api-schemas.js";

const credentials = {
  type: "object",
  properties: {
    username: { type: "string", description: "The username, or an email (give username or email)." },
    email: { type: "string", description: "Instead of username." },
    password: { type: "string" },
  },
  required: ["password"],
} as const;

const registerSchema = {
  operationId: "register",
  summary: "Create an account and sign in",
  tags: ["accounts"],
  security: security.anyone,
  body: {
    type: "object",
    properties: {
      username: {
        type: "string",
        minLength: 3,
        maxLength: 64,
        pattern: "^[\\p{L}\\p{N}._-]+$",
        description: "Letters, digits, '.', '_', '-'; unique case-insensitively after NFKC.",
      },
      password: { type: "string", minLength: 8, maxLength: 256, description: "Not a common password, not the username." },
      email: { type: "string", format: "email" },
    },
    required: ["username", "password"],
  },
  response: {
    201: withHeaders(answer("Signed in: the user, the CSRF token and a session cookie.", ref("SignedIn")), "Set-Cookie"),
    ...errors(...unsafeMethodErrors, 409, 429, 503),
  },
};

const loginSchema = {
  operationId: "login",
  summary: "Sign in with a username or email and a password",
  tags: ["accounts"],
  security: security.anyone,
  body: credentials,
  response: {
    200: withHeaders(
      answer(
        "Signed in: a new session cookie (never the one presented); or, for an account with TOTP, a pending sign-in's cookie and mfaRequired.",
        {
          oneOf: [ref("SignedIn"), ref("MfaRequired")],
        },
      ),
      "Set-Cookie",
    ),
    ...errors(...unsafeMethodErrors, 401, 429, 503),
  },
};

const logoutSchema = {
  operationId: "logout",
  summary: "Sign out: end this session and clear the cookie",
  tags: ["accounts"],
  security: security.sessionWithCsrf,
  response: { 200: withHeaders(answer("Signed out.", ref("Message")), "Set-Cookie"), ...errors(...unsafeMethodErrors, 401, 503) },
};

/** POST /register, POST /login, POST /logout. */
export function accountRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/register", { schema: registerSchema }, async (request, reply) => {
    const body = bodyObject(request);
    await countRegistration(ctx, request);
    const user = await ctx.accounts.register({ username: body.username, password: body.password, email: body.email });
    const { csrfToken } = await startSession(ctx, request, reply, user);
    recordEvent(ctx, request, "register", user.id);
    ctx.metrics.registrations.inc();
    // The account exists whatever happens to the message; "send again" is on the account page.
    if (user.email !== null) await queueQuietly(request.log, "verify_email", () => queueVerification(ctx, user));
    return reply.code(201).send({ user: userJson(publicUser(user)), csrfToken });
  });

  app.post("/login", { schema: loginSchema }, async (request, reply) => {
    const { user, needsCode } = await verifySignIn(ctx, request);
    if (needsCode) {
      // A pending sign-in in the session cookie: it authenticates nothing
      // but POST /login/mfa (src/auth/request-auth.ts sessionKind).
      const { session } = await startSession(ctx, request, reply, user, { amr: ["pwd"], pendingForMs: PENDING_SIGN_IN_MS });
      recordEvent(ctx, request, "sign_in", user.id, { session: session.id, pending: "totp" });
      return { mfaRequired: true, methods: ["totp", "recovery_code"] };
    }
    const { session, csrfToken } = await startSession(ctx, request, reply, user);
    recordEvent(ctx, request, "sign_in", user.id, { session: session.id });
    return { user: userJson(publicUser(user)), csrfToken };
  });

  app.post("/logout", { preHandler: guard(ctx), schema: logoutSchema }, async (request, reply) => {
    const { session, user } = authOf(request);
    await ctx.stores.sessions.deleteSession(session.id);
    recordEvent(ctx, request, "sign_out", user.id, { session: session.id });
    reply.header("Set-Cookie", clearedSessionCookie(ctx.cookieName, ctx.cookieOptions));
    return { message: "Signed out" };
  });
}
