/**
 * How a revocation made by one process reaches the others: one event type
 * and one channel interface, implemented by Redis pub/sub
 * (src/stores/redis/revocations.ts), PostgreSQL LISTEN/NOTIFY
 * (src/stores/postgres/revocations.ts) and SQLite's `PRAGMA data_version`
 * (src/stores/sqlite/data-version-channel.ts). The in-process session cache
 * (src/stores/cached/session-cache.ts) takes any of them.
 */

/**
 * What invalidates copies of sessions and users held in memory. Times are
 * the announcing process's clock, ms.
 */
export type Invalidation =
  /** One session ended (sign-out, revocation; the expiry sweep is not announced). */
  | { kind: "session"; sessionId: string }
  /** Every session of the user that existed before `before` ended, except `exceptId`. */
  | { kind: "user-sessions"; userId: string; before: number; exceptId: string | null }
  /** The user's profile changed (roles) or the user was deleted: re-read it. */
  | { kind: "user"; userId: string }
  /** Everything held from before `before` is suspect (the channel may have missed announcements). */
  | { kind: "flush"; before: number };

export type ChannelStatus = "up" | "down";

export interface RevocationChannel {
  /** True while announcements are being delivered to this process. */
  readonly up: boolean;
  /** Adds a receiver of every announcement, this process's own included where the backend echoes them. */
  onEvent(handler: (event: Invalidation) => void): void;
  /**
   * Adds a receiver of status changes. Announcements made while down are
   * lost: on "up" after "down", whoever holds copies must drop them.
   */
  onStatus(handler: (status: ChannelStatus) => void): void;
  /**
   * Optional: resolves once this process has heard everything committed
   * before the call (PostgreSQL's marker NOTIFY). A revoking write awaits it
   * before it answers, so other processes heard of it before its client can
   * ask them.
   */
  sync?(): Promise<unknown>;
  /**
   * Optional and synchronous: a channel that is polled rather than pushed
   * (SQLite's data_version) delivers what it has before a read at `now`.
   */
  poll?(now: number): void;
  /** Stops delivery and releases connections and timers. */
  close(): Promise<void>;
}

/** What a pushed channel's listener is given (Redis's subscription, PostgreSQL's listener). */
export interface ChannelListenerOptions<E extends Invalidation = Invalidation> {
  onEvent: (event: E) => void;
  /**
   * "up" once listening (again), "down" when the connection is lost or a
   * heartbeat fails to come back. Announcements made while down are lost to
   * this process: on "up" after a "down" a cache must start empty.
   */
  onStatus?: (status: ChannelStatus) => void;
  /**
   * How often, in ms, a heartbeat is sent through the channel to this
   * listener. Default 250. A closed connection is noticed at once, but a
   * server that hangs (SIGSTOP, a partition that drops packets) keeps the
   * connection open: only a message that fails to come back shows it.
   */
  heartbeatMs?: number;
  /** Reports "down" when no heartbeat has come back for this long, in ms. Default 750. */
  heartbeatTimeoutMs?: number;
}

/** A channel driven by hand: {@link ManualChannel.emit} and {@link ManualChannel.setUp}. */
export interface ManualChannel extends RevocationChannel {
  emit(event: Invalidation): void;
  setUp(up: boolean): void;
}

/**
 * A channel that delivers what it is given, for a single process (the memory
 * store), for tests, and as the fan-out inside the real channels.
 *
 * @example
 * const channel = createManualChannel({ up: true });
 * const cache = createSessionCache(stores, channel, { clock });
 * channel.emit({ kind: "session", sessionId });
 */
export function createManualChannel(
  options: { up?: boolean; close?: () => Promise<void>; sync?: () => Promise<unknown> } = {},
): ManualChannel {
  const events: Array<(event: Invalidation) => void> = [];
  const statuses: Array<(status: ChannelStatus) => void> = [];
  let up = options.up ?? false;
  return {
    get up() {
      return up;
    },
    onEvent(handler) {
      events.push(handler);
    },
    onStatus(handler) {
      statuses.push(handler);
    },
    emit(event) {
      for (const handler of events) handler(event);
    },
    setUp(next) {
      if (next === up) return;
      up = next;
      for (const handler of statuses) handler(next ? "up" : "down");
    },
    ...(options.sync === undefined ? {} : { sync: options.sync }),
    close: options.close ?? (async () => {}),
  };
}
