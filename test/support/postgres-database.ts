import { randomBytes } from "node:crypto";
import pg from "pg";
import { POSTGRES_URL } from "../../src/testing/services.js";

/**
 * A PostgreSQL database of its own for one test file: created on the server
 * that LATCH_TEST_POSTGRES_URL names (default 127.0.0.1:5432, user postgres),
 * through its `postgres` maintenance database, and dropped with FORCE at the
 * end, so that processes still connected (a Latch killed with SIGKILL) cannot
 * keep it alive.
 */
export interface TestDatabase {
  name: string;
  /** A `postgres://` URL for DATABASE_URL. */
  url: string;
  /** Runs one query on a connection of its own. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  drop(): Promise<void>;
}

function withDatabase(name: string): string {
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function once<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on("error", () => {});
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * @example
 * const db = await createTestDatabase("latch_mp");
 * after(() => db.drop());
 * await startLatch({ DATABASE_URL: db.url });
 */
export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const maintenance = withDatabase("postgres");
  await once(maintenance, (client) => client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  const url = withDatabase(name);
  let dropped = false;
  return {
    name,
    url,
    query: (text, values) => once(url, (client) => client.query(text, values)),
    async drop() {
      if (dropped) return;
      dropped = true;
      await once(maintenance, (client) => client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`));
    },
  };
}
