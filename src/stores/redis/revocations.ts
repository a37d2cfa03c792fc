import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { Cluster } from "ioredis";
import { startHeartbeatTimer } from "../heartbeat-timer.js";
import { redisCall } from "./redis-connection.js";
import type { RedisClient } from "./redis-scripts.js";
import { createManualChannel } from "../revocation-channel.js";
import type { ChannelListenerOptions, Invalidation, RevocationChannel } from "../revocation-channel.js";

/**
 * What the stores announce on `${prefix}revocations` so that processes
 * keeping copies of sessions or users (an in-process cache, a tiered
 * store's epoch) drop them: the one {@link Invalidation} type.
 */
export type RevocationEvent = Invalidation;

/**
 * @example
 * revocationChannel("latch:"); // "latch:revocations"
 */
export function revocationChannel(prefix: string): string {
  return `${prefix}revocations`;
}

/**
 * Announces a revocation. Rejects with `LatchError("unavailable")` when
 * Redis cannot be reached; pub/sub is fire-and-forget, so a subscriber that
 * is disconnected at that moment misses it and must treat its own
 * disconnection as "everything may have changed" (see {@link subscribeRevocations}).
 *
 * @example
 * await publishRevocation(redis, "latch:", { kind: "session", sessionId });
 */
export async function publishRevocation(redis: RedisClient, prefix: string, event: RevocationEvent): Promise<void> {
  await redisCall(() => redis.publish(revocationChannel(prefix), JSON.stringify(event)));
}

function parseEvent(message: string): RevocationEvent | null {
  try {
    const event = JSON.parse(message) as Partial<Record<string, unknown>>;
    switch (event.kind) {
      case "session":
        return typeof event.sessionId === "string" ? { kind: "session", sessionId: event.sessionId } : null;
      case "user-sessions":
        return typeof event.userId === "string" && typeof event.before === "number"
          ? {
              kind: "user-sessions",
              userId: event.userId,
              before: event.before,
              exceptId: typeof event.exceptId === "string" ? event.exceptId : null,
            }
          : null;
      case "user":
        return typeof event.userId === "string" ? { kind: "user", userId: event.userId } : null;
      case "flush":
        return typeof event.before === "number" ? { kind: "flush", before: event.before } : null;
      default:
        return null;
    }
  } catch {
    return null;
  }
}

export interface RevocationSubscription {
  /** True while subscribed: events published now will be delivered. */
  readonly up: boolean;
  close(): Promise<void>;
}

export interface SubscribeOptions extends ChannelListenerOptions {
  /** The client to copy connection settings from; the subscription uses its own connection. */
  redis: RedisClient;
  prefix: string;
}

/**
 * Subscribes to revocation events on a dedicated connection that reconnects
 * and resubscribes by itself.
 *
 * @example
 * const subscription = subscribeRevocations({
 *   redis, prefix: "latch:",
 *   onEvent: (event) => cache.apply(event),
 *   onStatus: (status) => { if (status === "up") cache.clear(); },
 * });
 * await subscription.close();
 */
export function subscribeRevocations(options: SubscribeOptions): RevocationSubscription {
  const channel = revocationChannel(options.prefix);
  // Its own connection: a subscribed connection can run nothing else. It
  // queues while offline so that SUBSCRIBE waits for the connection rather
  // than failing, and resubscribes itself on "ready" so "up" is reported
  // only once the server has confirmed the subscription.
  const overrides = { enableOfflineQueue: true, autoResubscribe: false, commandTimeout: undefined, maxRetriesPerRequest: null };
  const subscriber: RedisClient =
    options.redis instanceof Cluster
      ? options.redis.duplicate([], {
          enableOfflineQueue: true,
          autoResubscribe: false,
          redisOptions: { ...options.redis.options.redisOptions, commandTimeout: undefined, maxRetriesPerRequest: null },
        })
      : (options.redis as Redis).duplicate(overrides);
  const heartbeatMs = options.heartbeatMs ?? 250;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 750;
  // A per-subscription nonce, so a process recognises its own heartbeats;
  // other processes' heartbeats are not events (parseEvent ignores them).
  const heartbeat = JSON.stringify({ kind: "heartbeat", from: randomUUID() });
  let subscribed = false;
  let lastHeartbeat = 0;
  let up = false;
  let closed = false;

  function setStatus(next: boolean): void {
    if (next === up || closed) return;
    up = next;
    options.onStatus?.(next ? "up" : "down");
  }

  function subscribe(): void {
    subscriber.subscribe(channel).then(
      () => {
        subscribed = true;
        lastHeartbeat = performance.now();
        setStatus(true);
      },
      () => setStatus(false),
    );
  }

  subscriber.on("message", (received: string, message: string) => {
    if (received !== channel) return;
    if (message === heartbeat) {
      lastHeartbeat = performance.now();
      if (subscribed) setStatus(true);
      return;
    }
    const event = parseEvent(message);
    if (event !== null) options.onEvent(event);
  });
  subscriber.on("ready", subscribe);
  subscriber.on("close", () => {
    subscribed = false;
    setStatus(false);
  });
  const timer = startHeartbeatTimer({
    intervalMs: heartbeatMs,
    timeoutMs: heartbeatTimeoutMs,
    active: () => subscribed,
    lastSeen: () => lastHeartbeat,
    onStale: () => setStatus(false),
    // Through the shared client, so a heartbeat that returns proves the whole
    // path other processes' revocations take: PUBLISH, then delivery here.
    send: () => void options.redis.publish(channel, heartbeat).catch(() => {}),
  });
  // Errors surface as "down"; without a listener ioredis would log each one.
  subscriber.on("error", () => {});

  return {
    get up() {
      return up;
    },
    async close() {
      closed = true;
      timer.stop();
      subscriber.disconnect();
    },
  };
}

/**
 * Redis pub/sub as a {@link RevocationChannel}: one subscription, heartbeat
 * and reconnection as {@link subscribeRevocations}.
 *
 * @example
 * const cache = createSessionCache(stores, createRedisRevocationChannel({ redis, prefix: "latch:" }), { clock });
 */
export function createRedisRevocationChannel(options: Omit<SubscribeOptions, "onEvent" | "onStatus">): RevocationChannel {
  const fanOut = createManualChannel({ close: () => subscription.close() });
  const subscription = subscribeRevocations({ ...options, onEvent: fanOut.emit, onStatus: (status) => fanOut.setUp(status === "up") });
  return fanOut;
}
