import { realpathSync, statSync } from "node:fs";
import { isAbsolute, resolve, sep } from "node:path";
import { ConfigError } from "../../core/errors.ts";
import type { Grant } from "../../core/host.ts";
import { mountGrant, parseMount } from "../../core/policy/mounts.ts";
import type { CapabilityProvider } from "../../core/runtime/capabilities.ts";
import { createNodeEnvironment } from "./env.ts";
import { createNodeFileSystem } from "./files.ts";
import { createNodeNetwork } from "./network.ts";

/** Everything a worker thread needs to rebuild the provider: plain data, structured-cloneable. */
export interface NodeProviderConfig {
  projectRoot: string;
  mounts: Grant[];
  env: Record<string, string | undefined>;
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
      return real;
    },
    fileSystem: () => createNodeFileSystem(),
    network: (allowedHosts, record) =>
      createNodeNetwork({ allowedHosts: [...allowedHosts], onRequest: record }),
    env: createNodeEnvironment(config.env),
  };
}
