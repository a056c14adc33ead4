#!/usr/bin/env node
// `npm run load`: builds, then runs a bounded load test (10,000 tasks of mixed outcomes, 200 in
// flight) through the public run() and prints a Markdown report. Exits 1 when a task lost its
// envelope, got two, or got the wrong one, or when memory or event-loop delay exceed the bounds.
// `npm run load -- --tasks 2000 --in-flight 50` changes the size.
import { execFileSync, spawnSync } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTool } from "./load-tool.mjs";

// Memory is only comparable before and after once garbage is collected on demand.
if (typeof globalThis.gc !== "function") {
  const child = spawnSync(
    process.execPath,
    ["--expose-gc", ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  process.exit(child.status ?? 1);
}

// What memory may stay above the warm baseline. GC can only be forced on the caller's thread; each
// worker thread keeps the garbage of its last sandboxes (several MiB of linear memory each) and
// its young generation until its own next collection, so settled RSS moves by up to ~45 MiB from
// one reading to the next with no leak (measured: 148-191 MiB over six rounds of 3,000 tasks).
// 64 MiB is room for that, while a leak of 10 KiB per task (~100 MiB over 10,000) fails.
const RSS_GROWTH_BOUND = 64 * 2 ** 20;
// Worst event-loop delay the caller may see: guests compute on worker threads, so the caller's
// thread only compiles (cached), posts messages and collects envelopes. A 100 ms stall would be
// visible to a server's clients; a busy guest on the caller's thread would show as seconds.
const EVENT_LOOP_DELAY_BOUND_MS = 100;

function flag(name, fallback) {
  const at = process.argv.indexOf(name);
  if (at === -1) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value < 1) {
    process.stderr.write(`${name} takes a positive integer, got ${process.argv[at + 1]}\n`);
    process.exit(2);
  }
  return value;
}

const tasks = flag("--tasks", 10_000);
const inFlight = flag("--in-flight", 200);
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
execFileSync(process.execPath, [join(root, "scripts/build.mjs")], { stdio: "inherit" });
const { runLoad, shutdown, mib } = await loadTool(root, "bench/load.ts");

// Other processes competing for the cores show as event-loop delay: the report states the load.
const loadAtStart = loadavg()[0];
const report = await runLoad({
  tasks,
  inFlight,
  log: (line) => process.stderr.write(`[load] ${line}\n`),
});
await shutdown();
// With the worker threads gone, what remains is the caller's own memory.
globalThis.gc();
await new Promise((resolve) => setTimeout(resolve, 1000));
globalThis.gc();
const rssPoolStopped = process.memoryUsage.rss();

const growth = report.after.rss - report.baseline.rss;
const failures = [];
if (report.lost > 0) failures.push(`${report.lost} tasks lost their envelope`);
if (report.duplicated > 0) failures.push(`${report.duplicated} tasks got more than one envelope`);
if (report.wrong > 0) failures.push(`${report.wrong} envelopes were wrong`);
if (report.mostInFlight > inFlight)
  failures.push(`${report.mostInFlight} tasks were in flight, over ${inFlight}`);
if (growth > RSS_GROWTH_BOUND)
  failures.push(`RSS grew ${mib(growth)} MiB, over the ${mib(RSS_GROWTH_BOUND)} MiB bound`);
if (report.worstEventLoopDelayMs > EVENT_LOOP_DELAY_BOUND_MS)
  failures.push(
    `worst event-loop delay ${report.worstEventLoopDelayMs.toFixed(1)} ms, over ${EVENT_LOOP_DELAY_BOUND_MS} ms`,
  );

const lines = [
  `Load test on ${availableParallelism()} cores, Node ${process.version}, load average ${loadAtStart.toFixed(2)} at start and ${loadavg()[0].toFixed(2)} at the end: ${report.tasks} tasks, at most ${report.inFlight} in flight (most seen ${report.mostInFlight}), after ${report.warmUpTasks} warm-up tasks.`,
  "",
  "| kind | tasks | as expected |",
  "|---|---|---|",
  ...report.kinds.map((k) => `| ${k.kind} | ${k.tasks} | ${k.asExpected} |`),
  "",
  "| check | measured | bound |",
  "|---|---|---|",
  `| envelopes lost / duplicated / wrong | ${report.lost} / ${report.duplicated} / ${report.wrong} | 0 / 0 / 0 |`,
  `| RSS before / peak / after | ${mib(report.baseline.rss)} / ${mib(report.peakRss)} / ${mib(report.after.rss)} MiB | - |`,
  `| RSS after - before | ${mib(growth)} MiB | <= ${mib(RSS_GROWTH_BOUND)} MiB |`,
  `| RSS once the pool is stopped | ${mib(rssPoolStopped)} MiB | - |`,
  `| main heap used before / after | ${mib(report.baseline.heapUsed)} / ${mib(report.after.heapUsed)} MiB | - |`,
  `| worst event-loop delay (p99) | ${report.worstEventLoopDelayMs.toFixed(1)} ms (${report.eventLoopDelayP99Ms.toFixed(1)} ms) | <= ${EVENT_LOOP_DELAY_BOUND_MS} ms |`,
  `| duration | ${(report.durationMs / 1000).toFixed(1)} s | - |`,
  `| tasks per second | ${Math.round(report.tasksPerSecond)} | - |`,
];
if (!report.gcForced) lines.push("", "GC could not be forced: memory figures include garbage.");
if (report.problems.length > 0)
  lines.push("", "Problems (first few):", ...report.problems.map((p) => `- ${p}`));
lines.push("", failures.length === 0 ? "PASS" : `FAIL: ${failures.join("; ")}`);
process.stdout.write(`${lines.join("\n")}\n`);
process.exitCode = failures.length === 0 ? 0 : 1;
