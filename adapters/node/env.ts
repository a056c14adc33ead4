import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "dotenv";
import type { EnvironmentHost } from "../../core/host.ts";

/** The host environment a task's `envVariables` may read from. */
export function createNodeEnvironment(
  values: Readonly<Record<string, string | undefined>>,
): EnvironmentHost {
  return { get: (name) => values[name] };
}

/**
 * Loads `.env` then `.env.local` from `dir` into `target` the way Capsule does: a variable the real
 * environment already has is never overridden, and `.env.local` wins over `.env`. Returns the
 * files it read.
 */
export function loadDotEnvFiles(dir: string, target: Record<string, string | undefined>): string[] {
  const loaded: string[] = [];
  const fromFiles: Record<string, string> = {};
  for (const name of [".env", ".env.local"]) {
    const path = join(dir, name);
    if (!existsSync(path)) continue;
    Object.assign(fromFiles, parse(readFileSync(path)));
    loaded.push(name);
  }
  for (const [key, value] of Object.entries(fromFiles)) {
    if (target[key] === undefined) target[key] = value;
  }
  return loaded;
}
