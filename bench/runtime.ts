import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { run } from "../adapters/node/index.ts";

/** Runtime benchmarks through the public `run()` and the CLI, as a user meets them. */

export interface RuntimeReport {
  helloInProcessP50Ms: number;
  helloInProcessP90Ms: number;
  helloPerSecond16InFlight: number;
  cliColdMs: number;
  cliCachedMs: number;
  busyTaskMs: number;
  worstEventLoopDelayMs: number;
  fanoutSequentialMs: number;
  fanoutConcurrentMs: number;
  fanoutSpeedup: number;
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? Number.NaN;
};
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

async function expectSuccess(promise: ReturnType<typeof run>) {
  const envelope = await promise;
  if (!envelope.success)
    throw new Error(`benchmark task failed: ${JSON.stringify(envelope.error)}`);
  return envelope;
}

export async function benchRuntime(
  root: string,
  log: (line: string) => void,
): Promise<RuntimeReport> {
  const hello = join(root, "examples/hello.ts");

  log("hello, in-process, sequential (warm-up 200, measure 1000)");
  for (let i = 0; i < 200; i++) await expectSuccess(run({ file: hello, threads: 0 }));
  const latencies: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const started = performance.now();
    await expectSuccess(run({ file: hello, threads: 0 }));
    latencies.push(performance.now() - started);
    // A caller that is not saturated: give the runtime the idle moment it gets in real use.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }

  log("hello, shared worker pool, 16 in flight, 3000 tasks");
  const total = 3000;
  for (let i = 0; i < 64; i++) await expectSuccess(run({ file: hello }));
  let started = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < total) {
      next++;
      await expectSuccess(run({ file: hello }));
    }
  };
  await Promise.all(Array.from({ length: 16 }, lane));
  const perSecond = total / ((performance.now() - started) / 1000);

  log("capsule run examples/hello.ts, whole process (1 cold compile, 10 cached)");
  const cacheDir = join(root, ".capsule", "cache");
  const cli = () => {
    const t = performance.now();
    const result = spawnSync(
      process.execPath,
      [join(root, "bin/capsule.mjs"), "run", "examples/hello.ts", "--json"],
      {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    if (result.status !== 0) throw new Error(`capsule run failed: ${result.stderr}`);
    return performance.now() - t;
  };
  rmSync(cacheDir, { recursive: true, force: true });
  const cliCold = cli();
  const cliCached = quantile(Array.from({ length: 10 }, cli), 0.5);

  log("event-loop delay while a HIGH-compute busy task runs through run()");
  const busy = join(root, "bench/tasks/busy.ts");
  await expectSuccess(run({ file: busy }));
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  started = performance.now();
  await expectSuccess(run({ file: busy }));
  const busyMs = performance.now() - started;
  histogram.disable();

  log("8 CPU-bound sub-tasks: one by one vs concurrently (shared pool)");
  const fanout = join(root, "bench/tasks/fanout.ts");
  await expectSuccess(run({ file: fanout, args: ["concurrent"] }));
  const elapsed = async (mode: string) =>
    ((await expectSuccess(run({ file: fanout, args: [mode] }))).result as { elapsed: number })
      .elapsed;
  const sequential = quantile(
    [await elapsed("sequential"), await elapsed("sequential"), await elapsed("sequential")],
    0.5,
  );
  const concurrent = quantile(
    [await elapsed("concurrent"), await elapsed("concurrent"), await elapsed("concurrent")],
    0.5,
  );

  return {
    helloInProcessP50Ms: round(quantile(latencies, 0.5), 3),
    helloInProcessP90Ms: round(quantile(latencies, 0.9), 3),
    helloPerSecond16InFlight: Math.round(perSecond),
    cliColdMs: Math.round(cliCold),
    cliCachedMs: Math.round(cliCached),
    busyTaskMs: Math.round(busyMs),
    worstEventLoopDelayMs: round(histogram.max / 1e6, 1),
    fanoutSequentialMs: sequential,
    fanoutConcurrentMs: concurrent,
    fanoutSpeedup: round(sequential / concurrent),
  };
}
