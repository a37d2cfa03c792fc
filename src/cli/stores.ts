import type { Config } from "../core/config.js";
import type { Stores } from "../core/store.js";
import { openSqliteStores } from "../stores/sqlite/index.js";

/** Builds the stores that DATABASE_URL and REDIS_URL name. */
export async function openStores(config: Config): Promise<Stores> {
  if (config.database.kind === "sqlite") return openSqliteStores({ path: config.database.path });
  throw new Error("PostgreSQL support is not built yet");
}
