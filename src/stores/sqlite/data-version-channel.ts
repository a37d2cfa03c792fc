import type { Clock } from "../../core/runtime.js";
import { createManualChannel } from "../revocation-channel.js";
import type { RevocationChannel } from "../revocation-channel.js";
import type { InvalidationBatch } from "./sqlite-store.js";

/** How stale this process's view of other processes' SQLite writes may be, in ms. */
export const DATA_VERSION_CHECK_MS = 10;

/** Most log rows applied one by one in a poll; past it the cache empties instead. */
export const MAX_LOGGED_INVALIDATIONS = 10_000;

export interface InvalidationSource {
  dataVersion(): number;
  invalidationsSince(seq: number, limit: number): InvalidationBatch;
}

/**
 * SQLite's `PRAGMA data_version` and the invalidation log as a
 * {@link RevocationChannel}: polled, not pushed. Before a read, at most every
 * {@link DATA_VERSION_CHECK_MS}, the file's data version is compared with the
 * last one seen; when another connection (the admin CLI, a resource server,
 * another worker) has committed, the rows its triggers logged since the last
 * poll (migration 6: ended sessions, changed users) are applied one by one,
 * so a renewal batch of another process drops nothing and a sign-out drops
 * one entry. The cache empties instead when the log cannot tell: rows this
 * process had not read were pruned, or more than
 * {@link MAX_LOGGED_INVALIDATIONS} arrived at once. This process's own writes
 * go through the cache and invalidate it directly (their rows, read back
 * later, change nothing). Always up: there is no connection to lose.
 *
 * Why at most every 10 ms: the pragma is cheap but not free (in WAL mode it
 * opens a read transaction, two fcntl locks), more than the rest of a cached
 * validation.
 *
 * @example
 * const cache = createSessionCache(sqlite, createDataVersionChannel(sqlite, clock), { clock });
 */
export function createDataVersionChannel(sqlite: InvalidationSource, clock: Clock): RevocationChannel {
  const channel = createManualChannel({ up: true });
  // A poll may run before anyone listens: nothing is lost, since the first
  // receiver (the cache) starts empty. The data version is read before the
  // log, so a commit between the two is seen by the next poll, never missed.
  let version = sqlite.dataVersion();
  let seen = sqlite.invalidationsSince(0, 0).latest;
  let checkedAt = clock.now();
  return {
    up: true,
    onEvent: channel.onEvent,
    onStatus: channel.onStatus,
    poll(now) {
      // A clock that stepped back checks too.
      if (now - checkedAt < DATA_VERSION_CHECK_MS && now >= checkedAt) return;
      checkedAt = now;
      const current = sqlite.dataVersion();
      if (current === version) return;
      version = current;
      const batch = sqlite.invalidationsSince(seen, MAX_LOGGED_INVALIDATIONS + 1);
      if (batch.pruned > seen || batch.rows.length > MAX_LOGGED_INVALIDATIONS) {
        seen = batch.latest;
        channel.emit({ kind: "flush", before: now });
        return;
      }
      for (const row of batch.rows) {
        channel.emit(row.kind === "session" ? { kind: "session", sessionId: row.target } : { kind: "user", userId: row.target });
        seen = row.seq;
      }
    },
    close: channel.close,
  };
}
