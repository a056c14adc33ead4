/**
 * The engine a host hands to the runtime: the compiled (metered) QuickJS module, compiled once per
 * process or worker, plus facts about it recorded at build time.
 */
export interface Engine {
  module: WebAssembly.Module;
  /** Smallest linear memory (in 64 KiB pages) the module can start with. */
  memoryFloorPages: number;
  /** Whether the module exports the `fuel` counter (the build step's instrumentation). */
  metered: boolean;
  /** Whether fuel checks call the host (`capsule.refuel`) instead of trapping. */
  refuels: boolean;
  /** Size of the engine's C stack (set at build time), when known. */
  stackBytes: number | null;
}

export const WASM_PAGE_BYTES = 65536;

/**
 * The most memory a sandbox of this engine can have: the build declares its memory with at most
 * 32768 pages (2 GiB); a larger `ram` would fail when the sandbox is instantiated.
 */
export const MAX_SANDBOX_RAM_BYTES = 32768 * WASM_PAGE_BYTES;

/**
 * Memory the runtime itself needs on top of the module's floor before any task code runs (the
 * QuickJS runtime, context and guest API surface). Measured; keeps tiny `ram` caps honest.
 */
export const ENGINE_WORKING_SET_BYTES = 1 << 20;

export function engineFromModule(
  module: WebAssembly.Module,
  memoryFloorPages: number,
  stackBytes: number | null = null,
): Engine {
  const metered = WebAssembly.Module.exports(module).some(
    (e) => e.name === "fuel" && e.kind === "global",
  );
  const refuels = WebAssembly.Module.imports(module).some(
    (i) => i.module === "capsule" && i.name === "refuel",
  );
  return { module, memoryFloorPages, metered, refuels, stackBytes };
}

/** The smallest `ram` a task may ask for on this engine. */
export function minimumRamBytes(engine: Engine): number {
  return engine.memoryFloorPages * WASM_PAGE_BYTES + ENGINE_WORKING_SET_BYTES;
}
