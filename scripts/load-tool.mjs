// Loads one of the project's TypeScript modules into a build script: bundled by esbuild into
// dist/.tools (dependencies stay external), then imported.
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";

export async function loadTool(root, entry) {
  const outfile = join(root, "dist", ".tools", `${entry.replace(/[/.]/g, "_")}.mjs`);
  await esbuild.build({
    entryPoints: [join(root, entry)],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    packages: "external",
    logLevel: "error",
  });
  return import(`${pathToFileURL(outfile).href}?t=${Date.now()}`);
}
