import { type Engine, engineFromModule } from "../../core/engine/engine.ts";
import { InternalError } from "../../core/errors.ts";

/** Where the built engine lives: beside the worker script, so the folder can move as one. */
export const ENGINE_WASM_URL = new URL("./quickjs-metered.wasm", import.meta.url);
export const ENGINE_MANIFEST_URL = new URL("./quickjs-metered.json", import.meta.url);

let engine: Promise<Engine> | undefined;

/** The metered engine, fetched and compiled once per worker. */
export function loadEngine(): Promise<Engine> {
  engine ??= compileEngine().catch((error: unknown) => {
    engine = undefined;
    throw error;
  });
  return engine;
}

async function compileEngine(): Promise<Engine> {
  const [manifestResponse, wasmResponse] = await Promise.all([
    fetch(ENGINE_MANIFEST_URL),
    fetch(ENGINE_WASM_URL),
  ]);
  if (!manifestResponse.ok || !wasmResponse.ok) {
    throw new InternalError(
      `the metered engine could not be loaded from ${ENGINE_WASM_URL.href} (HTTP ${wasmResponse.status}) and ${ENGINE_MANIFEST_URL.href} (HTTP ${manifestResponse.status}); copy the whole dist/browser folder`,
    );
  }
  const manifest = (await manifestResponse.json()) as {
    memoryFloorPages?: number;
    stackBytes?: number;
  };
  if (typeof manifest.memoryFloorPages !== "number") {
    throw new InternalError(`${ENGINE_MANIFEST_URL.href} has no memoryFloorPages; rebuild it`);
  }
  // Servers that send another MIME type for .wasm cannot stream: compile from the bytes then.
  const module =
    wasmResponse.headers.get("content-type") === "application/wasm"
      ? await WebAssembly.compileStreaming(wasmResponse)
      : await WebAssembly.compile(await wasmResponse.arrayBuffer());
  return engineFromModule(module, manifest.memoryFloorPages, manifest.stackBytes ?? null);
}
