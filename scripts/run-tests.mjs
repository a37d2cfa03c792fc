#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with Node's test runner and tsx.
// Node 20's --test does not expand globs, so the files are listed here.
// Pass file paths or name fragments to run a subset: npm test -- sqlite
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function find(dir) {
  const out = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...find(path));
    else if (entry.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = ["src", "test"]
  .flatMap((d) => find(d))
  .sort()
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
const args = ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files];
const result = spawnSync(process.execPath, args, { stdio: "inherit", env: { ...process.env, LATCH_TEST: "1" } });
process.exit(result.status ?? 1);
