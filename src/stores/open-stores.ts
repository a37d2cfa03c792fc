import type { Config } from "../core/config.js";
import type { Stores } from "../core/store.js";
import { createPostgresStores } from "./postgres/index.js";
import { openSqliteStores } from "./sqlite/index.js";

/**
 * Builds the stores that DATABASE_URL and REDIS_URL name. Shared by the
 * server's composition root and by resource servers that validate sessions
 * against the same stores.
 *
 * @example
 * const stores = await openStores(loadConfig(process.env));
 */
export async function openStores(config: Pick<Config, "database" | "redisUrl">): Promise<Stores> {
  const database = config.database.kind === "sqlite" ? openSqliteStores({ path: config.database.path }) : await createPostgresStores({ url: config.database.url });
  return database;
}
