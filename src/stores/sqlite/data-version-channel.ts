import type { Clock } from "../../core/runtime.js";
import { createManualChannel } from "../revocation-channel.js";
import type { RevocationChannel } from "../revocation-channel.js";

/** How stale this process's view of other processes' SQLite writes may be, in ms. */
export const DATA_VERSION_CHECK_MS = 10;

/**
 * SQLite's `PRAGMA data_version` as a {@link RevocationChannel}: polled, not
 * pushed. Before a read, at most every {@link DATA_VERSION_CHECK_MS}, the
 * file's data version is compared with the last one seen; any commit by
 * another connection (the admin CLI, a resource server) flushes. This
 * process's own writes go through the cache and invalidate it directly.
 * Always up: there is no connection to lose.
 *
 * Why at most every 10 ms: the pragma is cheap but not free (in WAL mode it
 * opens a read transaction, two fcntl locks), more than the rest of a cached
 * validation.
 *
 * @example
 * const cache = createSessionCache(sqlite, createDataVersionChannel(sqlite, clock), { clock });
 */
export function createDataVersionChannel(sqlite: { dataVersion(): number }, clock: Clock): RevocationChannel {
  const channel = createManualChannel({ up: true });
  // A poll may run before anyone listens: nothing is lost, since the first
  // receiver (the cache) starts empty.
  let version = sqlite.dataVersion();
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
      if (current !== version) {
        version = current;
        channel.emit({ kind: "flush", before: now });
      }
    },
    close: channel.close,
  };
}
