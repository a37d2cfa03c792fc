import { randomFillSync } from "node:crypto";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { loadConfig } from "../core/config.js";
import type { Config } from "../core/config.js";
import { createPasswordHasher } from "../core/passwords.js";
import type { PasswordHasher } from "../core/passwords.js";
import { createFakeClock } from "../core/runtime.js";
import type { FakeClock } from "../core/runtime.js";
import type { Stores } from "../core/store.js";
import { buildServer } from "../server/app.js";
import type { BuildServerOptions, LatchServer } from "../server/app.js";
import type { ServerContext } from "../server/context.js";
import { createMemoryStores } from "../stores/memory/memory-store.js";
import { webRoutes } from "../web/index.js";

/**
 * An in-process Latch for tests, composed as src/cli/serve.ts composes the
 * real one (the API and the pages): memory stores unless given others, a
 * fake clock, the real argon2id hasher, and helpers that speak HTTP through
 * `app.inject` (no port is opened). Like the CLI, a composition root: it
 * hands the server its stores, so server/ names no store.
 */
export interface TestServer {
  app: FastifyInstance;
  context: ServerContext;
  drain: LatchServer["drain"];
  fastPath: LatchServer["fastPath"];
  clock: FakeClock;
  stores: Stores;
  /** Registers a user and returns the session cookie value and CSRF token. */
  register(username?: string, password?: string): Promise<SignedIn>;
  login(username: string, password?: string): Promise<SignedIn>;
  /** Registers a user, makes them an admin in the store, and signs in again. */
  registerAdmin(username?: string): Promise<SignedIn>;
  /** Headers for a cookie-authenticated state change. */
  auth(user: SignedIn): { cookies: Record<string, string>; headers: Record<string, string> };
  close(): Promise<void>;
}

export interface SignedIn {
  response: LightMyRequestResponse;
  cookie: string;
  csrfToken: string;
  userId: string;
  username: string;
}

export const TEST_PASSWORD = "a perfectly fine passphrase";
let counter = 0;

/** The value of the session cookie set by a response, or undefined. */
export function setCookieValue(response: LightMyRequestResponse, name = "sid"): string | undefined {
  const header = response.headers["set-cookie"];
  const all = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const line of all) {
    const match = new RegExp(`^${name}=([^;]*)`).exec(line);
    if (match) return match[1];
  }
  return undefined;
}

export async function createTestServer(
  options: {
    env?: Record<string, string>;
    stores?: Stores;
    hasher?: PasswordHasher;
    config?: Partial<Config>;
    logger?: BuildServerOptions["logger"];
  } = {},
): Promise<TestServer> {
  const clock = createFakeClock(Date.now());
  const stores = options.stores ?? createMemoryStores();
  // app.inject addresses the server as http://localhost:80 (its default Host), so that is where this one is reached.
  const config = { ...loadConfig({ LOG_LEVEL: "silent", PUBLIC_URL: "http://localhost:80", ...options.env }), ...options.config };
  const { app, context, drain, fastPath } = await buildServer({
    config,
    stores,
    runtime: { clock, random: (bytes) => void randomFillSync(bytes) },
    hasher: options.hasher ?? createPasswordHasher({ concurrency: 2 }),
    logger: options.logger ?? false,
    routes: [webRoutes],
  });

  function signedIn(response: LightMyRequestResponse, name: string): SignedIn {
    if (response.statusCode >= 300) throw new Error(`sign-in failed: ${response.statusCode} ${response.body}`);
    const body = response.json() as { user: { id: string }; csrfToken: string };
    return {
      response,
      cookie: setCookieValue(response, context.cookieName)!,
      csrfToken: body.csrfToken,
      userId: body.user.id,
      username: name,
    };
  }

  const server: TestServer = {
    app,
    context,
    drain,
    fastPath,
    clock,
    stores,
    async register(username = `user${Date.now().toString(36)}${(counter += 1)}`, password = TEST_PASSWORD) {
      const response = await app.inject({ method: "POST", url: "/register", payload: { username, password } });
      return signedIn(response, username);
    },
    async login(username, password = TEST_PASSWORD) {
      const response = await app.inject({ method: "POST", url: "/login", payload: { username, password } });
      return signedIn(response, username);
    },
    async registerAdmin(username) {
      const user = await server.register(username);
      await stores.users.updateUserRoles(user.userId, ["user", "admin"], clock.now());
      return user;
    },
    auth(user) {
      return { cookies: { [context.cookieName]: user.cookie }, headers: { "x-csrf-token": user.csrfToken } };
    },
    async close() {
      await app.close();
      await stores.close();
    },
  };
  return server;
}
