import QuickJSRaw from "@jitl/quickjs-wasmfile-release-sync/emscripten-module";
import { QuickJSFFI } from "@jitl/quickjs-wasmfile-release-sync/ffi";
import { QuickJSWASMModule } from "quickjs-emscripten-core";

export interface QuickJSInstance {
  quickjs: QuickJSWASMModule;
  /** The metered build's counter, or null for the stock module. */
  fuel: WebAssembly.Global | null;
}

/** Fuel that no benchmark spends: the counter never reaches zero. */
export const UNLIMITED_FUEL = 1n << 62n;

/**
 * A fresh QuickJS in its own memory from an already compiled module, instantiated synchronously
 * through emscripten's `instantiateWasm` hook (the stock loader would fetch and compile its own).
 */
export async function instantiateQuickJS(
  module: WebAssembly.Module,
  memory: { initialPages: number; maximumPages: number },
): Promise<QuickJSInstance> {
  let instance: WebAssembly.Instance | undefined;
  const emscripten = await QuickJSRaw({
    wasmMemory: new WebAssembly.Memory({
      initial: memory.initialPages,
      maximum: memory.maximumPages,
    }),
    instantiateWasm(
      imports: WebAssembly.Imports,
      onSuccess: (instance: WebAssembly.Instance) => void,
    ) {
      instance = new WebAssembly.Instance(module, imports);
      const fuel = instance.exports.fuel;
      if (fuel instanceof WebAssembly.Global) fuel.value = UNLIMITED_FUEL;
      onSuccess(instance);
      return instance.exports;
    },
  });
  (emscripten as { type?: string }).type = "sync";
  const quickjs = new QuickJSWASMModule(emscripten, new QuickJSFFI(emscripten));
  const fuel = instance?.exports.fuel;
  return { quickjs, fuel: fuel instanceof WebAssembly.Global ? fuel : null };
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
    const before = instance.fuel ? (instance.fuel.value as bigint) : 0n;
    const outcome = context.evalCode(code);
    const after = instance.fuel ? (instance.fuel.value as bigint) : 0n;
    const handle = context.unwrapResult(outcome);
    const result = JSON.stringify(context.dump(handle));
    handle.dispose();
    return { fuel: before - after, result };
  } finally {
    context.dispose();
    runtime.dispose();
  }
}
