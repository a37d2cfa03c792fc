import { existsSync } from "node:fs";
import { ConfigError, loadConfig } from "../core/config.js";
import type { Config } from "../core/config.js";
import { createTokenService } from "../core/tokens.js";
import { openStores } from "../stores/open-stores.js";
import { ADMIN_USAGE, QUIET, runAdminCommand } from "./admin-commands.js";
import { serve, systemRuntime } from "./serve.js";

/**
 * The composition root: `latch serve` (what `npm start` runs) and the admin
 * commands. Only the entry point (main.ts) imports this file, once it has
 * warmed the tick queue.
 */
export async function main(argv: string[]): Promise<number> {
  // A .env in the working directory is read too; real environment variables win.
  if (existsSync(".env")) process.loadEnvFile(".env");
  const [command = "serve"] = argv;
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`latch: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  switch (command) {
    case "serve":
      try {
        await serve(config);
      } catch (error) {
        if (error instanceof ConfigError) {
          process.stderr.write(`latch: ${error.message}\n`);
          return 2;
        }
        throw error;
      }
      return 0;
    case "keys":
      return keysCommand(config, argv.slice(1));
    case "users":
    case "sessions":
      return runAdminCommand(
        config,
        argv,
        (line) => process.stdout.write(`${line}\n`),
        (line) => process.stderr.write(`${line}\n`),
      );
    default:
      process.stderr.write(`latch: unknown command "${command}".\n  latch serve\n  latch keys rotate | list\n${ADMIN_USAGE}\n`);
      return 2;
  }
}

/**
 * `latch keys rotate` and `latch keys list`: the token signing keys in the
 * database. A rotation makes a key of TOKEN_ALG. Running servers pick up a rotation within their key refresh
 * interval; retired keys stay published until every token they signed has
 * expired. Exit code 0 done, 1 failed, 2 usage.
 */
async function keysCommand(config: Config, args: string[]): Promise<number> {
  const [action] = args;
  if (args.length !== 1 || (action !== "rotate" && action !== "list")) {
    process.stderr.write("Usage: latch keys rotate | latch keys list\n");
    return 2;
  }
  const stores = await openStores(config, { logger: QUIET });
  try {
    const tokens = createTokenService({
      keys: stores.keys,
      runtime: systemRuntime(),
      issuer: config.issuer,
      ttlSeconds: config.tokenTtlSeconds,
      keySecret: config.tokenKeySecret,
      algorithm: config.tokenAlgorithm,
    });
    if (action === "rotate") {
      const key = await tokens.rotate();
      process.stdout.write(
        `rotated: ${key.kid} (${key.alg}) signs new tokens; the previous key stays in the JWKS for ${Math.ceil(tokens.retentionMs / 1000)} s\n`,
      );
      return 0;
    }
    const keys = await tokens.list();
    if (keys.length === 0) process.stdout.write("no signing keys yet: the first is created when the server starts\n");
    for (const key of keys) {
      const retired = key.retiredAt === null ? "-" : new Date(key.retiredAt).toISOString();
      process.stdout.write(
        `${key.kid}  ${key.alg.padEnd(5)}  ${key.status.padEnd(9)}  created ${new Date(key.createdAt).toISOString()}  retired ${retired}\n`,
      );
    }
    return 0;
  } catch (error) {
    process.stderr.write(`latch: could not ${action} the signing keys: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    await stores.close();
  }
}
