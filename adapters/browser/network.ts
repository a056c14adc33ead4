/**
 * The browser network host: `fetch` from the worker, under the task's allowedHosts, each redirect
 * hop checked again (core/network/fetch-network.ts). A browser never tells the page the address
 * it connected to, so only names and literal addresses are checked. Cross-origin rules still
 * apply: a server that does not send CORS headers cannot be read, and the task gets an error that
 * says so.
 */

import type { NetworkHost } from "../../core/host.ts";
import { createFetchNetwork, type FetchNetworkOptions } from "../../core/network/fetch-network.ts";

export type BrowserNetworkOptions = FetchNetworkOptions;

export function createBrowserNetwork(options: BrowserNetworkOptions): NetworkHost {
  return createFetchNetwork(options, {
    name: "createBrowserNetwork",
    init: { credentials: "omit", referrerPolicy: "no-referrer" },
    // fetch rejects with a bare TypeError for CORS refusals and connection failures alike.
    unreachable: (url) =>
      `fetch ${url.href} failed: the server could not be reached, or it does not allow cross-origin requests from this page (CORS: no Access-Control-Allow-Origin for ${self.location.origin})`,
  });
}
