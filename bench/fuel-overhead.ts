import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { buildEngine } from "../scripts/build-engine.ts";
import { evalMetered, instantiateQuickJS, type QuickJSInstance } from "./quickjs-instance.ts";

/**
 * Metered vs stock QuickJS on guest workloads, each in a fresh runtime, medians of several
 * repetitions run alternately so drift hits every build alike. The metered builds run under a
 * host that looks at the guest once per slice, as a sandbox does, so refuel calls are billed too.
 */

const FIB = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(27);";

const TIGHT_LOOP = "let s = 0; for (let i = 0; i < 3e6; i++) s = (s + i * 7) % 1000003; s;";

const JSON_STRING = `
let total = 0;
for (let i = 0; i < 3000; i++) {
  const record = { id: i, name: "item-" + i, tags: ["a", "b", String(i % 7)], nested: { x: i * 2, y: "v" + (i % 13) } };
  const text = JSON.stringify(record);
  const back = JSON.parse(text);
  const words = (back.name + " " + back.tags.join(",") + " " + text).split(/[ ,:]/);
  total += words.join("|").toUpperCase().length + back.nested.x;
}
total;`;

const REGEX_SORT = `
let seed = 42;
const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
const words = [];
for (let i = 0; i < 20000; i++) words.push("w" + next().toString(36) + "-" + (i % 97));
words.sort();
let matches = 0;
const pattern = /^w([a-z]+)(\\d*)-(\\d+)$/;
for (const word of words) { const m = pattern.exec(word); if (m && m[3].length > 1) matches++; }
const numbers = words.map((w) => w.length * 7919 % 1000);
numbers.sort((a, b) => a - b);
matches + numbers[500];`;

/** A loop whose time goes into built-ins, where only the fuel checks see the clock. */
const BUILTIN_LOOP = `let s = ""; for (let i = 0; i < 1500; i++) s = "x".repeat(100000).slice(1); s.length;`;

export const WORKLOADS = {
  fib27: FIB,
  tightLoop: TIGHT_LOOP,
  jsonString: JSON_STRING,
  regexSort: REGEX_SORT,
  builtinLoop: BUILTIN_LOOP,
} as const;

/** Fuel a sandbox hands out between looks at the clock (about a millisecond of guest work). */
export const HOST_SLICE = 24_000_000n;

export interface BuildTiming {
  label: string;
  ms: number;
  /** ms over the stock module's ms. */
  ratio: number;
  /** Fuel one run spent; the same on every run when `fuelDeterministic`. */
  fuel: number;
  fuelDeterministic: boolean;
  /** refuel calls in one run. */
  refuelCalls: number;
}

export interface WorkloadResult {
  workload: keyof typeof WORKLOADS;
  stockMs: number;
  /** The project's build (the first of `builds`). */
  meteredMs: number;
  ratio: number;
  fuel: number;
  fuelDeterministic: boolean;
  /** Every metered build measured, the project's first. */
  builds: BuildTiming[];
}

export interface FuelOverheadReport {
  repetitions: number;
  workloads: WorkloadResult[];
  /** The same fib(27) as plain JavaScript in this process's V8. */
  v8Fib27Ms: number;
  /** Metered guest fib(27) over V8 fib(27). */
  guestVsV8: number;
}

const MEMORY = { initialPages: 256, maximumPages: 16384 };

export async function benchFuelOverhead(
  options: {
    root?: string;
    repetitions?: number;
    /** A metered build to measure instead of the project's own (built if missing). */
    meteredWasmPath?: string;
    /** More metered builds to measure alongside, interleaved with the others. */
    compareWith?: Array<{ label: string; path: string }>;
    /** Only these workloads (default: all). */
    workloads?: Array<keyof typeof WORKLOADS>;
    log?: (line: string) => void;
  } = {},
): Promise<FuelOverheadReport> {
  const root = options.root ?? process.cwd();
  const repetitions = options.repetitions ?? 7;
  const wasmPath =
    options.meteredWasmPath ?? (await buildEngine({ root, log: options.log })).wasmPath;
  const require = createRequire(join(root, "package.json"));
  const stockPath = require.resolve("@jitl/quickjs-wasmfile-release-sync/wasm");
  const stock = new WebAssembly.Module(await readFile(stockPath));
  const metered = [{ label: "metered", path: wasmPath }, ...(options.compareWith ?? [])];
  const builds = await Promise.all(
    metered.map(async ({ label, path }) => ({
      label,
      module: new WebAssembly.Module(await readFile(path)),
    })),
  );

  const workloads: WorkloadResult[] = [];
  const selected = options.workloads ?? (Object.keys(WORKLOADS) as Array<keyof typeof WORKLOADS>);
  for (const workload of selected) {
    const code = WORKLOADS[workload];
    const runs = [{ label: "stock", module: stock }, ...builds].map((build) => ({
      ...build,
      times: [] as number[],
      fuels: new Set<bigint>(),
      refuelCalls: 0,
    }));
    let expected: string | undefined;
    // One unmeasured warm-up each, so V8's tier-up of the wasm is not billed to any side.
    for (let rep = -1; rep < repetitions; rep++) {
      // Rotate the order each repetition, so no build always runs right after another.
      const order = runs.map((_, i) => runs[(i + rep + 1) % runs.length] as (typeof runs)[number]);
      for (const run of order) {
        const instance = await instantiateQuickJS(run.module, { ...MEMORY, slice: HOST_SLICE });
        const callsBefore = instance.refuelCalls;
        const { ms, fuel, result } = timeEval(instance, code);
        expected ??= result;
        if (result !== expected) {
          throw new Error(
            `${workload}: ${run.label} and another build disagree (${result} vs ${expected})`,
          );
        }
        if (rep < 0) continue;
        run.times.push(ms);
        run.refuelCalls = instance.refuelCalls - callsBefore;
        if (instance.fuel) run.fuels.add(fuel);
      }
    }
    const [stockRun, ...meteredRuns] = runs;
    const stockMs = median(stockRun?.times ?? []);
    const timings = meteredRuns.map((run): BuildTiming => {
      const ms = median(run.times);
      const [fuel = 0n] = run.fuels;
      return {
        label: run.label,
        ms,
        ratio: ms / stockMs,
        fuel: Number(fuel),
        fuelDeterministic: run.fuels.size === 1,
        refuelCalls: run.refuelCalls,
      };
    });
    const own = timings[0] as BuildTiming;
    workloads.push({
      workload,
      stockMs,
      meteredMs: own.ms,
      ratio: own.ratio,
      fuel: own.fuel,
      fuelDeterministic: own.fuelDeterministic,
      builds: timings,
    });
  }
  const v8Fib27Ms = benchV8Fib(repetitions);
  const fib = workloads.find((w) => w.workload === "fib27");
  return {
    repetitions,
    workloads,
    v8Fib27Ms,
    guestVsV8: fib ? fib.meteredMs / v8Fib27Ms : Number.NaN,
  };
}

function timeEval(instance: QuickJSInstance, code: string) {
  const start = performance.now();
  const { fuel, result } = evalMetered(instance, code);
  return { ms: performance.now() - start, fuel, result };
}

function benchV8Fib(repetitions: number): number {
  const fib = (n: number): number => (n < 2 ? n : fib(n - 1) + fib(n - 2));
  const times: number[] = [];
  for (let rep = -1; rep < repetitions; rep++) {
    const start = performance.now();
    fib(27);
    if (rep >= 0) times.push(performance.now() - start);
  }
  return median(times);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

export function formatReport(report: FuelOverheadReport): string {
  const labels = report.workloads[0]?.builds.map((b) => b.label) ?? [];
  const lines = [
    `fuel overhead, median of ${report.repetitions} runs (fresh runtime each, host slice ${HOST_SLICE} fuel)`,
    `workload     stock ms  ${labels.map((l) => `${l} ms (ratio)`.padStart(24)).join("")}  fuel (deterministic), refuel calls`,
  ];
  for (const w of report.workloads) {
    const cells = w.builds.map((b) => `${b.ms.toFixed(1)} (${b.ratio.toFixed(3)})`.padStart(24));
    const fuels = w.builds.map(
      (b) => `${b.fuel} (${b.fuelDeterministic ? "yes" : "NO"}), ${b.refuelCalls}`,
    );
    lines.push(
      `${w.workload.padEnd(12)} ${w.stockMs.toFixed(1).padStart(8)}  ${cells.join("")}  ${fuels.join(" | ")}`,
    );
  }
  lines.push(
    `V8 fib(27) ${report.v8Fib27Ms.toFixed(2)} ms; metered guest is ${report.guestVsV8.toFixed(1)}x slower`,
  );
  return lines.join("\n");
}

const invokedDirectly = import.meta.url === `file://${process.argv[1]}`;
if (invokedDirectly) {
  // fuel-overhead [METERED_WASM [LABEL=OTHER_WASM ...]] [--repetitions N]
  const args = process.argv.slice(2);
  const repetitionsAt = args.indexOf("--repetitions");
  const repetitions = repetitionsAt >= 0 ? Number(args.splice(repetitionsAt, 2)[1]) : undefined;
  const [meteredWasmPath, ...others] = args;
  const compareWith = others.map((arg) => {
    const [label = arg, path = arg] = arg.includes("=") ? arg.split("=", 2) : [arg, arg];
    return { label, path };
  });
  benchFuelOverhead({
    meteredWasmPath,
    compareWith,
    repetitions,
    log: (line) => console.error(line),
  }).then(
    (report) => console.log(formatReport(report)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
