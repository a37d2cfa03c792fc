import { runStoreConformance } from "../store-conformance.js";
import { createMemoryStores } from "./memory-store.js";

runStoreConformance("memory", async () => ({ stores: createMemoryStores() }));
