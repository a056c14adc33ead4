/**
 * The project's capsule.toml on Node: read from the run's working directory (`cwd`), as Capsule
 * reads it from the directory it runs in. The page and Workers have no working directory.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  CAPSULE_TOML_NAMES,
  type ProjectConfig,
  parseCapsuleToml,
} from "../../core/config/capsule-toml.ts";
import { ConfigError } from "../../core/errors.ts";

/** Files larger than this are not a project's configuration. */
const MAX_TOML_BYTES = 1024 * 1024;

/** The project's configuration, or null when `cwd` has no capsule.toml. */
export function loadProjectConfig(cwd: string): ProjectConfig | null {
  for (const name of CAPSULE_TOML_NAMES) {
    const path = join(cwd, name);
    let size: number;
    try {
      // Most projects have none: asked without an exception, which every run() would pay for.
      const stat = statSync(path, { throwIfNoEntry: false });
      if (stat === undefined) continue;
      if (!stat.isFile()) throw new ConfigError(`${path} is not a file`);
      size = stat.size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      if (error instanceof ConfigError) throw error;
      throw new ConfigError(`${path}: cannot be read (${(error as Error).message})`);
    }
    if (size > MAX_TOML_BYTES) {
      throw new ConfigError(
        `${path}: ${size} bytes is too large for a capsule.toml (1 MiB at most)`,
      );
    }
    return parseCapsuleToml(readFileSync(path, "utf8"), path);
  }
  return null;
}
