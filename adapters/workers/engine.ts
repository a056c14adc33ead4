/**
 * The metered engine, bundled with the Worker: wrangler compiles the `.wasm` import at deploy
 * time (its default CompiledWasm rule for every `.wasm` file), because workerd refuses to compile
 * WebAssembly at run time.
 */
import { type Engine, engineFromModule } from "../../core/engine/engine.ts";
import manifest from "../../dist/quickjs-metered.json";
import engineModule from "../../dist/quickjs-metered.wasm";

let engine: Engine | undefined;

/** The engine bundled with this Worker, set up once per isolate. */
export function bundledEngine(): Engine {
  engine ??= engineFromModule(engineModule, manifest.memoryFloorPages, manifest.stackBytes);
  return engine;
}
