import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";

/**
 * The public surface as a user meets it: the package built as `npm run
 * build` builds it, and every subpath the README documents imported by
 * name through package.json's `exports` (a self-reference, as from an
 * installed copy), with the exports the README says it has.
 */

const root = resolve(".");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name: string; exports: Record<string, unknown> };

/** `| \`latch/x\` | what | \`a\`, \`b\` |` rows of the README's library table. */
function documented(): Map<string, string[]> {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Using Latch as a library"));
  const rows = new Map<string, string[]>();
  for (const line of section.slice(0, section.indexOf("\n## ", 5)).split("\n")) {
    const match = /^\| `(latch\/[\w/-]+)` \|[^|]*\| (.+) \|$/.exec(line);
    if (match)
      rows.set(
        match[1]!,
        [...match[2]!.matchAll(/`(\w+)`/g)].map((m) => m[1]!),
      );
  }
  return rows;
}

describe("the built package", { timeout: 240_000 }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "latch-package-"));
    const built = spawnSync(process.execPath, [join(root, "scripts", "build.mjs"), "--outDir", join(dir, "dist")], {
      cwd: root,
      encoding: "utf8",
    });
    assert.equal(built.status, 0, `${built.stdout}${built.stderr}`);
    cpSync(join(root, "package.json"), join(dir, "package.json"));
    symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  });
  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("documents exactly the subpaths package.json exports", () => {
    const exported = Object.keys(pkg.exports)
      .map((key) => `${pkg.name}${key.slice(1)}`)
      .sort();
    assert.deepEqual([...documented().keys()].sort(), exported);
  });

  it("carries the pages' script and stylesheet, so the built server (npm start) serves them", () => {
    const run = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        'const m = await import("./dist/web/assets.js"); console.log(JSON.stringify([m.LATCH_JS.length, m.LATCH_CSS.length]));',
      ],
      { cwd: dir, encoding: "utf8" },
    );
    assert.equal(run.status, 0, run.stderr);
    const [script, stylesheet] = JSON.parse(run.stdout) as [number, number];
    assert.equal(script, readFileSync(join(root, "src", "web", "assets", "latch.js"), "utf8").length);
    assert.equal(stylesheet, readFileSync(join(root, "src", "web", "assets", "latch.css"), "utf8").length);
  });

  it("imports every documented subpath by name, each with the exports the README names", () => {
    const rows = [...documented()];
    assert.ok(rows.length >= 10, "the README's table was found");
    const script = join(dir, "check.mjs");
    writeFileSync(
      script,
      `const rows = ${JSON.stringify(rows)};
const out = {};
for (const [subpath] of rows) out[subpath] = Object.keys(await import(subpath)).sort();
console.log(JSON.stringify(out));
process.exit(0);
`,
    );
    const run = spawnSync(process.execPath, [script], { cwd: dir, encoding: "utf8", env: { ...process.env, LATCH_TEST: "1" } });
    assert.equal(run.status, 0, run.stderr);
    const found = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as Record<string, string[]>;
    for (const [subpath, names] of rows) {
      for (const name of names)
        assert.ok(found[subpath]!.includes(name), `${subpath} exports ${name} (it has ${found[subpath]!.join(", ")})`);
    }
    assert.ok(
      !found["latch/core"]!.includes("slotTagFor") && !found["latch/core"]!.includes("csrfTokenFor"),
      "internals stay inside latch/core",
    );
  });
});
