import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, lastLine, start, stop, waitForHttp } from "./processes.js";
import type { Tracked } from "./processes.js";
import { SECURITY_HEADERS } from "../../src/server/security-headers.js";
import { SERVER_CPU } from "./wrk.js";
import { BETTER_AUTH_COOKIE, BETTER_AUTH_LOGIN, seedBetterAuthSessions } from "./better-auth-sessions.mjs";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BASELINES = join(ROOT, "bench", "baselines");

/** What a run shares with every variant it starts. */
export interface BenchEnv {
  /**
   * The Latch build to run: a snapshot of dist/ taken at the start of the
   * run, so that a rebuild by someone else in the same work tree cannot
   * change the server halfway through. Lives under the work tree so that
   * node_modules still resolves.
   */
  distDir: string;
  /** A scratch directory for this run: SQLite files, the servers' working directory. */
  tmpDir: string;
  redisUrl: string;
  /** False when nothing answered at `redisUrl` at the start of the run. */
  redisUp: boolean;
  /** postgres://… of the bench database, created fresh for this run. */
  postgresUrl: string | null;
}

/** A started server, signed in. */
export interface Running {
  url: string;
  process: Tracked;
  /** The Cookie header value that authenticates GET /protected. */
  cookie: string;
  /** The JSON body that signs in successfully (POST /login). */
  loginBody: string;
  /** The CSRF token of the session behind `cookie`, where the server has one. */
  csrfToken: string | null;
  /** Things the report should say about this instance (e.g. REDIS_URL accepted but unused). */
  notes: string[];
}

export interface Variant {
  name: string;
  label: string;
  /** Latch variants take part in the sign-in scenarios; so does the seed stack. */
  signIn: boolean;
  /** Why it cannot run here, decided before starting it (e.g. no PostgreSQL). */
  unavailable?: (env: BenchEnv) => string | null;
  start(env: BenchEnv, options?: { port?: number }): Promise<Running>;
}

function pinnedNode(name: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Tracked {
  // taskset execs node, so the PID is node's own: /proc/<pid>/stat is the server's CPU time.
  return start(
    name,
    "taskset",
    ["-c", SERVER_CPU, process.execPath, ...(process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? []), ...args],
    {
      env: { PATH: process.env.PATH, ...env },
      cwd,
    },
  );
}

function cookiePair(response: Response, name: string): string | null {
  for (const header of response.headers.getSetCookie()) {
    const pair = header.split(";")[0]!;
    if (pair.startsWith(`${name}=`) && pair.length > name.length + 1) return pair;
  }
  return null;
}

async function post(url: string, body: string): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body, signal: AbortSignal.timeout(30_000) });
}

export async function startBaseline(
  name: string,
  script: string,
  env: BenchEnv,
  extraEnv: NodeJS.ProcessEnv,
  login: { body: string; cookieName: string },
  port?: number,
): Promise<Running> {
  const p = port ?? (await freePort());
  const url = `http://127.0.0.1:${p}`;
  const tracked = pinnedNode(name, [join(BASELINES, script)], { PORT: String(p), ...extraEnv }, env.tmpDir);
  try {
    await waitForHttp(tracked, `${url}/protected`);
    const response = await post(`${url}/login`, login.body);
    await response.arrayBuffer();
    const cookie = cookiePair(response, login.cookieName);
    if (response.status !== 200 || cookie === null)
      throw new Error(`${name}: POST /login answered ${response.status} without a ${login.cookieName} cookie`);
    return { url, process: tracked, cookie, loginBody: login.body, csrfToken: null, notes: [] };
  } catch (error) {
    await stop(tracked);
    throw error;
  }
}

export const LATCH_PASSWORD = "bench password, not a common one 7391";

/** The environment every Latch process gets: quiet logs, throttles that never bite the bench's own sign-ins. */
function latchEnv(port: number, database: string, redisUrl: string | null): NodeJS.ProcessEnv {
  return {
    PORT: String(port),
    HOST: "127.0.0.1",
    DATABASE_URL: database,
    ...(redisUrl === null ? {} : { REDIS_URL: redisUrl }),
    LOG_LEVEL: "warn",
    THROTTLE_ACCOUNT_FAILURES: "1000000",
    THROTTLE_ADDRESS_FAILURES: "1000000",
    THROTTLE_REGISTRATIONS: "1000000",
    NODE_ENV: "development",
  };
}

export interface LatchStartOptions {
  /** Another build's dist/ to run instead of the run's snapshot (BENCH_COMPARE_DIST). */
  distDir?: string;
  database: string;
  redisUrl: string | null;
  username: string;
  port?: number;
  /** More environment for this server (the many-sessions scenario's SESSION_CACHE_SIZE). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts `node dist/cli/main.js serve` pinned to the server CPU, in the run's
 * scratch directory (so no .env or ./data of the work tree is read), then
 * registers `username` (or signs in when it exists).
 */
export async function startLatch(name: string, env: BenchEnv, options: LatchStartOptions): Promise<Running> {
  const port = options.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const tracked = pinnedNode(
    name,
    [join(options.distDir ?? env.distDir, "cli", "main.js"), "serve"],
    { ...latchEnv(port, options.database, options.redisUrl), ...options.env },
    env.tmpDir,
  );
  try {
    await waitForHttp(tracked, `${url}/healthz`);
    const credentials = JSON.stringify({ username: options.username, password: LATCH_PASSWORD });
    let response = await post(`${url}/register`, credentials);
    if (response.status === 409) {
      await response.arrayBuffer();
      response = await post(`${url}/login`, credentials);
    }
    const body = (await response.json()) as { csrfToken?: string; error?: { code: string; message: string } };
    const cookie = cookiePair(response, "sid");
    if (response.status >= 300 || cookie === null) {
      throw new Error(`${name}: sign-in answered ${response.status} ${JSON.stringify(body.error ?? body)}`);
    }
    const notes: string[] = [];
    if (options.redisUrl !== null) {
      // /readyz lists the stores in use; a build that ignores REDIS_URL lists only the database.
      const ready = await fetch(`${url}/readyz`)
        .then((r) => r.json() as Promise<{ stores?: Record<string, string> }>)
        .catch(() => null);
      const stores = Object.keys(ready?.stores ?? {});
      if (!stores.some((s) => /redis|cache|tier/i.test(s))) {
        notes.push(
          `REDIS_URL was accepted but /readyz lists no Redis store (stores: ${stores.join(", ") || "none"}): this build does not use Redis, so this is its database alone`,
        );
      }
    }
    return { url, process: tracked, cookie, loginBody: credentials, csrfToken: body.csrfToken ?? null, notes };
  } catch (error) {
    const output = tracked.output();
    await stop(tracked);
    if (error instanceof Error && output.trim() !== "" && !error.message.includes(lastLine(output))) {
      throw new Error(`${error.message} (server said: ${lastLine(output)})`);
    }
    throw error;
  }
}

/**
 * BENCH_COMPARE_DIST names the dist/ of another Latch build (an earlier
 * commit, say: `git worktree add /tmp/before <commit> && cd /tmp/before &&
 * ln -s $PWD/node_modules && npx tsc -p tsconfig.build.json`); its SQLite and
 * Redis variants then run beside this build's, interleaved like the rest, so
 * a change's effect is measured side by side in one run.
 */
const COMPARE_DIST = process.env.BENCH_COMPARE_DIST;

function compareVariants(): Variant[] {
  if (COMPARE_DIST === undefined || COMPARE_DIST === "") return [];
  const distDir = COMPARE_DIST;
  return [
    {
      name: "compare-sqlite",
      label: `Latch on SQLite, build at ${distDir}`,
      // GET /protected only: the comparison is about the hot path.
      signIn: false,
      start: (env, o) =>
        startLatch("compare-sqlite", env, {
          distDir,
          database: `sqlite:${join(env.tmpDir, "compare-sqlite.db")}`,
          redisUrl: null,
          username: "bench.compare.sqlite",
          ...o,
        }),
    },
    {
      name: "compare-redis",
      label: `Latch on Redis, build at ${distDir}`,
      signIn: false,
      unavailable: (env) => (env.redisUp ? null : `Redis is not reachable at ${env.redisUrl}`),
      start: (env, o) =>
        startLatch("compare-redis", env, {
          distDir,
          database: `sqlite:${join(env.tmpDir, "compare-redis.db")}`,
          redisUrl: env.redisUrl,
          username: "bench.compare.redis",
          ...o,
        }),
    },
    {
      name: "compare-postgres",
      label: `Latch on PostgreSQL, build at ${distDir}`,
      signIn: false,
      unavailable: needsPostgres,
      // The run's database: a build with fewer migrations ignores the newer ones.
      start: (env, o) =>
        startLatch("compare-postgres", env, {
          distDir,
          database: env.postgresUrl!,
          redisUrl: null,
          username: "bench.compare.postgres",
          ...o,
        }),
    },
  ];
}

/**
 * What a many-sessions scenario needs to run the better-auth baseline:
 * `seed({ dbPath, count, outFile })` writes `count` live sessions into
 * better-auth's SQLite tables and one cookie value per line to `outFile`;
 * start bench/baselines/better-auth.mjs with `env(dbPath)` (it signs with
 * the same fixed secret) and send `Cookie: <cookieName>=<line>`.
 */
export const BETTER_AUTH_MANY = {
  cookieName: BETTER_AUTH_COOKIE,
  seed: seedBetterAuthSessions,
  env: (dbPath: string): NodeJS.ProcessEnv => ({ BENCH_BETTER_AUTH_DB: dbPath }),
};

const needsPostgres = (env: BenchEnv): string | null =>
  env.postgresUrl === null ? "PostgreSQL is not reachable at BENCH_POSTGRES_URL" : null;
const needsRedis = (env: BenchEnv): string | null => (env.redisUp ? null : `Redis is not reachable at ${env.redisUrl}`);
const needsBoth = (env: BenchEnv): string | null => needsPostgres(env) ?? needsRedis(env);

export const VARIANTS: Variant[] = [
  {
    name: "ceiling",
    label: "node:http + Map lookup (ceiling)",
    signIn: false,
    start: (env, o) => startBaseline("ceiling", "ceiling.mjs", env, {}, { body: "{}", cookieName: "sid" }, o?.port),
  },
  {
    name: "ceiling-headers",
    label: "node:http + Map lookup, with Latch's security headers",
    signIn: false,
    start: (env, o) =>
      startBaseline(
        "ceiling-headers",
        "ceiling.mjs",
        env,
        { BENCH_CEILING_HEADERS: JSON.stringify(SECURITY_HEADERS) },
        { body: "{}", cookieName: "sid" },
        o?.port,
      ),
  },
  {
    name: "fastify-bare",
    label: "Fastify, no session",
    signIn: false,
    start: (env, o) => startBaseline("fastify-bare", "fastify-bare.mjs", env, {}, { body: "{}", cookieName: "sid" }, o?.port),
  },
  {
    name: "redis-get",
    unavailable: needsRedis,
    label: "node:http + 1 Redis GET (ioredis)",
    signIn: false,
    start: (env, o) =>
      startBaseline(
        "redis-get",
        "redis-get.mjs",
        env,
        { REDIS_URL: env.redisUrl, BENCH_REDIS_CLIENT: "ioredis" },
        { body: "{}", cookieName: "sid" },
        o?.port,
      ),
  },
  {
    name: "redis-get-node-redis",
    unavailable: needsRedis,
    label: "node:http + 1 Redis GET (node-redis defaults)",
    signIn: false,
    start: (env, o) =>
      startBaseline(
        "redis-get-node-redis",
        "redis-get.mjs",
        env,
        { REDIS_URL: env.redisUrl, BENCH_REDIS_CLIENT: "node-redis" },
        { body: "{}", cookieName: "sid" },
        o?.port,
      ),
  },
  {
    name: "seed",
    unavailable: needsRedis,
    label: "seed: Express + express-session + connect-redis",
    signIn: true,
    start: (env, o) =>
      startBaseline(
        "seed",
        "seed-stack.mjs",
        env,
        { REDIS_URL: env.redisUrl, SESSION_SECRET: "keyboard cat" },
        { body: JSON.stringify({ username: "user1", password: "password" }), cookieName: "connect.sid" },
        o?.port,
      ),
  },
  {
    name: "better-auth",
    label: "better-auth on SQLite (getSession, cookie cache off)",
    signIn: true,
    start: (env, o) =>
      startBaseline(
        "better-auth",
        "better-auth.mjs",
        env,
        BETTER_AUTH_MANY.env(join(env.tmpDir, "better-auth.db")),
        { body: JSON.stringify(BETTER_AUTH_LOGIN), cookieName: BETTER_AUTH_MANY.cookieName },
        o?.port,
      ),
  },
  {
    name: "latch-sqlite",
    label: "Latch on SQLite",
    signIn: true,
    start: (env, o) =>
      startLatch("latch-sqlite", env, {
        database: `sqlite:${join(env.tmpDir, "latch-sqlite.db")}`,
        redisUrl: null,
        username: "bench.sqlite",
        ...o,
      }),
  },
  {
    name: "latch-redis",
    unavailable: needsRedis,
    label: "Latch on Redis (SQLite + REDIS_URL)",
    signIn: true,
    start: (env, o) =>
      startLatch("latch-redis", env, {
        database: `sqlite:${join(env.tmpDir, "latch-redis.db")}`,
        redisUrl: env.redisUrl,
        username: "bench.redis",
        ...o,
      }),
  },
  {
    name: "latch-postgres",
    label: "Latch on PostgreSQL",
    signIn: true,
    unavailable: needsPostgres,
    start: (env, o) => startLatch("latch-postgres", env, { database: env.postgresUrl!, redisUrl: null, username: "bench.postgres", ...o }),
  },
  {
    name: "latch-tiered",
    label: "Latch tiered (PostgreSQL + Redis)",
    signIn: true,
    unavailable: needsBoth,
    start: (env, o) =>
      startLatch("latch-tiered", env, { database: env.postgresUrl!, redisUrl: env.redisUrl, username: "bench.tiered", ...o }),
  },
  ...compareVariants(),
];
