import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { writeBuiltBundle } from "../../core/compile/built-bundle.ts";
import { CompileError } from "../../core/errors.ts";
import { compileFile } from "./compile.ts";
import { packageRoot, sdkEntry } from "./paths.ts";

/**
 * `capsule build FILE` without `--export`: the program the sandbox runs for FILE, written once
 * (core/compile/built-bundle.ts), so that `capsule exec`, `run({ file })`, a page's and a
 * Worker's `code` run it with no compile step.
 */

export interface BundleBuildOptions {
  /** Where the bundle is written; default FILE with `.capsule.mjs` for its extension. */
  output?: string;
  /** Project root that FILE and the output are relative to; default process.cwd(). */
  cwd?: string;
}

export interface BundleBuildResult {
  output: string;
  bytes: number;
  durationMs: number;
}

export async function buildBundle(
  file: string,
  options: BundleBuildOptions = {},
): Promise<BundleBuildResult> {
  const started = performance.now();
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const entry = path.resolve(cwd, file);
  if (entry.endsWith(".py")) {
    throw new CompileError(
      `${file}: a Python task runs from its source; capsule build bundles .ts and .js task files`,
    );
  }
  const output = path.resolve(
    cwd,
    options.output ?? `${entry.replace(/\.(m|c)?(t|j)s$/i, "")}.capsule.mjs`,
  );
  if (output === entry) {
    throw new CompileError(`${file}: the bundle would overwrite its own task file; give -o FILE`);
  }
  const compiled = await compileFile(file, cwd, { sdkEntry });
  const text = await writeBuiltBundle(
    {
      code: compiled.code,
      sourceMap: compiled.sourceMap,
      source: path.relative(cwd, entry) || file,
    },
    `capsule-portable ${versionOf()}`,
  );
  mkdirSync(path.dirname(output), { recursive: true });
  // Written whole or not at all: a half-written bundle would be refused, but the old one is lost.
  const partial = `${output}.${process.pid}.partial`;
  writeFileSync(partial, text);
  renameSync(partial, output);
  return {
    output: path.relative(cwd, output) || output,
    bytes: Buffer.byteLength(text),
    durationMs: Math.round(performance.now() - started),
  };
}

function versionOf(): string {
  const manifest = JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8"));
  return String(manifest.version);
}
