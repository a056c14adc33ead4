#!/usr/bin/env node
// `npm run bench`: builds, then runs every benchmark in one process and prints a Markdown report.
// `npm run bench -- --write` also replaces the results section of BENCH.md with it.
// `npm run bench -- --only=<name>` runs bench/<name>.ts alone (its `main`).
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTool } from "./load-tool.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
execFileSync(process.execPath, [join(root, "scripts/build.mjs")], { stdio: "inherit" });
// `npm run bench -- --only=playground-paint`: one bench file's own `main`, printed, never written.
const only = process.argv.find((arg) => arg.startsWith("--only="))?.slice("--only=".length);
if (only !== undefined && !/^[a-z][a-z0-9-]*$/.test(only)) {
  throw new Error(`--only=${only}: give the name of a file in bench/, without .ts`);
}
const { main } = await loadTool(root, only === undefined ? "bench/index.ts" : `bench/${only}.ts`);
const report = await main(root);
process.stdout.write(`${report}\n`);
if (only === undefined && process.argv.includes("--write")) {
  const path = join(root, "BENCH.md");
  const marker = "<!-- results -->";
  const current = readFileSync(path, "utf8");
  const head = current.includes(marker)
    ? current.slice(0, current.indexOf(marker))
    : `${current}\n`;
  writeFileSync(path, `${head}${marker}\n${report}\n`);
  process.stderr.write("[bench] BENCH.md updated\n");
}
