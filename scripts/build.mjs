#!/usr/bin/env node
// The project build, run by `npm install` (prepare), `npm test` and `npm run build`:
// 1. the fuel-metered QuickJS engine (dist/quickjs-metered.wasm), skipped when up to date;
//    the fuel-metered Python engine (dist/pyodide-metered.wasm) likewise;
// 2. the guest API surface as strings (core/guest/sources.generated.ts);
// 3. the Node entry points (dist/*.mjs) that the CLI and worker threads load;
// 4. the browser folder (dist/browser/): capsule.js, its worker (sucrase a lazy chunk), the engine,
//    and python/: what a page posts into each Python sandbox (its Worker script and Pyodide's files);
// 5. the Workers library (dist/workers.mjs) and the SDK (dist/sdk.mjs) as plain JavaScript;
// 6. one bundled declaration file per entry point (dist/types/), so consumers get no `.ts`.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { loadTool } from "./load-tool.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const log = (message) => process.stderr.write(`[build] ${message}\n`);

/**
 * A loaded interpreter's memory, so a Python child starts in about a second instead of several.
 * Made by the child script itself on the metered engine (a snapshot fits only the module that
 * made it), outside any sandbox and on no task; made again when the engine or the script changes.
 */
function buildPythonSnapshot(engineWasm) {
  const child = join(dist, "python", "child.mjs");
  const out = join(dist, "python", "pyodide-snapshot.bin");
  const stamp = `${out}.json`;
  const key = createHash("sha256")
    .update(readFileSync(engineWasm))
    .update(readFileSync(child))
    .digest("hex");
  try {
    if (JSON.parse(readFileSync(stamp, "utf8")).key === key && statSync(out).size > 0) {
      log("Python snapshot up to date");
      return;
    }
  } catch {
    // No stamp yet: make one.
  }
  const pyodideDir = dirname(
    createRequire(join(root, "package.json")).resolve("pyodide/package.json"),
  );
  const startedAt = performance.now();
  execFileSync(process.execPath, [child, pyodideDir, engineWasm, "--make-snapshot", out], {
    env: {},
    stdio: ["ignore", "ignore", "inherit"],
  });
  writeFileSync(stamp, `${JSON.stringify({ key })}\n`);
  log(`Python snapshot made in ${Math.round(performance.now() - startedAt)} ms`);
}

async function main() {
  const started = performance.now();
  mkdirSync(dist, { recursive: true });

  const { buildEngine } = await loadTool(root, "scripts/build-engine.ts");
  const engine = await buildEngine({ root, log });
  log(`engine ${engine.built ? "built" : "up to date"}: ${engine.wasmPath}`);
  const python = await buildPythonEngine();
  if (python) log(`Python engine ${python.built ? "built" : "up to date"}: ${python.wasmPath}`);

  const { buildGuest, renderSourcesModule } = await loadTool(root, "core/guest/build.ts");
  const guest = await buildGuest({ root, esbuild });
  log("guest surface built");

  // Chunk names carry content hashes: drop the previous build's so dist/ holds one build.
  for (const name of readdirSync(dist)) {
    if (name.endsWith(".mjs")) rmSync(join(dist, name));
  }
  await esbuild.build({
    entryPoints: {
      cli: join(root, "adapters/node/cli.ts"),
      launch: join(root, "adapters/node/launch.ts"),
      node: join(root, "adapters/node/index.ts"),
      runner: join(root, "adapters/node/runner.ts"),
      "node-worker": join(root, "adapters/node/worker.ts"),
    },
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Capsule components load jco-transpile, preview2-shim, ComponentizeJS and binaryen at run
    // time, as optional peers: a project that runs no component installs none of them.
    external: ["esbuild", "node-sqlite3-wasm", "@bytecodealliance/*", "binaryen"],
    // The emscripten glue calls require() for node:fs etc.; give the ESM bundle one.
    banner: {
      js: 'import { createRequire as __capsuleCreateRequire } from "node:module"; const require = __capsuleCreateRequire(import.meta.url);',
    },
    logLevel: "error",
  });
  // require("capsule-portable/node") lands here first (package.json exports, "require").
  copyFileSync(join(root, "adapters/node/require.cjs"), join(dist, "node.cjs"));
  // The Python child reads only this one file besides Pyodide: one self-contained module.
  await esbuild.build({
    entryPoints: [join(root, "adapters/node/python/child.ts")],
    outfile: join(dist, "python", "child.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error",
  });
  await buildComponentGuest();
  if (python) buildPythonSnapshot(python.wasmPath);
  await buildBrowser(guest, renderSourcesModule);
  await buildLibraries();
  buildTypes();
  rmSync(join(dist, ".tools"), { recursive: true, force: true });
  log(`done in ${Math.round(performance.now() - started)} ms`);
}

/**
 * What `capsule build --export` puts into a component beside the task (core/component): the WIT
 * world and the guest's SDK, fs and process, as plain modules, so an installed package builds components
 * with no source tree.
 */
async function buildComponentGuest() {
  const out = join(dist, "component");
  mkdirSync(out, { recursive: true });
  copyFileSync(join(root, "core/component/capsule.wit"), join(out, "capsule.wit"));
  for (const name of ["guest-sdk", "guest-fs", "guest-process"]) {
    await esbuild.build({
      entryPoints: [join(root, `core/component/${name}.ts`)],
      outfile: join(out, `${name}.mjs`),
      platform: "neutral",
      format: "esm",
      target: "es2022",
      logLevel: "error",
    });
  }
}

/** The fuel pass as the Python engine uses it: a change to any of these rebuilds it. */
const PYTHON_ENGINE_SOURCES = ["core/engine/instrument.ts", "core/engine/pyodide-engine.ts"];

/**
 * The metered Python engine: Pyodide's wasm through the fuel pass, with a manifest
 * (PyodideEngineManifest) recording what it was built from. Instrumenting and optimising take
 * about 100 s, so it is rebuilt only when the manifest no longer matches the input, the pass,
 * binaryen or the output on disk. Skipped, not failed, without the pyodide package.
 */
async function buildPythonEngine() {
  const require = createRequire(join(root, "package.json"));
  const tool = await loadTool(root, "core/engine/pyodide-engine.ts");
  let sourcePath;
  try {
    sourcePath = require.resolve(tool.PYODIDE_SOURCE);
  } catch {
    log(`Python engine skipped: ${tool.PYODIDE_SOURCE} is not installed (npm install pyodide)`);
    return null;
  }
  const wasmPath = join(root, tool.PYODIDE_METERED_WASM);
  const manifestPath = join(root, tool.PYODIDE_METERED_MANIFEST);
  const input = readFileSync(sourcePath);
  const sourceSha256 = sha256(input);
  const passHash = createHash("sha256");
  for (const file of PYTHON_ENGINE_SOURCES) passHash.update(readFileSync(join(root, file)));
  const instrumentSha256 = passHash.digest("hex");
  const binaryenVersion = require("binaryen/package.json").version;

  const previous = readJson(manifestPath);
  if (
    previous?.source?.sha256 === sourceSha256 &&
    previous.instrumentSha256 === instrumentSha256 &&
    previous.binaryenVersion === binaryenVersion &&
    previous.output?.sha256 === fileSha256(wasmPath)
  ) {
    return { wasmPath, built: false };
  }

  const options = tool.PYODIDE_INSTRUMENT_OPTIONS;
  log(
    `building the Python engine (about ${options.optimize ? 100 : 10} s, once): instrumenting ${tool.PYODIDE_SOURCE} (${input.byteLength} bytes) with fuel metering...`,
  );
  const started = performance.now();
  const { default: binaryen } = await import("binaryen");
  const { wasm, stats } = tool.meterPyodide(binaryen, input);
  const buildMs = Math.round(performance.now() - started);
  const manifest = {
    source: {
      pyodideVersion: require("pyodide/package.json").version,
      path: tool.PYODIDE_SOURCE,
      sha256: sourceSha256,
      bytes: input.byteLength,
    },
    output: { sha256: sha256(wasm), bytes: wasm.byteLength },
    instrumentSha256,
    binaryenVersion,
    stackBytes: options.stackBytes,
    memoryMinPages: stats.memoryMinPages,
    optimized: options.optimize,
    interpreterTraps: stats.trappingChecks > 0,
    runtime: tool.PYODIDE_RUNTIME_NAMES,
    stats,
    buildMs,
  };
  // Write-then-rename, so an interrupted build never leaves a wasm its manifest vouches for.
  writeFileSync(`${wasmPath}.tmp`, wasm);
  renameSync(`${wasmPath}.tmp`, wasmPath);
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  log(
    `Python engine: wrote ${tool.PYODIDE_METERED_WASM} (${wasm.byteLength} bytes, ${options.stackBytes}-byte stack, ${stats.memoryMinPages} pages initial memory${options.optimize ? ", -O3" : ""}) in ${buildMs} ms`,
  );
  return { wasmPath, built: true };
}

function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

function fileSha256(path) {
  try {
    return sha256(readFileSync(path));
  } catch {
    return null;
  }
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return null;
  }
}

/**
 * Static files a page imports with no bundler, which an app's bundler (Vite) takes in as well:
 * each file is named by a literal `new URL("./...", import.meta.url)` in the module that loads it,
 * and the pool starts its worker as `new Worker(new URL("./capsule-worker.js", import.meta.url))`.
 */
async function buildBrowser(guest, renderSourcesModule) {
  const out = join(dist, "browser");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "guest"), { recursive: true });
  // Guest chunks a page fetches on first use instead of with the worker; the worker names each
  // file literally, so that an app's bundler emits it too (adapters/browser/guest-chunks.ts).
  const { LAZY_GUEST_CHUNKS } = await loadTool(root, "adapters/browser/guest-chunks.ts");
  const eager = { ...guest.polyfills };
  for (const [name, url] of Object.entries(LAZY_GUEST_CHUNKS)) {
    if (eager[name] === undefined) throw new Error(`no guest chunk "${name}" to load lazily`);
    if (!url.pathname.endsWith(`/guest/${name}.txt`)) {
      throw new Error(`the worker looks for guest chunk "${name}" at ${url.pathname}`);
    }
    writeFileSync(join(out, "guest", `${name}.txt`), eager[name]);
    delete eager[name];
  }
  const lazyGuestChunks = {
    name: "lazy-guest-chunks",
    setup(build) {
      build.onLoad({ filter: /sources\.generated\.ts$/ }, () => ({
        contents: renderSourcesModule({ ...guest, polyfills: eager }),
        loader: "ts",
      }));
    },
  };
  // The QuickJS glue's own wasm address is never used (the engine is handed over compiled), but
  // an app's bundler would look for the file it names: it becomes a plain string.
  const quickjsGlue = {
    name: "quickjs-glue-wasm-address",
    setup(build) {
      build.onLoad(
        { filter: /quickjs-wasmfile-release-sync[\\/]dist[\\/]emscripten-module\.browser\.mjs$/ },
        (args) => {
          const text = readFileSync(args.path, "utf8");
          const address = '(new URL("emscripten-module.wasm",import.meta.url)).href';
          if (!text.includes(address)) {
            throw new Error(`${args.path} no longer names its wasm as ${address}`);
          }
          return { contents: text.replace(address, '"emscripten-module.wasm"'), loader: "js" };
        },
      );
    },
  };
  // sqlite-wasm names two files of its own that the run journal never starts (the worker of its
  // promiser API, the proxy of its "opfs" VFS; the journal uses opfs-sahpool in a Worker of its
  // own): an app's bundler would look for them beside the chunk and fail, so they are left as
  // addresses no bundler resolves.
  const sqliteUnusedWorkers = {
    name: "sqlite-unused-workers",
    setup(build) {
      build.onLoad({ filter: /@sqlite\.org[\\/]sqlite-wasm[\\/]dist[\\/]index\.mjs$/ }, (args) => {
        let text = readFileSync(args.path, "utf8");
        for (const file of ["sqlite3-worker1.mjs", "sqlite3-opfs-async-proxy.js"]) {
          const address = `new URL("${file}", import.meta.url)`;
          if (!text.includes(address)) throw new Error(`${args.path} no longer names ${address}`);
          text = text.replace(address, `new URL("${file}", String(import.meta.url))`);
        }
        return { contents: text, loader: "js" };
      });
    },
  };
  await esbuild.build({
    entryPoints: {
      capsule: join(root, "adapters/browser/index.ts"),
      "capsule-worker": join(root, "adapters/browser/worker.ts"),
      // The run journal's Worker (adapters/browser/journal.ts), with SQLite's wasm beside it.
      "capsule-journal": join(root, "adapters/browser/journal-worker.ts"),
    },
    outdir: out,
    bundle: true,
    splitting: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    minify: true,
    plugins: [lazyGuestChunks, quickjsGlue, sqliteUnusedWorkers],
    // The Python SDK and runner, inlined as text for the Python sandboxes (adapters/browser/python).
    loader: { ".py": "text" },
    logLevel: "error",
  });
  // Text, not .js: a page joins it after a component's glue and starts it from a blob
  // (adapters/browser/component.ts).
  await esbuild.build({
    entryPoints: [join(root, "adapters/browser/component-sandbox.ts")],
    outfile: join(out, "capsule-component-sandbox.txt"),
    bundle: true,
    platform: "browser",
    format: "iife",
    target: "es2022",
    minify: true,
    logLevel: "error",
  });
  copyFileSync(join(dist, "quickjs-metered.wasm"), join(out, "quickjs-metered.wasm"));
  copyFileSync(join(dist, "quickjs-metered.json"), join(out, "quickjs-metered.json"));
  copyFileSync(
    join(root, "node_modules/@sqlite.org/sqlite-wasm/dist/sqlite3.wasm"),
    join(out, "sqlite3.wasm"),
  );
  await buildBrowserPython(join(out, "python"));
  log(`browser build: ${out}`);
}

/**
 * What `capsule-portable/workers` and `capsule-portable/sdk` load: JavaScript, since a consumer's
 * toolchain compiles nothing inside node_modules. The Workers library keeps its engine import
 * (`./quickjs-metered.wasm`, beside it in dist/) for the consumer's wrangler to compile at deploy.
 */
async function buildLibraries() {
  const engineBesideLibrary = {
    name: "engine-beside-library",
    setup(build) {
      build.onResolve({ filter: /quickjs-metered\.wasm$/ }, () => ({
        path: "./quickjs-metered.wasm",
        external: true,
      }));
    },
  };
  await esbuild.build({
    entryPoints: { workers: join(root, "adapters/workers/index.ts") },
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "neutral",
    mainFields: ["module", "main"],
    conditions: ["workerd", "worker", "browser"],
    format: "esm",
    target: "es2022",
    plugins: [engineBesideLibrary],
    logLevel: "error",
  });
  await esbuild.build({
    entryPoints: { sdk: join(root, "sdk/index.ts") },
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    format: "esm",
    target: "es2022",
    logLevel: "error",
  });
}

/** The entry points whose declarations a consumer's `tsc` reads, by the name of their file. */
const TYPED_ENTRIES = {
  node: "adapters/node/index",
  runner: "adapters/node/runner",
  browser: "adapters/browser/index",
  workers: "adapters/workers/index",
  sdk: "sdk/index",
};

/**
 * dist/types/<entry>.d.ts: tsc writes declarations for the whole source tree (with our `.ts`
 * import paths), then dts-bundle-generator folds each entry's into one self-contained file.
 * Skipped when no TypeScript source changed since the last run.
 */
function buildTypes() {
  const out = join(dist, "types");
  const stamp = join(out, ".sources.json");
  const key = createHash("sha256");
  for (const folder of ["core", "adapters", "sdk"]) hashSources(join(root, folder), key);
  key.update(readFileSync(join(root, "tsconfig.types.json")));
  const digest = key.digest("hex");
  if (readJson(stamp)?.key === digest && existsSync(join(out, "sdk.d.ts"))) {
    log("types up to date");
    return;
  }
  const started = performance.now();
  const emitted = join(dist, ".types");
  rmSync(emitted, { recursive: true, force: true });
  const bin = (name) => join(root, "node_modules", name);
  execFileSync(
    process.execPath,
    [
      bin("typescript/bin/tsc"),
      ...["-p", join(root, "tsconfig.types.json"), "--noEmit", "false", "--declaration"],
      ...["--emitDeclarationOnly", "--outDir", emitted, "--rootDir", root],
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  writeFileSync(
    join(emitted, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "ESNext",
        moduleResolution: "Bundler",
        lib: ["ES2023", "DOM"],
        types: ["node"],
        typeRoots: [join(root, "node_modules", "@types")],
        strict: true,
        skipLibCheck: true,
        allowImportingTsExtensions: true,
        noEmit: true,
      },
    }),
  );
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const config = join(emitted, "dts-bundle.json");
  writeFileSync(
    config,
    JSON.stringify({
      compilationOptions: { preferredConfigPath: join(emitted, "tsconfig.json") },
      entries: Object.entries(TYPED_ENTRIES).map(([name, source]) => ({
        filePath: join(emitted, `${source}.d.ts`),
        outFile: join(out, `${name}.d.ts`),
        noCheck: true,
        output: { exportReferencedTypes: false, noBanner: true },
      })),
    }),
  );
  execFileSync(
    process.execPath,
    [bin("dts-bundle-generator/dist/bin/dts-bundle-generator.js"), "--silent", "--config", config],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  rmSync(emitted, { recursive: true, force: true });
  writeFileSync(stamp, `${JSON.stringify({ key: digest })}\n`);
  log(`types built in ${Math.round(performance.now() - started)} ms`);
}

function hashSources(folder, hash) {
  for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) hashSources(path, hash);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) {
      hash.update(path).update(readFileSync(path));
    }
  }
}

// --- Browser: Python sandboxes (adapters/browser/python/) -------------------------------------
/**
 * What a page posts into each Python sandbox, which can fetch nothing itself: the sandbox's
 * Worker script (Pyodide's loader and glue bundled into one classic script, started from a blob
 * URL), the metered engine, Pyodide's standard library and lock file, and the snapshot.
 */
async function buildBrowserPython(out) {
  const engine = join(dist, "pyodide-metered.wasm");
  if (!existsSync(engine)) {
    log("browser Python skipped: no metered Python engine");
    return;
  }
  mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: [join(root, "adapters/browser/python/worker.ts")],
    // Text, not .js: the page starts it from a blob (adapters/browser/python/index.ts).
    outfile: join(out, "worker.txt"),
    bundle: true,
    platform: "browser",
    format: "iife",
    target: "es2022",
    minify: true,
    // Pyodide's Node-only branches import these; a page never reaches them.
    external: ["node:*", "ws"],
    // The glue reads its own URL; the Worker's files are served from memory under this address.
    define: { "import.meta.url": JSON.stringify("https://pyodide.invalid/pyodide.asm.mjs") },
    logLevel: "error",
  });
  const pyodideDir = dirname(
    createRequire(join(root, "package.json")).resolve("pyodide/package.json"),
  );
  copyFileSync(engine, join(out, "pyodide-metered.wasm"));
  for (const name of ["python_stdlib.zip", "pyodide-lock.json"]) {
    copyFileSync(join(pyodideDir, name), join(out, name));
  }
  await buildBrowserSnapshot(out);
}

/**
 * The page's snapshot of a loaded interpreter, made in Chromium by the built Worker: Pyodide
 * keeps in its memory how the engine that loaded it switches stacks (JSPI), and a snapshot made
 * on Node cannot switch stacks in Chromium (a plain def task waits that way in a page), nor one
 * made in Chromium start on Node. Remade when the engine or the Worker changes (about 20 s).
 * Without Chromium there is none, and each page sandbox loads Pyodide from scratch (8-10 s).
 */
async function buildBrowserSnapshot(out) {
  const target = join(out, "pyodide-snapshot.bin");
  const kept = join(dist, "python", "browser-snapshot.bin");
  const stamp = `${kept}.json`;
  const key = createHash("sha256")
    .update(readFileSync(join(out, "pyodide-metered.wasm")))
    .update(readFileSync(join(out, "worker.txt")))
    .digest("hex");
  try {
    if (JSON.parse(readFileSync(stamp, "utf8")).key === key && statSync(kept).size > 0) {
      copyFileSync(kept, target);
      return;
    }
  } catch {
    // No stamp yet: make one.
  }
  rmSync(target, { force: true });
  const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
  if (!existsSync(chromiumPath)) {
    log(
      `no browser Python snapshot: no Chromium at ${chromiumPath} (page sandboxes load from scratch)`,
    );
    return;
  }
  const startedAt = performance.now();
  const { makeBrowserSnapshot } = await import("./browser-snapshot.mjs");
  writeFileSync(kept, await makeBrowserSnapshot(out, chromiumPath));
  writeFileSync(stamp, `${JSON.stringify({ key })}\n`);
  copyFileSync(kept, target);
  log(
    `browser Python snapshot made in Chromium in ${Math.round(performance.now() - startedAt)} ms`,
  );
}
// --- end of browser Python ----------------------------------------------------------------------

// `npm pack` packs the build that is in dist/ (scripts/pack-manifest.mjs checks it is whole):
// rebuilding here would rewrite dist/ under anything running from it at the time.
if (process.env.npm_lifecycle_event === "prepare" && process.env.npm_command === "pack") {
  log("npm pack: packing the build in dist/ as it is");
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`[build] failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
