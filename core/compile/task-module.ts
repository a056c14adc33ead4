/**
 * The one way a self-contained task file becomes the program a sandbox runs, on every host.
 *
 * A task that imports only `@capsule-run/sdk` and the sandbox's Node built-ins needs no bundler:
 * TypeScript loses its types (sucrase, pure JavaScript, so it runs in Workers where esbuild-wasm
 * cannot) and the imports stay as they are, for the sandbox's own module loader to resolve. The
 * same source then gives byte-identical JavaScript, and so the same fuel, on Node, in a page and
 * in a Worker. Plain JavaScript is used as written and loads no compiler at all.
 */
import { CompileError } from "../errors.ts";
import type { Bundle } from "../runtime/run-task.ts";
import { readBuiltBundle } from "./built-bundle.ts";
import { sha256Hex } from "./hash.ts";

export type TaskLanguage = "ts" | "js";

/** The name a task given as a string has in positions and errors: `<task>.ts`, `<task>.js`. */
export const CODE_SOURCE_NAME = "<task>";

/** The largest task source accepted; a bigger one is refused before anything parses it. */
export const MAX_SOURCE_CHARS = 4 * 1024 * 1024;

export function checkLanguage(language: unknown): TaskLanguage {
  if (language !== "ts" && language !== "js") {
    throw new CompileError(
      `language: ${JSON.stringify(language)} is not supported; use "ts" or "js"`,
    );
  }
  return language;
}

type Sucrase = Pick<typeof import("sucrase"), "transform">;
/** What a dynamic import gives: the module, or (through CommonJS interop) it as `default`. */
type SucraseImport = Sucrase | { default: Sucrase };

/**
 * Compiles one task file. `sourceName` is what error positions show (`examples/hello.ts`);
 * `loadSucrase` lets a host load the transformer lazily (a page fetches it only for TypeScript).
 */
export async function compileTaskModule(
  source: string,
  language: TaskLanguage,
  options: { sourceName: string; loadSucrase: () => Promise<SucraseImport> | SucraseImport },
): Promise<Bundle> {
  checkLanguage(language);
  if (typeof source !== "string") {
    throw new CompileError(`code: expected a string of ${language} source, got ${typeof source}`);
  }
  if (source.length > MAX_SOURCE_CHARS) {
    throw new CompileError(
      `code: ${source.length} characters, over the ${MAX_SOURCE_CHARS}-character limit for a task file`,
    );
  }
  if (language === "js") {
    // What capsule build wrote runs as it was compiled, with its map (built-bundle.ts).
    const built = await readBuiltBundle(source, options.sourceName);
    if (built !== null) {
      return {
        code: built.code,
        hash: await sha256Hex(built.code),
        ...(built.sourceMap === undefined
          ? { sourceName: built.source }
          : { sourceMap: built.sourceMap }),
      };
    }
    // Lines and columns are the source's own: positions map one to one.
    return { code: source, hash: await sha256Hex(source), sourceName: options.sourceName };
  }
  const loaded = await options.loadSucrase();
  const sucrase = "transform" in loaded ? loaded : loaded.default;
  let output: ReturnType<Sucrase["transform"]>;
  try {
    output = sucrase.transform(source, {
      transforms: ["typescript"],
      disableESTransforms: true,
      filePath: options.sourceName,
      sourceMapOptions: { compiledFilename: "task.js" },
    });
  } catch (error) {
    // Syntax errors carry a location; anything else is the compiler's own failure.
    if (error instanceof Error && "loc" in error) throw toCompileError(error, options.sourceName);
    throw error;
  }
  const sourceMap = output.sourceMap ? JSON.stringify(output.sourceMap) : undefined;
  return {
    code: output.code,
    hash: await sha256Hex(output.code),
    ...(sourceMap === undefined ? { sourceName: options.sourceName } : { sourceMap }),
  };
}

/**
 * sucrase reports `Error transforming x.ts: Unexpected token (3:7)` (1-based column); the
 * position moves to the front, as in esbuild's errors and stack traces.
 */
function toCompileError(error: Error, sourceName: string): CompileError {
  const text = error.message.replace(/^Error transforming [^:]*: /, "");
  const position = /\s*\((\d+):(\d+)\)\s*$/.exec(text);
  if (position === null) return new CompileError(`${sourceName}: ${text}`);
  const message = text.slice(0, position.index) || "syntax error";
  return new CompileError(`${sourceName}:${position[1]}:${position[2]}: ${message}`);
}
