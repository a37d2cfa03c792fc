import { createHash } from "node:crypto";

/**
 * The advisory locks Latch takes, as the two-key form `(namespace, scope)`.
 * The namespace says what the lock guards; the scope is derived from the
 * schema, because several deployments (or test runs) may share one database in
 * different schemas and must not serialise each other's migrations or starve
 * each other's sweepers. Advisory keys are database-wide, so a bare constant
 * would couple them.
 */
const namespaces = {
  /** Held for the whole migration transaction. ASCII "LTM1". */
  migrations: 0x4c544d31,
  /** Held by the one process sweeping expired sessions. ASCII "LTS1". */
  sweeper: 0x4c545331,
} as const;

export type AdvisoryLock = keyof typeof namespaces;

/**
 * The `(int4, int4)` arguments for `pg_advisory_xact_lock` and
 * `pg_try_advisory_xact_lock`. Without a schema the scope is the default one
 * that every schema-less deployment in the database shares.
 *
 * @example
 * await client.query("SELECT pg_advisory_xact_lock($1, $2)", advisoryLockKeys("migrations", "latch"));
 */
export function advisoryLockKeys(lock: AdvisoryLock, schema: string | undefined): [number, number] {
  const scope = createHash("sha256")
    .update(schema ?? "")
    .digest()
    .readInt32BE(0);
  return [namespaces[lock], scope];
}
