/**
 * The browser network host: `fetch` from the worker, under the task's allowedHosts. Each redirect
 * hop is fetched with `redirect: "manual"` where the browser lets us see it and is checked again.
 * A browser resolves host names itself and never tells the page the address it connected to, so
 * the address check (DNS rebinding to a private network) cannot run here: only names and literal
 * addresses are checked. Cross-origin rules still apply: a server that does not send CORS headers
 * cannot be read, and the task gets an error that says so.
 */
import { formatValue } from "../../core/config/units.ts";
import { ConfigError } from "../../core/errors.ts";
import type { FetchRequest, FetchResponse, NetworkHost } from "../../core/host.ts";
import {
  NetworkError,
  networkLimits,
  REDIRECT_STATUSES,
  redirectedMethod,
  refuseDestination,
} from "../../core/policy/requests.ts";
import type { HostRequest } from "../../core/runtime/envelope.ts";

export interface BrowserNetworkOptions {
  allowedHosts: readonly string[];
  /** Largest response body accepted. Default 16 MiB. */
  maxResponseBytes?: number;
  /** Time for one fetch, redirects and body included. Default 30 s. */
  requestTimeoutMs?: number;
  /** Requests (each redirect hop counts) in this host's lifetime. Default 256. */
  maxRequests?: number;
  /** Redirects followed per fetch. Default 20, as in browsers. */
  maxRedirects?: number;
  onRequest?: (record: HostRequest) => void;
}

// Headers a page may not set on fetch (the browser owns them) or that carry the page's identity.
const FORBIDDEN_HEADERS = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
  "content-length",
  "expect",
  "cookie",
  "origin",
  "referer",
]);

export function createBrowserNetwork(options: BrowserNetworkOptions): NetworkHost {
  if (!Array.isArray(options.allowedHosts)) {
    throw new ConfigError(
      `createBrowserNetwork: allowedHosts must be a list of host patterns, got ${formatValue(options.allowedHosts)}`,
    );
  }
  const allowed = [...options.allowedHosts];
  const limits = networkLimits(options, "createBrowserNetwork");
  let requestCount = 0;
  const record = (entry: HostRequest) => {
    try {
      options.onRequest?.(entry);
    } catch {
      // A broken listener must not change what the task sees.
    }
  };

  return {
    async fetch(request: FetchRequest, signal: AbortSignal): Promise<FetchResponse> {
      const timeout = AbortSignal.timeout(limits.requestTimeoutMs);
      const combined = AbortSignal.any([signal, timeout]);
      let url = new URL(request.url);
      let method = request.method.toUpperCase();
      let body = request.body;
      let headers = request.headers.filter(([name]) => !FORBIDDEN_HEADERS.has(name.toLowerCase()));
      for (let hop = 0; ; hop++) {
        const started = performance.now();
        const entry = (status: number | null, reason?: string): HostRequest => ({
          method,
          url: url.href,
          status,
          ...(reason === undefined ? {} : { reason }),
          duration_ms: Math.round(performance.now() - started),
        });
        try {
          refuseDestination(url, allowed);
          if (++requestCount > limits.maxRequests) {
            throw new NetworkError(`the task made more than ${limits.maxRequests} requests`);
          }
        } catch (error) {
          record(entry(null, (error as Error).message));
          throw error;
        }
        let response: Response;
        try {
          response = await fetch(url.href, {
            method,
            headers,
            body: body === null ? undefined : (body as Uint8Array<ArrayBuffer>),
            redirect: "manual",
            credentials: "omit",
            referrerPolicy: "no-referrer",
            signal: combined,
          });
        } catch (error) {
          const reason = failureReason(error, url, timeout, limits.requestTimeoutMs);
          record(entry(null, reason));
          throw new NetworkError(reason);
        }
        // An opaque redirect: the browser hides the target, so it cannot be checked; refuse it.
        if (response.type === "opaqueredirect") {
          const reason = `fetch ${url.href}: the server redirected, and a browser does not reveal the target of a cross-origin redirect, so it cannot be checked against allowedHosts`;
          record(entry(null, reason));
          throw new NetworkError(reason);
        }
        const location = response.headers.get("location");
        if (REDIRECT_STATUSES.has(response.status) && location !== null) {
          record(entry(response.status));
          if (request.redirect === "error") {
            throw new NetworkError(`fetch ${url.href}: redirected while redirect is "error"`);
          }
          if (request.redirect === "manual")
            return toResponse(response, url, hop > 0, new Uint8Array(0));
          if (hop >= limits.maxRedirects) {
            throw new NetworkError(
              `fetch ${request.url}: more than ${limits.maxRedirects} redirects`,
            );
          }
          const next = new URL(location, url);
          const redirectedTo = redirectedMethod(response.status, method);
          if (redirectedTo !== null) {
            method = redirectedTo;
            body = null;
            headers = headers.filter(([name]) => !name.toLowerCase().startsWith("content-"));
          }
          if (next.origin !== url.origin) {
            headers = headers.filter(([name]) => name.toLowerCase() !== "authorization");
          }
          url = next;
          continue;
        }
        let bytes: Uint8Array;
        try {
          bytes = await readBody(response, limits.maxResponseBytes, url);
        } catch (error) {
          const reason = failureReason(error, url, timeout, limits.requestTimeoutMs);
          record(entry(response.status, reason));
          throw error instanceof NetworkError ? error : new NetworkError(reason);
        }
        record(entry(response.status));
        return toResponse(response, url, hop > 0, bytes);
      }
    },
  };
}

function failureReason(error: unknown, url: URL, timeout: AbortSignal, timeoutMs: number): string {
  if (error instanceof NetworkError) return error.message;
  if (timeout.aborted) return `fetch ${url.href}: no complete response within ${timeoutMs} ms`;
  if ((error as Error)?.name === "AbortError") return `fetch ${url.href}: aborted`;
  // fetch rejects with a bare TypeError for CORS refusals and connection failures alike.
  return `fetch ${url.href} failed: the server could not be reached, or it does not allow cross-origin requests from this page (CORS: no Access-Control-Allow-Origin for ${self.location.origin})`;
}

async function readBody(response: Response, max: number, url: URL): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length"));
  if (declared > max) throw new NetworkError(tooLarge(url, max));
  if (response.body === null) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel();
      throw new NetworkError(tooLarge(url, max));
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function tooLarge(url: URL, max: number): string {
  return `fetch ${url.href}: the response body is larger than ${max} bytes`;
}

function toResponse(
  response: Response,
  url: URL,
  redirected: boolean,
  body: Uint8Array,
): FetchResponse {
  return {
    status: response.status,
    statusText: response.statusText,
    url: url.href,
    redirected,
    headers: headerList(response.headers),
    body,
  };
}

function headerList(headers: Headers): [string, string][] {
  const list: [string, string][] = [];
  headers.forEach((value, name) => {
    list.push([name, value]);
  });
  return list;
}
