export { DEFAULT_REDIS_PREFIX, createRedisRateLimitStore, createRedisSessionStore, createRedisStores } from "./redis-store.js";
export type { RedisSessionStoreOptions, RedisStoresOptions } from "./redis-store.js";
export { REDIS_COMMAND_TIMEOUT_MS, connectRedis } from "./redis-connection.js";
export type { RedisClient } from "./redis-connection.js";
export { createRedisSessionCache } from "./redis-session-cache.js";
export type { RedisSessionCache, SessionRead, WriteOptions, WriteOutcome } from "./redis-session-cache.js";
export { createRedisRevocationChannel, publishRevocation, revocationChannel, subscribeRevocations } from "./revocations.js";
export type { RevocationEvent, RevocationSubscription, SubscribeOptions } from "./revocations.js";
