/**
 * Redis bytes per session: INFO memory used_memory before and after creating
 * N sessions (BENCH_MEMORY_SESSIONS, default 100,000), in a private
 * redis-server started on a free port with persistence off and stopped by
 * PID at the end (never the shared Redis, never FLUSHALL on db 0 of it).
 *
 *   (a) connect-redis through express-session's store API: store.set(sid,
 *       session) with the tutorial's cookie (httpOnly, secure: false,
 *       maxAge 30 min) and `userId`, as the seed stack writes it;
 *   (b) Latch's Redis session store, when src/stores/redis/ exists: sessions
 *       created through Latch's session manager with no user agent;
 *   (c) for reference, a minimal JSON value `{userId, exp}` under a key of
 *       the same length as connect-redis's.
 *
 * Run: node --import tsx bench/memory.ts   (--json prints one BENCH_JSON line)
 */
import { randomBytes, randomFillSync } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { RedisStore } from "connect-redis";
import session from "express-session";
import { Redis } from "ioredis";
import { createClient } from "redis";
import { freePort, lastLine, sleep, start, stop } from "./lib/processes.js";
import type { MemoryResult } from "./lib/results.js";
import { ROOT } from "./lib/variants.js";

type Row = MemoryResult["rows"][number];

const BATCH = 1_000;

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1]);
}

/** Runs `create(i)` n times, BATCH at a time (the clients pipeline each batch). */
async function inBatches(n: number, create: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    const batch: Array<Promise<unknown>> = [];
    for (let j = i; j < Math.min(n, i + BATCH); j += 1) batch.push(create(j));
    await Promise.all(batch);
  }
}

async function measure(admin: Redis, n: number, create: (i: number) => Promise<unknown>): Promise<number> {
  await admin.flushall();
  await sleep(100);
  const before = await usedMemory(admin);
  await inBatches(n, create);
  const after = await usedMemory(admin);
  return (after - before) / n;
}

async function connectRedis(url: string, admin: Redis, n: number): Promise<Row> {
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  try {
    const store = new RedisStore({ client });
    // The session object express-session hands its store: the tutorial's cookie and what /login sets.
    // @types/express-session declares no constructor options, but Cookie takes them.
    const CookieWithOptions = session.Cookie as unknown as new (options: object) => session.Cookie;
    const cookie = new CookieWithOptions({ httpOnly: true, secure: false, maxAge: 30 * 60 * 1000 });
    const data = { cookie, userId: 1 } as unknown as session.SessionData;
    // express-session's default genid: uid-safe(24), 32 base64url characters.
    const bytes = await measure(admin, n, () => store.set(randomBytes(24).toString("base64url"), data));
    const sample = (await admin.keys("sess:*")).at(0);
    const valueBytes = sample === undefined ? null : Buffer.byteLength((await admin.get(sample)) ?? "");
    return {
      name: "connect-redis",
      label: "connect-redis 9 via express-session's store API (seed)",
      status: "ok",
      error: null,
      bytesPerSession: bytes,
      valueBytes,
    };
  } finally {
    await client.close();
  }
}

async function minimal(admin: Redis, url: string, n: number): Promise<Row> {
  const client = new Redis(url);
  client.on("error", () => {});
  try {
    const exp = Date.now() + 1_800_000;
    const value = JSON.stringify({ userId: "0193a5f0-6c1e-7000-8000-000000000001", exp });
    const bytes = await measure(admin, n, () => client.set(`sess:${randomBytes(24).toString("base64url")}`, value, "EX", 1800));
    return {
      name: "minimal",
      label: "reference: SET sess:<32 chars> {userId (UUID), exp} EX 1800",
      status: "ok",
      error: null,
      bytesPerSession: bytes,
      valueBytes: Buffer.byteLength(value),
    };
  } finally {
    client.disconnect();
  }
}

/**
 * Latch's Redis session store. Its module is loaded at run time (it may not
 * exist yet on this branch), so it is typed loosely here and every shape
 * mismatch is reported as "unavailable" with the reason.
 */
async function latch(admin: Redis, url: string, n: number): Promise<Row> {
  const label = "Latch Redis session store (no user agent)";
  const dir = join(ROOT, "src", "stores", "redis");
  if (!existsSync(dir))
    return {
      name: "latch",
      label,
      status: "unavailable",
      error: "src/stores/redis/ does not exist in this build",
      bytesPerSession: null,
      valueBytes: null,
    };
  try {
    type AnyModule = Record<string, unknown>;
    const load = (path: string): Promise<AnyModule> => import(pathToFileURL(join(ROOT, path)).href) as Promise<AnyModule>;
    const redisModule = await load("src/stores/redis/index.ts");
    const memoryModule = await load("src/stores/memory/index.ts");
    const sessionsModule = await load("src/core/sessions.ts");
    const createMemoryStores = memoryModule.createMemoryStores as ((...args: unknown[]) => AnyModule) | undefined;
    const factory = (redisModule.createRedisStores ?? redisModule.createRedisSessionStore) as ((...args: unknown[]) => unknown) | undefined;
    if (createMemoryStores === undefined || factory === undefined) {
      throw new Error(
        `expected createMemoryStores and createRedisStores/createRedisSessionStore; found ${Object.keys(redisModule).join(", ")}`,
      );
    }
    const runtime = { clock: { now: () => Date.now() }, random: (b: Uint8Array) => void randomFillSync(b) };
    const database = createMemoryStores({ clock: runtime.clock });
    const built = (await factory({ url, database, runtime, clock: runtime.clock })) as AnyModule;
    const sessionStore = (built.sessions ?? built) as AnyModule;
    if (typeof sessionStore.createSession !== "function") throw new Error("the Redis store has no createSession()");
    const users = (database.users ?? built.users) as { createUser(u: unknown): Promise<void> };
    const now = Date.now();
    const userId = "0193a5f0-6c1e-7000-8000-000000000001";
    await users.createUser({
      id: userId,
      username: "memory.bench",
      usernameKey: "memory.bench",
      email: null,
      emailKey: null,
      passwordHash: "$argon2id$x",
      roles: ["user"],
      mfa: false,
      createdAt: now,
      updatedAt: now,
    });
    const manager = (sessionsModule.createSessionManager as (o: unknown) => { create(userId: string, m: unknown): Promise<unknown> })({
      store: sessionStore,
      runtime,
      policy: { idleTimeoutMs: 1_800_000, absoluteTimeoutMs: 86_400_000, renewIntervalMs: 60_000 },
    });
    const bytes = await measure(admin, n, () => manager.create(userId, { userAgent: null, ipAddress: null }));
    const close = (built.close ?? (built as { quit?: unknown }).quit) as (() => Promise<void>) | undefined;
    await close?.call(built).catch(() => {});
    return { name: "latch", label, status: "ok", error: null, bytesPerSession: bytes, valueBytes: null };
  } catch (error) {
    return {
      name: "latch",
      label,
      status: "failed",
      error: error instanceof Error ? error.message : String(error),
      bytesPerSession: null,
      valueBytes: null,
    };
  }
}

export async function measureMemory(sessions: number): Promise<MemoryResult> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const server = start("redis-memory", "redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "yes",
  ]);
  const admin = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 1 });
  admin.on("error", () => {});
  const result: MemoryResult = { status: "ok", error: null, sessions, redisVersion: "unknown", rows: [] };
  try {
    for (let attempt = 0; ; attempt += 1) {
      try {
        await admin.connect();
        break;
      } catch (error) {
        if (attempt >= 50) throw new Error(`private redis-server did not start: ${lastLine(server.output()) || String(error)}`);
        admin.disconnect();
        await sleep(100);
      }
    }
    result.redisVersion = /redis_version:(\S+)/.exec(await admin.info("server"))?.[1] ?? "unknown";
    result.rows.push(await connectRedis(url, admin, sessions));
    result.rows.push(await latch(admin, url, sessions));
    result.rows.push(await minimal(admin, url, sessions));
  } catch (error) {
    result.status = "failed";
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    admin.disconnect();
    await stop(server);
  }
  return result;
}

const isMain = import.meta.url === pathToFileURL(process.argv[1] ?? "").href;
if (isMain) {
  const sessions = Number(process.env.BENCH_MEMORY_SESSIONS ?? 100_000);
  const result = await measureMemory(sessions);
  if (process.argv.includes("--json")) {
    console.log(`BENCH_JSON ${JSON.stringify(result)}`);
  } else {
    console.log(`Redis ${result.redisVersion}, ${sessions.toLocaleString("en-US")} sessions each`);
    for (const row of result.rows) {
      console.log(
        `  ${row.label}: ${row.bytesPerSession === null ? `${row.status}: ${row.error}` : `${Math.round(row.bytesPerSession)} B/session${row.valueBytes === null ? "" : ` (value ${row.valueBytes} B)`}`}`,
      );
    }
    if (result.status !== "ok") console.log(`failed: ${result.error}`);
  }
  process.exit(result.status === "ok" ? 0 : 1);
}
