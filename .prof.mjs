// ../../tmp/prof.ts
import { readFileSync } from "node:fs";

// bench/quickjs-instance.ts
import QuickJSRaw from "@jitl/quickjs-wasmfile-release-sync/emscripten-module";
import { QuickJSFFI } from "@jitl/quickjs-wasmfile-release-sync/ffi";
import { QuickJSWASMModule } from "quickjs-emscripten-core";
var UNLIMITED_FUEL = 1n << 62n;
async function instantiateQuickJS(module, memory) {
  let instance;
  const emscripten = await QuickJSRaw({
    wasmMemory: new WebAssembly.Memory({
      initial: memory.initialPages,
      maximum: memory.maximumPages
    }),
    instantiateWasm(imports, onSuccess) {
      instance = new WebAssembly.Instance(module, imports);
      const fuel2 = instance.exports.fuel;
      if (fuel2 instanceof WebAssembly.Global) fuel2.value = UNLIMITED_FUEL;
      onSuccess(instance);
      return instance.exports;
    }
  });
  emscripten.type = "sync";
  const quickjs = new QuickJSWASMModule(emscripten, new QuickJSFFI(emscripten));
  const fuel = instance?.exports.fuel;
  return { quickjs, fuel: fuel instanceof WebAssembly.Global ? fuel : null };
}
function evalMetered(instance, code2) {
  const runtime = instance.quickjs.newRuntime();
  const context = runtime.newContext();
  try {
    const before = instance.fuel ? instance.fuel.value : 0n;
    const outcome = context.evalCode(code2);
    const after = instance.fuel ? instance.fuel.value : 0n;
    const handle = context.unwrapResult(outcome);
    const result = JSON.stringify(context.dump(handle));
    handle.dispose();
    return { fuel: before - after, result };
  } finally {
    context.dispose();
    runtime.dispose();
  }
}

// ../../tmp/prof.ts
var code = readFileSync("/tmp/workload.js", "utf8");
var mod = new WebAssembly.Module(readFileSync(process.argv[2]));
for (let rep = 0; rep < 12; rep++) {
  const inst = await instantiateQuickJS(mod, { initialPages: 256, maximumPages: 16384 });
  evalMetered(inst, code);
}
