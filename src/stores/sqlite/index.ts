export { openSqliteStores } from "./sqlite-store.js";
export type { SqliteStores } from "./sqlite-store.js";
