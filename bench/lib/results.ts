import type { Machine } from "./machine.js";

/** The shape of report.json. Every duration in it is in the unit its name says. */

export interface RunOptions {
  quick: boolean;
  soak: boolean;
  durationS: number;
  warmupS: number;
  rounds: number;
  connections: number;
  loginConnections: number;
  stormConnections: number;
  revocations: number;
  memorySessions: number;
  /** The many-sessions scenario: session counts, access patterns, warm-up seconds. */
  manyCounts: number[];
  manyAccess: Array<"uniform" | "zipf">;
  manyWarmupS: number;
  /** Longest wait for CPU 0 to be quiet before each measurement, seconds. */
  settleS: number;
  scenarios: string[];
  variants: string[];
}

/** One timed wrk run of one variant. */
export interface Sample {
  round: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  /** Server process CPU (user + system, all threads) per request; null when /proc was unreadable. */
  cpuUsPerRequest: number | null;
  /**
   * Share of the server CPU's time during the run used by anything but the
   * server (other processes, interrupts) plus time stolen by the hypervisor:
   * noise. Null when /proc was unreadable.
   */
  serverCpuNoise: number | null;
}

export interface VariantResult {
  name: string;
  label: string;
  status: "ok" | "unavailable" | "failed";
  /** Why it is unavailable or failed: the server's own error line where there is one. */
  error: string | null;
  notes: string[];
  samples: Sample[];
  /** Medians over the samples; NaN when there are none. */
  rps: number;
  rpsMin: number;
  rpsMax: number;
  p99Ms: number;
  cpuUsPerRequest: number | null;
  /** Largest `Sample.serverCpuNoise` over the rounds. */
  serverCpuNoise: number | null;
  /** Median req/s over the ceiling's (GET) or raw argon2id hashes/s (POST /login), same run. */
  vsCeiling: number | null;
  vsSeed: number | null;
}

export interface StormSample {
  round: number;
  alone: Sample;
  storm: Sample;
  /** POST /login per second during the storm. */
  loginRps: number;
}

export interface StormResult {
  name: string;
  label: string;
  status: "ok" | "unavailable" | "failed";
  error: string | null;
  notes: string[];
  samples: StormSample[];
  aloneRps: number;
  aloneP99Ms: number;
  stormRps: number;
  stormP99Ms: number;
  loginRps: number;
  /** stormP99Ms / aloneP99Ms (medians). */
  p99Ratio: number;
}

export interface Argon2Result {
  samples: Array<{ round: number; perSecond: number; cpuMsPerHash: number }>;
  perSecond: number;
  min: number;
  max: number;
  concurrency: number;
}

export interface RevocationResult {
  status: "ok" | "unavailable" | "failed";
  error: string | null;
  notes: string[];
  variant: string;
  requested: number;
  measured: number;
  /** Sessions not valid on B right after sign-in on A (sharing broken). */
  notShared: number;
  /** Revocations B still honoured after the poll limit. */
  timedOut: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanPolls: number;
}

export interface MemoryResult {
  status: "ok" | "failed";
  error: string | null;
  sessions: number;
  redisVersion: string;
  rows: Array<{
    name: string;
    label: string;
    status: "ok" | "unavailable" | "failed";
    error: string | null;
    bytesPerSession: number | null;
    valueBytes: number | null;
  }>;
}

export interface RssResult {
  status: "ok" | "unavailable" | "failed";
  error: string | null;
  variant: string;
  peakRps: number;
  targetRps: number;
  achievedRps: number;
  minutes: number;
  rssAfterMinute1: number;
  rssAtEnd: number;
  growth: number;
  samples: Array<{ atS: number; rssBytes: number }>;
}

export interface Report {
  startedAt: string;
  finishedAt: string;
  options: RunOptions;
  machine: Machine;
  build: { action: "fresh" | "built" | "build-failed"; detail: string | null };
  get: VariantResult[] | null;
  login: { argon2: Argon2Result | null; variants: VariantResult[] } | null;
  storm: StormResult[] | null;
  revocation: RevocationResult | null;
  memory: MemoryResult | null;
  rss: RssResult | null;
  many: ManyResult[] | null;
}

/** One timed run of the many-sessions scenario, with what the server's /metrics said about it. */
export interface ManySample extends Sample {
  /** Share of validations answered from the in-process cache (Latch only). */
  hitRate: number | null;
  /** Cache misses per second: each one a store read. */
  storeReadsPerS: number | null;
  /** Session writes (renewals) reaching the store per second. */
  storeWritesPerS: number | null;
  /** Event-loop delay p99 over the timed run (prom-client's monitor, reset by the scrape before it). */
  loopP99Ms: number | null;
  rssMiB: number | null;
}

export interface ManyResult {
  name: string;
  count: number;
  access: "uniform" | "zipf";
  status: "ok" | "unavailable" | "failed";
  error: string | null;
  samples: ManySample[];
  /** Medians over the samples. */
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerRequest: number | null;
  hitRate: number | null;
  storeReadsPerS: number | null;
  storeWritesPerS: number | null;
  loopP99Ms: number | null;
  rssMiB: number | null;
  /** Median over the rounds of req/s ÷ the ceiling's req/s in the same round. */
  vsCeiling: number | null;
  /** The same against the ceiling that sends Latch's security headers (ceiling-headers). */
  vsCeilingHeaders: number | null;
}
