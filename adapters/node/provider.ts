import { realpathSync, statSync } from "node:fs";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { ConfigError } from "../../core/errors.ts";
import type { Grant } from "../../core/host.ts";
import { mountGrant, parseMount } from "../../core/policy/mounts.ts";
import { pathNamesRuntimeState, RUNTIME_STATE_RULE } from "../../core/policy/runtime-state.ts";
import type { CapabilityProvider } from "../../core/runtime/capabilities.ts";
import { createNodeEnvironment } from "./env.ts";
import { createNodeFileSystem } from "./files.ts";
import { createNodeNetwork } from "./network.ts";

/** Everything a worker thread needs to rebuild the provider: plain data, structured-cloneable. */
export interface NodeProviderConfig {
  projectRoot: string;
  mounts: Grant[];
  env: Record<string, string | undefined>;
  /** The compile cache (absolute): no grant may show it to a guest. */
  cacheDir?: string;
}

/** Parses `--mount` / `mounts` specs; a relative host path is relative to `cwd`. */
export function parseMounts(specs: readonly string[], cwd: string, option = "mounts"): Grant[] {
  return specs.map((spec, i) => {
    if (typeof spec !== "string") {
      throw new ConfigError(`${option}[${i}]: ${JSON.stringify(spec)} is not a mount spec string`);
    }
    const grant = mountGrant(parseMount(spec, `${option}[${i}]`));
    return {
      ...grant,
      hostPath: isAbsolute(grant.hostPath) ? grant.hostPath : resolve(cwd, grant.hostPath),
    };
  });
}

/** Whether a granted directory is, holds or lies in the cache, other than behind a `.capsule`. */
function showsCache(grantReal: string, cacheDir: string): boolean {
  let cache = resolve(cacheDir);
  try {
    cache = realpathSync(cache);
  } catch {
    // Not made yet: its path as given.
  }
  const cacheFromGrant = relative(grantReal, cache);
  const grantFromCache = relative(cache, grantReal);
  const inside = (path: string) => path === "" || !(path.startsWith("..") || isAbsolute(path));
  if (inside(grantFromCache)) return true;
  return inside(cacheFromGrant) && !pathNamesRuntimeState(cacheFromGrant);
}

export function createNodeProvider(config: NodeProviderConfig): CapabilityProvider {
  return {
    projectRoot: config.projectRoot,
    mounts: config.mounts,
    checkDirectory(grant) {
      const where = grant.source === "mount" ? "mount" : "allowedFiles entry";
      const shown = grant.source === "mount" ? grant.hostPath : `.${grant.guestPath}`;
      const stat = statSync(grant.hostPath, { throwIfNoEntry: false });
      if (stat === undefined) {
        throw new ConfigError(`${where} ${JSON.stringify(shown)}: no such directory`);
      }
      if (!stat.isDirectory()) {
        throw new ConfigError(
          `${where} ${JSON.stringify(shown)}: not a directory (only directories can be granted)`,
        );
      }
      const real = realpathSync(grant.hostPath);
      // allowedFiles come from task code, which is untrusted: a symlink in the project must not
      // grant a directory outside it. (Mounts come from the caller and may point anywhere.)
      if (grant.source === "allowedFiles") {
        const root = realpathSync(config.projectRoot);
        if (real !== root && !real.startsWith(root + sep)) {
          throw new ConfigError(
            `${where} ${JSON.stringify(shown)}: resolves (through a symbolic link) outside the project directory`,
          );
        }
      }
      // The runtime's own state stays out of every grant, even through a symbolic link.
      const root = realpathSync(config.projectRoot);
      const below = grant.source === "allowedFiles" ? relative(root, real) : real;
      if (pathNamesRuntimeState(below)) {
        throw new ConfigError(`${where} ${JSON.stringify(shown)}: ${RUNTIME_STATE_RULE}`);
      }
      if (config.cacheDir !== undefined && showsCache(real, config.cacheDir)) {
        throw new ConfigError(
          `${where} ${JSON.stringify(shown)}: would show the compile cache ${config.cacheDir} to the task; grant a directory beside it, or keep the cache (cacheDir) elsewhere`,
        );
      }
      return real;
    },
    fileSystem: () => createNodeFileSystem(),
    network: (allowedHosts, record) =>
      createNodeNetwork({ allowedHosts: [...allowedHosts], onRequest: record }),
    env: createNodeEnvironment(config.env),
  };
}
