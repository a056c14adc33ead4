/**
 * The Workers network host: the Worker's own `fetch`, under the task's allowedHosts, each redirect
 * hop checked again (core/network/fetch-network.ts). Workers resolve names themselves and do not
 * say which address they reached, so only names and literal addresses are checked; Cloudflare
 * does not let a deployed Worker reach private networks in any case.
 */
import type { NetworkHost } from "../../core/host.ts";
import { createFetchNetwork, type FetchNetworkOptions } from "../../core/network/fetch-network.ts";

export type WorkersNetworkOptions = FetchNetworkOptions;

export function createWorkersNetwork(options: WorkersNetworkOptions): NetworkHost {
  return createFetchNetwork(options, {
    name: "createWorkersNetwork",
    unreachable: (url, error) =>
      `fetch ${url.href} failed: ${error instanceof Error ? error.message : String(error)}`,
  });
}
