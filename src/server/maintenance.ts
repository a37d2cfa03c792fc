import type { FastifyBaseLogger } from "fastify";
import type { Clock } from "../core/runtime.js";
import type { Stores } from "../core/store.js";

export interface MaintenanceOptions {
  stores: Stores;
  clock: Clock;
  logger: FastifyBaseLogger;
  intervalMs: number;
  eventRetentionDays: number;
  /** Drops signing keys retired longer ago than any token they signed can live. */
  tokens?: { prune(): Promise<number> };
  /** Rows deleted per statement: small batches keep each write lock short. */
  batchSize?: number;
}

/**
 * Sweeps expired sessions and security events past retention, in batches,
 * every `intervalMs`. Expired sessions are already refused on read; sweeping
 * only reclaims space. Returns a function that stops the timer.
 */
export function startMaintenance(options: MaintenanceOptions): () => void {
  const batch = options.batchSize ?? 500;
  let running = false;

  async function drain(step: () => Promise<number>): Promise<number> {
    let total = 0;
    for (let round = 0; round < 1000; round += 1) {
      const removed = await step();
      total += removed;
      if (removed < batch) break;
    }
    return total;
  }

  async function sweep(): Promise<void> {
    if (running) return;
    running = true;
    try {
      const now = options.clock.now();
      const sessions = await drain(() => options.stores.sessions.deleteExpiredSessions(now, batch));
      const before = now - options.eventRetentionDays * 86_400_000;
      const events = await drain(() => options.stores.events.deleteEventsBefore(before, batch));
      const windows = await drain(() => options.stores.limits.deleteClosedWindows(now, batch));
      const challenges = await drain(() => options.stores.secondFactors.deleteExpiredChallenges(now, batch));
      // Sent and failed messages keep only metadata; it goes with the events' retention.
      const messages = await drain(() => options.stores.mail.deleteMessagesBefore(before, batch));
      const tokens = await drain(() => options.stores.mail.deleteExpiredTokens(now, batch));
      await options.tokens?.prune();
      if (sessions + events + windows + messages + tokens + challenges > 0) {
        options.logger.info(
          { sessions, events, windows, messages, tokens, challenges },
          "swept expired sessions, tokens and WebAuthn challenges, old security events and messages, and closed rate-limit windows",
        );
      }
    } catch (error) {
      options.logger.warn({ err: error }, "sweep failed; will retry");
    } finally {
      running = false;
    }
  }

  const timer = setInterval(() => void sweep(), options.intervalMs);
  timer.unref();
  void sweep();
  return () => clearInterval(timer);
}
