#!/usr/bin/env node
/**
 * The `latch` command's entry point. A server (`latch serve`, the default)
 * first warms the tick queue (see tick-warmup.ts: it must run before the
 * rest of Latch and its dependencies load, hence the dynamic import); the
 * commands themselves are in commands.ts. Nothing imports this file.
 */
import { warmTickQueue } from "./tick-warmup.js";

const argv = process.argv.slice(2);
if (argv[0] === undefined || argv[0] === "serve") await warmTickQueue();
const { main } = await import("./commands.js");
main(argv).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (error: unknown) => {
    // One line, no stack: start-up failures are operator errors more often than bugs.
    process.stderr.write(`latch: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
