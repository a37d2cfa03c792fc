/**
 * `npm run bench`: every server variant side by side, in one run, on one
 * machine. See bench/README.md for the method and how to read the report.
 *
 *   npm run bench                         GET /protected (one session, and 100,000 / 1,000,000), POST /login, sign-in storm, revocation, Redis memory
 *   npm run bench -- --quick              smoke run: 2 s per measurement, 1 round, 50 revocations
 *   npm run bench -- --soak               also the 5-minute RSS soak
 *   npm run bench -- --scenarios=get,login --variants=ceiling,seed,latch-sqlite
 *
 * Environment: BENCH_DURATION (10), BENCH_WARMUP (3), BENCH_ROUNDS (3),
 * BENCH_CONNECTIONS (50), BENCH_LOGIN_CONNECTIONS (20), BENCH_STORM_CONNECTIONS (20),
 * BENCH_MANY_COUNTS (100000,1000000), BENCH_MANY_ACCESS (uniform,zipf), BENCH_MANY_WARMUP (35), BENCH_MANY_WARMUP_MAX (150),
 * BENCH_REVOCATIONS (1000), BENCH_MEMORY_SESSIONS (100000), BENCH_SETTLE (15: the longest wait, in
 * seconds, for CPU 0 to be quiet before each measurement; 0 turns it off),
 * BENCH_REDIS_URL (redis://127.0.0.1:6379), BENCH_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_POSTGRES_DB (latch_bench), BENCH_SOAK_VARIANT (latch-sqlite), BENCH_SOAK_MINUTES (5).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getChartSvg, getTableMarkdown, renderMarkdown } from "./report.js";
import { describeMachine } from "./lib/machine.js";
import { killAll, reapLeftovers, run } from "./lib/processes.js";
import type { Report, RunOptions } from "./lib/results.js";
import { dropPostgres, preparePostgres, redisVersion } from "./lib/services.js";
import { ROOT, VARIANTS } from "./lib/variants.js";
import type { BenchEnv } from "./lib/variants.js";
import { LOAD_CPU, ensureWrk } from "./lib/wrk.js";
import { measureMemory } from "./memory.js";
import { soak } from "./rss.js";
import { getProtected, postLogin, signInStorm } from "./scenarios/http.js";
import { manySessions } from "./scenarios/many.js";
import { revocationDelay } from "./scenarios/revocation.js";

const ALL_SCENARIOS = ["get", "many", "login", "storm", "revocation", "memory"];
const log = (line: string): void => void process.stderr.write(`${line}\n`);

function flag(name: string): string | undefined {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

function parseOptions(): RunOptions {
  const quick = process.argv.includes("--quick");
  const soakRequested = process.argv.includes("--soak");
  const scenarios = (flag("scenarios") ?? process.env.BENCH_SCENARIOS ?? ALL_SCENARIOS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of scenarios)
    if (![...ALL_SCENARIOS, "rss"].includes(s)) throw new Error(`unknown scenario "${s}" (known: ${ALL_SCENARIOS.join(", ")}, rss)`);
  if (soakRequested && !scenarios.includes("rss")) scenarios.push("rss");
  const variants = (flag("variants") ?? process.env.BENCH_VARIANTS ?? VARIANTS.map((v) => v.name).join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const v of variants)
    if (!VARIANTS.some((x) => x.name === v)) throw new Error(`unknown variant "${v}" (known: ${VARIANTS.map((x) => x.name).join(", ")})`);
  return {
    quick,
    soak: scenarios.includes("rss"),
    durationS: positiveNumber("BENCH_DURATION", quick ? 2 : 10),
    warmupS: positiveNumber("BENCH_WARMUP", quick ? 1 : 3),
    rounds: Math.round(positiveNumber("BENCH_ROUNDS", quick ? 1 : 3)),
    connections: Math.round(positiveNumber("BENCH_CONNECTIONS", 50)),
    loginConnections: Math.round(positiveNumber("BENCH_LOGIN_CONNECTIONS", 20)),
    stormConnections: Math.round(positiveNumber("BENCH_STORM_CONNECTIONS", 20)),
    revocations: Math.round(positiveNumber("BENCH_REVOCATIONS", quick ? 50 : 1000)),
    memorySessions: Math.round(positiveNumber("BENCH_MEMORY_SESSIONS", quick ? 20_000 : 100_000)),
    manyCounts: (process.env.BENCH_MANY_COUNTS ?? (quick ? "20000" : "100000,1000000")).split(",").map((c) => {
      const n = Number(c.trim());
      if (!Number.isInteger(n) || n <= 0) throw new Error(`BENCH_MANY_COUNTS must be a comma list of positive integers, got "${c}"`);
      return n;
    }),
    manyAccess: (process.env.BENCH_MANY_ACCESS ?? "uniform,zipf").split(",").map((a) => {
      const v = a.trim();
      if (v !== "uniform" && v !== "zipf") throw new Error(`BENCH_MANY_ACCESS must list uniform and/or zipf, got "${a}"`);
      return v;
    }),
    manyWarmupS: positiveNumber("BENCH_MANY_WARMUP", quick ? 5 : 35),
    settleS: process.env.BENCH_SETTLE === "0" ? 0 : positiveNumber("BENCH_SETTLE", quick ? 2 : 15),
    scenarios,
    variants,
  };
}

function newestMtime(dir: string, filter: (name: string) => boolean): number {
  let newest = 0;
  if (!existsSync(dir)) return newest;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path, filter));
    else if (filter(entry.name)) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when a source file is newer than it; keeps a stale dist/ (and says so) when the build fails. */
async function ensureBuild(): Promise<Report["build"]> {
  const main = join(ROOT, "dist", "cli", "main.js");
  const source = newestMtime(join(ROOT, "src"), (n) => n.endsWith(".ts") && !n.endsWith(".test.ts"));
  const built = existsSync(main) ? newestMtime(join(ROOT, "dist"), (n) => n.endsWith(".js")) : 0;
  if (built >= source) return { action: "fresh", detail: null };
  log("bench: dist/ is older than src/; running npm run build");
  const result = await run("build", "npm", ["run", "build"], { cwd: ROOT, env: process.env, timeoutMs: 600_000 });
  if (result.code === 0) return { action: "built", detail: null };
  const error =
    result.output
      .split("\n")
      .filter((l) => /error TS|error/i.test(l))
      .slice(0, 3)
      .join(" / ") || `exit ${result.code}`;
  if (!existsSync(main)) throw new Error(`npm run build failed and there is no dist/ to fall back on: ${error}`);
  log(`bench: npm run build failed (${error}); measuring the existing, stale dist/`);
  return { action: "build-failed", detail: `npm run build failed, so the previous dist/ was measured: ${error}` };
}

/** A short digest of every .js file in `dir`, to tell two builds apart in reports. */
function digestOf(dir: string): string {
  const hash = createHash("sha256");
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".js")) hash.update(path.slice(dir.length)).update(readFileSync(path));
    }
  };
  walk(dir);
  return hash.digest("hex").slice(0, 12);
}

function timestamp(date: Date): string {
  return date.toISOString().slice(0, 19).replace(/:/g, "-") + "Z";
}

async function main(): Promise<number> {
  if (process.argv.includes("--help")) {
    log(
      "usage: npm run bench [-- --quick] [--soak] [--scenarios=get,login,storm,revocation,memory,rss] [--variants=name,…]; see bench/README.md",
    );
    return 0;
  }
  const options = parseOptions();
  const startedAt = new Date();
  const reaped = reapLeftovers();
  if (reaped > 0) log(`bench: killed ${reaped} process(es) a previous, interrupted run left behind`);

  // The harness itself is a load generator (revocation polling): it belongs on the load CPU.
  spawnSync("taskset", ["-a", "-cp", LOAD_CPU, String(process.pid)], { stdio: "ignore" });

  const wrkVersion = ensureWrk();
  const build = await ensureBuild();

  const redisUrl = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
  const postgresAdminUrl = process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const postgresDb = process.env.BENCH_POSTGRES_DB ?? "latch_bench";
  const redis = await redisVersion(redisUrl);
  const needsPostgres = options.scenarios.some((s) => s !== "memory");
  const postgres = needsPostgres ? await preparePostgres(postgresAdminUrl, postgresDb) : null;
  if (redis === null) log(`bench: no Redis at ${redisUrl}: its variants will be reported unavailable`);
  if (needsPostgres && postgres === null) log(`bench: no PostgreSQL at ${postgresAdminUrl}: its variants will be reported unavailable`);

  const tmpDir = mkdtempSync(join(tmpdir(), "latch-bench-"));
  mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
  // Snapshots that SIGKILLed runs left behind (their PID no longer runs).
  for (const entry of readdirSync(join(ROOT, "bench", "results"), { withFileTypes: true })) {
    const pid = /^\.dist-snapshot-(\d+)$/.exec(entry.name)?.[1];
    if (pid !== undefined && !existsSync(`/proc/${pid}`))
      rmSync(join(ROOT, "bench", "results", entry.name), { recursive: true, force: true });
  }
  // Other people build into the same dist/ while the run goes on: measure one fixed copy.
  const distDir = join(ROOT, "bench", "results", `.dist-snapshot-${process.pid}`);
  rmSync(distDir, { recursive: true, force: true });
  cpSync(join(ROOT, "dist"), distDir, { recursive: true });
  build.detail = [
    build.detail,
    `dist/ digest ${digestOf(distDir)}, built ${new Date(statSync(join(distDir, "cli", "main.js")).mtimeMs).toISOString()}`,
  ]
    .filter(Boolean)
    .join("; ");
  const env: BenchEnv = { distDir, tmpDir, redisUrl, redisUp: redis !== null, postgresUrl: postgres?.url ?? null };
  const machine = describeMachine(wrkVersion, redis ?? "not reachable", postgres?.version ?? "not reachable");
  log(
    `bench: ${machine.nproc} CPUs (${machine.cpuModel}), Node ${machine.node}, Redis ${machine.redis}, PostgreSQL ${machine.postgres}; load ${machine.loadAtStart.toFixed(2)}`,
  );
  if (machine.otherBusyProcesses.length > 0) log(`bench: other processes are busy, expect noise: ${machine.otherBusyProcesses.join("; ")}`);

  const selected = VARIANTS.filter((v) => options.variants.includes(v.name));
  const report: Report = {
    startedAt: startedAt.toISOString(),
    finishedAt: "",
    options,
    machine,
    build,
    get: null,
    login: null,
    storm: null,
    revocation: null,
    memory: null,
    rss: null,
    many: null,
  };

  try {
    if (options.scenarios.includes("get")) report.get = await getProtected(selected, env, options);
    if (options.scenarios.includes("many")) {
      report.many = await manySessions(options.variants, { ...env, postgresAdminUrl, postgresDb }, options, {
        counts: options.manyCounts,
        access: options.manyAccess,
        warmupS: options.manyWarmupS,
        warmupMaxS: Math.max(options.manyWarmupS, positiveNumber("BENCH_MANY_WARMUP_MAX", options.quick ? 30 : 150)),
      });
    }
    if (options.scenarios.includes("login"))
      report.login = await postLogin(
        selected.filter((v) => v.signIn),
        env,
        options,
      );
    if (options.scenarios.includes("storm"))
      report.storm = await signInStorm(
        selected.filter((v) => v.signIn),
        env,
        options,
      );
    if (options.scenarios.includes("revocation")) {
      log(`[revocation] ${options.revocations} revocations across two tiered processes`);
      report.revocation = await revocationDelay(env, options);
    }
    if (options.scenarios.includes("memory")) {
      log(`[memory] ${options.memorySessions.toLocaleString("en-US")} sessions per store in a private redis-server`);
      report.memory = await measureMemory(options.memorySessions);
    }
    if (options.scenarios.includes("rss")) {
      report.rss = await soak(env, {
        variant: process.env.BENCH_SOAK_VARIANT ?? "latch-sqlite",
        minutes: positiveNumber("BENCH_SOAK_MINUTES", 5),
        connections: options.connections,
        fraction: 0.8,
      });
    }
  } finally {
    killAll("SIGKILL");
    if (postgres !== null) await dropPostgres(postgresAdminUrl, postgresDb);
    rmSync(tmpDir, { recursive: true, force: true });
    rmSync(distDir, { recursive: true, force: true });
  }
  report.finishedAt = new Date().toISOString();

  const resultsDir = join(ROOT, "bench", "results");
  const outDir = join(resultsDir, timestamp(startedAt));
  mkdirSync(outDir, { recursive: true });
  const svg = getChartSvg(report);
  const chartFile = svg === null ? null : "get-protected.svg";
  if (svg !== null) {
    writeFileSync(join(outDir, chartFile!), svg);
    // A PNG beside it when rsvg-convert is installed (Debian: librsvg2-bin); the SVG is the report's.
    spawnSync("rsvg-convert", ["-o", join(outDir, "get-protected.png"), join(outDir, chartFile!)], { stdio: "ignore", timeout: 30_000 });
  }
  writeFileSync(
    join(outDir, "report.json"),
    `${JSON.stringify(report, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`,
  );
  writeFileSync(join(outDir, "report.md"), renderMarkdown(report, chartFile));
  const latest = join(resultsDir, "latest");
  rmSync(latest, { recursive: true, force: true });
  cpSync(outDir, latest, { recursive: true });

  process.stdout.write(`\n${getTableMarkdown(report)}\n\nReport: ${join(outDir, "report.md")} (copied to bench/results/latest/)\n`);
  return 0;
}

main().then(
  (code) => {
    killAll("SIGKILL");
    process.exit(code);
  },
  (error: unknown) => {
    log(`bench: ${error instanceof Error ? error.message : String(error)}`);
    killAll("SIGKILL");
    process.exit(1);
  },
);
