import { createHmac, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import pg from "pg";
import { rssBytes, run, stop } from "../lib/processes.js";
import type { ManyResult, ManySample, RunOptions } from "../lib/results.js";
import { dropPostgres, preparePostgres } from "../lib/services.js";
import { median, ratio } from "../lib/stats.js";
import { BETTER_AUTH_LOGIN } from "../lib/better-auth-sessions.mjs";
import { BETTER_AUTH_MANY, ROOT, VARIANTS, startBaseline, startLatch } from "../lib/variants.js";
import type { BenchEnv, Running } from "../lib/variants.js";
import { wrk } from "../lib/wrk.js";
import { SECURITY_HEADERS } from "../../src/server/security-headers.js";
import { settle, timed } from "./http.js";

/**
 * The many-sessions scenario: GET /protected where every request carries the
 * cookie of one of N live sessions (uniform or Zipf s = 1), after a warm-up
 * long enough for the steady state (cache fills, re-reads, renewals). Every
 * server holds the same number of sessions: Latch's stores are filled
 * through Latch's own library (bench/lib/seed-sessions.ts), the ceiling's Map
 * from the same cookie file, the seed stack's Redis in connect-redis's own
 * format, better-auth's SQLite in its own tables.
 */

const MANY_LUA = fileURLToPath(new URL("../wrk/many.lua", import.meta.url));
const SEEDER = join(ROOT, "bench", "lib", "seed-sessions.ts");
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");

/** Latch's defaults: SESSION_IDLE_TIMEOUT 1800 s, so a renewal every 60 s. */
const IDLE_TIMEOUT_MS = 1_800_000;
const RENEW_INTERVAL_MS = 60_000;

export interface ManyEnv extends BenchEnv {
  postgresAdminUrl: string;
  postgresDb: string;
}

/** The variants this scenario knows, by name; each says where its sessions come from. */
const MANY_VARIANTS = [
  "ceiling",
  "ceiling-headers",
  "latch-sqlite",
  "latch-postgres",
  "latch-tiered",
  "seed",
  "better-auth",
  "compare-sqlite",
  "compare-postgres",
];

interface Data {
  /** Cookie values (one per line) per data set. */
  files: Map<string, string>;
  /** The PostgreSQL URL for this count, or null. */
  postgresUrl: string | null;
  sqlitePath: string;
  cleanups: Array<() => Promise<void>>;
}

async function seedLatch(databaseUrl: string, redisUrl: string | null, count: number, outFile: string): Promise<void> {
  const started = performance.now();
  const result = await run(
    "seed-sessions",
    process.execPath,
    ["--import", "tsx", SEEDER, databaseUrl, redisUrl ?? "-", String(count), outFile, String(RENEW_INTERVAL_MS), String(IDLE_TIMEOUT_MS)],
    {
      cwd: ROOT,
      env: process.env,
      timeoutMs: 3_600_000,
    },
  );
  if (result.code !== 0)
    throw new Error(`seeding ${count} sessions into ${databaseUrl.split(":")[0]} failed: ${result.output.slice(-400)}`);
  log(
    `  seeded ${fmt(count)} Latch sessions (${databaseUrl.split(":")[0]}${redisUrl === null ? "" : " + Redis"}) in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
}

/**
 * express-session + connect-redis sessions, written to Redis as that stack
 * writes them: `sess:<id>` holding the JSON session with the cookie's TTL, and
 * the cookie `s:<id>.<HMAC-SHA256 of id, base64 without padding>`, URL-encoded.
 */
async function seedConnectRedis(redisUrl: string, secret: string, count: number, outFile: string): Promise<() => Promise<void>> {
  const redis = new Redis(redisUrl);
  const ids: string[] = [];
  const lines: string[] = [];
  const expires = new Date(Date.now() + IDLE_TIMEOUT_MS).toISOString();
  const value = JSON.stringify({
    cookie: { originalMaxAge: IDLE_TIMEOUT_MS, expires, secure: false, httpOnly: true, path: "/" },
    userId: 1,
  });
  for (let i = 0; i < count; i += 5_000) {
    const pipeline = redis.pipeline();
    for (let j = i; j < Math.min(count, i + 5_000); j += 1) {
      const id = randomBytes(24).toString("base64url");
      ids.push(id);
      pipeline.set(`sess:${id}`, value, "EX", IDLE_TIMEOUT_MS / 1000);
      const signature = createHmac("sha256", secret).update(id).digest("base64").replace(/=+$/, "");
      lines.push(encodeURIComponent(`s:${id}.${signature}`));
    }
    await pipeline.exec();
  }
  writeFileSync(outFile, `${lines.join("\n")}\n`);
  return async () => {
    for (let i = 0; i < ids.length; i += 5_000) await redis.del(...ids.slice(i, i + 5_000).map((id) => `sess:${id}`));
    redis.disconnect();
  };
}

async function prepare(count: number, env: ManyEnv, names: string[]): Promise<Data> {
  const data: Data = { files: new Map(), postgresUrl: null, sqlitePath: join(env.tmpDir, `many-${count}.db`), cleanups: [] };
  const wants = (...n: string[]): boolean => n.some((x) => names.includes(x));
  if (wants("latch-sqlite", "compare-sqlite", "ceiling", "ceiling-headers")) {
    const file = join(env.tmpDir, `many-${count}-sqlite.txt`);
    await seedLatch(`sqlite:${data.sqlitePath}`, null, count, file);
    data.files.set("sqlite", file);
  }
  if (wants("latch-postgres", "latch-tiered", "compare-postgres") && env.postgresUrl !== null) {
    const db = `${env.postgresDb}_m${count}`;
    const prepared = await preparePostgres(env.postgresAdminUrl, db);
    if (prepared !== null) {
      data.postgresUrl = prepared.url;
      data.cleanups.push(() => dropPostgres(env.postgresAdminUrl, db));
      const file = join(env.tmpDir, `many-${count}-postgres.txt`);
      // Through the tiered store when Redis is there: the rows in PostgreSQL and the copies in Redis.
      await seedLatch(prepared.url, wants("latch-tiered") && env.redisUp ? env.redisUrl : null, count, file);
      data.files.set("postgres", file);
    }
  }
  if (wants("seed") && env.redisUp) {
    const file = join(env.tmpDir, `many-${count}-seed.txt`);
    data.cleanups.push(await seedConnectRedis(env.redisUrl, "keyboard cat", count, file));
    data.files.set("seed", file);
  }
  if (wants("better-auth")) {
    const descriptor = await betterAuth();
    if (descriptor !== null) {
      const file = join(env.tmpDir, `many-${count}-better-auth.txt`);
      const dbPath = join(env.tmpDir, `many-${count}-better-auth.db`);
      const started = performance.now();
      await descriptor.seed({ dbPath, count, outFile: file });
      log(`  seeded ${fmt(count)} better-auth sessions in ${((performance.now() - started) / 1000).toFixed(0)} s`);
      data.files.set("better-auth", file);
      data.files.set("better-auth-db", dbPath);
    }
  }
  return data;
}

/** better-auth's descriptor (a devDependency baseline). */
async function betterAuth(): Promise<typeof BETTER_AUTH_MANY | null> {
  return BETTER_AUTH_MANY;
}

/**
 * Spreads every session's last-seen time over the renewal interval before
 * ending at "now", as in a server that has served these users for a while:
 * otherwise every session a previous measurement touched would fall due
 * at once (a burst), or none would within the timed run. Idle expiries
 * follow. Redis copies (tiered) are dropped so they refill from the
 * database with the new times.
 */
async function respread(name: string, env: ManyEnv, data: Data): Promise<void> {
  const now = Date.now();
  if (name === "latch-sqlite" || name === "compare-sqlite") {
    const db = new Database(data.sqlitePath);
    try {
      db.prepare("UPDATE sessions SET last_seen_at = @now - abs(random() % @interval)").run({ now, interval: RENEW_INTERVAL_MS });
      db.prepare("UPDATE sessions SET idle_expires_at = min(last_seen_at + @idle, absolute_expires_at)").run({ idle: IDLE_TIMEOUT_MS });
      // Expiries brought forward were logged for other processes' caches (migration 6); no server runs yet to read them.
      if (db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'invalidations'").get() !== undefined) db.exec("DELETE FROM invalidations");
      db.pragma("wal_checkpoint(TRUNCATE)");
    } finally {
      db.close();
    }
    return;
  }
  if (data.postgresUrl === null) return;
  const client = new pg.Client({ connectionString: data.postgresUrl });
  await client.connect();
  try {
    // Before the server starts: the triggers' NOTIFYs for expiries brought forward reach no listener.
    await client.query(
      `UPDATE sessions SET last_seen_at = s.seen, idle_expires_at = LEAST(s.seen + $3, absolute_expires_at)
         FROM (SELECT id, $1::bigint - floor(random() * $2)::bigint AS seen FROM sessions) s WHERE sessions.id = s.id`,
      [now, RENEW_INTERVAL_MS, IDLE_TIMEOUT_MS],
    );
  } finally {
    await client.end();
  }
  if (name === "latch-tiered" && env.redisUp) {
    const redis = new Redis(env.redisUrl);
    try {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", "latch:{*", "COUNT", 1000);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== "0");
    } finally {
      redis.disconnect();
    }
  }
}

interface Started {
  running: Running;
  cookieFile: string;
  cookieName: string;
  /** Reads the server's /metrics when it has one (Latch). */
  metrics: boolean;
}

async function startMany(name: string, env: ManyEnv, data: Data): Promise<Started | string> {
  const compareDist = process.env.BENCH_COMPARE_DIST;
  // BENCH_MANY_CACHE_SIZE: the Latch servers' SESSION_CACHE_SIZE (default: Latch's own, 250,000).
  const cacheSize = process.env.BENCH_MANY_CACHE_SIZE;
  const latchExtra = cacheSize ? { env: { SESSION_CACHE_SIZE: cacheSize } } : {};
  switch (name) {
    case "ceiling":
    case "ceiling-headers": {
      const file = data.files.get("sqlite");
      if (file === undefined) return "no cookie file";
      // ceiling-headers answers with Latch's security headers too: the same bytes Latch sends.
      const extra = name === "ceiling-headers" ? { BENCH_CEILING_HEADERS: JSON.stringify(SECURITY_HEADERS) } : {};
      const running = await startBaseline(
        name,
        "ceiling.mjs",
        env,
        { BENCH_COOKIE_FILE: file, ...extra },
        { body: "{}", cookieName: "sid" },
      );
      return { running, cookieFile: file, cookieName: "sid", metrics: false };
    }
    case "latch-sqlite":
    case "compare-sqlite": {
      if (name === "compare-sqlite" && !compareDist) return "BENCH_COMPARE_DIST is not set";
      const running = await startLatch(name, env, {
        database: `sqlite:${data.sqlitePath}`,
        redisUrl: null,
        username: `bench.many.${name}`,
        ...latchExtra,
        ...(name === "compare-sqlite" ? { distDir: compareDist! } : {}),
      });
      return { running, cookieFile: data.files.get("sqlite")!, cookieName: "sid", metrics: true };
    }
    case "latch-postgres":
    case "compare-postgres":
    case "latch-tiered": {
      if (data.postgresUrl === null) return "PostgreSQL is not reachable";
      if (name === "compare-postgres" && !compareDist) return "BENCH_COMPARE_DIST is not set";
      if (name === "latch-tiered" && !env.redisUp) return "Redis is not reachable";
      const running = await startLatch(name, env, {
        database: data.postgresUrl,
        redisUrl: name === "latch-tiered" ? env.redisUrl : null,
        username: `bench.many.${name}`,
        ...latchExtra,
        ...(name === "compare-postgres" ? { distDir: compareDist! } : {}),
      });
      return { running, cookieFile: data.files.get("postgres")!, cookieName: "sid", metrics: true };
    }
    case "seed": {
      const file = data.files.get("seed");
      if (file === undefined) return "Redis is not reachable";
      const variant = VARIANTS.find((v) => v.name === "seed")!;
      const running = await variant.start(env);
      return { running, cookieFile: file, cookieName: "connect.sid", metrics: false };
    }
    case "better-auth": {
      const descriptor = await betterAuth();
      const file = data.files.get("better-auth");
      if (descriptor === null || file === undefined) return "better-auth is not installed in this build of the harness";
      // Its own sign-in account is made at start in the seeded file; the harness signs in like everywhere else.
      const running = await startBaseline("better-auth", "better-auth.mjs", env, descriptor.env(data.files.get("better-auth-db")!), {
        body: JSON.stringify(BETTER_AUTH_LOGIN),
        cookieName: descriptor.cookieName,
      });
      return { running, cookieFile: file, cookieName: descriptor.cookieName, metrics: false };
    }
    default:
      return `unknown variant ${name}`;
  }
}

/** The numbers of one /metrics scrape that this scenario reads. */
interface Scrape {
  hits: number;
  misses: number;
  storeWrites: number;
  loopP99S: number | null;
}

function metricValue(text: string, pattern: RegExp): number | null {
  const match = pattern.exec(text);
  return match ? Number(match[1]) : null;
}

async function scrape(url: string): Promise<Scrape | null> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    return {
      hits: metricValue(text, /^latch_session_cache_lookups_total\{result="hit"\} (\S+)$/m) ?? 0,
      misses: metricValue(text, /^latch_session_cache_lookups_total\{result="miss"\} (\S+)$/m) ?? 0,
      storeWrites: metricValue(text, /^latch_session_store_writes_total (\S+)$/m) ?? Number.NaN,
      loopP99S: metricValue(text, /^latch_nodejs_eventloop_lag_p99_seconds (\S+)$/m),
    };
  } catch {
    return null;
  }
}

export interface ManyOptions {
  counts: number[];
  access: Array<"uniform" | "zipf">;
  warmupS: number;
  /** Longest warm-up of a Latch server whose cache is still filling. */
  warmupMaxS: number;
}

/**
 * GET /protected with N live sessions, every variant, interleaved rounds.
 * The order within a round: ceiling first, then the rest, so the ratio to
 * the ceiling is taken from the same round.
 */
export async function manySessions(names: string[], env: ManyEnv, options: RunOptions, many: ManyOptions): Promise<ManyResult[]> {
  const selected = MANY_VARIANTS.filter(
    (n) =>
      names.includes(n) || (n.startsWith("compare-") && process.env.BENCH_COMPARE_DIST && names.includes(n.replace("compare", "latch"))),
  );
  const results: ManyResult[] = [];
  for (const count of many.counts) {
    log(`[many ${fmt(count)}] seeding`);
    const data = await prepare(count, env, selected);
    try {
      for (const access of many.access) {
        const rows = new Map<string, ManyResult>();
        for (const name of selected) {
          rows.set(name, {
            name,
            count,
            access,
            status: "ok",
            error: null,
            samples: [],
            rps: Number.NaN,
            p50Ms: Number.NaN,
            p99Ms: Number.NaN,
            cpuUsPerRequest: null,
            hitRate: null,
            storeReadsPerS: null,
            storeWritesPerS: null,
            loopP99Ms: null,
            rssMiB: null,
            vsCeiling: null,
            vsCeilingHeaders: null,
          });
        }
        for (let round = 1; round <= options.rounds; round += 1) {
          for (const name of selected) {
            const row = rows.get(name)!;
            if (row.status !== "ok") continue;
            await settle(options);
            let started: Started | string;
            try {
              if (name.startsWith("latch-") || name.startsWith("compare-")) await respread(name, env, data);
              started = await startMany(name, env, data);
            } catch (error) {
              started = error instanceof Error ? error.message : String(error);
            }
            if (typeof started === "string") {
              row.status = "unavailable";
              row.error = started;
              log(`[many ${fmt(count)} ${access} ${round}/${options.rounds}] ${name}: unavailable: ${started}`);
              continue;
            }
            const { running } = started;
            try {
              const request = {
                url: `${running.url}/protected`,
                connections: options.connections,
                script: MANY_LUA,
                scriptEnv: { BENCH_COOKIE_FILE: started.cookieFile, BENCH_COOKIE_NAME: started.cookieName, BENCH_ACCESS: access },
              };
              await wrk({ ...request, durationS: many.warmupS });
              // Latch: warm up on until the cache has stopped filling (misses under
              // 1% over 5 s), or the cap: the steady state, not the fill, is measured.
              for (let extra = 0; started.metrics && extra < many.warmupMaxS - many.warmupS; extra += 5) {
                const a = await scrape(running.url);
                await wrk({ ...request, durationS: 5 });
                const b = await scrape(running.url);
                if (a === null || b === null) break;
                const lookups = b.hits - a.hits + b.misses - a.misses;
                if (lookups > 0 && (b.misses - a.misses) / lookups < 0.01) break;
              }
              const before = started.metrics ? await scrape(running.url) : null;
              const sample = await timed(running, { ...request, durationS: options.durationS }, round);
              const after = started.metrics ? await scrape(running.url) : null;
              const seconds = sample.requests / sample.rps;
              const manySample: ManySample = {
                ...sample,
                hitRate: before && after ? ratio(after.hits - before.hits, after.hits - before.hits + after.misses - before.misses) : null,
                storeReadsPerS: before && after ? (after.misses - before.misses) / seconds : null,
                storeWritesPerS:
                  before && after && Number.isFinite(after.storeWrites) ? (after.storeWrites - before.storeWrites) / seconds : null,
                loopP99Ms: after?.loopP99S != null ? after.loopP99S * 1000 : null,
                rssMiB: (rssBytes(running.process.pid) ?? Number.NaN) / 1048576,
              };
              row.samples.push(manySample);
              log(
                `[many ${fmt(count)} ${access} ${round}/${options.rounds}] ${name}: ${fmt(sample.rps)} req/s, p99 ${sample.p99Ms.toFixed(1)} ms` +
                  (manySample.hitRate !== null ? `, hit rate ${(manySample.hitRate * 100).toFixed(1)}%` : "") +
                  (sample.non2xx + sample.socketErrors > 0 ? `, ${sample.non2xx + sample.socketErrors} errors` : ""),
              );
            } catch (error) {
              row.status = "failed";
              row.error = error instanceof Error ? error.message : String(error);
              log(`[many ${fmt(count)} ${access} ${round}/${options.rounds}] ${name}: failed: ${row.error}`);
            } finally {
              await stop(running.process);
            }
          }
        }
        // Per round, then the median: a noisy round moves both sides alike.
        const versus = (row: ManyResult, base: ManyResult | undefined): number | null => {
          if (base === undefined || base.samples.length === 0 || row.samples.length === 0) return null;
          const perRound = row.samples
            .map((s) => ratio(s.rps, base.samples.find((c) => c.round === s.round)?.rps ?? Number.NaN))
            .filter(Number.isFinite);
          return perRound.length > 0 ? median(perRound) : null;
        };
        for (const row of rows.values()) {
          summariseMany(row);
          row.vsCeiling = versus(row, rows.get("ceiling"));
          row.vsCeilingHeaders = versus(row, rows.get("ceiling-headers"));
          results.push(row);
        }
      }
    } finally {
      for (const cleanup of data.cleanups) await cleanup().catch(() => {});
    }
  }
  return results;
}

function medianOf(values: Array<number | null>): number | null {
  const present = values.filter((v): v is number => v !== null && Number.isFinite(v));
  return present.length > 0 ? median(present) : null;
}

function summariseMany(row: ManyResult): void {
  if (row.samples.length === 0) return;
  row.rps = median(row.samples.map((s) => s.rps));
  row.p50Ms = median(row.samples.map((s) => s.p50Ms));
  row.p99Ms = median(row.samples.map((s) => s.p99Ms));
  row.cpuUsPerRequest = medianOf(row.samples.map((s) => s.cpuUsPerRequest));
  row.hitRate = medianOf(row.samples.map((s) => s.hitRate));
  row.storeReadsPerS = medianOf(row.samples.map((s) => s.storeReadsPerS));
  row.storeWritesPerS = medianOf(row.samples.map((s) => s.storeWritesPerS));
  row.loopP99Ms = medianOf(row.samples.map((s) => s.loopP99Ms));
  row.rssMiB = medianOf(row.samples.map((s) => s.rssMiB));
}

/** The markdown table of the scenario. */
export function manyTable(rows: ManyResult[]): string[] {
  const out: string[] = [];
  const pct = (v: number | null): string => (v === null ? "–" : `${(v * 100).toFixed(1)}%`);
  const num = (v: number | null, digits = 0): string => (v === null || !Number.isFinite(v) ? "–" : v.toFixed(digits));
  const groups = new Map<string, ManyResult[]>();
  for (const row of rows) {
    const key = `${fmt(row.count)} sessions, ${row.access}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  for (const [key, group] of groups) {
    out.push(
      `### ${key}`,
      "",
      "| server | req/s | × ceiling | × ceiling-headers | p50 ms | p99 ms | CPU µs/req | cache hit | store reads/s | store writes/s | loop p99 ms | RSS MiB |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const r of group) {
      if (r.status !== "ok" || r.samples.length === 0) {
        out.push(`| ${r.name} | ${r.status}: ${r.error ?? ""} | | | | | | | | | | |`);
        continue;
      }
      out.push(
        `| ${r.name} | ${fmt(r.rps)} | ${r.vsCeiling === null ? "–" : r.vsCeiling.toFixed(2)} | ${r.vsCeilingHeaders === null ? "–" : r.vsCeilingHeaders.toFixed(2)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${num(r.cpuUsPerRequest, 1)} | ${pct(r.hitRate)} | ${num(r.storeReadsPerS)} | ${num(r.storeWritesPerS)} | ${num(r.loopP99Ms, 1)} | ${num(r.rssMiB)} |`,
      );
    }
    out.push("");
  }
  return out;
}
