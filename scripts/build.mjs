#!/usr/bin/env node
// Builds the package: TypeScript to dist/ (or the directory given with
// --outDir DIR), then the files tsc does not copy: the browser script and
// stylesheet under src/web/assets/, which the server reads from beside its
// own compiled module (src/web/assets.ts), so `npm start` serves them from dist.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const args = process.argv.slice(2);
const at = args.indexOf("--outDir");
const outDir = resolve(at === -1 ? "dist" : args[at + 1]);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const result = spawnSync(process.execPath, [tsc, "-p", "tsconfig.build.json", "--outDir", outDir], { stdio: "inherit" });
if (result.status !== 0) process.exit(result.status ?? 1);
const assets = join("src", "web", "assets");
if (existsSync(assets)) cpSync(assets, join(outDir, "web", "assets"), { recursive: true });
