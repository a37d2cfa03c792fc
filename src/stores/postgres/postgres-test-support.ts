import { randomBytes } from "node:crypto";
import pg from "pg";
import { POSTGRES_URL } from "../../testing/services.js";

/**
 * Test helpers for the PostgreSQL stores: a schema of its own per test, so
 * tests share the `test` database without seeing each other's rows.
 */

/** A fresh schema name (`latch_test_` and 12 hex digits). */
export function testSchemaName(): string {
  return `latch_test_${randomBytes(6).toString("hex")}`;
}

/**
 * Drops the schema and everything in it, on a connection of its own: the
 * stores' pool is closed by then, and dropping a schema from a connection
 * that has it on its search_path would be odd.
 */
export async function dropTestSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
  } finally {
    await client.end();
  }
}
