/**
 * A network host on the platform's own `fetch` (browsers, Workers): every redirect hop is fetched
 * with `redirect: "manual"`, checked again against allowedHosts and counted; bodies are read up to
 * a size limit. Such platforms resolve host names themselves and never say which address they
 * connected to, so only names and literal addresses are checked here (no DNS rebinding check).
 */
import { formatValue } from "../config/units.ts";
import { ConfigError } from "../errors.ts";
import type { FetchRequest, FetchResponse, NetworkHost } from "../host.ts";
import {
  CONNECTION_HEADERS,
  limitFailure,
  NetworkError,
  type NetworkOptions,
  networkLimits,
  REDIRECT_STATUSES,
  redirectedMethod,
  refuseDestination,
} from "../policy/requests.ts";
import type { HostRequest } from "../runtime/envelope.ts";
import { type RequestHold, UNLIMITED_HOLD } from "./held-bytes.ts";

export type FetchNetworkOptions = NetworkOptions;

/** What differs between platforms that have `fetch`. */
export interface FetchPlatform {
  /** The function callers know, for messages about bad options. */
  name: string;
  /** Extra `fetch` options this platform supports (a page: no cookies, no referrer). */
  init?: RequestInit;
  /** Why a fetch that rejected with a bare error failed, as the task sees it. */
  unreachable(url: URL, error: unknown): string;
}

// Headers a caller may not set on fetch (the platform owns them) or that carry its identity.
const FORBIDDEN_HEADERS = new Set([...CONNECTION_HEADERS, "cookie", "origin", "referer"]);

export function createFetchNetwork(
  options: FetchNetworkOptions,
  platform: FetchPlatform,
): NetworkHost {
  if (!Array.isArray(options.allowedHosts)) {
    throw new ConfigError(
      `${platform.name}: allowedHosts must be a list of host patterns, got ${formatValue(options.allowedHosts)}`,
    );
  }
  const allowed = [...options.allowedHosts];
  const limits = networkLimits(options, platform.name);
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
      const failureReason = (error: unknown, url: URL): string => {
        if (error instanceof NetworkError) return error.message;
        if (timeout.aborted) return limitFailure.timedOut(url, limits.requestTimeoutMs).message;
        if ((error as Error)?.name === "AbortError") return limitFailure.aborted(url).message;
        return platform.unreachable(url, error);
      };
      let url = new URL(request.url);
      let method = request.method.toUpperCase();
      let body = request.body;
      let headers = request.headers.filter(([name]) => !FORBIDDEN_HEADERS.has(name.toLowerCase()));
      const hold = request.heldBytes?.forRequest() ?? UNLIMITED_HOLD;
      try {
        return await followHops();
      } finally {
        // The response (if any) goes straight into the task's memory, where its ram counts it.
        hold.releaseAll();
      }

      async function followHops(): Promise<FetchResponse> {
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
            if (requestCount >= limits.maxRequests) {
              throw limitFailure.tooManyRequests(url, limits.maxRequests);
            }
            requestCount++;
            // The body is held while it is sent, for every hop that sends it again.
            if (hop === 0 && body !== null && body.length > 0) {
              hold.take(body.length, `the request body for ${url.href} (${body.length} bytes)`);
            }
          } catch (error) {
            record(entry(null, (error as Error).message));
            throw error;
          }
          let response: Response;
          try {
            response = await fetch(url.href, {
              ...platform.init,
              method,
              headers,
              body: body === null ? undefined : (body as Uint8Array<ArrayBuffer>),
              redirect: "manual",
              signal: combined,
            });
          } catch (error) {
            const reason = failureReason(error, url);
            record(entry(null, reason));
            throw new NetworkError(reason);
          }
          // Only a page gets opaque redirects: the target is hidden, so it cannot be checked.
          if (response.type === "opaqueredirect") {
            const reason = `fetch ${url.href}: the server redirected, and a browser does not reveal the target of a cross-origin redirect, so it cannot be checked against allowedHosts`;
            record(entry(null, reason));
            throw new NetworkError(reason);
          }
          const location = response.headers.get("location");
          if (REDIRECT_STATUSES.has(response.status) && location !== null) {
            record(entry(response.status));
            // The redirect's own body is not read; release the connection.
            await response.body?.cancel().catch(() => {});
            if (request.redirect === "error") {
              throw new NetworkError(`fetch ${url.href}: redirected while redirect is "error"`);
            }
            if (request.redirect === "manual") {
              return toResponse(response, url, hop > 0, new Uint8Array(0));
            }
            if (hop >= limits.maxRedirects) {
              throw limitFailure.tooManyRedirects(request.url, limits.maxRedirects);
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
            bytes = await readBody(response, limits.maxResponseBytes, url, hold);
          } catch (error) {
            const reason = failureReason(error, url);
            record(entry(response.status, reason));
            throw error instanceof NetworkError ? error : new NetworkError(reason);
          }
          record(entry(response.status));
          return toResponse(response, url, hop > 0, bytes);
        }
      }
    },
  };
}

async function readBody(
  response: Response,
  max: number,
  url: URL,
  hold: RequestHold,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length"));
  if (declared > max) {
    await response.body?.cancel().catch(() => {});
    throw limitFailure.tooLarge(url, max);
  }
  if (response.body === null) return new Uint8Array(0);
  const what = `the response from ${url.href}`;
  // A declared length is held before the body is read: a response that cannot fit fails at
  // once, and its body lands in one buffer instead of chunks joined by a second copy.
  let whole: Uint8Array | null = null;
  const length = response.headers.get("content-length");
  if (length !== null && !response.headers.has("content-encoding")) {
    const sized = Number(length);
    if (Number.isSafeInteger(sized) && sized >= 0) {
      try {
        hold.take(sized, what);
      } catch (error) {
        await response.body.cancel().catch(() => {});
        throw error;
      }
      whole = new Uint8Array(sized);
    }
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const at = total;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw limitFailure.tooLarge(url, max);
    }
    if (whole !== null && total <= whole.length) {
      whole.set(value, at);
      continue;
    }
    try {
      hold.take(value.length, what);
    } catch (error) {
      await reader.cancel().catch(() => {});
      throw error;
    }
    chunks.push(value);
  }
  if (whole !== null && chunks.length === 0) return whole.subarray(0, total);
  if (whole !== null) chunks.unshift(whole);
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks.splice(0)) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
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
