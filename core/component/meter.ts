import {
  type Binaryen,
  emitFeatures,
  FUEL_EXPORT,
  type InstrumentStats,
  instrumentFuel,
  REFUEL_IMPORT,
  TICK_EXPORT,
} from "../engine/instrument.ts";

/**
 * A component's engine core module (StarlingMonkey, as ComponentizeJS builds it) made ready for
 * our limits, once per component: our fuel pass (every check calls refuel, as for Pyodide, since
 * the engine has no interrupt handler of ours), and its linear memory turned from a definition
 * into an import, `capsule.memory`, so each run hands in a `WebAssembly.Memory` with its own
 * maximum, as the QuickJS engine gets one.
 */

/** Where the metered core module takes its memory from. */
export const MEMORY_IMPORT = { module: "capsule", name: "memory" } as const;

export const COMPONENT_RUNTIME_NAMES = {
  refuelImport: REFUEL_IMPORT,
  memoryImport: MEMORY_IMPORT,
  fuelExport: FUEL_EXPORT,
  tickExport: TICK_EXPORT,
} as const;

export interface MeteredCore {
  wasm: Uint8Array<ArrayBuffer>;
  /** Declared minimum of the memory, in 64 KiB pages: a run's memory starts at this size. */
  memoryMinPages: number;
  stats: InstrumentStats;
}

/** True when `wasm` defines (rather than imports) exactly one memory: the engine module. */
export function definesMemory(binaryen: Binaryen, wasm: Uint8Array): boolean {
  const module = binaryen.readBinary(wasm);
  try {
    if (!module.hasMemory()) return false;
    const info = module.getMemoryInfo();
    return !info.module;
  } finally {
    module.dispose();
  }
}

export function meterComponentCore(binaryen: Binaryen, wasm: Uint8Array): MeteredCore {
  const { wasm: metered, stats } = instrumentFuel(binaryen, wasm, {
    interpreterTraps: false,
    optimize: false,
    stackBytes: null,
  });
  const module = binaryen.readBinary(metered);
  try {
    module.setFeatures(emitFeatures(binaryen));
    const info = module.getMemoryInfo();
    const internal = (info as { name?: string }).name ?? "0";
    module.addMemoryImport(internal, MEMORY_IMPORT.module, MEMORY_IMPORT.name);
    if (!module.validate()) throw new Error("the metered core module does not validate");
    return {
      wasm: module.emitBinary() as Uint8Array<ArrayBuffer>,
      memoryMinPages: info.initial,
      stats,
    };
  } finally {
    module.dispose();
  }
}
