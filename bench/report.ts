import { barChartSvg } from "./chart.js";
import { manyTable } from "./scenarios/many.js";
import type { BarRow } from "./chart.js";
import type { Report, VariantResult } from "./lib/results.js";

/** Renders report.json as report.md, and the GET /protected chart as SVG. */

const int = (n: number | null | undefined): string =>
  n === null || n === undefined || !Number.isFinite(n) ? "–" : Math.round(n).toLocaleString("en-US");
const dec = (n: number | null | undefined, digits = 1): string =>
  n === null || n === undefined || !Number.isFinite(n) ? "–" : n.toFixed(digits);
const pct = (n: number | null | undefined): string =>
  n === null || n === undefined || !Number.isFinite(n) ? "–" : `${(n * 100).toFixed(0)}%`;
const pct1 = (n: number | null | undefined): string =>
  n === null || n === undefined || !Number.isFinite(n) ? "–" : `${(n * 100).toFixed(1)}%`;
const times = (n: number | null | undefined): string =>
  n === null || n === undefined || !Number.isFinite(n) ? "–" : `${n.toFixed(n >= 10 ? 1 : 2)}×`;
const bytes = (n: number | null | undefined): string =>
  n === null || n === undefined || !Number.isFinite(n) ? "–" : `${(n / 2 ** 20).toFixed(1)} MiB`;

function group(name: string): BarRow["group"] {
  if (name.startsWith("ceiling")) return "ceiling";
  if (name === "seed" || name === "better-auth") return "seed"; // the products people would otherwise run: orange
  return name.startsWith("latch") ? "latch" : "baseline";
}

function statusCell(r: { status: string; error: string | null }): string {
  return r.status === "ok" ? "" : `${r.status}: ${(r.error ?? "").replace(/\|/g, "\\|").slice(0, 300)}`;
}

export function getChartSvg(report: Report): string | null {
  if (report.get === null) return null;
  const o = report.options;
  const rows: BarRow[] = report.get.map((r) => ({
    label: r.label,
    value: r.status === "ok" || r.samples.length > 0 ? r.rps : null,
    min: r.rpsMin,
    max: r.rpsMax,
    note: `req/s · ${pct(r.vsCeiling)} of ceiling · p99 ${dec(r.p99Ms)} ms`,
    group: group(r.name),
    missing: r.status === "ok" ? "no samples" : r.status,
  }));
  return barChartSvg(rows, {
    title: "GET /protected with a valid session cookie",
    subtitle: `server on CPU 0, wrk -t1 -c${o.connections} on CPU 1; ${o.durationS} s after ${o.warmupS} s warm-up; median of ${o.rounds} interleaved round${o.rounds === 1 ? "" : "s"} · ${report.startedAt.slice(0, 16).replace("T", " ")} UTC`,
    axisLabel: "requests per second (bar: median; whisker: min–max)",
  });
}

function getTable(rows: VariantResult[]): string[] {
  const lines = [
    "| variant | req/s (median) | min–max | p99 ms | CPU µs/req | vs ceiling | vs seed | CPU 0 noise (max) | status |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.label} | ${int(r.rps)} | ${int(r.rpsMin)}–${int(r.rpsMax)} | ${dec(r.p99Ms)} | ${dec(r.cpuUsPerRequest, 0)} | ${pct(r.vsCeiling)} | ${times(r.vsSeed)} | ${pct1(r.serverCpuNoise)} | ${statusCell(r)} |`,
    );
  }
  return lines;
}

function loginTable(report: Report): string[] {
  const login = report.login!;
  const lines = [
    "| variant | login/s (median) | min–max | p99 ms | CPU ms/login | % of raw argon2id hashes/s | vs seed | CPU 0 noise (max) | status |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  if (login.argon2 !== null) {
    const a = login.argon2;
    const cpu = a.samples.map((s) => s.cpuMsPerHash);
    lines.push(
      `| raw argon2id, m=19456 t=2 p=1, concurrency ${a.concurrency} (no HTTP) | ${dec(a.perSecond)} | ${dec(a.min)}–${dec(a.max)} | | ${dec(cpu.length ? cpu.sort((x, y) => x - y)[Math.floor(cpu.length / 2)] : null, 1)} | 100% | | | |`,
    );
  }
  for (const r of login.variants) {
    lines.push(
      `| ${r.label} | ${dec(r.rps)} | ${dec(r.rpsMin)}–${dec(r.rpsMax)} | ${dec(r.p99Ms, 0)} | ${dec(r.cpuUsPerRequest === null ? null : r.cpuUsPerRequest / 1000, 1)} | ${pct(r.vsCeiling)} | ${times(r.vsSeed)} | ${pct1(r.serverCpuNoise)} | ${statusCell(r)} |`,
    );
  }
  return lines;
}

interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

/** The issue's targets, judged from this run's numbers. */
function targets(report: Report): Target[] {
  const out: Target[] = [];
  const get = report.get ?? [];
  const find = (name: string): VariantResult | undefined => get.find((r) => r.name === name && r.samples.length > 0);
  const ceiling = find("ceiling");
  for (const name of ["latch-redis", "latch-tiered"]) {
    const r = find(name);
    if (r === undefined || ceiling === undefined) continue;
    const note = r.notes.some((n) => n.startsWith("REDIS_URL was accepted")) ? " (Redis not in use by this build)" : "";
    out.push({ target: `${r.label}: ≥ 10× seed req/s${note}`, measured: times(r.vsSeed), met: r.vsSeed === null ? null : r.vsSeed >= 10 });
    out.push({
      target: `${r.label}: ≥ 75% of ceiling req/s`,
      measured: pct(r.vsCeiling),
      met: r.vsCeiling === null ? null : r.vsCeiling >= 0.75,
    });
    out.push({
      target: `${r.label}: p99 ≤ 2× ceiling p99`,
      measured: `${dec(r.p99Ms)} ms vs ${dec(ceiling.p99Ms)} ms`,
      met: r.p99Ms <= 2 * ceiling.p99Ms,
    });
  }
  const sqlite = find("latch-sqlite");
  if (sqlite !== undefined && ceiling !== undefined) {
    out.push({
      target: "Latch on SQLite: ≥ 80% of ceiling req/s",
      measured: pct(sqlite.vsCeiling),
      met: sqlite.vsCeiling === null ? null : sqlite.vsCeiling >= 0.8,
    });
  }
  const rev = report.revocation;
  if (rev !== null && rev.measured > 0) {
    out.push({
      target: `revocation across processes: p99 ≤ 50 ms over ${int(rev.requested)}`,
      measured: `${dec(rev.p99Ms, 2)} ms over ${int(rev.measured)}${rev.timedOut > 0 ? `, ${rev.timedOut} timed out` : ""}`,
      met: rev.p99Ms <= 50 && rev.timedOut === 0,
    });
  }
  for (const r of report.login?.variants ?? []) {
    if (!r.name.startsWith("latch") || r.samples.length === 0) continue;
    out.push({
      target: `${r.label}: POST /login/s ≥ 90% of raw argon2id hashes/s`,
      measured: pct(r.vsCeiling),
      met: r.vsCeiling === null ? null : r.vsCeiling >= 0.9,
    });
  }
  for (const r of report.storm ?? []) {
    if (!r.name.startsWith("latch") || r.samples.length === 0) continue;
    out.push({
      target: `${r.label}: GET p99 in a sign-in storm ≤ 3× without`,
      measured: `${times(r.p99Ratio)} (${dec(r.stormP99Ms)} vs ${dec(r.aloneP99Ms)} ms)`,
      met: r.p99Ratio <= 3,
    });
  }
  for (const row of report.memory?.rows ?? []) {
    if (row.name !== "latch" || row.bytesPerSession === null) continue;
    out.push({ target: "Redis bytes per session ≤ 155 B", measured: `${int(row.bytesPerSession)} B`, met: row.bytesPerSession <= 155 });
  }
  if (report.rss !== null && report.rss.status === "ok") {
    out.push({
      target: "RSS after the run within 10% of RSS after minute 1",
      measured: `${pct(report.rss.growth)} change`,
      met: Math.abs(report.rss.growth) <= 0.1,
    });
  }
  return out;
}

/** The GET /protected table alone, for stdout. */
export function getTableMarkdown(report: Report): string {
  return report.get === null ? "" : getTable(report.get).join("\n");
}

export function renderMarkdown(report: Report, chartFile: string | null): string {
  const o = report.options;
  const m = report.machine;
  const md: string[] = [];
  md.push(
    `# Latch benchmark, ${report.startedAt.slice(0, 19).replace("T", " ")} UTC${o.quick ? " (quick smoke run: numbers are indicative only)" : ""}`,
    "",
  );
  md.push(
    "## Machine",
    "",
    "| | |",
    "| --- | --- |",
    `| nproc | ${m.nproc} |`,
    `| CPU | ${m.cpuModel} |`,
    `| memory | ${m.memoryGiB} GiB |`,
    `| kernel | ${m.kernel} |`,
    `| Node.js | ${m.node} |`,
    `| Redis | ${m.redis} |`,
    `| PostgreSQL | ${m.postgres} |`,
    `| load generator | ${m.wrk} |`,
    `| load average at start | ${m.loadAtStart.toFixed(2)} |`,
    `| other busy processes at start | ${m.otherBusyProcesses.length === 0 ? "none" : m.otherBusyProcesses.join("; ").replace(/\|/g, "\\|")} |`,
    `| Latch build | ${report.build.action}${report.build.detail ? `: ${report.build.detail.replace(/\|/g, "\\|")}` : ""} |`,
    "",
  );
  md.push(
    "## Method",
    "",
    `Each server is a separate process pinned to CPU 0 (\`taskset -c 0\`); wrk runs pinned to CPU 1 (\`taskset -c 1 wrk -t1\`), where Redis and PostgreSQL also run (they are not moved). ` +
      `Before each measurement the harness waits up to ${o.settleS} s for CPU 0 to be quiet (under 10% busy), so a burst of other work on a shared machine passes first. ` +
      `Every measurement starts a fresh server process, signs in to get a valid session cookie, runs wrk for a ${o.warmupS} s warm-up that is thrown away, then ${o.durationS} s timed. ` +
      `Variants are interleaved (A B C … A B C …) for ${o.rounds} round${o.rounds === 1 ? "" : "s"}; tables show the median, the min–max of req/s and the median of the rounds' p99. ` +
      `Ratios are taken between medians of this run only (never across runs: this machine is noisy). CPU µs per request is the server process's user + system time (all its threads, from /proc/<pid>/stat, 10 ms ticks) over the timed run divided by the requests served; Redis and PostgreSQL time is not in it. ` +
      `"CPU 0 noise" is the share of CPU 0's time during the timed run used by anything but the server process (other processes, interrupts) plus time stolen by the hypervisor, the largest over the rounds: where it is more than a few percent, that variant's numbers were disturbed. ` +
      `GET /protected uses ${o.connections} connections; POST /login ${o.loginConnections} connections with correct credentials (wrk Lua script, JSON body); the sign-in storm is a second wrk posting POST /login on ${o.stormConnections} connections while the first measures GET /protected. ` +
      `Latch runs as \`node dist/cli/main.js serve\` with LOG_LEVEL=warn and throttles raised to 1,000,000 so the bench's own sign-ins are never refused.`,
    "",
  );

  if (report.get !== null) {
    md.push("## GET /protected with a valid session", "");
    if (chartFile !== null) md.push(`![GET /protected req/s](${chartFile})`, "");
    md.push(...getTable(report.get), "");
  }

  if (report.many !== null && report.many.length > 0) {
    md.push(
      "## GET /protected with many sessions",
      "",
      `Every request carries the cookie of one of N live sessions, drawn uniformly or by Zipf (s = 1), after a warm-up of at least ${o.manyWarmupS} s, and for Latch until its cache stops filling (misses under 1% over 5 s, at most BENCH_MANY_WARMUP_MAX s), so that the steady state is measured: renewals (last-seen times are spread over one renewal interval before each server starts) and any re-reads included. ` +
        "Latch's sessions were made through its own library, last-seen times spread over one renewal interval; the ceiling's Map holds the same cookies; the seed stack's Redis and better-auth's SQLite hold as many sessions in their own formats. " +
        "× ceiling is the median over rounds of req/s divided by the ceiling's in the same round; × ceiling-headers the same against the ceiling that also sends Latch's six security headers (the same bytes Latch answers). Cache hit, store reads/s (cache misses), store writes/s (renewals reaching the store) and the event-loop delay p99 come from Latch's /metrics around the timed run.",
      "",
      ...manyTable(report.many),
    );
  }

  if (report.login !== null) {
    md.push(
      "## POST /login (correct password)",
      "",
      "Raw argon2id hashes/s is a process pinned to the same core hashing in a loop with @node-rs/argon2 at Latch's parameters and concurrency (HASH_CONCURRENCY=1), interleaved with the servers. The seed stack hashes with bcrypt cost 10, so its row is not comparable with the hash rate, only with Latch's login/s.",
      "",
      ...loginTable(report),
      "",
    );
  }

  if (report.storm !== null) {
    md.push(
      "## GET /protected during a sign-in storm",
      "",
      `The same server process, first alone, then while a second wrk posts POST /login on ${o.stormConnections} connections.`,
      "",
      "| variant | GET req/s alone | p99 ms alone | GET req/s in storm | p99 ms in storm | p99 storm ÷ alone | login/s in storm | CPU 0 noise (max) | status |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    );
    for (const r of report.storm) {
      const noise = r.samples.flatMap((s) => [s.alone.serverCpuNoise, s.storm.serverCpuNoise]).filter((n): n is number => n !== null);
      md.push(
        `| ${r.label} | ${int(r.aloneRps)} | ${dec(r.aloneP99Ms)} | ${int(r.stormRps)} | ${dec(r.stormP99Ms)} | ${times(r.p99Ratio)} | ${dec(r.loginRps)} | ${pct1(noise.length ? Math.max(...noise) : null)} | ${statusCell(r)} |`,
      );
    }
    md.push("");
  }

  if (report.revocation !== null) {
    const r = report.revocation;
    md.push(
      "## Revocation delay across two processes",
      "",
      "Two Latch processes (A and B) on one PostgreSQL database and one Redis (tiered), both pinned to CPU 0. For each revocation: sign in on A, check the session is valid on B, sign out on A, poll B's GET /protected until it answers 401. The delay runs from A's answer to the sign-out to the arrival of B's 401, so it includes one poll's round trip.",
      "",
      "| revocations | measured | p50 ms | p99 ms | max ms | polls per revocation | timed out (> 5 s) | status |",
      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
      `| ${int(r.requested)} | ${int(r.measured)} | ${dec(r.p50Ms, 2)} | ${dec(r.p99Ms, 2)} | ${dec(r.maxMs, 2)} | ${dec(r.meanPolls, 2)} | ${r.timedOut} | ${statusCell(r)} |`,
      "",
    );
  }

  if (report.memory !== null) {
    const mem = report.memory;
    md.push(
      "## Redis memory per session",
      "",
      `A private redis-server (${mem.redisVersion}, \`--save "" --appendonly no\`, on a free port, stopped by PID afterwards); INFO memory used_memory before and after creating ${int(mem.sessions)} sessions, divided by the count.`,
      "",
      "| store | bytes per session | value bytes | status |",
      "| --- | ---: | ---: | --- |",
    );
    for (const row of mem.rows) md.push(`| ${row.label} | ${int(row.bytesPerSession)} | ${int(row.valueBytes)} | ${statusCell(row)} |`);
    if (mem.status !== "ok") md.push("", `Memory measurement ${mem.status}: ${mem.error ?? ""}`);
    md.push("");
  }

  if (report.rss !== null) {
    const r = report.rss;
    md.push(
      "## RSS under sustained load",
      "",
      `${r.variant} at 80% of its peak (autocannon --overallRate on CPU 1) for ${r.minutes} minutes.`,
      "",
      "| peak req/s | target req/s | achieved req/s | RSS after minute 1 | RSS at end | change | status |",
      "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
      `| ${int(r.peakRps)} | ${int(r.targetRps)} | ${int(r.achievedRps)} | ${bytes(r.rssAfterMinute1)} | ${bytes(r.rssAtEnd)} | ${pct(r.growth)} | ${statusCell(r)} |`,
      "",
    );
  }

  const t = targets(report);
  if (t.length > 0) {
    md.push("## Issue 6 targets, judged from this run", "", "| target | measured | met |", "| --- | --- | --- |");
    for (const row of t) md.push(`| ${row.target} | ${row.measured} | ${row.met === null ? "–" : row.met ? "yes" : "**no**"} |`);
    md.push("");
  }

  const notes: string[] = [];
  for (const r of [...(report.get ?? []), ...(report.login?.variants ?? []), ...(report.storm ?? [])]) {
    for (const n of r.notes) {
      const line = `- ${r.label}: ${n}`;
      if (!notes.includes(line)) notes.push(line);
    }
  }
  for (const n of report.revocation?.notes ?? []) notes.push(`- revocation: ${n}`);
  if (notes.length > 0) md.push("## Notes", "", ...notes, "");

  md.push(`Raw numbers, every round: report.json beside this file. Run started ${report.startedAt}, finished ${report.finishedAt}.`, "");
  return md.join("\n");
}
