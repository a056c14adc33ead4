import { type ChildProcess, spawnSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { run, shutdown } from "../adapters/node/index.ts";
import { OUTCOME_TAG } from "../adapters/node/python/protocol.ts";

export interface PythonReport {
  /** The first run in a process: a discovery process and a run process, both loading Pyodide. */
  coldMs: number;
  /** `capsule run examples/hello.py` as a whole process, medians: no task list kept, and kept. */
  cliFirstMs: number;
  cliKeptMs: number;
  /** Later runs, each given time for the pool to refill first. */
  warmP50Ms: number;
  warmP90Ms: number;
  /** Where a warm run's time goes: the median of each step over the warm runs. */
  steps: PythonSteps;
}

/** A warm run's steps, in milliseconds (medians), as the runtime's side and the process see them. */
export interface PythonSteps {
  /** run() called until the job is handed to the process: options, the cached task list, the pool. */
  untilSentMs: number;
  /** Of that: starting the pool's replacement process (`spawn`), which happens before the job goes. */
  spawnMs: number;
  /** The job handed over until its outcome arrives: IPC both ways and the process's work. */
  jobMs: number;
  /** In the process, the job's arrival until its outcome is sent. */
  childMs: number;
  /** Of that: the runner's main (the task file run, the task, the outcome as JSON). */
  mainMs: number;
  /** The fuel the hello spent. */
  fuel: number;
  /** The outcome's arrival until run() resolves: the envelope, the process killed. */
  afterMs: number;
}

const WARM_RUNS = 7;
/** Whole-process runs of the CLI, alternating without and with the task list kept. */
const CLI_ROUNDS = 3;

/** Removes the task lists kept in the project's compile cache (adapters/node/python/task-lists.ts). */
function forgetTaskLists(root: string): void {
  const cache = join(root, ".capsule", "cache");
  let names: string[] = [];
  try {
    names = readdirSync(cache);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith("python-tasks-")) rmSync(join(cache, name), { force: true });
  }
}
/** Time for the pool to load a replacement process (1-4 s here), so each run finds one ready. */
const REFILL_WAIT_MS = 6_000;

/** What one run did, as seen from its processes. */
interface RunTrace {
  spawnMs: number;
  sentAt?: number;
  doneAt?: number;
  childSteps?: { childMs?: unknown; mainMs?: unknown };
  fuel?: unknown;
}

/**
 * Watches the Python processes the runtime starts, from outside the runtime: spawn() is wrapped
 * for the bench's duration to time it and to see the job go out and the outcome come back.
 */
function watchPythonProcesses(trace: () => RunTrace): () => void {
  const childProcess = createRequire(import.meta.url)("node:child_process") as {
    spawn: (...args: unknown[]) => ChildProcess;
  };
  const spawn = childProcess.spawn;
  childProcess.spawn = (...args: unknown[]) => {
    const started = performance.now();
    const child = spawn(...args);
    trace().spawnMs += performance.now() - started;
    // The job goes out as a line on the child's stdin; its messages come back as lines on fd 3,
    // the outcome's tagged OUTCOME_TAG (adapters/node/python/protocol.ts).
    const stdin = child.stdin;
    if (stdin !== null) {
      const write = stdin.write.bind(stdin) as (...writeArgs: unknown[]) => boolean;
      stdin.write = ((...writeArgs: unknown[]) => {
        if (String(writeArgs[0]).startsWith('{"type":"job"')) trace().sentAt = performance.now();
        return write(...writeArgs);
      }) as typeof stdin.write;
    }
    let pending = "";
    child.stdio[3]?.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.startsWith(OUTCOME_TAG)) continue;
        const message = JSON.parse(line.slice(OUTCOME_TAG.length)) as {
          steps?: RunTrace["childSteps"];
          fuelConsumed?: unknown;
        };
        trace().doneAt = performance.now();
        trace().childSteps = message.steps;
        trace().fuel = message.fuelConsumed;
      }
    });
    return child;
  };
  syncBuiltinESMExports();
  return () => {
    childProcess.spawn = spawn;
    syncBuiltinESMExports();
  };
}

/** Python hello through run(): cold, then through a warm pool, with each warm run's steps. */
export async function benchPython(
  root: string,
  log: (line: string) => void,
): Promise<PythonReport> {
  let current: RunTrace = { spawnMs: 0 };
  const unwatch = watchPythonProcesses(() => current);
  const hello = () => run({ file: join(root, "examples/hello.py"), cwd: root });
  try {
    log(
      "python: capsule run examples/hello.py, whole process, without and with its task list kept",
    );
    const cli = (kept: boolean) => {
      if (!kept) forgetTaskLists(root);
      const t = performance.now();
      const result = spawnSync(
        process.execPath,
        [join(root, "bin/capsule.mjs"), "run", "examples/hello.py", "--json"],
        { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
      );
      if (result.status !== 0) throw new Error(`capsule run failed: ${result.stderr}`);
      return performance.now() - t;
    };
    const first: number[] = [];
    const kept: number[] = [];
    for (let round = 0; round < CLI_ROUNDS; round++) {
      first.push(cli(false));
      kept.push(cli(true));
    }
    log("python: cold hello (two interpreters load)");
    forgetTaskLists(root);
    let started = performance.now();
    const cold = await hello();
    if (!cold.success) throw new Error(`python hello failed: ${JSON.stringify(cold.error)}`);
    const coldMs = performance.now() - started;
    const warm: number[] = [];
    const traces: (RunTrace & { started: number; ended: number })[] = [];
    for (let i = 0; i < WARM_RUNS; i++) {
      await new Promise((resolve) => setTimeout(resolve, REFILL_WAIT_MS));
      current = { spawnMs: 0 };
      started = performance.now();
      const envelope = await hello();
      const ended = performance.now();
      if (!envelope.success)
        throw new Error(`python hello failed: ${JSON.stringify(envelope.error)}`);
      warm.push(ended - started);
      traces.push({ ...current, started, ended });
      log(`python: warm hello ${warm.length}/${WARM_RUNS}: ${Math.round(ended - started)} ms`);
    }
    const steps = medianSteps(traces);
    log(`python: warm run steps (medians): ${JSON.stringify(steps)}`);
    return {
      coldMs: Math.round(coldMs),
      cliFirstMs: Math.round(quantile(first, 0.5)),
      cliKeptMs: Math.round(quantile(kept, 0.5)),
      warmP50Ms: quantile(warm, 0.5),
      warmP90Ms: quantile(warm, 0.9),
      steps,
    };
  } finally {
    unwatch();
    await shutdown();
  }
}

function medianSteps(traces: (RunTrace & { started: number; ended: number })[]): PythonSteps {
  const median = (
    pick: (trace: RunTrace & { started: number; ended: number }) => number,
    scale = 10,
  ) =>
    quantile(
      traces.map(pick).filter((value) => Number.isFinite(value)),
      0.5,
      scale,
    );
  const number = (value: unknown) => (typeof value === "number" ? value : Number.NaN);
  return {
    untilSentMs: median((t) => (t.sentAt ?? Number.NaN) - t.started),
    spawnMs: median((t) => t.spawnMs),
    jobMs: median((t) => (t.doneAt ?? Number.NaN) - (t.sentAt ?? Number.NaN)),
    childMs: median((t) => number(t.childSteps?.childMs)),
    mainMs: median((t) => number(t.childSteps?.mainMs)),
    fuel: median((t) => number(t.fuel), 1),
    afterMs: median((t) => t.ended - (t.doneAt ?? Number.NaN)),
  };
}

/** The q-quantile of the values, rounded to 1/scale; NaN when there are none. */
function quantile(values: number[], q: number, scale = 1): number {
  const sorted = [...values].sort((a, b) => a - b);
  const value = sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return value === undefined ? Number.NaN : Math.round(value * scale) / scale;
}

/** The steps as one line for the report. */
export function formatPythonSteps(steps: PythonSteps): string {
  return [
    `until the job is sent ${steps.untilSentMs} ms (of it, starting the replacement process ${steps.spawnMs} ms)`,
    `job out and outcome back ${steps.jobMs} ms (in the process ${steps.childMs} ms, of it the runner's main ${steps.mainMs} ms, ${steps.fuel.toLocaleString("en-US")} fuel)`,
    `then until run() returns ${steps.afterMs} ms`,
  ].join("; ");
}
