/**
 * The clock behind the revocation channels' heartbeats (Redis pub/sub and
 * PostgreSQL LISTEN/NOTIFY): every `intervalMs` it sends a heartbeat and
 * says when the last one that came back is older than `timeoutMs`.
 *
 * A tick that comes late means the event loop was busy: heartbeats may be
 * waiting unread in the socket, so such a tick allows its own lateness on
 * top of the timeout. Without this a CPU-bound burst (a storm of sign-ins) would
 * look like a dead channel and empty every cache for nothing.
 */
export interface HeartbeatTimerOptions {
  intervalMs: number;
  timeoutMs: number;
  /** False while there is no channel to judge (not yet subscribed, reconnecting): the tick does nothing. */
  active: () => boolean;
  /** performance.now() of the newest heartbeat that came back. */
  lastSeen: () => number;
  /** The newest heartbeat is older than `timeoutMs`. */
  onStale: () => void;
  /** Sends the next heartbeat (after onStale, and only if still active). */
  send: (now: number) => void;
}

/**
 * @example
 * const timer = startHeartbeatTimer({ intervalMs: 250, timeoutMs: 750, active: () => subscribed,
 *   lastSeen: () => lastHeartbeat, onStale: () => setStatus(false), send: () => publish() });
 * timer.stop();
 */
export function startHeartbeatTimer(options: HeartbeatTimerOptions): { stop(): void } {
  let lastTick = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    const sinceTick = now - lastTick;
    lastTick = now;
    if (!options.active()) return;
    // The time this tick came late by is allowed on top of the timeout, so a
    // loop that is late on every tick still gets judged, only more leniently.
    const allowance = sinceTick > 2 * options.intervalMs ? sinceTick : 0;
    if (now - options.lastSeen() > options.timeoutMs + allowance) options.onStale();
    if (options.active()) options.send(now);
  }, options.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
