import type { Config } from "../core/config.js";
import type { Clock } from "../core/runtime.js";
import type { Stores } from "../core/store.js";
import { createSessionCache } from "./cached/session-cache.js";
import type { SessionCacheOptions } from "./cached/session-cache.js";
import { createPostgresRevocationChannel, createPostgresStores } from "./postgres/index.js";
import type { PostgresStores } from "./postgres/index.js";
import { connectRedis, createRedisRevocationChannel, DEFAULT_REDIS_PREFIX } from "./redis/index.js";
import { createDataVersionChannel, openSqliteStores } from "./sqlite/index.js";
import type { SqliteStores } from "./sqlite/index.js";
import { createTieredStores } from "./tiered/index.js";
import type { TieredLogger } from "./tiered/index.js";

export interface OpenStoresOptions {
  /** Where the tiered store reports Redis going away and coming back. */
  logger?: TieredLogger;
  clock?: Clock;
}

/**
 * Builds the stores that DATABASE_URL and REDIS_URL name. Shared by the
 * server's composition root, the admin CLI and resource servers that
 * validate sessions against the same stores.
 *
 * - `DATABASE_URL` alone: SQLite or PostgreSQL holds everything, with an
 *   in-process session cache in front (SQLite: kept correct by
 *   `PRAGMA data_version`; PostgreSQL: by the database's own NOTIFYs).
 * - With `REDIS_URL`: the tiered store (database first, Redis as the fast
 *   path and for rate limits), and in front of it an in-process session
 *   cache that Redis pub/sub keeps correct across processes; while the
 *   subscription is down the cache serves nothing.
 *
 * @example
 * const stores = await openStores(loadConfig(process.env));
 */
export async function openStores(
  config: Pick<Config, "database" | "redisUrl"> & Partial<Pick<Config, "session" | "sessionCacheSize">>,
  options: OpenStoresOptions = {},
): Promise<Stores> {
  const clock = options.clock ?? { now: () => Date.now() };
  const cacheOptions = { clock, ...sessionCacheOptions(config) };
  if (config.redisUrl === null) {
    if (config.database.kind === "sqlite") return cachedSqlite(openSqliteStores({ path: config.database.path }), clock, cacheOptions);
    return cachedPostgres(await createPostgresStores({ url: config.database.url }), config.database.url, cacheOptions, options.logger);
  }
  const database =
    config.database.kind === "sqlite"
      ? openSqliteStores({ path: config.database.path })
      : await createPostgresStores({ url: config.database.url });

  const redis = connectRedis(config.redisUrl);
  const tiered = createTieredStores({ database, redis, logger: options.logger, prefix: DEFAULT_REDIS_PREFIX, clock });
  return createSessionCache(tiered, createRedisRevocationChannel({ redis, prefix: DEFAULT_REDIS_PREFIX }), cacheOptions).stores;
}

export { DATA_VERSION_CHECK_MS } from "./sqlite/index.js";

/**
 * The cache's size, and how long a renewal may wait to be written: at most a
 * second, and never longer than the renewal interval, so that the store's
 * copy of a session never falls more than one interval behind (a session
 * renewed is at least 0.9 of its idle timeout from ending).
 */
function sessionCacheOptions(
  config: Partial<Pick<Config, "session" | "sessionCacheSize">>,
): Pick<SessionCacheOptions, "maxEntries" | "writeBehindMs"> {
  return {
    ...(config.sessionCacheSize === undefined ? {} : { maxEntries: config.sessionCacheSize }),
    ...(config.session === undefined ? {} : { writeBehindMs: Math.min(1_000, config.session.renewIntervalMs) }),
  };
}

/**
 * SQLite alone: the in-process cache is invalidated by this process's own
 * writes (through the cache) and, for writes by other processes on the same
 * file, by `PRAGMA data_version` (src/stores/sqlite/data-version-channel.ts):
 * a session ended by the admin CLI or a resource server is refused within
 * 10 ms, and the hot path is a Map lookup instead of a joined query.
 */
function cachedSqlite(sqlite: SqliteStores, clock: Clock, cacheOptions: SessionCacheOptions): Stores {
  return createSessionCache(sqlite, createDataVersionChannel(sqlite, clock), cacheOptions).stores;
}

/**
 * PostgreSQL alone: the in-process cache is kept correct across processes by
 * the database's own announcements (LISTEN/NOTIFY, sent by triggers on every
 * session delete and user change; src/stores/postgres/revocations.ts). While
 * the listening connection is down or its heartbeat does not come back, the
 * cache serves nothing and every validation reads the database.
 */
function cachedPostgres(database: PostgresStores, url: string, cacheOptions: SessionCacheOptions, logger?: TieredLogger): Stores {
  // A write that revokes answers only once this process's listener has heard
  // its own announcement: the other processes were signalled by the same
  // commit, so "refused by all" holds by the time the client can ask another
  // process, not only within the contract's second. About a millisecond per
  // revocation; nothing else waits. A sync that times out (false) leaves the
  // contract's bound: that listener is down or about to be, and every cache
  // that missed the NOTIFY fails closed within a second.
  const channel = createPostgresRevocationChannel({ url });
  const cache = createSessionCache(database, channel, cacheOptions);
  // Transitions only, so an outage is one line each way, not one per retry.
  let state: "starting" | "up" | "down" = "starting";
  channel.onStatus((status) => {
    if (status === "down" && state === "up")
      logger?.warn({}, "PostgreSQL revocation listener down: every validation reads the database until it is back");
    if (status === "up" && state === "down") logger?.info({}, "PostgreSQL revocation listener back: serving sessions from memory again");
    state = status;
  });
  const notUp = setTimeout(() => {
    if (state === "starting")
      logger?.warn(
        {},
        "PostgreSQL revocation listener has not come up: every validation reads the database (is DATABASE_URL a transaction-mode pooler? LISTEN needs a session)",
      );
  }, 10_000);
  notUp.unref();
  const close = cache.stores.close;
  return {
    ...cache.stores,
    async close() {
      clearTimeout(notUp);
      await close();
    },
  };
}
