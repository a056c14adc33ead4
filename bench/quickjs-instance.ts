import QuickJSRaw from "@jitl/quickjs-wasmfile-release-sync/emscripten-module";
import { QuickJSFFI } from "@jitl/quickjs-wasmfile-release-sync/ffi";
import { QuickJSWASMModule } from "quickjs-emscripten-core";

export interface QuickJSInstance {
  quickjs: QuickJSWASMModule;
  memory: WebAssembly.Memory;
  /** The metered build's counter, or null for the stock module. */
  fuel: WebAssembly.Global | null;
  /** The metered build's `tick`, or null for the stock module and builds whose checks only refuel below zero. */
  tick: WebAssembly.Global | null;
  /** What `capsule.refuel` added to the counter so far. */
  granted: bigint;
  /** Calls of `capsule.refuel` so far. */
  refuelCalls: number;
}

/** What a refuel answer may look at besides the counter. */
export interface RefuelGlobals {
  fuel: WebAssembly.Global | null;
  tick: WebAssembly.Global | null;
}

export interface InstanceOptions {
  initialPages: number;
  maximumPages: number;
  /**
   * Answers the metered build's `capsule.refuel(counter)`: the new counter, or a throw to stop the
   * guest. Defaults to a host with a budget no benchmark spends that looks at the guest once per
   * `slice` (see `sliceRefuel`).
   */
  refuel?: (counter: bigint, globals: RefuelGlobals) => bigint;
  /** Fuel between the default host's refuel calls; without it the default host is never called. */
  slice?: bigint;
}

/** Fuel that no benchmark spends: the counter never reaches zero. */
export const UNLIMITED_FUEL = 1n << 62n;

/**
 * The host side of refuel for a budget no benchmark spends, as a sandbox runs it. A build with
 * `tick` keeps the whole budget in the counter and lowers `tick` one slice below it on each call;
 * a build without it (checks at zero) gets the budget a slice at a time.
 */
export function sliceRefuel(slice: bigint): (counter: bigint, globals: RefuelGlobals) => bigint {
  return (counter, { tick }) => {
    if (tick === null) return counter + slice;
    tick.value = counter > slice ? counter - slice : 0n;
    return counter;
  };
}

/**
 * A fresh QuickJS in its own memory from an already compiled module, instantiated synchronously
 * through emscripten's `instantiateWasm` hook (the stock loader would fetch and compile its own).
 */
export async function instantiateQuickJS(
  module: WebAssembly.Module,
  options: InstanceOptions,
): Promise<QuickJSInstance> {
  const memory = new WebAssembly.Memory({
    initial: options.initialPages,
    maximum: options.maximumPages,
  });
  const answer = options.refuel ?? sliceRefuel(options.slice ?? UNLIMITED_FUEL);
  const globals: RefuelGlobals = { fuel: null, tick: null };
  const partial = { granted: 0n, refuelCalls: 0 };
  const refuel = (counter: bigint): bigint => {
    partial.refuelCalls++;
    const next = answer(counter, globals);
    partial.granted += next - counter;
    return next;
  };
  const emscripten = await QuickJSRaw({
    wasmMemory: memory,
    instantiateWasm(
      imports: WebAssembly.Imports,
      onSuccess: (instance: WebAssembly.Instance) => void,
    ) {
      // The stock module imports nothing from "capsule"; an unused import module is ignored.
      const instance = new WebAssembly.Instance(module, { ...imports, capsule: { refuel } });
      const { fuel, tick } = instance.exports;
      if (fuel instanceof WebAssembly.Global) {
        globals.fuel = fuel;
        fuel.value = UNLIMITED_FUEL;
      }
      if (tick instanceof WebAssembly.Global) globals.tick = tick;
      if (refuels(module)) startMetering(globals, options.slice);
      onSuccess(instance);
      return instance.exports;
    },
  });
  (emscripten as { type?: string }).type = "sync";
  const quickjs = new QuickJSWASMModule(emscripten, new QuickJSFFI(emscripten));
  return Object.assign(partial, { quickjs, memory, fuel: globals.fuel, tick: globals.tick });
}

function refuels(module: WebAssembly.Module): boolean {
  return WebAssembly.Module.imports(module).some(
    (i) => i.module === "capsule" && i.name === "refuel",
  );
}

/** Where a sandbox host starts: `tick` a slice below the counter, or a counter of one slice. */
function startMetering(globals: RefuelGlobals, slice: bigint | undefined): void {
  const { fuel, tick } = globals;
  if (fuel === null || slice === undefined) return;
  if (tick !== null) tick.value = UNLIMITED_FUEL - slice;
  else fuel.value = slice;
}

/** Fuel spent so far: everything refuel added minus what the counter still holds. */
export function fuelMark(instance: QuickJSInstance): bigint {
  return instance.fuel ? instance.granted - (instance.fuel.value as bigint) : 0n;
}

/**
 * Evaluates `code` in a new runtime and context and returns the fuel it spent (0 on the stock
 * module) and its result as JSON text.
 */
export function evalMetered(
  instance: QuickJSInstance,
  code: string,
): { fuel: bigint; result: string } {
  const runtime = instance.quickjs.newRuntime();
  const context = runtime.newContext();
  try {
    const before = fuelMark(instance);
    const outcome = context.evalCode(code);
    const after = fuelMark(instance);
    const handle = context.unwrapResult(outcome);
    const result = JSON.stringify(context.dump(handle));
    handle.dispose();
    return { fuel: after - before, result };
  } finally {
    context.dispose();
    runtime.dispose();
  }
}
