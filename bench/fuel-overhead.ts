import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { buildEngine } from "../scripts/build-engine.ts";
import { evalMetered, instantiateQuickJS, type QuickJSInstance } from "./quickjs-instance.ts";

/**
 * Metered vs stock QuickJS on three guest workloads, each in a fresh runtime, medians of several
 * repetitions run alternately so drift hits both builds alike.
 */

const FIB = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(27);";

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

export const WORKLOADS = { fib27: FIB, jsonString: JSON_STRING, regexSort: REGEX_SORT } as const;

export interface WorkloadResult {
  workload: keyof typeof WORKLOADS;
  stockMs: number;
  meteredMs: number;
  ratio: number;
  /** Fuel one run spent; the same on every run. */
  fuel: number;
  fuelDeterministic: boolean;
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
  const metered = new WebAssembly.Module(await readFile(wasmPath));

  const workloads: WorkloadResult[] = [];
  for (const [workload, code] of Object.entries(WORKLOADS) as Array<
    [keyof typeof WORKLOADS, string]
  >) {
    const stockTimes: number[] = [];
    const meteredTimes: number[] = [];
    const fuels = new Set<bigint>();
    let expected: string | undefined;
    // One unmeasured warm-up each, so V8's tier-up of the wasm is not billed to either side.
    for (let rep = -1; rep < repetitions; rep++) {
      for (const [module, times] of [
        [stock, stockTimes],
        [metered, meteredTimes],
      ] as const) {
        const instance = await instantiateQuickJS(module, MEMORY);
        const { ms, fuel, result } = timeEval(instance, code);
        expected ??= result;
        if (result !== expected) {
          throw new Error(
            `${workload}: metered and stock results differ (${result} vs ${expected})`,
          );
        }
        if (rep < 0) continue;
        times.push(ms);
        if (instance.fuel) fuels.add(fuel);
      }
    }
    const stockMs = median(stockTimes);
    const meteredMs = median(meteredTimes);
    const [fuel = 0n] = fuels;
    workloads.push({
      workload,
      stockMs,
      meteredMs,
      ratio: meteredMs / stockMs,
      fuel: Number(fuel),
      fuelDeterministic: fuels.size === 1,
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
  const lines = [
    `fuel overhead, median of ${report.repetitions} runs (fresh runtime each)`,
    "workload     stock ms  metered ms  ratio  fuel (deterministic)",
  ];
  for (const w of report.workloads) {
    lines.push(
      `${w.workload.padEnd(12)} ${w.stockMs.toFixed(1).padStart(8)}  ${w.meteredMs.toFixed(1).padStart(10)}  ${w.ratio.toFixed(3)}  ${w.fuel} (${w.fuelDeterministic ? "yes" : "NO"})`,
    );
  }
  lines.push(
    `V8 fib(27) ${report.v8Fib27Ms.toFixed(2)} ms; metered guest is ${report.guestVsV8.toFixed(1)}x slower`,
  );
  return lines.join("\n");
}

const invokedDirectly = import.meta.url === `file://${process.argv[1]}`;
if (invokedDirectly) {
  const [meteredWasmPath] = process.argv.slice(2);
  benchFuelOverhead({ meteredWasmPath, log: (line) => console.error(line) }).then(
    (report) => console.log(formatReport(report)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
