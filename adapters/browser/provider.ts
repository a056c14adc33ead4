import { ConfigError } from "../../core/errors.ts";
import { environmentOf, type Grant } from "../../core/host.ts";
import type { CapabilityProvider } from "../../core/runtime/capabilities.ts";
import { createBrowserFileSystem, type OpfsSnapshot } from "./files.ts";
import { createBrowserNetwork } from "./network.ts";

/** What a worker needs to build the provider: plain data, structured-cloneable. */
export interface BrowserProviderConfig {
  /** The app's directory in OPFS; allowedFiles "./data" is `<opfsRoot>/data`. */
  opfsRoot: string;
  env: Record<string, string | undefined>;
}

/** The project root as the runtime sees it: the OPFS app root, whatever its name. */
export const BROWSER_PROJECT_ROOT = "/";

/** A granted directory that is not in OPFS, named as the task spelled it. */
export function missingDirectory(grant: Grant, opfsRoot: string): ConfigError {
  return new ConfigError(
    `allowedFiles entry ${JSON.stringify(`.${grant.guestPath}`)}: no such directory in the OPFS root ${JSON.stringify(opfsRoot)}; create it first (writeFile("${grant.guestPath.slice(1)}/...") from the page does)`,
  );
}

export function createBrowserProvider(
  config: BrowserProviderConfig,
  snapshot: OpfsSnapshot | null,
): CapabilityProvider {
  return {
    projectRoot: BROWSER_PROJECT_ROOT,
    mounts: [],
    checkDirectory(grant) {
      if (snapshot === null || !snapshot.isDirectory(grant.hostPath)) {
        throw missingDirectory(grant, config.opfsRoot);
      }
      return grant.hostPath;
    },
    fileSystem: () => (snapshot === null ? null : createBrowserFileSystem(snapshot)),
    network: (allowedHosts, record) => createBrowserNetwork({ allowedHosts, onRequest: record }),
    // A page has no process environment: the variables are what it passed to run({ env }).
    env: environmentOf(config.env),
  };
}
