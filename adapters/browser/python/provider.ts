import { environmentOf } from "../../../core/host.ts";
import type { CapabilityProvider } from "../../../core/runtime/capabilities.ts";
import { createBrowserNetwork } from "../network.ts";
import { BROWSER_PROJECT_ROOT } from "../provider.ts";

/**
 * What a Python task in a page may reach, answered on the page: the network under its
 * allowed_hosts (the same fetch host as JavaScript tasks) and the variables the page passed.
 * Files are not answered here: the sandbox works on a copy of the granted OPFS directories
 * (files.ts), whose existence is checked before the task runs.
 */
export function createPythonProvider(env: Record<string, string | undefined>): CapabilityProvider {
  return {
    projectRoot: BROWSER_PROJECT_ROOT,
    mounts: [],
    checkDirectory: (grant) => grant.hostPath,
    fileSystem: () => null,
    network: (allowedHosts, record) => createBrowserNetwork({ allowedHosts, onRequest: record }),
    env: environmentOf(env),
  };
}
