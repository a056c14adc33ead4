import { dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The package root, whether this code runs from the built `dist/` or from its sources. */
export const packageRoot = here.endsWith(`${sep}dist`) ? dirname(here) : join(here, "..", "..");

export const distDir = join(packageRoot, "dist");
export const sdkEntry = join(packageRoot, "sdk", "index.ts");
export const meteredEngineWasm = join(distDir, "quickjs-metered.wasm");
export const meteredEngineManifest = join(distDir, "quickjs-metered.json");
export const workerEntry = join(distDir, "node-worker.mjs");
