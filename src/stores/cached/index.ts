export { createSessionCache } from "./session-cache.js";
export type { CachedStores, Invalidation, SessionCache, SessionCacheOptions } from "./session-cache.js";
export { createManualChannel } from "../revocation-channel.js";
export type { ChannelStatus, ManualChannel, RevocationChannel } from "../revocation-channel.js";
