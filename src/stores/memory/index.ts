export { createMemoryStores } from "./memory-store.js";
