import type { CookieOptions, OriginPolicy, RequestAuthenticator } from "../auth/index.js";
import type { Accounts } from "../core/accounts.js";
import type { Config } from "../core/config.js";
import type { RelyingParty } from "../core/passkeys.js";
import type { Runtime } from "../core/runtime.js";
import type { SecondFactors } from "../core/second-factors.js";
import type { SessionManager } from "../core/sessions.js";
import type { OutboxMessage, QueueMessageOptions, Stores } from "../core/store.js";
import type { TokenService } from "../core/tokens.js";
import type { Metrics } from "./metrics.js";
import type { OutageLog } from "./outages.js";

/** What every route is handed: built once in `buildServer`. */
export interface ServerContext {
  config: Config;
  stores: Stores;
  runtime: Runtime;
  sessions: SessionManager;
  accounts: Accounts;
  tokens: TokenService;
  /** TOTP and recovery codes (src/core/second-factors.ts). */
  factors: SecondFactors;
  /** Passkeys' relying party: PUBLIC_URL's host and origin. */
  relyingParty: RelyingParty;
  /** Who is this request (src/auth/request-auth.ts): the guards, the fast path and the pages ask it. */
  auth: RequestAuthenticator;
  cookieName: string;
  cookieOptions: CookieOptions;
  origins: OriginPolicy;
  metrics: Metrics;
  /** Store outages, logged once each way (src/server/outages.ts). */
  outages: OutageLog;
  mail: MailQueue;
}

/** Queues messages for the outbox sender; a request never waits for mail to go out. */
export interface MailQueue {
  /** Inserts the message (with its token, atomically) and wakes this process's sender. */
  queue(message: OutboxMessage, options?: QueueMessageOptions): Promise<void>;
  /** Tells the sender that a message was queued by other means (inside a store transaction). */
  wake(): void;
  /** Called after every message this process queued; the sender attaches here. */
  onQueued(listener: () => void): void;
  /**
   * Runs `task` once the current response has gone out (the next turn of
   * the event loop), tracked so that shutdown and tests can wait for it.
   * For work whose duration must not show in the response time.
   */
  defer(task: () => Promise<void>): void;
  /** Resolves once no deferred task is left. */
  idle(): Promise<void>;
}
