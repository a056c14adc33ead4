import type { BuildFailure, BuildOptions, Message } from "esbuild";
import { CompileError } from "../../core/errors.ts";

/**
 * The esbuild options for tasks that import other files or npm packages, which only Node can
 * bundle. A self-contained task file does not run as this bundle but as the module every host
 * makes of it (core/compile/task-module.ts); the bundle still validates it and lists its inputs.
 */
export function sandboxBundleOptions(where: {
  absWorkingDir: string;
  outfile: string;
}): BuildOptions & { write: false; metafile: true } {
  return {
    absWorkingDir: where.absWorkingDir,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2023",
    mainFields: ["module", "main"],
    // No tsconfig.json lookup: the same source gives the same JavaScript wherever it is compiled.
    tsconfigRaw: "{}",
    write: false,
    metafile: true,
    legalComments: "none",
    // Unminified, so guest stack traces stay readable; the map turns them into task-file lines.
    minify: false,
    outfile: where.outfile,
    sourcemap: "external",
    sourcesContent: false,
    logLevel: "silent",
  };
}

const MAX_REPORTED_ERRORS = 10;

export function isBuildFailure(error: unknown): error is BuildFailure {
  return error instanceof Error && Array.isArray((error as Partial<BuildFailure>).errors);
}

/** esbuild's errors as one CompileError: `file:line:column: message` per error, capped. */
export function toCompileError(messages: readonly Message[]): CompileError {
  const lines = messages.slice(0, MAX_REPORTED_ERRORS).map((message) => {
    const where = message.location
      ? `${message.location.file}:${message.location.line}:${message.location.column + 1}: `
      : "";
    return `${where}${message.text}`;
  });
  const more = messages.length - MAX_REPORTED_ERRORS;
  if (more > 0) lines.push(`... and ${more} more error${more === 1 ? "" : "s"}`);
  return new CompileError(lines.join("\n"));
}
