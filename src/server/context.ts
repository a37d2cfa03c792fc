import type { CookieOptions, OriginPolicy, RequestAuthenticator } from "../auth/index.js";
import type { Accounts } from "../core/accounts.js";
import type { Config } from "../core/config.js";
import type { Runtime } from "../core/runtime.js";
import type { SessionManager } from "../core/sessions.js";
import type { Stores } from "../core/store.js";
import type { TokenService } from "../core/tokens.js";
import type { Metrics } from "./metrics.js";

/** What every route is handed: built once in `buildServer`. */
export interface ServerContext {
  config: Config;
  stores: Stores;
  runtime: Runtime;
  sessions: SessionManager;
  accounts: Accounts;
  tokens: TokenService;
  /** Who is this request (src/auth/request-auth.ts): the guards, the fast path and the pages ask it. */
  auth: RequestAuthenticator;
  cookieName: string;
  cookieOptions: CookieOptions;
  origins: OriginPolicy;
  metrics: Metrics;
}
