import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CompileError } from "../../core/errors.ts";

/**
 * `capsule build --export`: a task file made into a WebAssembly component of Capsule's world
 * (`capsule:host/capsule-agent`) the way Capsule makes one: esbuild bundles the task with a guest
 * SDK that registers tasks and exports `task-runner`, then ComponentizeJS (StarlingMonkey) turns
 * the bundle into a component. ComponentizeJS is an optional dependency: about 100 MB installed.
 */

export const COMPONENTIZE_PACKAGE = "@bytecodealliance/componentize-js";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

export interface ExportOptions {
  /** Where the component is written; default the task file with a `.wasm` extension. */
  output?: string;
  /** Working directory that relative paths are resolved against; default process.cwd(). */
  cwd?: string;
  /** The package ComponentizeJS is loaded from; default @bytecodealliance/componentize-js. */
  componentizePackage?: string;
}

export interface ExportResult {
  output: string;
  bytes: number;
  durationMs: number;
}

/**
 * The WIT world and the guest's SDK, fs and process: core/component in a source tree, dist/component in an
 * installed package (built from it, as .mjs).
 */
function componentFiles(): { wit: string; sdk: string; fs: string; process: string } {
  for (const [dir, ext] of [
    [path.join(here, "../../core/component"), "ts"],
    [path.join(here, "component"), "mjs"],
  ] as const) {
    const files = {
      wit: path.join(dir, "capsule.wit"),
      sdk: path.join(dir, `guest-sdk.${ext}`),
      fs: path.join(dir, `guest-fs.${ext}`),
      process: path.join(dir, `guest-process.${ext}`),
    };
    if (Object.values(files).every((file) => existsSync(file))) return files;
  }
  throw new Error(`capsule.wit and the component guest files were not found beside ${here}`);
}

/** jco, a dependency of ComponentizeJS, ships the WASI 0.2.12 packages ComponentizeJS targets. */
function jcoDir(): string {
  for (const modules of require.resolve.paths(COMPONENTIZE_PACKAGE) ?? []) {
    for (const candidate of [
      path.join(modules, COMPONENTIZE_PACKAGE, "node_modules/@bytecodealliance/jco"),
      path.join(modules, "@bytecodealliance/jco"),
    ]) {
      if (existsSync(path.join(candidate, "lib/wit/builtin/0.2.12"))) return candidate;
    }
  }
  throw new CompileError(
    `the WASI 0.2.12 WIT files of @bytecodealliance/jco (a dependency of ${COMPONENTIZE_PACKAGE}) were not found`,
  );
}

/** The WIT folder ComponentizeJS reads: Capsule's world plus the WASI packages jco ships. */
function writeWit(dir: string): string {
  const wit = path.join(dir, "wit");
  mkdirSync(path.join(wit, "deps"), { recursive: true });
  writeFileSync(path.join(wit, "capsule.wit"), readFileSync(componentFiles().wit));
  const jcoRoot = jcoDir();
  for (const name of ["cli", "clocks", "filesystem", "io", "random", "sockets"]) {
    const source = path.join(jcoRoot, "lib/wit/builtin/0.2.12", `wasi-${name}`, "package.wit");
    mkdirSync(path.join(wit, "deps", name), { recursive: true });
    writeFileSync(path.join(wit, "deps", name, "package.wit"), readFileSync(source));
  }
  return wit;
}

async function loadComponentize(
  name: string,
): Promise<typeof import("@bytecodealliance/componentize-js")> {
  try {
    return await import(name);
  } catch (error) {
    throw new CompileError(
      `building a component needs the optional package ${name}, which is not installed (${(error as Error).message.split("\n")[0]}); install it with: npm install ${name}${name === COMPONENTIZE_PACKAGE ? "@0.23.0" : ""}`,
    );
  }
}

export async function exportComponent(
  file: string,
  options: ExportOptions = {},
): Promise<ExportResult> {
  const started = performance.now();
  const cwd = options.cwd ?? process.cwd();
  const source = path.resolve(cwd, file);
  try {
    readFileSync(source);
  } catch (error) {
    throw new CompileError(`cannot read task file ${file}: ${(error as Error).message}`);
  }
  const output = path.resolve(
    cwd,
    options.output ?? `${source.replace(/\.[cm]?[jt]sx?$/, "")}.wasm`,
  );
  const { componentize } = await loadComponentize(
    options.componentizePackage ?? COMPONENTIZE_PACKAGE,
  );
  const esbuild = await import("esbuild");
  const work = mkdtempSync(path.join(path.dirname(output), ".capsule-export-"));
  try {
    const { sdk, fs: guestFs, process: guestProcess } = componentFiles();
    const entry = path.join(work, "entry.js");
    writeFileSync(
      entry,
      [
        'import * as hostApi from "capsule:host/api";',
        'import * as preopens from "wasi:filesystem/preopens@0.2.12";',
        'import * as fsTypes from "wasi:filesystem/types@0.2.12";',
        'import * as environment from "wasi:cli/environment@0.2.12";',
        'globalThis["capsule:host/api"] = hostApi;',
        'globalThis["wasi:filesystem/preopens"] = preopens;',
        'globalThis["wasi:filesystem/types"] = fsTypes;',
        'globalThis["wasi:cli/environment"] = environment;',
        `import ${JSON.stringify(source)};`,
        `export { taskRunner } from ${JSON.stringify(sdk)};`,
        "",
      ].join("\n"),
    );
    const bundled = path.join(work, "bundle.js");
    try {
      await esbuild.build({
        entryPoints: [entry],
        outfile: bundled,
        bundle: true,
        format: "esm",
        platform: "neutral",
        mainFields: ["module", "main"],
        external: ["capsule:host/api", "wasi:*"],
        // A task's bare `process` is the guest's, as Capsule's build injects its own.
        inject: [guestProcess],
        alias: {
          "@capsule-run/sdk": sdk,
          "capsule-portable/sdk": sdk,
          fs: guestFs,
          "node:fs": guestFs,
          process: guestProcess,
          "node:process": guestProcess,
        },
        logLevel: "silent",
      });
    } catch (error) {
      throw new CompileError(`cannot bundle ${file}: ${(error as Error).message}`);
    }
    // ComponentizeJS reads the WIT through preview2-shim's filesystem, whose default preopen
    // list is empty since preview2-shim 0.26.
    const shim = await import("@bytecodealliance/preview2-shim/filesystem");
    (shim as unknown as { _setPreopens(p: Record<string, string>): void })._setPreopens({
      "/": "/",
    });
    const { component } = await componentize({
      sourcePath: bundled,
      witPath: writeWit(work),
      worldName: "capsule-agent",
    });
    writeFileSync(output, component);
    return {
      output,
      bytes: component.byteLength,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
