import pg from "pg";
import { LatchError } from "../../core/errors.js";

/** Socket-level failures: the database cannot be reached at all. */
const socketErrorCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
]);

/**
 * Failures node-postgres reports as plain Errors with no code, recognisable
 * only by message: a full pool, a dropped connection, a pool already ended.
 */
const driverUnavailableMessages = [
  /timeout exceeded when trying to connect/i,
  /connection terminated/i,
  /not queryable/i,
  /query read timeout/i,
  /cannot use a pool after calling end/i,
];

/**
 * SQLSTATEs that mean "the database cannot serve us right now" rather than
 * "this query is wrong": connection exceptions (08), insufficient resources
 * (53, e.g. too many connections), shutdowns and restarts (57P), a cancelled
 * statement (57014, statement_timeout), and a login or database that does not
 * work (28, 3D000), which from a request's point of view is an outage too.
 */
function isUnavailableState(code: string): boolean {
  return /^(08|53|57P|28)/.test(code) || code === "57014" || code === "3D000";
}

function isUnavailable(error: unknown): boolean {
  if (error instanceof pg.DatabaseError) return error.code !== undefined && isUnavailableState(error.code);
  // Node reports a failed connection to a host with several addresses (::1
  // and 127.0.0.1 for localhost) as an AggregateError of per-address errors.
  if (error instanceof AggregateError && error.errors.some(isUnavailable)) return true;
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== undefined && socketErrorCodes.has(code)) return true;
  return driverUnavailableMessages.some((pattern) => pattern.test(error.message));
}

/**
 * A copy of a server error that is safe to log. The server's `detail` repeats
 * row values ("Key (login_key)=(…) already exists", "Failing row contains
 * (…, $argon2id$…)"), and data exceptions (class 22) quote the offending
 * input in the message itself, so neither is kept.
 */
function redacted(error: pg.DatabaseError): Error {
  const code = error.code ?? "";
  const message = code.startsWith("22") ? `invalid input (SQLSTATE ${code})` : error.message;
  const copy = new Error(message) as Error & Partial<Pick<pg.DatabaseError, "code" | "constraint" | "table" | "column" | "schema">>;
  copy.name = "PostgresError";
  copy.code = error.code;
  copy.constraint = error.constraint;
  copy.table = error.table;
  copy.column = error.column;
  copy.schema = error.schema;
  return copy;
}

/**
 * Maps anything a query threw to a LatchError: a unique violation is
 * `conflict`, an unreachable or overloaded database is `unavailable`, and
 * anything else is `internal`. Server errors are redacted first, so no row
 * value (a password hash, a session's secret hash) reaches a log through the
 * cause.
 */
export function toLatchError(error: unknown): LatchError {
  if (error instanceof LatchError) return error;
  const cause = error instanceof pg.DatabaseError ? redacted(error) : error;
  if (isUnavailable(error)) return new LatchError("unavailable", "The database is unavailable.", { cause, backend: "database" });
  if (error instanceof pg.DatabaseError && error.code === "23505") {
    const message =
      error.table === "users" || error.table === "logins"
        ? "That username or email is already registered."
        : "That resource already exists.";
    return new LatchError("conflict", message, { cause });
  }
  // A foreign key miss means the row it points at was deleted first: a
  // session or event for a user removed a moment earlier.
  if (error instanceof pg.DatabaseError && error.code === "23503") {
    return new LatchError("conflict", "The user no longer exists.", { cause });
  }
  return new LatchError("internal", "A database query failed.", { cause });
}
