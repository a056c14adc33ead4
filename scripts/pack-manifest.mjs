#!/usr/bin/env node
// `npm pack` / `npm publish` hooks. The published package.json carries no lifecycle scripts: a
// consumer's install runs nothing of ours (npm lists every install script it finds), and the
// build a clone needs (`prepare`) ships built in dist/ instead.
//   prepack: check that dist/ holds everything the package promises, then drop the scripts.
//   postpack: put package.json back exactly as it was.
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const manifest = join(root, "package.json");
const kept = join(root, ".package.json.unpacked");

/** Files a consumer's install needs that only a complete build makes (the snapshots need Chromium). */
export const BUILD_FILES = [
  "dist/cli.mjs",
  "dist/launch.mjs",
  "dist/node.mjs",
  "dist/runner.mjs",
  "dist/node.cjs",
  "dist/node-worker.mjs",
  "dist/workers.mjs",
  "dist/sdk.mjs",
  "dist/quickjs-metered.wasm",
  "dist/pyodide-metered.wasm",
  "dist/python/child.mjs",
  "dist/component/capsule.wit",
  "dist/component/guest-sdk.mjs",
  "dist/component/guest-fs.mjs",
  "dist/component/guest-process.mjs",
  "dist/python/pyodide-snapshot.bin",
  "dist/browser/capsule.js",
  "dist/browser/capsule-worker.js",
  "dist/browser/capsule-component-sandbox.txt",
  "dist/browser/capsule-journal.js",
  "dist/browser/sqlite3.wasm",
  "dist/browser/python/pyodide-snapshot.bin",
  "dist/types/node.d.ts",
  "dist/types/browser.d.ts",
  "dist/types/workers.d.ts",
  "dist/types/sdk.d.ts",
  "dist/types/runner.d.ts",
];

/** Throws, naming each file, unless the build in `dir` holds everything the package needs. */
export function checkBuild(dir = root) {
  const missing = BUILD_FILES.filter(
    (file) => !existsSync(join(dir, file)) || statSync(join(dir, file)).size === 0,
  );
  if (missing.length > 0) {
    throw new Error(
      `the build is incomplete, so the package would be too: missing ${missing.join(", ")}. Run \`npm run build\` (the browser Python snapshot needs Chromium: CHROMIUM_PATH or /usr/bin/chromium).`,
    );
  }
}

/** The package.json a consumer receives: the project's, without scripts or devDependencies. */
export function publishedManifest(text) {
  const published = JSON.parse(text);
  delete published.scripts;
  delete published.devDependencies;
  return `${JSON.stringify(published, null, 2)}\n`;
}

function prepack() {
  checkBuild();
  if (existsSync(kept)) {
    throw new Error(
      `${kept} exists: an earlier pack did not finish. Restore package.json from it, then pack again.`,
    );
  }
  const text = readFileSync(manifest, "utf8");
  writeFileSync(kept, text);
  writeFileSync(manifest, publishedManifest(text));
}

function postpack() {
  if (existsSync(kept)) renameSync(kept, manifest);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const step = process.argv[2];
  try {
    if (step === "prepack") prepack();
    else if (step === "postpack") postpack();
    else throw new Error(`unknown step "${step}": expected prepack or postpack`);
  } catch (error) {
    process.stderr.write(`[pack] ${error.message}\n`);
    process.exit(1);
  }
}
