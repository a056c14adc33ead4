#!/usr/bin/env node
// The project build, run by `npm install` (prepare), `npm test` and `npm run build`:
// 1. the fuel-metered QuickJS engine (dist/quickjs-metered.wasm), skipped when up to date;
// 2. the guest API surface as strings (core/guest/sources.generated.ts);
// 3. the Node entry points (dist/*.mjs) that the CLI and worker threads load;
// 4. the browser folder (dist/browser/): capsule.js, its worker (sucrase a lazy chunk), the engine.
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { loadTool } from "./load-tool.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const log = (message) => process.stderr.write(`[build] ${message}\n`);

async function main() {
  const started = performance.now();
  mkdirSync(dist, { recursive: true });

  const { buildEngine } = await loadTool(root, "scripts/build-engine.ts");
  const engine = await buildEngine({ root, log });
  log(`engine ${engine.built ? "built" : "up to date"}: ${engine.wasmPath}`);

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
      node: join(root, "adapters/node/index.ts"),
      "node-worker": join(root, "adapters/node/worker.ts"),
    },
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    splitting: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: ["esbuild"],
    // The emscripten glue calls require() for node:fs etc.; give the ESM bundle one.
    banner: {
      js: 'import { createRequire as __capsuleCreateRequire } from "node:module"; const require = __capsuleCreateRequire(import.meta.url);',
    },
    logLevel: "error",
  });
  await buildBrowser(guest, renderSourcesModule);
  rmSync(join(dist, ".tools"), { recursive: true, force: true });
  log(`done in ${Math.round(performance.now() - started)} ms`);
}

/**
 * Guest chunks a page fetches on first use instead of with the worker: the large ones that small
 * tasks never touch (adapters/browser/worker.ts loads them; the text, and so the fuel, is the same).
 */
const LAZY_BROWSER_CHUNKS = [
  "url",
  "buffer",
  "encoding",
  "fetch",
  "fs",
  "path",
  "process",
  "structured-clone",
];

/** Static files a page imports with no bundler; every asset resolves from capsule.js's own URL. */
async function buildBrowser(guest, renderSourcesModule) {
  const out = join(dist, "browser");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "guest"), { recursive: true });
  const eager = { ...guest.polyfills };
  for (const name of LAZY_BROWSER_CHUNKS) {
    if (eager[name] === undefined) throw new Error(`no guest chunk "${name}" to load lazily`);
    writeFileSync(join(out, "guest", `${name}.js`), eager[name]);
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
  await esbuild.build({
    entryPoints: {
      capsule: join(root, "adapters/browser/index.ts"),
      "capsule-worker": join(root, "adapters/browser/worker.ts"),
    },
    outdir: out,
    bundle: true,
    splitting: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    minify: true,
    plugins: [lazyGuestChunks],
    logLevel: "error",
  });
  copyFileSync(join(dist, "quickjs-metered.wasm"), join(out, "quickjs-metered.wasm"));
  copyFileSync(join(dist, "quickjs-metered.json"), join(out, "quickjs-metered.json"));
  log(`browser build: ${out}`);
}

main().catch((error) => {
  process.stderr.write(`[build] failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
