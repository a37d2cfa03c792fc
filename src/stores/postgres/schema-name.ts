const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Refuses a schema name that could not be used unquoted in `search_path`
 * (the stores and the revocation listener both put it there).
 */
export function assertSchemaName(schema: string | undefined): void {
  if (schema !== undefined && !SCHEMA_PATTERN.test(schema)) {
    throw new TypeError("schema must be 1 to 63 lower-case letters, digits and underscores, not starting with a digit.");
  }
}
