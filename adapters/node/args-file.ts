/**
 * `--args-file FILE`: a task's arguments as a JSON array of strings, for arguments too large for a
 * command line (Capsule's runner switches to it past 8 KiB).
 */
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { formatValue } from "../../core/config/units.ts";
import { ConfigError } from "../../core/errors.ts";

/** Larger than any argument list a task should take in at once. */
export const MAX_ARGS_FILE_BYTES = 64 * 1024 * 1024;

/** The strings in `file` (relative to `cwd`); ConfigError names the file and what is wrong. */
export function readArgsFile(file: string, cwd: string): string[] {
  const path = resolve(cwd, file);
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new ConfigError(`--args-file ${file}: not a file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(
      `--args-file ${file}: ${code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? (error as Error).message})`}`,
    );
  }
  if (size > MAX_ARGS_FILE_BYTES) {
    throw new ConfigError(
      `--args-file ${file}: ${size} bytes is more than the ${MAX_ARGS_FILE_BYTES / 2 ** 20} MiB an argument file may hold`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new ConfigError(`--args-file ${file}: not valid JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(parsed)) {
    throw new ConfigError(
      `--args-file ${file}: must hold a JSON array of strings, like ["a", "b"]; got ${formatValue(parsed)}`,
    );
  }
  const wrong = parsed.findIndex((arg) => typeof arg !== "string");
  if (wrong !== -1) {
    throw new ConfigError(
      `--args-file ${file}: entry ${wrong} is ${formatValue(parsed[wrong])}, not a string; every argument is a string`,
    );
  }
  return parsed as string[];
}
