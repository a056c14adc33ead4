import { readFileSync } from "node:fs";
import { type Engine, engineFromModule } from "../../core/engine/engine.ts";
import { InternalError } from "../../core/errors.ts";
import { meteredEngineManifest, meteredEngineWasm } from "./paths.ts";

let engine: Engine | undefined;

/** The metered engine, compiled once per thread (or handed over by the thread that compiled it). */
export function loadEngine(): Engine {
  if (engine) return engine;
  let bytes: Uint8Array<ArrayBuffer>;
  let manifest: { memoryFloorPages?: number; stackBytes?: number };
  try {
    bytes = new Uint8Array(readFileSync(meteredEngineWasm));
    manifest = JSON.parse(readFileSync(meteredEngineManifest, "utf8"));
  } catch (error) {
    throw new InternalError(
      `the metered engine is not built (${(error as Error).message}); run \`npm run build\` in the capsule-portable package`,
    );
  }
  if (typeof manifest.memoryFloorPages !== "number") {
    throw new InternalError(
      `${meteredEngineManifest} has no memoryFloorPages; run \`npm run build\``,
    );
  }
  engine = engineFromModule(
    new WebAssembly.Module(bytes),
    manifest.memoryFloorPages,
    manifest.stackBytes ?? null,
  );
  return engine;
}

export function adoptEngine(
  module: WebAssembly.Module,
  memoryFloorPages: number,
  stackBytes: number | null,
): Engine {
  engine = engineFromModule(module, memoryFloorPages, stackBytes);
  return engine;
}
