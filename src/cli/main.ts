#!/usr/bin/env node
import { existsSync } from "node:fs";
import { ConfigError, loadConfig } from "../core/config.js";
import { serve } from "./serve.js";

/**
 * The composition root: `latch serve` (what `npm start` runs) and the admin
 * commands. Nothing imports this file.
 */
async function main(argv: string[]): Promise<number> {
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
    default:
      process.stderr.write(`latch: unknown command "${command}". Try: latch serve\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (error: unknown) => {
    // One line, no stack: start-up failures are operator errors more often than bugs.
    process.stderr.write(`latch: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
