/**
 * Time and randomness are handed to the core so that tests can move a fake
 * clock instead of sleeping, and so the core never reaches for globals.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** Fills `bytes` with cryptographically secure random bytes. */
export type RandomReader = (bytes: Uint8Array) => void;

export interface Runtime {
  clock: Clock;
  random: RandomReader;
}

/** A clock that only moves when told to; for tests. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}

/**
 * @example
 * const clock = createFakeClock(Date.UTC(2026, 0, 1));
 * clock.advance(30 * 60_000);
 */
export function createFakeClock(start: number): FakeClock {
  let current = start;
  return {
    now: () => current,
    advance(ms) {
      current += ms;
    },
    set(ms) {
      current = ms;
    },
  };
}
