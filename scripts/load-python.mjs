#!/usr/bin/env node
// `node scripts/load-python.mjs`: what hostile Python tasks make the embedding process hold.
// Runs rounds of Python tasks that flood the runtime's channel (one line past the cap, an
// outcome past its cap, many 2 MiB messages, a 20 MiB print), as many at once as the runtime
// runs Python sandboxes, and prints the embedding process's peak memory over its baseline and
// its longest event-loop stall. Exits 1 when a run blames the runtime (internal_error), or when
// the peak passes the stated bound. Run after `node scripts/build.mjs`.
// `node scripts/load-python.mjs --rounds 3` changes the size.
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

if (typeof globalThis.gc !== "function") {
  const child = spawnSync(
    process.execPath,
    ["--expose-gc", fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  process.exit(child.status ?? 1);
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { run, shutdown } = await import(join(root, "dist", "node.mjs"));
const rounds = Number(process.argv[process.argv.indexOf("--rounds") + 1]) || 2;
const MiB = 1024 * 1024;
/** The embedding process's stated bound for these floods, over its baseline. */
const BOUND_MIB = 160;

const task = (body) =>
  `import js, json\nfrom capsule import task\n\n@task(name="main")\ndef main():\n    fs = js.process.getBuiltinModule("fs")\n${body
    .trim()
    .split("\n")
    .map((line) => `    ${line}`)
    .join("\n")}\n    return "survived"\n`;

const FLOODS = {
  "one line past the cap": task(`fs.writeSync(3, "M" + "x" * (64 * 1024 * 1024))`),
  "an outcome past its cap": task(`fs.writeSync(3, "D" + "x" * (64 * 1024 * 1024))`),
  "forty 2 MiB messages":
    task(`line = "M" + json.dumps({"type": "log", "level": "log", "text": "y" * (2 * 1024 * 1024)}) + "\\n"
for i in range(40):
    fs.writeSync(3, line)`),
  "a 20 MiB print": task(`print("z" * (20 * 1024 * 1024))`),
};

const rss = () => process.memoryUsage().rss;
globalThis.gc();
// One run first, so the pool, the engine and the runtime's own code are loaded in the baseline.
await run({ code: task(""), language: "py", env: {} });
globalThis.gc();
const baseline = rss();
let peak = baseline;
const sampler = setInterval(() => {
  peak = Math.max(peak, rss());
}, 5);
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
const outcomes = {};
// As many as the runtime runs Python sandboxes at once (PYTHON_SANDBOXES_AT_ONCE).
const atOnce = Math.max(4, availableParallelism());
const started = performance.now();
for (let round = 0; round < rounds; round++) {
  for (const [name, code] of Object.entries(FLOODS)) {
    const envelopes = await Promise.all(
      Array.from({ length: atOnce }, () => run({ code, language: "py", env: {} })),
    );
    for (const envelope of envelopes) {
      const key = `${name}: ${envelope.error?.error_type ?? "success"}`;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    }
  }
}
clearInterval(sampler);
delay.disable();
await shutdown();
const peakMiB = (peak - baseline) / MiB;
console.log("## Python floods against the embedding process\n");
console.log(
  `- ${rounds} rounds, ${atOnce} tasks at once per flood, ${Math.round(performance.now() - started)} ms`,
);
console.log(
  `- baseline RSS ${(baseline / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB: +${peakMiB.toFixed(0)} MiB (bound ${BOUND_MIB} MiB)`,
);
console.log(
  `- event-loop delay: p50 ${(delay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`,
);
console.log("- outcomes:");
for (const [key, count] of Object.entries(outcomes)) console.log(`  - ${key}: ${count}`);
const blamedRuntime = Object.keys(outcomes).some((key) => key.endsWith("internal_error"));
process.exit(blamedRuntime || peakMiB > BOUND_MIB ? 1 : 0);
