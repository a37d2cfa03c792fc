import type pg from "pg";

/**
 * Runs `work` inside BEGIN … COMMIT on one pooled connection, rolling back
 * when it throws. Errors are passed through unmapped; callers map them.
 *
 * @example
 * const n = await withTransaction(pool, async (client) => (await client.query("DELETE FROM t")).rowCount ?? 0);
 */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A connection whose ROLLBACK failed is in an unknown state (perhaps still
  // inside the transaction, holding its locks): destroy it instead of
  // returning it to the pool.
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    try {
      await client.query("ROLLBACK");
    } catch (rollbackError) {
      broken = rollbackError instanceof Error ? rollbackError : new Error("ROLLBACK failed");
    }
    throw error;
  } finally {
    client.release(broken);
  }
}
