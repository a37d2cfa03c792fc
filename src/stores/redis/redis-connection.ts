import { Cluster, Redis } from "ioredis";
import type { ClusterOptions, RedisOptions } from "ioredis";
import { LatchError } from "../../core/errors.js";
import type { RedisClient } from "./redis-scripts.js";

export type { RedisClient } from "./redis-scripts.js";

/** How long one command may take before it counts as Redis being unavailable. */
export const REDIS_COMMAND_TIMEOUT_MS = 500;

/**
 * Options that make a down Redis fail fast and come back by itself:
 *
 * - no offline queue: while disconnected, a command fails at once instead of
 *   waiting (possibly forever) for a reconnection;
 * - `maxRetriesPerRequest: 1`: a command in flight when the connection drops
 *   is retried once after reconnecting, then fails;
 * - `commandTimeout`: a Redis that accepts connections but does not answer
 *   (paused, swapping, a partition that drops packets) fails within it. In
 *   ioredis it costs one setTimeout/clearTimeout pair per command: measured
 *   at about 2% CPU per GET, within noise for throughput (unlike node-redis's
 *   per-command AbortSignal, see PERFORMANCE-NOTES.md point 2);
 * - reconnection forever, backing off to one attempt per second.
 */
export const failFastOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
  connectTimeout: 2000,
  retryStrategy: (attempt: number): number => Math.min(attempt * 100, 1000),
} satisfies RedisOptions;

function clusterNodes(hosts: string, secure: boolean): { host: string; port: number }[] {
  return hosts.split(",").map((entry) => {
    const url = new URL(`${secure ? "rediss" : "redis"}://${entry.trim()}`);
    return { host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port === "" ? 6379 : Number(url.port) };
  });
}

/**
 * A client for a `REDIS_URL`: `redis://[user:password@]host:port[/db]`,
 * `rediss://…` (TLS), or `redis+cluster://[user:password@]host:port,host:port`
 * (`rediss+cluster://` for TLS) naming seed nodes of a Redis Cluster. The
 * client connects at once, fails fast while Redis is down and reconnects by
 * itself (see {@link failFastOptions}). Requires Redis 7.0 or later.
 *
 * @example
 * const redis = connectRedis(process.env.REDIS_URL!);
 * const stores = createTieredStores({ database, redis });
 */
export function connectRedis(url: string): RedisClient {
  const match = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]+)\/?$/.exec(url);
  if (match === null) {
    if (!/^rediss?:\/\//.test(url))
      throw new LatchError("invalid_input", "A Redis URL starts with redis://, rediss:// or redis+cluster://.");
    // ioredis parses redis:// and rediss:// itself (credentials, database, TLS).
    return new Redis(url, { ...failFastOptions });
  }
  const secure = match[1] === "rediss";
  const [user, password] = (match[2] ?? "").split(":").map((part) => decodeURIComponent(part));
  const redisOptions: RedisOptions = {
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: failFastOptions.connectTimeout,
    maxRetriesPerRequest: failFastOptions.maxRetriesPerRequest,
    ...(user ? { username: user } : {}),
    ...(password ? { password } : {}),
    ...(secure ? { tls: {} } : {}),
  };
  const options: ClusterOptions = {
    enableOfflineQueue: false,
    clusterRetryStrategy: failFastOptions.retryStrategy,
    redisOptions,
  };
  return new Cluster(clusterNodes(match[3]!, secure), options);
}

const UNAVAILABLE_REPLIES = /^(OOM|BUSY|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS|MOVED|ASK)\b/;

/**
 * Maps a failure to `LatchError("unavailable")` when it means Redis cannot
 * serve (connection refused or lost, timeout, out of memory, failover);
 * any other error reply (a script error, WRONGTYPE) is a bug or tampering
 * and becomes `LatchError("internal")`. Either way the cause is a copy
 * without the command and its arguments (see {@link loggable}).
 *
 * @example
 * redis.get(key).catch((error) => { throw redisError(error); });
 */
export function redisError(error: unknown): unknown {
  if (error instanceof LatchError) return error;
  const name = error instanceof Error ? error.name : "";
  const message = error instanceof Error ? error.message : String(error);
  const cause = loggable(error);
  if (name === "ReplyError" && !UNAVAILABLE_REPLIES.test(message)) return new LatchError("internal", "A Redis command failed.", { cause });
  return new LatchError("unavailable", "Redis is unavailable.", { cause, backend: "redis" });
}

/**
 * A copy of a Redis failure that is safe to log. ioredis attaches the
 * command to its errors (`command: { name, args }`, and `previousErrors`
 * of the same): the arguments hold session handles, secret hashes, user
 * agents, user names and emails, and a logger's error serializer copies
 * every enumerable property. Only the name, the reply text (which never
 * quotes arguments) and a socket error code are kept; the stack is that of
 * the copy, made here.
 */
function loggable(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(error));
  const copy = new Error(error.message) as Error & { code?: string };
  copy.name = error.name;
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === "string") copy.code = code;
  return copy;
}

/**
 * Runs one Redis operation, mapping its failure with {@link redisError}.
 *
 * @example
 * const reply = await redisCall(() => redis.get(key));
 */
export async function redisCall<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw redisError(error);
  }
}

/**
 * The nodes a key scan must visit: every master of a cluster, or the one server.
 *
 * @example
 * for (const node of scanNodes(redis)) await node.scan("0", "MATCH", pattern);
 */
export function scanNodes(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes("master") : [client];
}

/**
 * Escapes glob metacharacters for SCAN MATCH.
 *
 * @example
 * `${globEscape(prefix)}*`
 */
export function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, "\\$&");
}
