import { Agent, request } from "node:http";
import { stop } from "../lib/processes.js";
import type { RevocationResult, RunOptions } from "../lib/results.js";
import { percentile } from "../lib/stats.js";
import { startLatch } from "../lib/variants.js";
import type { BenchEnv, Running } from "../lib/variants.js";

/**
 * Scenario (d): revocation delay across two processes. Two Latch processes
 * share PostgreSQL + Redis (tiered). For each revocation: sign in on A,
 * confirm the session is valid on B, sign out on A, then poll B until it
 * answers 401. The delay runs from A's answer to the sign-out to the arrival
 * of B's first 401, so it includes one poll's round trip (an upper bound).
 */

const POLL_LIMIT_MS = 5_000;
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

interface Reply {
  status: number;
  body: string;
  setCookie: string[];
}

/** node:http with a keep-alive agent: cheaper and steadier than fetch for thousands of tiny requests. */
function call(url: string, method: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent, timeout: 10_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, setCookie: res.headers["set-cookie"] ?? [] }));
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

async function signIn(a: Running): Promise<{ cookie: string; csrfToken: string }> {
  const reply = await call(`${a.url}/login`, "POST", { "content-type": "application/json" }, a.loginBody);
  const pair = reply.setCookie.map((c) => c.split(";")[0]!).find((c) => c.startsWith("sid=") && c.length > 4);
  const csrfToken = (JSON.parse(reply.body) as { csrfToken?: string }).csrfToken;
  if (reply.status !== 200 || pair === undefined || csrfToken === undefined)
    throw new Error(`sign-in on A answered ${reply.status}: ${reply.body.slice(0, 200)}`);
  return { cookie: pair, csrfToken };
}

export async function revocationDelay(env: BenchEnv, options: RunOptions): Promise<RevocationResult> {
  const result: RevocationResult = {
    status: "ok",
    error: null,
    notes: [],
    variant: "latch-tiered",
    requested: options.revocations,
    measured: 0,
    notShared: 0,
    timedOut: 0,
    p50Ms: Number.NaN,
    p99Ms: Number.NaN,
    maxMs: Number.NaN,
    meanPolls: Number.NaN,
  };
  if (env.postgresUrl === null) {
    return { ...result, status: "unavailable", error: "PostgreSQL is not reachable at BENCH_POSTGRES_URL" };
  }
  const running: Running[] = [];
  try {
    for (const name of ["latch-revocation-a", "latch-revocation-b"]) {
      running.push(await startLatch(name, env, { database: env.postgresUrl, redisUrl: env.redisUrl, username: "bench.revocation" }));
    }
  } catch (error) {
    for (const r of running) await stop(r.process);
    return { ...result, status: "unavailable", error: error instanceof Error ? error.message : String(error) };
  }
  const [a, b] = running as [Running, Running];
  result.notes = [...new Set([...a.notes, ...b.notes])];
  const delays: number[] = [];
  let polls = 0;
  try {
    for (let i = 0; i < options.revocations; i += 1) {
      const { cookie, csrfToken } = await signIn(a);
      const valid = await call(`${b.url}/protected`, "GET", { cookie });
      if (valid.status !== 200) {
        result.notShared += 1;
        continue;
      }
      const out = await call(`${a.url}/logout`, "POST", { cookie, "x-csrf-token": csrfToken });
      if (out.status !== 200) throw new Error(`sign-out on A answered ${out.status}: ${out.body.slice(0, 200)}`);
      const acknowledged = performance.now();
      for (;;) {
        polls += 1;
        const check = await call(`${b.url}/protected`, "GET", { cookie });
        const now = performance.now();
        if (check.status === 401) {
          delays.push(now - acknowledged);
          break;
        }
        if (now - acknowledged > POLL_LIMIT_MS) {
          result.timedOut += 1;
          break;
        }
      }
      if ((i + 1) % Math.max(1, Math.floor(options.revocations / 5)) === 0) {
        process.stderr.write(`[revocation] ${i + 1}/${options.revocations}, p99 so far ${percentile(delays, 99).toFixed(2)} ms\n`);
      }
    }
  } catch (error) {
    result.status = "failed";
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    for (const r of running) await stop(r.process);
    agent.destroy();
  }
  result.measured = delays.length;
  result.p50Ms = percentile(delays, 50);
  result.p99Ms = percentile(delays, 99);
  result.maxMs = delays.length > 0 ? Math.max(...delays) : Number.NaN;
  result.meanPolls = delays.length > 0 ? polls / (delays.length + result.timedOut) : Number.NaN;
  if (result.notShared > 0) result.notes.push(`${result.notShared} sessions made on A were not valid on B right after sign-in`);
  return result;
}
