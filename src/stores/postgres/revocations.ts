import { randomUUID } from "node:crypto";
import pg from "pg";

/**
 * What the database announces when a session ends or a user changes: the
 * same shapes as the Redis revocation events, so the in-process session
 * cache applies either without knowing where they came from.
 */
export type PostgresRevocationEvent = { kind: "session"; sessionId: string } | { kind: "user"; userId: string };

/**
 * The NOTIFY channel for a schema. The database itself sends on it, from
 * triggers (migration 2): every writer announces, whether it is a Latch
 * server, the admin CLI, a resource server or an operator with psql, and
 * the announcement is delivered only if, and once, the change commits.
 * Channel names are identifiers, at most 63 bytes; the triggers cut theirs
 * the same way (schema names are ASCII).
 *
 * @example
 * revocationChannelFor("public"); // "latch_revocations:public"
 */
export function revocationChannelFor(schema: string): string {
  return `latch_revocations:${schema}`.slice(0, 63);
}

function parseEvent(payload: string | undefined): PostgresRevocationEvent | null {
  if (payload === undefined) return null;
  try {
    const event = JSON.parse(payload) as Partial<Record<string, unknown>>;
    if (event.kind === "session" && typeof event.sessionId === "string") return { kind: "session", sessionId: event.sessionId };
    if (event.kind === "user" && typeof event.userId === "string") return { kind: "user", userId: event.userId };
    return null;
  } catch {
    return null;
  }
}

export interface ListenOptions {
  /** Where to connect the listening session (its own connection, never the pool's). */
  url: string;
  /** The stores' pool: heartbeats are sent through it, the way revocations are written. */
  pool: pg.Pool;
  /** The schema the stores use; default: the connection's current schema. */
  schema?: string | undefined;
  onEvent: (event: PostgresRevocationEvent) => void;
  /**
   * "up" once listening (again), "down" when the connection is lost or a
   * heartbeat fails to come back. Notifications sent while down are lost
   * to this process: on "up" after a "down" a cache must start empty.
   */
  onStatus?: (status: "up" | "down") => void;
  /** How often, in ms, a heartbeat is sent to this listener. Default 250. */
  heartbeatMs?: number;
  /** Reports "down" when no heartbeat has come back for this long, in ms. Default 750. */
  heartbeatTimeoutMs?: number;
}

export interface RevocationListener {
  readonly up: boolean;
  close(): Promise<void>;
}

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2_000;

/**
 * LISTENs for the database's revocation notifications on a dedicated
 * connection that reconnects by itself, and proves the path end to end with
 * a heartbeat: a NOTIFY sent through the pool every `heartbeatMs` must come
 * back within `heartbeatTimeoutMs`, or the listener reports "down". An open
 * connection alone proves nothing: a database that hangs (SIGSTOP, a
 * partition that drops packets) keeps it open and delivers nothing.
 *
 * Mirrors subscribeRevocations (src/stores/redis/revocations.ts); pg's
 * LISTEN/NOTIFY is used rather than polling because it is pushed, ordered
 * with commits, and costs nothing on the read path.
 *
 * @example
 * const listener = listenForRevocations({ url, pool: stores.pool, onEvent: cache.apply, onStatus: (s) => cache.setChannelUp(s === "up") });
 * await listener.close();
 */
export function listenForRevocations(options: ListenOptions): RevocationListener {
  const heartbeatMs = options.heartbeatMs ?? 250;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 750;
  // A per-listener nonce, so a process recognises its own heartbeats;
  // other processes' heartbeats are not events (parseEvent ignores them).
  const heartbeat = JSON.stringify({ kind: "heartbeat", from: randomUUID() });
  let channel: string | null = null;
  let client: pg.Client | null = null;
  let listening = false;
  let lastHeartbeat = 0;
  let heartbeatInFlight = false;
  let up = false;
  let closed = false;
  let retryMs = RECONNECT_MIN_MS;
  let retryTimer: NodeJS.Timeout | undefined;

  function setStatus(next: boolean): void {
    if (next === up || closed) return;
    up = next;
    options.onStatus?.(next ? "up" : "down");
  }

  function lost(which: pg.Client): void {
    if (client !== which) return;
    client = null;
    listening = false;
    setStatus(false);
    which.removeAllListeners("notification");
    which.end().catch(() => {});
    if (closed) return;
    retryTimer = setTimeout(connect, retryMs);
    retryTimer.unref();
    retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
  }

  async function connect(): Promise<void> {
    if (closed) return;
    const next = new pg.Client({
      connectionString: options.url,
      application_name: "latch-revocations",
      ...(options.schema === undefined ? {} : { options: `-c search_path=${options.schema}` }),
    });
    client = next;
    // Errors surface as "down"; without a listener pg would throw them.
    next.on("error", () => lost(next));
    next.on("end", () => lost(next));
    next.on("notification", (message) => {
      if (message.channel !== channel) return;
      if (message.payload === heartbeat) {
        lastHeartbeat = performance.now();
        if (listening) setStatus(true);
        return;
      }
      const event = parseEvent(message.payload);
      if (event !== null) options.onEvent(event);
    });
    try {
      await next.connect();
      if (channel === null) {
        const found = await next.query<{ schema: string }>("SELECT current_schema() AS schema");
        channel = revocationChannelFor(found.rows[0]?.schema ?? "public");
      }
      await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      if (client !== next || closed) return;
      listening = true;
      retryMs = RECONNECT_MIN_MS;
      lastHeartbeat = performance.now();
      setStatus(true);
    } catch {
      lost(next);
    }
  }

  let lastTick = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    // A tick that comes late means the event loop was busy: heartbeats may be
    // waiting unread in the socket, so judge on a later tick, not this one.
    const late = now - lastTick > 2 * heartbeatMs;
    lastTick = now;
    if (!listening || channel === null) return;
    if (!late && now - lastHeartbeat > heartbeatTimeoutMs) setStatus(false);
    // One at a time: against a hung database, heartbeats must not pile up in the pool.
    if (heartbeatInFlight) return;
    heartbeatInFlight = true;
    options.pool
      .query("SELECT pg_notify($1, $2)", [channel, heartbeat])
      .catch(() => {})
      .finally(() => (heartbeatInFlight = false));
  }, heartbeatMs);
  timer.unref();
  void connect();

  return {
    get up() {
      return up;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      clearTimeout(retryTimer);
      const current = client;
      client = null;
      listening = false;
      await current?.end().catch(() => {});
    },
  };
}
