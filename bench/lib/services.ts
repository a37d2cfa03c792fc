import { Redis } from "ioredis";
import pg from "pg";

/**
 * The shared services the variants use. The harness never starts, stops or
 * flushes them: Redis keeps its data (the baselines write keys under their
 * own prefixes, with TTLs), and PostgreSQL gets one bench database of its
 * own, dropped and created at the start of a run and dropped at its end.
 */
export async function redisVersion(url: string): Promise<string | null> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2_000, retryStrategy: () => null });
  client.on("error", () => {});
  try {
    await client.connect();
    const info = await client.info("server");
    return /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}

const DB_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

async function admin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 3_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops and recreates `database`; returns its URL and the server's version, or null when PostgreSQL is not there. */
export async function preparePostgres(adminUrl: string, database: string): Promise<{ url: string; version: string } | null> {
  if (!DB_NAME.test(database)) throw new Error(`BENCH_POSTGRES_DB must be a plain lower-case name, got ${database}`);
  try {
    return await admin(adminUrl, async (client) => {
      const version = ((await client.query<{ server_version: string }>("SHOW server_version")).rows[0]?.server_version ?? "unknown").split(
        " ",
      )[0]!;
      await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await client.query(`CREATE DATABASE ${database}`);
      const url = new URL(adminUrl);
      url.pathname = `/${database}`;
      return { url: url.toString(), version };
    });
  } catch {
    return null;
  }
}

export async function dropPostgres(adminUrl: string, database: string): Promise<void> {
  if (!DB_NAME.test(database)) return;
  await admin(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => {});
}
