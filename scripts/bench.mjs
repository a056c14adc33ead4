#!/usr/bin/env node
// `npm run bench`: builds, then runs every benchmark in one process and prints a Markdown report.
// `npm run bench -- --write` also replaces the results section of BENCH.md with it.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTool } from "./load-tool.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
execFileSync(process.execPath, [join(root, "scripts/build.mjs")], { stdio: "inherit" });
const { main } = await loadTool(root, "bench/index.ts");
const report = await main(root);
process.stdout.write(`${report}\n`);
if (process.argv.includes("--write")) {
  const path = join(root, "BENCH.md");
  const marker = "<!-- results -->";
  const current = readFileSync(path, "utf8");
  const head = current.includes(marker)
    ? current.slice(0, current.indexOf(marker))
    : `${current}\n`;
  writeFileSync(path, `${head}${marker}\n${report}\n`);
  process.stderr.write("[bench] BENCH.md updated\n");
}
