import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import { LatchError } from "./errors.js";
import type { HashTask } from "./hash-worker.js";

/**
 * argon2id at the OWASP-recommended minimum (m=19 MiB, t=2, p=1), computed on
 * worker threads of their own (src/core/hash-worker.ts) whose scheduling
 * priority is lowered by {@link HASH_NICE_INCREMENT}: when a core is shared,
 * the event loop (validating sessions for everyone else) goes first and a
 * storm of sign-ins only takes the CPU time it leaves.
 */
export const ARGON2_PARAMS = {
  // Algorithm.Argon2id; a const enum, which verbatimModuleSyntax cannot import.
  algorithm: 2,
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} as const;

/**
 * How much lower the hashing threads' priority is than the event loop's
 * (nice(2) units: 10 gives the event loop about nine tenths of a shared core
 * when both want it). Applied on Linux and macOS through @napi-rs/nice.
 */
export const HASH_NICE_INCREMENT = 10;

// Under tsx (tests, benchmarks) this module is the .ts source, and the worker must be too.
const WORKER_URL = new URL(`./hash-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url).href;

let sharedPool: Piscina | undefined;

/**
 * One pool per process, shared by every hasher in it; each hasher's limiter
 * decides how many of its hashes run at once. Idle threads end after a
 * minute and never keep the process alive.
 */
function pool(): Piscina {
  sharedPool ??= new Piscina({
    filename: WORKER_URL,
    minThreads: 0,
    maxThreads: Math.max(2, availableParallelism()),
    idleTimeout: 60_000,
    niceIncrement: HASH_NICE_INCREMENT,
  });
  return sharedPool;
}

function runTask<T extends string | boolean>(task: HashTask): Promise<T> {
  return pool().run(task) as Promise<T>;
}

const BCRYPT_PREFIX = /^\$2[aby]\$\d\d\$/;

export interface PasswordHasher {
  /** An argon2id PHC string. `password` must already be NFKC-normalised. */
  hash(password: string): Promise<string>;
  /** Constant-time check; false (never a throw) for a malformed hash. */
  verify(storedHash: string, password: string): Promise<boolean>;
  /** True when the stored hash is not argon2id with the current parameters. */
  needsRehash(storedHash: string): boolean;
}

export interface PasswordHasherOptions {
  /**
   * Hashes allowed to run at once. Each argon2id hash takes ~20 ms of one core
   * and 19 MiB; an unbounded storm of sign-ins would otherwise take every
   * core from request handling (see shared/PERFORMANCE-NOTES.md, point 4).
   * Defaults to 1.
   */
  concurrency?: number;
  /**
   * Hashes allowed to wait for a slot. Past this the hasher refuses at once
   * with `unavailable` instead of letting every sign-in queue for seconds
   * behind a burst. Defaults to 64.
   */
  maxQueue?: number;
}

/**
 * @example
 * const hasher = createPasswordHasher({ concurrency: 1 });
 * const phc = await hasher.hash("correct horse battery staple");
 * await hasher.verify(phc, "correct horse battery staple"); // true
 */
export function createPasswordHasher(options: PasswordHasherOptions = {}): PasswordHasher {
  const limit = createLimiter(options.concurrency ?? 1, { maxQueue: options.maxQueue ?? 64 });
  const current = `$argon2id$v=19$m=${ARGON2_PARAMS.memoryCost},t=${ARGON2_PARAMS.timeCost},p=${ARGON2_PARAMS.parallelism}$`;
  return {
    hash: (password) => limit(() => runTask<string>({ op: "hash", password, options: ARGON2_PARAMS })),
    async verify(storedHash, password) {
      if (BCRYPT_PREFIX.test(storedHash)) {
        // Legacy hashes from an imported user table; replaced by argon2id on
        // this sign-in, so it runs once per such user.
        return limit(() => runTask<boolean>({ op: "bcrypt-verify", storedHash: storedHash.replace(/^\$2y\$/, "$2b$"), password }));
      }
      if (!storedHash.startsWith("$argon2")) return false;
      return limit(() => runTask<boolean>({ op: "verify", storedHash, password }));
    },
    needsRehash: (storedHash) => !storedHash.startsWith(current),
  };
}

/**
 * A counting semaphore around async work. Written here because it is eight
 * lines and a dependency (p-limit) would add ESM-only churn for no gain.
 */
export function createLimiter(concurrency: number, options: { maxQueue?: number } = {}): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  const maxQueue = options.maxQueue ?? Number.POSITIVE_INFINITY;
  return async function run<T>(task: () => Promise<T>): Promise<T> {
    if (active >= concurrency) {
      if (waiting.length >= maxQueue)
        throw new LatchError("unavailable", "Too many sign-ins at once; try again in a moment.", { retryAfter: 1 });
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    active += 1;
    try {
      return await task();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
}
