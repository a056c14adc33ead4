import { ConfigError } from "../../core/errors.ts";
import { environmentOf } from "../../core/host.ts";
import type { CapabilityProvider } from "../../core/runtime/capabilities.ts";
import type { RequestFileTree } from "./files.ts";
import { createWorkersNetwork } from "./network.ts";

/** The project root as the runtime sees it: the root of the request's file tree. */
export const WORKERS_PROJECT_ROOT = "/";

/** Files, network and environment for one request's task and its sub-tasks. */
export function createWorkersProvider(
  files: RequestFileTree,
  env: Readonly<Record<string, string>>,
): CapabilityProvider {
  return {
    projectRoot: WORKERS_PROJECT_ROOT,
    mounts: [],
    checkDirectory(grant) {
      if (!files.ensureDirectory(grant.hostPath)) {
        throw new ConfigError(
          `allowedFiles entry ${JSON.stringify(`.${grant.guestPath}`)}: the request's files hold a file there, not a directory`,
        );
      }
      return grant.hostPath;
    },
    fileSystem: () => files.fileSystem(),
    network: (allowedHosts, record) => createWorkersNetwork({ allowedHosts, onRequest: record }),
    // Exactly what the request sent, never the Worker's own bindings or secrets.
    env: environmentOf(env),
  };
}
