import QuickJSRaw from "@jitl/quickjs-wasmfile-release-sync/emscripten-module";
import { QuickJSFFI } from "@jitl/quickjs-wasmfile-release-sync/ffi";
import { QuickJSWASMModule } from "quickjs-emscripten-core";

export interface QuickJSInstance {
  quickjs: QuickJSWASMModule;
  memory: WebAssembly.Memory;
  /** The metered build's counter, or null for the stock module. */
  fuel: WebAssembly.Global | null;
  /** Fuel handed out through `capsule.refuel` so far. */
  granted: bigint;
}

export interface InstanceOptions {
  initialPages: number;
  maximumPages: number;
  /**
   * Answers the metered build's `capsule.refuel(counter)`: the new counter (>= 0), or a throw to
   * stop the guest. Defaults to one slice no benchmark spends.
   */
  refuel?: (counter: bigint) => bigint;
}

/** Fuel that no benchmark spends: the counter never reaches zero. */
export const UNLIMITED_FUEL = 1n << 62n;

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
  const answer = options.refuel ?? ((counter: bigint) => counter + UNLIMITED_FUEL);
  let wasmInstance: WebAssembly.Instance | undefined;
  const partial: { granted: bigint } = { granted: 0n };
  const refuel = (counter: bigint): bigint => {
    const next = answer(counter);
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
      wasmInstance = new WebAssembly.Instance(module, { ...imports, capsule: { refuel } });
      const fuel = wasmInstance.exports.fuel;
      if (fuel instanceof WebAssembly.Global) fuel.value = UNLIMITED_FUEL;
      onSuccess(wasmInstance);
      return wasmInstance.exports;
    },
  });
  (emscripten as { type?: string }).type = "sync";
  const quickjs = new QuickJSWASMModule(emscripten, new QuickJSFFI(emscripten));
  const fuel = wasmInstance?.exports.fuel;
  return Object.assign(partial, {
    quickjs,
    memory,
    fuel: fuel instanceof WebAssembly.Global ? fuel : null,
  });
}

/** Fuel spent so far: every grant minus what the counter still holds. */
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
