import { z } from "zod";
import { DEFAULT_TOKEN_ALGORITHM, TOKEN_ALGORITHMS } from "./tokens.js";
import type { TokenAlgorithm } from "./tokens.js";

/**
 * Configuration is read once, validated, and given secure defaults in this
 * one place (after @fastify/session's checkOptions/ensureDefaults). No secret
 * has a default: there is none to have, since session ids are random and
 * signing keys are generated into the database.
 */
export interface Config {
  port: number;
  host: string;
  database: { kind: "sqlite"; path: string } | { kind: "postgres"; url: string };
  redisUrl: string | null;
  session: {
    idleTimeoutMs: number;
    absoluteTimeoutMs: number;
    /** Minimum time between two idle-expiry renewals of one session (the throttled "touch"). */
    renewIntervalMs: number;
  };
  /** Origins allowed for CORS with credentials and for state-changing requests. */
  trustedOrigins: string[];
  /**
   * PUBLIC_URL: where people reach Latch, without a trailing slash (default
   * `http://localhost:PORT`). Its origin is the server's own (never the Host
   * header's), links in mail start with it, and its host is the WebAuthn
   * relying-party ID.
   */
  publicUrl: string;
  mail: {
    /** SMTP_URL: `smtp://` or `smtps://`; null writes `.eml` files to `outbox` instead. */
    smtpUrl: string | null;
    /** MAIL_FROM: the From of every message. */
    from: string;
    /** MAIL_OUTBOX: the folder for `.eml` files when there is no SMTP server. */
    outbox: string;
  };
  admin: { username: string; password: string } | null;
  /** Proxy addresses or CIDRs whose X-Forwarded-For is believed. */
  trustProxy: string[];
  production: boolean;
  bodyLimitBytes: number;
  /** How long a client may take to send a whole request (headers and body) before it gets 408 and is disconnected. */
  requestTimeoutMs: number;
  /** How long a client may take to send its request headers; at most {@link requestTimeoutMs}. */
  headersTimeoutMs: number;
  throttle: {
    accountFailures: number;
    accountWindowMs: number;
    addressFailures: number;
    addressWindowMs: number;
    registrations: number;
    registrationWindowMs: number;
    /** POST /password/forgot requests per client address per window (then 429). */
    passwordResets: number;
    passwordResetWindowMs: number;
    /** Reset messages per account per hour; requests beyond it still get 202 and send nothing. */
    resetMessagesPerAccount: number;
  };
  tokenTtlSeconds: number;
  /** TOKEN_ALG: the algorithm of new signing keys (a change takes effect at the next start). */
  tokenAlgorithm: TokenAlgorithm;
  /** Seals signing keys at rest when set (32+ characters); null keeps them as plain JWK. */
  tokenKeySecret: string | null;
  /**
   * Seals TOTP secrets at rest (AES-256-GCM): MFA_KEY_SECRET, else
   * TOKEN_KEY_SECRET, else null (stored unsealed, as signing keys are
   * without TOKEN_KEY_SECRET; warned about in production).
   */
  mfaKeySecret: string | null;
  /** The `iss` claim of issued tokens. */
  issuer: string;
  eventRetentionDays: number;
  /** Expired-session sweep interval. */
  sweepIntervalMs: number;
  logLevel: string;
  /** Concurrent password hashes allowed. */
  hashConcurrency: number;
  /** Most sessions the in-process cache holds (SESSION_CACHE_SIZE); about 2.5 KB of memory each. */
  sessionCacheSize: number;
  /** Server processes on one port (WORKERS: a number, or `auto` for the available cores, resolved by the CLI). */
  workers: number | "auto";
}

/** One line naming the variable, for start-up errors. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = "ConfigError";
  }
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const origin = z.string().transform((value, ctx) => {
  try {
    const url = new URL(value.trim());
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.pathname !== "/" || url.search || url.hash) {
      throw new Error("not an origin");
    }
    return url.origin;
  } catch {
    ctx.addIssue({ code: "custom", message: `must be a comma-separated list of origins like https://app.example.com (got "${value}")` });
    return z.NEVER;
  }
});

const publicUrl = z.string().transform((value, ctx) => {
  try {
    const url = new URL(value.trim());
    if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash || url.username || url.password) {
      throw new Error("not a base URL");
    }
    return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  } catch {
    ctx.addIssue({
      code: "custom",
      message: `must be the http(s) URL people reach Latch at, like https://auth.example.com (got "${value}")`,
    });
    return z.NEVER;
  }
});

const smtpUrl = z
  .string()
  .trim()
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return (url.protocol === "smtp:" || url.protocol === "smtps:") && url.hostname !== "" && url.pathname.replace(/\/$/, "") === "";
      } catch {
        return false;
      }
    },
    { message: "must be smtp://[user:password@]host:port or smtps://… (no path)" },
  );

// An address, or a display name with an address in angle brackets. Line
// breaks are refused: a From header must never carry a second header.
const mailFrom = z
  .string()
  .trim()
  .refine((v) => /^([^\r\n<>]*<[^\s@<>]+@[^\s@<>]+>|[^\s@<>]+@[^\s@<>]+)$/.test(v), {
    message: 'must be an address like no-reply@example.com or "Name <no-reply@example.com>"',
  });

const cidr = z
  .string()
  .trim()
  .refine((v) => /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]+)(\/\d{1,3})?$/.test(v) || v === "loopback", {
    message: "must be a comma-separated list of IP addresses or CIDRs",
  });

const list = <T extends z.ZodType<unknown, string>>(item: T) =>
  z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    )
    .pipe(z.array(item));

const schema = z.object({
  PORT: int(0, 65535).default(3000),
  HOST: z.string().trim().min(1, "must not be empty").default("127.0.0.1"),
  DATABASE_URL: z
    .string()
    .trim()
    .default("sqlite:./data/latch.db")
    .transform((value, ctx) => {
      if (value.startsWith("sqlite:")) {
        const path = value.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
        if (!path) ctx.addIssue({ code: "custom", message: "must name a file, like sqlite:./data/latch.db" });
        return { kind: "sqlite" as const, path };
      }
      if (/^postgres(ql)?:\/\//.test(value)) return { kind: "postgres" as const, url: value };
      ctx.addIssue({ code: "custom", message: "must start with sqlite: or postgres://" });
      return z.NEVER;
    }),
  REDIS_URL: z
    .string()
    .trim()
    .refine((v) => v === "" || /^rediss?(\+cluster)?:\/\//.test(v), { message: "must start with redis://, rediss:// or redis+cluster://" })
    .optional(),
  SESSION_IDLE_TIMEOUT: int(1, 31_536_000).default(1800),
  SESSION_ABSOLUTE_TIMEOUT: int(1, 31_536_000).default(86_400),
  TRUSTED_ORIGINS: list(origin).optional(),
  PUBLIC_URL: publicUrl.optional(),
  SMTP_URL: smtpUrl.optional(),
  MAIL_FROM: mailFrom.default("Latch <no-reply@localhost>"),
  MAIL_OUTBOX: z.string().trim().min(1, "must name a folder").default("./data/outbox"),
  ADMIN_USERNAME: z.string().optional(),
  ADMIN_PASSWORD: z.string().optional(),
  TRUST_PROXY: list(cidr).default([]),
  NODE_ENV: z.string().optional(),
  BODY_LIMIT: int(1024, 10_485_760).default(16_384),
  REQUEST_TIMEOUT: int(1, 3600).default(30),
  HEADERS_TIMEOUT: int(1, 3600).default(10),
  THROTTLE_ACCOUNT_FAILURES: int(1, 1_000_000).default(10),
  THROTTLE_ACCOUNT_WINDOW: int(1, 31_536_000).default(900),
  THROTTLE_ADDRESS_FAILURES: int(1, 1_000_000).default(100),
  THROTTLE_ADDRESS_WINDOW: int(1, 31_536_000).default(900),
  THROTTLE_REGISTRATIONS: int(1, 1_000_000).default(100),
  THROTTLE_REGISTRATION_WINDOW: int(1, 31_536_000).default(3600),
  THROTTLE_PASSWORD_RESETS: int(1, 1_000_000).default(100),
  THROTTLE_PASSWORD_RESET_WINDOW: int(1, 31_536_000).default(3600),
  THROTTLE_RESET_MESSAGES: int(1, 1000).default(3),
  TOKEN_TTL: int(30, 900).default(900),
  TOKEN_ALG: z
    .enum(TOKEN_ALGORITHMS, { error: `must be one of ${TOKEN_ALGORITHMS.join(", ")} (case matters)` })
    .default(DEFAULT_TOKEN_ALGORITHM),
  TOKEN_ISSUER: z.string().trim().min(1).optional(),
  TOKEN_KEY_SECRET: z.string().min(32, "must be at least 32 characters (a random string; keep it out of the database)").optional(),
  MFA_KEY_SECRET: z.string().min(32, "must be at least 32 characters (a random string; keep it out of the database)").optional(),
  EVENT_RETENTION_DAYS: int(1, 3650).default(90),
  SWEEP_INTERVAL: int(1, 86_400).default(300),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  HASH_CONCURRENCY: int(1, 64).default(1),
  SESSION_CACHE_SIZE: int(1_000, 100_000_000).default(250_000),
  WORKERS: z
    .string()
    .trim()
    .refine((v) => v === "auto" || /^[1-9][0-9]{0,2}$/.test(v), { message: 'must be a number of processes (1 to 999) or "auto"' })
    .default("1"),
});

/**
 * Reads configuration from an environment record. Throws a {@link ConfigError}
 * naming the first bad variable.
 *
 * @example
 * const config = loadConfig(process.env);
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "unset", as in most shells' .env handling.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? "environment"), issue.message);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === "production";
  if (production && (e.TRUSTED_ORIGINS === undefined || e.TRUSTED_ORIGINS.length === 0)) {
    throw new ConfigError("TRUSTED_ORIGINS", "must be set when NODE_ENV=production (the origins your pages are served from)");
  }
  if (e.SESSION_ABSOLUTE_TIMEOUT < e.SESSION_IDLE_TIMEOUT) {
    throw new ConfigError("SESSION_ABSOLUTE_TIMEOUT", `must be at least SESSION_IDLE_TIMEOUT (${e.SESSION_IDLE_TIMEOUT})`);
  }
  if ((e.ADMIN_USERNAME === undefined) !== (e.ADMIN_PASSWORD === undefined)) {
    throw new ConfigError(
      e.ADMIN_USERNAME === undefined ? "ADMIN_USERNAME" : "ADMIN_PASSWORD",
      "must be set together with the other ADMIN_ variable",
    );
  }
  const idleTimeoutMs = e.SESSION_IDLE_TIMEOUT * 1000;
  return {
    port: e.PORT,
    host: e.HOST,
    database: e.DATABASE_URL,
    redisUrl: e.REDIS_URL ? e.REDIS_URL : null,
    session: {
      idleTimeoutMs,
      absoluteTimeoutMs: e.SESSION_ABSOLUTE_TIMEOUT * 1000,
      // A tenth of the idle timeout, at most a minute: a session may end at
      // most that much before a per-request write would have ended it.
      renewIntervalMs: Math.min(60_000, Math.floor(idleTimeoutMs / 10)),
    },
    trustedOrigins: e.TRUSTED_ORIGINS ?? [],
    publicUrl: e.PUBLIC_URL ?? `http://localhost:${e.PORT}`,
    mail: { smtpUrl: e.SMTP_URL ?? null, from: e.MAIL_FROM, outbox: e.MAIL_OUTBOX },
    admin:
      e.ADMIN_USERNAME !== undefined && e.ADMIN_PASSWORD !== undefined ? { username: e.ADMIN_USERNAME, password: e.ADMIN_PASSWORD } : null,
    trustProxy: e.TRUST_PROXY,
    production,
    bodyLimitBytes: e.BODY_LIMIT,
    // Node refuses a headers timeout longer than the request's.
    requestTimeoutMs: e.REQUEST_TIMEOUT * 1000,
    headersTimeoutMs: Math.min(e.HEADERS_TIMEOUT, e.REQUEST_TIMEOUT) * 1000,
    throttle: {
      accountFailures: e.THROTTLE_ACCOUNT_FAILURES,
      accountWindowMs: e.THROTTLE_ACCOUNT_WINDOW * 1000,
      addressFailures: e.THROTTLE_ADDRESS_FAILURES,
      addressWindowMs: e.THROTTLE_ADDRESS_WINDOW * 1000,
      registrations: e.THROTTLE_REGISTRATIONS,
      registrationWindowMs: e.THROTTLE_REGISTRATION_WINDOW * 1000,
      passwordResets: e.THROTTLE_PASSWORD_RESETS,
      passwordResetWindowMs: e.THROTTLE_PASSWORD_RESET_WINDOW * 1000,
      resetMessagesPerAccount: e.THROTTLE_RESET_MESSAGES,
    },
    tokenTtlSeconds: e.TOKEN_TTL,
    tokenAlgorithm: e.TOKEN_ALG,
    tokenKeySecret: e.TOKEN_KEY_SECRET ?? null,
    mfaKeySecret: e.MFA_KEY_SECRET ?? e.TOKEN_KEY_SECRET ?? null,
    issuer: e.TOKEN_ISSUER ?? "latch",
    eventRetentionDays: e.EVENT_RETENTION_DAYS,
    sweepIntervalMs: e.SWEEP_INTERVAL * 1000,
    logLevel: e.LOG_LEVEL,
    hashConcurrency: e.HASH_CONCURRENCY,
    sessionCacheSize: e.SESSION_CACHE_SIZE,
    workers: e.WORKERS === "auto" ? "auto" : Number(e.WORKERS),
  };
}
