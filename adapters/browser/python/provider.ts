import { ConfigError } from "../../../core/errors.ts";
import { environmentOf } from "../../../core/host.ts";
import type { CapabilityProvider } from "../../../core/runtime/capabilities.ts";
import { createBrowserNetwork } from "../network.ts";
import { BROWSER_PROJECT_ROOT } from "../provider.ts";

/**
 * What a Python task in a page may reach, answered on the page: the network under its
 * allowed_hosts (the same fetch host as JavaScript tasks), the variables the page passed, and no
 * files yet. OPFS is read and written back from a Worker (sync access handles exist only there),
 * and the sandbox's Worker must hold nothing of the page's.
 */
export function createPythonProvider(env: Record<string, string | undefined>): CapabilityProvider {
  return {
    projectRoot: BROWSER_PROJECT_ROOT,
    mounts: [],
    checkDirectory(grant) {
      throw new ConfigError(
        `allowed_files entry ${JSON.stringify(`.${grant.guestPath}`)}: Python tasks in a browser have no file access yet; pass the data as arguments, or run the task on Node`,
      );
    },
    fileSystem: () => null,
    network: (allowedHosts, record) => createBrowserNetwork({ allowedHosts, onRequest: record }),
    env: environmentOf(env),
  };
}
