// Types for better-auth-sessions.mjs (plain JavaScript so the baseline server runs under plain node).
import type { Database } from "better-sqlite3";

export declare const BETTER_AUTH_COOKIE: "better-auth.session_token";
export declare const BETTER_AUTH_BENCH_SECRET: string;
export declare const BETTER_AUTH_LOGIN: { email: string; password: string };

export declare function betterAuthOptions(o: { db: Database; secret?: string; baseURL?: string }): Record<string, unknown>;
export declare function migrateBetterAuth(db: Database): Promise<void>;
export declare function betterAuthCookieValue(token: string, secret?: string): string;

export interface SeedBetterAuthSessionsOptions {
  /** The SQLite file (created and migrated when needed). */
  dbPath: string;
  /** How many live sessions to write. */
  count: number;
  /** Written with one cookie value per line, for `Cookie: better-auth.session_token=<line>`. */
  outFile: string;
  /** How many users own them (default ceil(count / 2)). */
  users?: number;
  /** The server's BETTER_AUTH_SECRET (default the bench's fixed one). */
  secret?: string;
  /** Epoch ms the sessions are dated from (default Date.now()). */
  now?: number;
}

export declare function seedBetterAuthSessions(options: SeedBetterAuthSessionsOptions): Promise<{ sessions: number; users: number }>;
