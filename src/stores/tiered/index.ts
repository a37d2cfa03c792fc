export { createTieredStores } from "./tiered-store.js";
export type { TieredLogger, TieredStoresOptions } from "./tiered-store.js";
