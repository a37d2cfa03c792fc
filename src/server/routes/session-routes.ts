import type { FastifyInstance } from "fastify";
import { authOf, guard } from "../auth.js";
import type { ServerContext } from "../context.js";
import type { User } from "../../core/store.js";
import { sessionJson, userJson, userJsonText } from "../responses.js";

/** The body of GET /protected; the fast path (src/server/fast-path.ts) answers with it too. */
export const protectedBody = (user: User): string => `{"message":"Access granted","user":${userJsonText(user)}}`;
/** The body of GET /dashboard; the fast path answers with it too. */
export const dashboardBody = (user: User): string =>
  `{"message":${JSON.stringify(`Welcome, ${user.username}`)},"user":${userJsonText(user)}}`;
import { answer, errors, ref, security } from "../api-schemas.js";

function view(operationId: string, summary: string, description: string): Record<string, unknown> {
  return {
    operationId,
    summary,
    tags: ["sessions"],
    security: security.sessionOrBearer,
    response: { 200: answer(description, ref("UserView")), ...errors(401, 503) },
  };
}

const meSchema = {
  operationId: "getMe",
  summary: "The signed-in user and this session",
  tags: ["sessions"],
  security: security.sessionOrBearer,
  response: {
    200: answer("The user and the session (for a token: the session it was issued for).", {
      type: "object",
      properties: { user: ref("User"), session: ref("Session") },
      required: ["user", "session"],
      additionalProperties: false,
    }),
    ...errors(401, 503),
  },
};

const csrfSchema = {
  operationId: "getCsrfToken",
  summary: "This session's CSRF token",
  tags: ["sessions"],
  security: security.session,
  response: {
    200: answer("The token to send in X-CSRF-Token.", {
      type: "object",
      properties: { csrfToken: { type: "string" } },
      required: ["csrfToken"],
      additionalProperties: false,
    }),
    ...errors(401, 503),
  },
};

/** The signed-in user's own views: GET /protected, /dashboard, /me, /csrf-token. */
export function sessionRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const sessionOrBearer = guard(ctx, { bearer: "allow" });

  // The hot path: the user's JSON is serialised once per user object (see
  // userJsonText), and the body is assembled from it. Most such requests are
  // answered before Fastify by src/server/fast-path.ts, with the same bodies.
  app.get(
    "/protected",
    { preHandler: sessionOrBearer, schema: view("getProtected", "A protected resource", '"Access granted" and the user.') },
    async (request, reply) => {
      reply.type("application/json; charset=utf-8");
      return protectedBody(authOf(request).user);
    },
  );

  app.get(
    "/dashboard",
    { preHandler: sessionOrBearer, schema: view("getDashboard", "The dashboard", '"Welcome, <username>" and the user.') },
    async (request, reply) => {
      reply.type("application/json; charset=utf-8");
      return dashboardBody(authOf(request).user);
    },
  );

  app.get("/me", { preHandler: sessionOrBearer, schema: meSchema }, async (request) => {
    const { user, session } = authOf(request);
    return { user: userJson(user), session: sessionJson(session) };
  });

  app.get("/csrf-token", { preHandler: guard(ctx), schema: csrfSchema }, async (request) => {
    return { csrfToken: ctx.sessions.csrfToken(authOf(request).cookie!) };
  });
}
