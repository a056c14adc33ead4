import {
  type Binaryen,
  FUEL_EXPORT,
  type InstrumentOptions,
  type InstrumentResult,
  type InstrumentStats,
  instrumentFuel,
  REFUEL_IMPORT,
  TICK_EXPORT,
} from "./instrument.ts";

/**
 * The metered Python engine: Pyodide's own wasm (npm `pyodide`) through the fuel pass of
 * instrument.ts, built once by scripts/build.mjs and cached by the manifest beside it.
 *
 * Whoever instantiates it (through the `instantiateWasm` hook of Pyodide's emscripten glue) adds
 * `{ capsule: { refuel } }` to the glue's imports, and reads and writes the exported `fuel` and
 * `tick` globals, as for the QuickJS engine.
 */

/** The input, as a package path. */
export const PYODIDE_SOURCE = "pyodide/pyodide.asm.wasm";
export const PYODIDE_METERED_WASM = "dist/pyodide-metered.wasm";
export const PYODIDE_METERED_MANIFEST = "dist/pyodide-metered.json";

/**
 * - stackBytes: Pyodide's own C stack (10 MiB). CPython's recursion limit is sized for it; the
 *   pass's 1 MiB default would shrink it.
 * - memoryMinPages: Pyodide's own declared minimum (480 pages, 30 MiB); the pass would lower it
 *   to the floor (222 pages).
 * - interpreterTraps: off, so every check calls refuel. The interpreter search finds six
 *   functions with an opcode-sized br_table and no names to tell CPython's eval loop among
 *   them, and trapping there would leave pure Python loops without deadline checks: CPython
 *   polls only its own signal flags, which nothing sets while the guest holds the thread.
 *   Trapping in the biggest candidate measured no faster (fib(25) 26.5 ms vs 23.1 ms).
 * - optimize: -O3 after instrumenting takes ~100 s instead of ~9 s, once; metered Python then
 *   runs fib(25) in 1.4x the unmetered time instead of 2.5x, sum(range(10**7)) in 1.45x
 *   instead of 1.7x.
 */
export const PYODIDE_INSTRUMENT_OPTIONS = {
  stackBytes: 10 * 1024 * 1024,
  memoryMinPages: 480,
  interpreterTraps: false,
  optimize: true,
} as const satisfies InstrumentOptions;

/** Names the runtime must wire up: the import it provides and the globals it drives. */
export const PYODIDE_RUNTIME_NAMES = {
  /** `(counter: i64) -> i64`, called once the counter is below `tick`; throws to stop the guest. */
  refuelImport: REFUEL_IMPORT,
  /** Mutable i64 global: fuel left. */
  fuelExport: FUEL_EXPORT,
  /** Mutable i64 global: checks call refuel once the counter is below it. */
  tickExport: TICK_EXPORT,
} as const;

export interface PyodideEngineManifest {
  source: {
    /** Version of the npm `pyodide` package the input came from. */
    pyodideVersion: string;
    path: typeof PYODIDE_SOURCE;
    sha256: string;
    bytes: number;
  };
  output: { sha256: string; bytes: number };
  /** sha256 of the pass's sources (instrument.ts, this file): a change rebuilds. */
  instrumentSha256: string;
  binaryenVersion: string;
  stackBytes: number;
  memoryMinPages: number;
  /** Whether binaryen -O3 ran after instrumenting. */
  optimized: boolean;
  /** Whether any check traps (none here: every check calls refuel). */
  interpreterTraps: boolean;
  runtime: typeof PYODIDE_RUNTIME_NAMES;
  stats: InstrumentStats;
  buildMs: number;
}

/** Instruments Pyodide's wasm with the options above. */
export function meterPyodide(binaryen: Binaryen, input: Uint8Array): InstrumentResult {
  return instrumentFuel(binaryen, input, PYODIDE_INSTRUMENT_OPTIONS);
}
