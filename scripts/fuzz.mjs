#!/usr/bin/env node
// Runs the property tests with many more generated cases than `npm test` does, then prints how
// many cases each property ran. Every property multiplies its test-suite count by
// CAPSULE_FUZZ_RUNS (see core/testing/fuzz.ts); the default here gives ~190,000 cases in total.
//
//   npm run fuzz                       the default multiplier
//   CAPSULE_FUZZ_RUNS=50 npm run fuzz  more cases, for a longer hunt
//
// It builds first: the sandbox properties run the built engine.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
execFileSync(process.execPath, [join(root, "scripts/build.mjs")], { stdio: "inherit" });

const PROPERTY_FILES = [
  "core/config/options.test.ts",
  "core/config/units.test.ts",
  "core/policy/paths.test.ts",
  "core/policy/mounts.test.ts",
  "core/policy/hosts.test.ts",
  "core/policy/addresses.test.ts",
  "core/guest/bridge.test.ts",
  "core/python/protocol.test.ts",
  "core/files/loaded-tree.test.ts",
];

const DEFAULT_MULTIPLIER = 14;
const MINIMUM_CASES = 100_000;

const multiplier = process.env.CAPSULE_FUZZ_RUNS || String(DEFAULT_MULTIPLIER);
const reportDirectory = mkdtempSync(join(tmpdir(), "capsule-fuzz-"));
const report = join(reportDirectory, "cases.tsv");

const started = performance.now();
console.log(`fuzz: ${PROPERTY_FILES.length} files, each property at ${multiplier}x its test count`);
const vitest = spawnSync(
  process.execPath,
  [
    join(root, "node_modules/vitest/vitest.mjs"),
    "run",
    // A property at many times its count outlasts the suite's per-test timeout.
    "--testTimeout=900000",
    ...PROPERTY_FILES,
  ],
  {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, CAPSULE_FUZZ_RUNS: multiplier, CAPSULE_FUZZ_REPORT: report },
  },
);
const seconds = ((performance.now() - started) / 1000).toFixed(1);

let lines = [];
try {
  lines = readFileSync(report, "utf8").split("\n").filter(Boolean);
} catch {
  // No property recorded anything: reported below as zero cases.
}
rmSync(reportDirectory, { recursive: true, force: true });

/** Cases per property, keyed by file and test name; a test may run several properties. */
const cases = new Map();
for (const line of lines) {
  const [file, test, runs] = line.split("\t");
  const key = `${file} > ${test}`;
  cases.set(key, (cases.get(key) ?? 0) + Number(runs));
}
const total = [...cases.values()].reduce((sum, runs) => sum + runs, 0);
const width = Math.max(...[...cases.values()].map((runs) => runs.toLocaleString("en").length), 7);

console.log("\nproperty cases");
for (const [property, runs] of [...cases].sort(([a], [b]) => a.localeCompare(b))) {
  console.log(`${runs.toLocaleString("en").padStart(width)}  ${property}`);
}
console.log(
  `${total.toLocaleString("en").padStart(width)}  total, ${cases.size} properties, ${seconds} s`,
);

if (vitest.status !== 0) {
  console.error(`fuzz: vitest failed (exit ${vitest.status ?? vitest.signal})`);
  process.exit(vitest.status || 1);
}
if (total < MINIMUM_CASES) {
  console.error(`fuzz: only ${total} cases ran; at least ${MINIMUM_CASES} were expected`);
  process.exit(1);
}
