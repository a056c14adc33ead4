/**
 * TypeScript and bundling in the browser: esbuild-wasm, loaded in a worker the first time a task
 * needs it. The options mirror adapters/node/compile.ts exactly, with the working directory at
 * "/" and the SDK at "/sdk/index.ts", so the same source gives byte-identical JavaScript (and so
 * the same fuel) as a Node run from the package root.
 */
import type * as esbuild from "esbuild-wasm/esm/browser.js";
import {
  isBuildFailure,
  sandboxBundleOptions,
  toCompileError,
} from "../../core/compile/bundle-options.ts";
import { CompileError } from "../../core/errors.ts";
import { NODE_MODULES, nodeModuleName, nodeModuleSource } from "../../core/guest/node-modules.ts";

export interface CompiledBundle {
  code: string;
  /** sha256 hex of `code`. */
  hash: string;
  sourceMap: string;
}

export const ESBUILD_WASM_URL = new URL("./esbuild.wasm", import.meta.url);
export const SDK_SOURCE_URL = new URL("./sdk.ts", import.meta.url);

const WORKING_DIR = "/";
const SDK_PATH = "/sdk/index.ts";
const CODE_SOURCE_NAME = "<task>";
const SANDBOX_MODULE_NAMESPACE = "capsule-node";

let loaded: Promise<{ esbuild: EsbuildApi; sdkSource: string }> | undefined;

type EsbuildApi = typeof import("esbuild-wasm/esm/browser.js");

function loadEsbuild() {
  loaded ??= (async () => {
    const [module, sdkSource] = await Promise.all([
      // A chunk of its own in the build: tasks that never compile never download it.
      import("esbuild-wasm/esm/browser.js"),
      fetch(SDK_SOURCE_URL).then((response) => {
        if (!response.ok) throw new Error(`${SDK_SOURCE_URL.href}: HTTP ${response.status}`);
        return response.text();
      }),
    ]);
    // Already inside a worker: run esbuild on this thread rather than in a nested worker.
    await module.initialize({ wasmURL: ESBUILD_WASM_URL.href, worker: false });
    return { esbuild: module, sdkSource };
  })().catch((error: unknown) => {
    loaded = undefined;
    throw new CompileError(`the TypeScript compiler could not be loaded: ${String(error)}`);
  });
  return loaded;
}

/** Whether esbuild-wasm has been loaded in this worker (plain cache hits never load it). */
export function compilerLoaded(): boolean {
  return loaded !== undefined;
}

/** Bundles a task given as source text; `@capsule-run/sdk` resolves to the guest SDK. */
export async function compileCode(code: string, language: "ts" | "js"): Promise<CompiledBundle> {
  if (language !== "ts" && language !== "js") {
    throw new CompileError(
      `language: ${JSON.stringify(language)} is not supported; use "ts" or "js"`,
    );
  }
  const { esbuild, sdkSource } = await loadEsbuild();
  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await esbuild.build({
      ...sandboxBundleOptions({ absWorkingDir: WORKING_DIR, outfile: `${WORKING_DIR}task.js` }),
      stdin: {
        contents: code,
        loader: language,
        resolveDir: WORKING_DIR,
        sourcefile: `${CODE_SOURCE_NAME}.${language}`,
      },
      plugins: [sdkPlugin(sdkSource), nodeBuiltinsPlugin],
    });
  } catch (error) {
    if (isBuildFailure(error)) throw toCompileError(error.errors);
    throw error;
  }
  const compiled = result.outputFiles.find((f) => f.path.endsWith(".js"))?.text ?? "";
  const sourceMap = result.outputFiles.find((f) => f.path.endsWith(".map"))?.text ?? "";
  return { code: compiled, hash: await sha256(compiled), sourceMap };
}

/** The SDK as the Node adapter's `alias` finds it: a file at sdk/index.ts under the root. */
function sdkPlugin(source: string): esbuild.Plugin {
  return {
    name: "capsule-sdk",
    setup(build) {
      build.onResolve({ filter: /^(?:@capsule-run\/sdk|capsule-portable\/sdk)$/ }, () => ({
        path: SDK_PATH,
      }));
      build.onLoad({ filter: /^\/sdk\/index\.ts$/ }, () => ({
        contents: source,
        loader: "ts",
        resolveDir: "/sdk",
      }));
    },
  };
}

const SANDBOX_MODULES = Object.keys(NODE_MODULES).join(", ");

/**
 * Node built-ins the sandbox provides become the same small modules as on Node. There are no npm
 * packages or project files in a page, so any other bare or relative import is an error.
 */
const nodeBuiltinsPlugin: esbuild.Plugin = {
  name: "capsule-node-builtins",
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.path === SDK_PATH || args.namespace === SANDBOX_MODULE_NAMESPACE) return undefined;
      const name = nodeModuleName(args.path);
      if (name !== undefined) return { path: name, namespace: SANDBOX_MODULE_NAMESPACE };
      const text = args.path.startsWith("node:")
        ? `"${args.path}" is not available inside the sandbox (the Node built-in modules a task can import: ${SANDBOX_MODULES}, also as "node:...")`
        : `"${args.path}" cannot be imported in the browser: a task given as code there can import only "@capsule-run/sdk" and the Node built-ins ${SANDBOX_MODULES}`;
      return { errors: [{ text }] };
    });
    build.onLoad({ filter: /.*/, namespace: SANDBOX_MODULE_NAMESPACE }, (args) => ({
      contents: nodeModuleSource(args.path),
      loader: "js",
    }));
  },
};

export async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
