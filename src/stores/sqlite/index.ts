export { openSqliteStores } from "./sqlite-store.js";
export type { SqliteStores } from "./sqlite-store.js";
export { createDataVersionChannel, DATA_VERSION_CHECK_MS } from "./data-version-channel.js";
