import { createHash } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import {
  DEFAULT_STACK_BYTES,
  type InstrumentStats,
  instrumentFuel,
} from "../core/engine/instrument.ts";

/**
 * Builds the metered QuickJS engine: dist/quickjs-metered.wasm plus a manifest recording what it
 * was built from. The work (several seconds) is skipped while the manifest still matches.
 *
 * The engine imports `capsule.refuel` and exports the `fuel` and `tick` globals (see
 * instrument.ts): whoever instantiates it adds `capsule: { refuel }` to the imports emscripten's
 * glue passes to its `instantiateWasm` hook.
 */

export const METERED_WASM = "dist/quickjs-metered.wasm";
export const METERED_MANIFEST = "dist/quickjs-metered.json";
const INPUT_WASM = "@jitl/quickjs-wasmfile-release-sync/wasm";
const INSTRUMENT_SOURCE = "core/engine/instrument.ts";
const STACK_BYTES = DEFAULT_STACK_BYTES;

export interface EngineManifest {
  inputSha256: string;
  outputSha256: string;
  instrumentSha256: string;
  binaryenVersion: string;
  memoryFloorPages: number;
  /**
   * Size of the engine's C stack. QuickJS's own limit (`setMaxStackSize`) must stay below it with
   * room for the C frames between its checks, or deep recursion overwrites static data.
   */
  stackBytes: number;
  stats: InstrumentStats;
  buildMs: number;
}

export async function buildEngine(opts: {
  root: string;
  log?: (msg: string) => void;
}): Promise<{ wasmPath: string; built: boolean }> {
  const log = opts.log ?? (() => {});
  const require = createRequire(join(opts.root, "package.json"));
  const wasmPath = join(opts.root, METERED_WASM);
  const manifestPath = join(opts.root, METERED_MANIFEST);
  const input = await readFile(require.resolve(INPUT_WASM));
  const inputSha256 = sha256(input);
  const instrumentSha256 = sha256(await readFile(join(opts.root, INSTRUMENT_SOURCE)));
  const binaryenVersion = (require("binaryen/package.json") as { version: string }).version;

  const previous = await readManifest(manifestPath);
  if (
    previous?.inputSha256 === inputSha256 &&
    previous.instrumentSha256 === instrumentSha256 &&
    previous.binaryenVersion === binaryenVersion &&
    previous.stackBytes === STACK_BYTES &&
    (await fileSha256(wasmPath)) === previous.outputSha256
  ) {
    log(`engine: ${METERED_WASM} is up to date`);
    return { wasmPath, built: false };
  }

  log(`engine: instrumenting QuickJS (${input.byteLength} bytes) with fuel metering...`);
  const started = performance.now();
  const { default: binaryen } = await import("binaryen");
  const { wasm, stats } = instrumentFuel(binaryen, input, { stackBytes: STACK_BYTES });
  if (stats.interpreter?.candidates !== 1) {
    // Deadlines inside the interpreter rest on QuickJS's interrupt handler; a build that cannot
    // tell which function that is would either lose speed or lose deadline checks.
    throw new Error(
      `expected exactly one bytecode interpreter in ${INPUT_WASM}, found ${stats.interpreter?.candidates ?? 0} functions with a br_table of the interpreter's size; check instrument.ts's findInterpreter against this QuickJS build`,
    );
  }
  const buildMs = Math.round(performance.now() - started);
  const manifest: EngineManifest = {
    inputSha256,
    outputSha256: sha256(wasm),
    instrumentSha256,
    binaryenVersion,
    memoryFloorPages: stats.memoryFloorPages,
    stackBytes: STACK_BYTES,
    stats,
    buildMs,
  };
  await mkdir(join(opts.root, "dist"), { recursive: true });
  // Write-then-rename, so an interrupted build never leaves a wasm its manifest vouches for.
  await writeFile(`${wasmPath}.tmp`, wasm);
  await rename(`${wasmPath}.tmp`, wasmPath);
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  log(
    `engine: wrote ${METERED_WASM} (${wasm.byteLength} bytes, memory floor ${stats.memoryFloorPages} pages, ${STACK_BYTES}-byte stack, interpreter function ${stats.interpreter.name}) in ${buildMs} ms`,
  );
  return { wasmPath, built: true };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function fileSha256(path: string): Promise<string | null> {
  try {
    return sha256(await readFile(path));
  } catch {
    return null;
  }
}

async function readManifest(path: string): Promise<EngineManifest | null> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as EngineManifest;
  } catch {
    return null;
  }
}
