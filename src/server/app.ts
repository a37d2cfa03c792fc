import { createServer as createHttpServer } from "node:http";
import { createOriginPolicy, createRequestAuthenticator, isUnsafeMethod, originRefusal, sessionCookieName } from "../auth/index.js";
import Fastify, { LogController } from "fastify";
import type { FastifyInstance, FastifyServerOptions } from "fastify";
import { createAccounts } from "../core/accounts.js";
import type { Config } from "../core/config.js";
import { LatchError } from "../core/errors.js";
import { relyingPartyOf } from "../core/passkeys.js";
import { createPasswordHasher } from "../core/passwords.js";
import { createSecondFactors } from "../core/second-factors.js";
import type { PasswordHasher } from "../core/passwords.js";
import type { Runtime } from "../core/runtime.js";
import { createSessionManager } from "../core/sessions.js";
import type { Stores } from "../core/store.js";
import { createTokenService } from "../core/tokens.js";
import type { ServerContext } from "./context.js";
import { clientErrorResponse, errorHandler } from "./errors.js";
import { createFastPath } from "./fast-path.js";
import { SECURITY_HEADERS } from "./security-headers.js";
import type { FastPath } from "./fast-path.js";
import { createMetrics, metricsRoute } from "./metrics.js";
import { createOutageLog } from "./outages.js";
import { applyCors } from "./cors.js";
import { apiDocumentRoute, hideFromApiDocument, registerApiDocument } from "./openapi.js";
import { accountRoutes } from "./routes/account-routes.js";
import { adminRoutes } from "./routes/admin-routes.js";
import { healthRoutes } from "./routes/health-routes.js";
import { ownSessionRoutes } from "./routes/own-session-routes.js";
import { privacyRoutes } from "./routes/privacy-routes.js";
import { sessionRoutes } from "./routes/session-routes.js";
import { tokenRoutes } from "./routes/token-routes.js";
import { secondFactorRoutes } from "./routes/second-factor-routes.js";
import { passkeyRoutes } from "./routes/passkey-routes.js";
import { recoveryRoutes } from "./routes/recovery-routes.js";
import { createMailQueue } from "./mail.js";

export interface BuildServerOptions {
  config: Config;
  stores: Stores;
  runtime: Runtime;
  /** Defaults to argon2id with `config.hashConcurrency`. Tests may pass a cheaper one. */
  hasher?: PasswordHasher;
  /** pino options or false; defaults to JSON logs at `config.logLevel`. */
  logger?: FastifyServerOptions["logger"];
  /**
   * With several worker processes (WORKERS): how many are ready, as the
   * primary last heard; GET /readyz answers 503 unless all are.
   */
  workers?: () => { ready: number; total: number };
  /**
   * More routes, mounted after the API with the same context: the
   * composition root hands in the pages (src/web/index.ts's `webRoutes`),
   * so server/ never imports web/.
   */
  routes?: ReadonlyArray<(app: FastifyInstance, ctx: ServerContext) => void>;
}

export interface LatchServer {
  app: FastifyInstance;
  context: ServerContext;
  /**
   * Resolves once no state-changing handler is running, or after `timeoutMs`
   * (false then). For shutdown: `app.close()` returns when the connections
   * are gone, but a handler whose client hung up (a sign-in waiting for its
   * hash, say) may still be on its way to the store; close the stores after
   * this, so it ends its writes instead of failing halfway.
   */
  drain(timeoutMs: number): Promise<boolean>;
  /** The pre-Fastify hot path (src/server/fast-path.ts); it never sees `app.inject`. */
  fastPath: FastPath;
}

/**
 * Builds the Fastify auth server over the given stores. Listening, signals
 * and store lifetimes belong to the caller (see src/cli/serve.ts).
 *
 * @example
 * const { app } = await buildServer({ config: loadConfig(process.env), stores, runtime: systemRuntime() });
 * await app.listen({ port: 3000 });
 */
export async function buildServer(options: BuildServerOptions): Promise<LatchServer> {
  const { config, stores, runtime } = options;
  const hasher = options.hasher ?? createPasswordHasher({ concurrency: config.hashConcurrency });
  const metrics = createMetrics(stores);
  const cookieName = sessionCookieName({ production: config.production });
  const sessions = createSessionManager({
    store: stores.sessions,
    runtime,
    policy: {
      idleTimeoutMs: config.session.idleTimeoutMs,
      absoluteTimeoutMs: config.session.absoluteTimeoutMs,
      renewIntervalMs: config.session.renewIntervalMs,
    },
  });
  const tokens = createTokenService({
    keys: stores.keys,
    runtime,
    issuer: config.issuer,
    ttlSeconds: config.tokenTtlSeconds,
    keySecret: config.tokenKeySecret,
    algorithm: config.tokenAlgorithm,
  });
  const context: ServerContext = {
    config,
    stores,
    runtime,
    sessions,
    accounts: createAccounts({ users: stores.users, hasher, runtime }),
    tokens,
    factors: createSecondFactors({ store: stores.secondFactors, runtime, keySecret: config.mfaKeySecret }),
    relyingParty: relyingPartyOf(config.publicUrl),
    auth: createRequestAuthenticator({
      sessions,
      cookieNames: [cookieName],
      bearer: { verify: (token) => tokens.verify(token), sessions: stores.sessions, clock: runtime.clock },
    }),
    cookieName,
    cookieOptions: { secure: config.production },
    origins: createOriginPolicy({ trustedOrigins: config.trustedOrigins, publicUrl: config.publicUrl, production: config.production }),
    metrics,
    // Fastify's logger exists only once `app` does; outages are only ever reported after that.
    outages: createOutageLog({
      logger: { error: (details, message) => app.log.error(details, message), info: (details, message) => app.log.info(details, message) },
      failures: metrics.storeFailures,
      health: () => stores.health(),
    }),
    mail: createMailQueue(stores),
  };

  const securityHeaders: Record<string, string> = {
    ...SECURITY_HEADERS,
    ...(config.production ? { "strict-transport-security": "max-age=63072000; includeSubDomains" } : {}),
  };
  const fastPath = createFastPath(context, securityHeaders);

  const app = Fastify({
    logger: options.logger ?? {
      level: config.logLevel,
      // Never log credentials: request logging is off, and if a request is
      // ever logged its cookie and authorization headers are censored.
      redact: ["req.headers.cookie", "req.headers.authorization", "req.headers['x-csrf-token']", "req.headers['csrf-token']"],
    },
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger (pino's child() costs more than the rest of
    // a cached validation): request.log is the server's logger, and the few
    // places that log for a request add `reqId` themselves.
    childLoggerFactory: (logger) => logger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    // Fastify answers a malformed URL (and a few routing failures) before any
    // hook runs, and Node's parser refuses malformed HTTP before Fastify:
    // both in the contract's shape, not the framework's.
    frameworkErrors: (error, request, reply) => {
      reply.headers(securityHeaders);
      errorHandler(error, request, reply, context.outages);
    },
    clientErrorHandler: (error: NodeJS.ErrnoException, socket) => {
      // A reset connection has nobody to answer.
      if (error.code === "ECONNRESET" || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(error));
      socket.destroy(error);
    },
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    return503OnClosing: true,
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
    // The fast path answers validated GETs from the session cache before
    // Fastify sees them; the rest goes on to Fastify (src/server/fast-path.ts).
    // A slow client (a body trickled a byte at a time, headers never ended)
    // must not hold a connection forever: Node answers 408 and closes it.
    requestTimeout: config.requestTimeoutMs,
    serverFactory: (handler, factoryOptions) => {
      const options = factoryOptions as {
        keepAliveTimeout?: number;
        requestTimeout?: number;
        connectionTimeout?: number;
        maxRequestsPerSocket?: number;
      };
      const server = createHttpServer(
        {
          requestTimeout: config.requestTimeoutMs,
          headersTimeout: config.headersTimeoutMs,
          // How often Node looks for connections past those timeouts (its default, 30 s, would let one live up to that much longer).
          connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs),
        },
        (request, response) => {
          if (!fastPath(request, response)) handler(request, response);
        },
      );
      // What Fastify does to a server it creates itself (lib/server.js).
      server.keepAliveTimeout = options.keepAliveTimeout ?? 72_000;
      server.setTimeout(options.connectionTimeout ?? 0);
      if ((options.maxRequestsPerSocket ?? 0) > 0) server.maxRequestsPerSocket = options.maxRequestsPerSocket!;
      return server;
    },
  });
  // Once closing, Fastify answers 503 (return503OnClosing): so must nothing else.
  app.addHook("preClose", (done) => {
    fastPath.stop();
    context.outages.stop();
    done();
  });

  // JSON is the only body type. text/plain is removed so a form or text post
  // to a JSON endpoint is refused with 415, which is also what makes a
  // "simple" cross-site form POST impossible to parse.
  app.removeContentTypeParser("text/plain");
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    // An empty body with a JSON content type (a bodiless fetch POST) is no body, not an error.
    if (body === "") return done(null, undefined);
    parseJson(request, body as string, done);
  });

  // Handlers of unsafe methods in flight (see LatchServer.drain). GET
  // handlers only read, so the hot path is not wrapped.
  let writing = 0;
  let drained: Array<() => void> = [];
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => isUnsafeMethod(m))) return;
    const handler = route.handler;
    route.handler = async function counted(this: FastifyInstance, request, reply) {
      writing += 1;
      try {
        return await handler.call(this, request, reply);
      } finally {
        writing -= 1;
        if (writing === 0) for (const resolve of drained.splice(0)) resolve();
      }
    };
  });

  app.decorateRequest("auth", null);
  app.setErrorHandler((error: Parameters<typeof errorHandler>[0], request, reply) => errorHandler(error, request, reply, context.outages));
  app.setNotFoundHandler((request, reply) => {
    // A known path with another method is an unknown route too (404, as the
    // contract says and Fastify does): no 405, so no Allow header maps the API.
    void reply.code(404).send({ error: { code: "not_found", message: `No route for ${request.method} ${request.url.split("?")[0]}.` } });
  });

  // Callback style, not async: this runs on every request, and a promise per
  // request is measurable on the hot path.
  app.addHook("onRequest", (request, reply, done) => {
    reply.headers(securityHeaders);
    if (applyCors(request, reply, context.origins)) return; // a preflight, answered
    if (isUnsafeMethod(request.method)) {
      // The port the connection reached, from the socket (never the Host header).
      const refusal = originRefusal(context.origins, request.headers, request.socket.localPort);
      if (refusal !== null) return done(new LatchError("csrf", refusal));
    }
    done();
  });

  // Before any route: the API document learns routes as they are declared.
  await registerApiDocument(app, { cookieName: context.cookieName });
  healthRoutes(app, context, options.workers);
  metricsRoute(app, context.metrics);
  accountRoutes(app, context);
  sessionRoutes(app, context);
  ownSessionRoutes(app, context);
  privacyRoutes(app, context);
  adminRoutes(app, context);
  tokenRoutes(app, context);
  secondFactorRoutes(app, context);
  passkeyRoutes(app, context);
  recoveryRoutes(app, context);
  apiDocumentRoute(app);
  // More routes from the composition root (the pages): for browsers, not
  // API clients, so left out of /openapi.json.
  await app.register(async (more) => {
    more.addHook("onRoute", hideFromApiDocument);
    for (const mount of options.routes ?? []) mount(more, context);
  });

  await app.ready();
  function drain(timeoutMs: number): Promise<boolean> {
    if (writing === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        drained = drained.filter((r) => r !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      drained.push(done);
    });
  }

  return { app, context, drain, fastPath };
}

export { LatchError };
