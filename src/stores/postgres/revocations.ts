import { randomUUID } from "node:crypto";
import pg from "pg";
import { startHeartbeatTimer } from "../heartbeat-timer.js";
import { assertSchemaName } from "./schema-name.js";
import { createManualChannel } from "../revocation-channel.js";
import type { ChannelListenerOptions, Invalidation, RevocationChannel } from "../revocation-channel.js";

/**
 * What the database announces when a session ends or a user changes: the
 * {@link Invalidation}s a trigger can know of (a TRUNCATE is a flush).
 */
export type PostgresRevocationEvent = Extract<Invalidation, { kind: "session" | "user" | "flush" }>;

/**
 * The SQL expression naming the NOTIFY channel of the schema `schemaSql`:
 * the database itself sends on it, from triggers (migration 2), so every
 * writer announces, whether it is a Latch server, the admin CLI, a resource
 * server or an operator with psql, and an announcement is delivered only
 * if, and once, its change commits. The triggers use TG_TABLE_SCHEMA and the
 * listener the schema of the `sessions` table its search_path finds, so both
 * name the same channel. md5 is not for secrecy: it keeps the name within
 * PostgreSQL's 63-byte identifier limit whatever the schema is called.
 */
export function revocationChannelSql(schemaSql: string): string {
  return `'latch_revocations_' || md5(${schemaSql})`;
}

function parseEvent(payload: string | undefined): PostgresRevocationEvent | null {
  if (payload === undefined) return null;
  try {
    const event = JSON.parse(payload) as Partial<Record<string, unknown>>;
    if (event.kind === "session" && typeof event.sessionId === "string") return { kind: "session", sessionId: event.sessionId };
    if (event.kind === "user" && typeof event.userId === "string") return { kind: "user", userId: event.userId };
    if (event.kind === "flush") return { kind: "flush", before: Date.now() + 1 };
    return null;
  } catch {
    return null;
  }
}

export interface ListenOptions extends ChannelListenerOptions<PostgresRevocationEvent> {
  /** Where to connect the listening session (its own connection, never the pool's). */
  url: string;
  /** The schema the stores use; default: the connection's current schema. */
  schema?: string | undefined;
}

export interface RevocationListener {
  readonly up: boolean;
  /**
   * Resolves true once this listener has received everything committed
   * before the call (a marker NOTIFY comes back: PostgreSQL delivers
   * notifications in commit order), or false after `timeoutMs` (default
   * 250; the time to wait for the listener to come up counts). Every other
   * listener was signalled at the same commit, so a writer that waits for
   * this before answering has, in practice, let the other processes hear of
   * its change before its client can ask them.
   */
  sync(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2_000;
const CONNECT_TIMEOUT_MS = 2_000;
/** The triggers of migration 2; a heartbeat only returns while all of them are in place and enabled. */
const TRIGGERS = [
  "sessions_announce_end",
  "sessions_announce_change",
  "users_announce_change",
  "sessions_announce_truncate",
  "users_announce_truncate",
];
// True while every one of them is present and enabled: 'O' fires in normal
// sessions, 'A' always; 'D' (disabled) and 'R' (replica only) announce nothing.
const TRIGGERS_ENABLED_SQL = `(SELECT count(*) FROM pg_trigger
  WHERE tgrelid IN ('sessions'::regclass, 'users'::regclass) AND tgname = ANY($1::text[]) AND tgenabled IN ('O', 'A')) = ${TRIGGERS.length}`;

/**
 * LISTENs for the database's revocation notifications on a dedicated
 * connection that reconnects by itself, and proves the path with a
 * heartbeat: a NOTIFY sent every `heartbeatMs` must come back within
 * `heartbeatTimeoutMs` of being sent, or the listener reports "down" and
 * starts over on a new connection. An open connection alone proves nothing:
 * a database that hangs (SIGSTOP, a partition that drops packets) keeps it
 * open and delivers nothing.
 *
 * Mirrors subscribeRevocations (src/stores/redis/revocations.ts); pg's
 * LISTEN/NOTIFY is used rather than polling because it is pushed, ordered
 * with commits, and costs nothing on the read path.
 *
 * @example
 * const listener = listenForRevocations({ url, onEvent: cache.apply, onStatus: (s) => cache.setChannelUp(s === "up") });
 * await listener.close();
 */
export function listenForRevocations(options: ListenOptions): RevocationListener {
  assertSchemaName(options.schema);
  const heartbeatMs = options.heartbeatMs ?? 250;
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? 750;
  // Heartbeats carry this listener's nonce and the time they were sent, so
  // a process recognises its own, and one that arrives late (a backlog)
  // does not count as fresh. Other processes' heartbeats are not events.
  const nonce = randomUUID();
  const heartbeatPrefix = `heartbeat:${nonce}:`;
  const syncPrefix = `sync:${nonce}:`;
  const syncs = new Map<number, (heard: boolean) => void>();
  let syncSeq = 0;
  let channel: string | null = null;
  let client: pg.Client | null = null;
  /** When the newest heartbeat that came back was sent (performance.now()). */
  let lastHeartbeat = 0;
  let up = false;
  let closed = false;
  let retryMs = RECONNECT_MIN_MS;
  let retryTimer: NodeJS.Timeout | undefined;

  const upWaiters = new Set<() => void>();

  function setStatus(next: boolean): void {
    if (next === up || closed) return;
    up = next;
    options.onStatus?.(next ? "up" : "down");
    if (next) for (const wake of upWaiters) wake();
  }

  // One query at a time on the listening connection (pg deprecates
  // overlapping ones); a query that hangs holds the line up, so heartbeats
  // stop returning and the connection is replaced.
  let line: Promise<unknown> = Promise.resolve();
  function onLine(which: pg.Client, text: string, values: unknown[]): Promise<unknown> {
    const run = (): Promise<unknown> => which.query(text, values);
    const next = line.then(run, run);
    line = next.catch(() => {});
    return next;
  }

  /** True once listening, or false after `timeoutMs`. */
  function untilUp(timeoutMs: number): Promise<boolean> {
    if (up) return Promise.resolve(true);
    if (closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const wake = (): void => {
        clearTimeout(deadline);
        upWaiters.delete(wake);
        resolve(up);
      };
      const deadline = setTimeout(wake, timeoutMs);
      deadline.unref();
      upWaiters.add(wake);
    });
  }

  /** Tears the connection down and connects again after a back-off. */
  function lost(which: pg.Client): void {
    if (client !== which) return;
    client = null;
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
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      // Set-up queries that hang must fail too, or the listener would wait
      // on them (down, but never retrying) for as long as TCP allows.
      query_timeout: CONNECT_TIMEOUT_MS,
      // A listening connection never writes unless a heartbeat is due: let
      // the kernel notice a peer that vanished too.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      ...(options.schema === undefined ? {} : { options: `-c search_path=${options.schema}` }),
    });
    client = next;
    line = Promise.resolve();
    // Errors surface as "down"; without a listener pg would throw them.
    next.on("error", () => lost(next));
    next.on("end", () => lost(next));
    next.on("notification", (message) => {
      if (message.channel !== channel || message.payload === undefined) return;
      if (message.payload.startsWith(heartbeatPrefix)) {
        const sentAt = Number(message.payload.slice(heartbeatPrefix.length));
        if (sentAt > lastHeartbeat) lastHeartbeat = sentAt;
        return;
      }
      if (message.payload.startsWith(syncPrefix)) {
        const seq = Number(message.payload.slice(syncPrefix.length));
        // Notifications arrive in order: every marker up to this one is through.
        for (const [pending, resolve] of syncs) if (pending <= seq) resolve(true);
        return;
      }
      const event = parseEvent(message.payload);
      if (event !== null) options.onEvent(event);
    });
    try {
      await next.connect();
      // The schema of the table the stores' queries reach, as the triggers see it.
      const found = await next.query<{ channel: string }>(
        `SELECT ${revocationChannelSql("n.nspname")} AS channel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 'sessions'::regclass`,
      );
      const named = found.rows[0]?.channel;
      if (named === undefined) throw new Error("no sessions table");
      channel = named;
      const triggers = await next.query<{ enabled: boolean }>(`SELECT ${TRIGGERS_ENABLED_SQL} AS enabled`, [TRIGGERS]);
      // Without its triggers the database announces nothing: stay down (the cache fails closed).
      if (triggers.rows[0]?.enabled !== true) throw new Error("revocation triggers missing or disabled");
      await next.query(`LISTEN ${pg.escapeIdentifier(named)}`);
      if (client !== next || closed) return;
      retryMs = RECONNECT_MIN_MS;
      lastHeartbeat = performance.now();
      setStatus(true);
    } catch {
      lost(next);
    }
  }

  const heartbeats = startHeartbeatTimer({
    intervalMs: heartbeatMs,
    timeoutMs: heartbeatTimeoutMs,
    active: () => up,
    lastSeen: () => lastHeartbeat,
    // Silent for too long: a hung server or a dead path. Start over on a new
    // connection rather than wait on this one.
    onStale: () => {
      if (client !== null) lost(client);
    },
    // On the listening connection itself: a listener hears its own NOTIFYs,
    // so a heartbeat that returns proves the server commits and delivers to
    // this very connection; and it is only sent while the triggers that
    // announce revocations are in place and enabled.
    send: (now) => {
      if (client !== null)
        onLine(client, `SELECT pg_notify($2, $3) WHERE ${TRIGGERS_ENABLED_SQL}`, [TRIGGERS, channel, `${heartbeatPrefix}${now}`]).catch(
          () => {},
        );
    },
  });
  void connect();

  return {
    get up() {
      return up;
    },
    async sync(timeoutMs = 250) {
      const started = performance.now();
      // A process that revokes right after opening its stores (the CLI) waits for its listener first.
      if (!(await untilUp(timeoutMs))) return false;
      const current = client;
      if (current === null || channel === null || closed) return false;
      syncSeq += 1;
      const seq = syncSeq;
      const left = Math.max(1, timeoutMs - (performance.now() - started));
      return new Promise<boolean>((resolve) => {
        const done = (heard: boolean): void => {
          clearTimeout(deadline);
          syncs.delete(seq);
          resolve(heard);
        };
        const deadline = setTimeout(() => done(false), left);
        deadline.unref();
        syncs.set(seq, done);
        onLine(current, "SELECT pg_notify($1, $2)", [channel, `${syncPrefix}${seq}`]).catch(() => done(false));
      });
    },
    async close() {
      closed = true;
      for (const resolve of syncs.values()) resolve(false);
      for (const wake of upWaiters) wake();
      heartbeats.stop();
      clearTimeout(retryTimer);
      const current = client;
      client = null;
      up = false;
      await current?.end().catch(() => {});
    },
  };
}

/**
 * PostgreSQL LISTEN/NOTIFY as a {@link RevocationChannel}, with `sync`: a
 * revoking write answers once this process's own listener has heard its
 * NOTIFY (see {@link RevocationListener.sync}).
 *
 * @example
 * const cache = createSessionCache(stores, createPostgresRevocationChannel({ url }), { clock });
 */
export function createPostgresRevocationChannel(options: Omit<ListenOptions, "onEvent" | "onStatus">): RevocationChannel {
  const fanOut = createManualChannel({ close: () => listener.close(), sync: () => listener.sync() });
  const listener = listenForRevocations({ ...options, onEvent: fanOut.emit, onStatus: (status) => fanOut.setUp(status === "up") });
  return fanOut;
}
