import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { REDIS_URL } from "../../testing/services.js";
import { globEscape } from "./redis-connection.js";

/**
 * Test helpers for the Redis and tiered stores: key prefixes of their own on
 * the shared Redis, and private redis-server processes for fault tests,
 * each stopped by PID.
 */

/** A key prefix of its own per test run: the shared Redis is never flushed. */
export function testPrefix(): string {
  return `latch-test:${randomBytes(6).toString("hex")}:`;
}

/** Every key under `prefix`, found with SCAN (never KEYS, which blocks the server). */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${globEscape(prefix)}*`, "COUNT", 500);
    found.push(...keys);
    cursor = next;
  } while (cursor !== "0");
  return found;
}

/** Deletes every key under `prefix` on the Redis at `url`. */
export async function deleteKeysUnder(prefix: string, url: string = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on("error", () => {});
  try {
    const keys = await keysUnder(redis, prefix);
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  } finally {
    redis.disconnect();
  }
}

export async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Every redis-server started here; killed by PID when the process exits, whatever happened. */
const started = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of started) child.kill("SIGKILL");
});

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once("error", () => resolve(false));
    socket.connect(port, "127.0.0.1", () => {
      socket.destroy();
      resolve(true);
    });
  });
}

export interface RedisServer {
  port: number;
  url: string;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** SIGSTOP: the connection stays open and nothing answers. */
  pause(): void;
  resume(): void;
  /** Kill and start again on the same port; with persistence off it comes back empty. */
  restart(): Promise<void>;
}

/** Starts `redis-server` on a free port (or `port`), persistence off. */
export async function startRedisServer(options: { port?: number; args?: string[]; cwd?: string } = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  let child: ChildProcess;
  async function launch(): Promise<void> {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...(options.args ?? [])];
    child = spawn("redis-server", args, { stdio: "ignore", cwd: options.cwd });
    started.add(child);
    await waitFor(`redis-server on port ${port}`, () => accepts(port), 5000);
  }
  async function kill(): Promise<void> {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    started.delete(child);
  }
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    pause: () => void child.kill("SIGSTOP"),
    resume: () => void child.kill("SIGCONT"),
    async restart() {
      await kill();
      await launch();
    },
  };
}

/** True when redis-server and redis-cli are on the PATH. */
export function redisBinariesAvailable(): boolean {
  return ["redis-server", "redis-cli"].every((bin) => spawnSync(bin, ["--version"], { stdio: "ignore" }).status === 0);
}

/** A three-master Redis Cluster of private processes; `url` is a `redis+cluster://` seed list. */
export async function startRedisCluster(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "latch-cluster-"));
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < 3; i += 1) {
      const cwd = mkdtempSync(join(dir, "node-"));
      nodes.push(
        await startRedisServer({
          cwd,
          args: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
        }),
      );
    }
    const created = spawnSync(
      "redis-cli",
      ["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", "0", "--cluster-yes"],
      { encoding: "utf8" },
    );
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    // Every node must agree: a node that has not yet heard of the others'
    // slots answers MOVED/CLUSTERDOWN to the first commands sent to it.
    const probes = nodes.map((node) => new Redis(node.url));
    try {
      await waitFor(
        "cluster_state:ok on every node",
        async () => {
          const infos = await Promise.all(probes.map((probe) => probe.cluster("INFO")));
          return infos.every((info) => info.includes("cluster_state:ok") && info.includes("cluster_known_nodes:3"));
        },
        10_000,
      );
    } finally {
      for (const probe of probes) probe.disconnect();
    }
  } catch (error) {
    for (const node of nodes) await node.kill();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`,
    async stop() {
      for (const node of nodes) await node.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
