/**
 * The Node network host: HTTP(S) through node:http/node:https, so that this process, not a fetch
 * implementation, resolves host names. Each hop is checked against the task's allowedHosts and
 * the address rules before any connection, the name is resolved once here, every address is
 * checked, and the socket connects only to the address that passed.
 */
import { lookup as systemLookup } from "node:dns/promises";
import * as http from "node:http";
import * as https from "node:https";
import type { LookupFunction } from "node:net";
import type { Readable } from "node:stream";
import * as zlib from "node:zlib";
import { formatValue } from "../../core/config/units.ts";
import { ConfigError, PermissionDeniedError } from "../../core/errors.ts";
import type { FetchRequest, FetchResponse, NetworkHost } from "../../core/host.ts";
import { type RequestHold, UNLIMITED_HOLD } from "../../core/network/held-bytes.ts";
import { parseHostLiteral, resolvedAddressRefusal } from "../../core/policy/addresses.ts";
import {
  CONNECTION_HEADERS,
  limitFailure,
  NetworkError,
  type NetworkOptions,
  networkLimits,
  REDIRECT_STATUSES,
  redirectedMethod,
  refuseDestination,
} from "../../core/policy/requests.ts";
import type { HostRequest } from "../../core/runtime/envelope.ts";

export interface ResolvedAddress {
  address: string;
  /** 4 or 6. */
  family: number;
}

export interface NodeNetworkOptions extends NetworkOptions {
  /** Resolves a host name to its addresses; default: the system resolver (getaddrinfo). */
  resolve?: (hostname: string) => Promise<ResolvedAddress[]>;
}

// Sent only to the origin they were written for, as fetch does on a cross-origin redirect.
const CREDENTIAL_HEADERS = new Set(["authorization", "cookie", "proxy-authorization"]);
const BODY_HEADERS = new Set([
  "content-type",
  "content-encoding",
  "content-language",
  "content-location",
]);

const defaultResolve = (hostname: string): Promise<ResolvedAddress[]> =>
  systemLookup(hostname, { all: true, verbatim: true });

/** A failure while a hop was in flight, with the status if response headers had arrived. */
interface HopFailure {
  error: Error;
  status: number | null;
}

interface HopResponse {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: Uint8Array;
}

export function createNodeNetwork(options: NodeNetworkOptions): NetworkHost {
  if (!Array.isArray(options.allowedHosts)) {
    throw new ConfigError(
      `createNodeNetwork: allowedHosts must be a list of host patterns, got ${formatValue(options.allowedHosts)}`,
    );
  }
  const allowed = [...options.allowedHosts];
  const { maxResponseBytes, requestTimeoutMs, maxRequests, maxRedirects } = networkLimits(
    options,
    "createNodeNetwork",
  );
  const resolve = options.resolve ?? defaultResolve;
  let requestCount = 0;

  const record = (entry: HostRequest) => {
    try {
      options.onRequest?.(entry);
    } catch {
      // A broken listener must not change what the task sees.
    }
  };

  /** The address to connect to for `url`, after every policy check; throws when refused. */
  async function checkDestination(url: URL): Promise<ResolvedAddress | null> {
    refuseDestination(url, allowed);
    const host = url.hostname;
    const literal = parseHostLiteral(host);
    if (literal !== null) return null;

    let addresses: ResolvedAddress[];
    try {
      addresses = await resolve(host);
    } catch (error) {
      const code = (error as { code?: string }).code ?? (error as Error).message;
      throw new NetworkError(`could not resolve host "${host}" (${code})`);
    }
    let firstRefusal: string | null = null;
    for (const candidate of addresses) {
      const reason = resolvedAddressRefusal(candidate.address, host, allowed);
      if (reason === null) return candidate;
      firstRefusal ??= reason;
    }
    throw new PermissionDeniedError(
      firstRefusal === null ? `host "${host}" resolved to no address` : `host ${firstRefusal}`,
    );
  }

  function performHop(
    url: URL,
    method: string,
    headers: [string, string][],
    body: Uint8Array | null,
    address: ResolvedAddress | null,
    signal: AbortSignal,
    abortReason: () => Error,
    hold: RequestHold,
  ): Promise<HopResponse> {
    return new Promise<HopResponse>((resolveHop, rejectHop) => {
      let status: number | null = null;
      let finished = false;
      const fail = (error: Error) => {
        if (finished) return;
        finished = true;
        signal.removeEventListener("abort", onAbort);
        request.destroy();
        rejectHop({ error, status } satisfies HopFailure);
      };
      const onAbort = () => fail(abortReason());

      const outgoing: Record<string, string | string[]> = {};
      for (const [name, value] of headers) {
        const existing = outgoing[name];
        if (existing === undefined) outgoing[name] = value;
        else outgoing[name] = Array.isArray(existing) ? [...existing, value] : [existing, value];
      }
      outgoing.host = url.host;
      outgoing.accept ??= "*/*";
      outgoing["user-agent"] ??= "capsule-portable";
      if (body !== null) outgoing["content-length"] = String(body.length);

      const literal = parseHostLiteral(url.hostname);
      // The checked address is the only one the socket may use: no second resolution.
      const pinnedLookup: LookupFunction | undefined = address
        ? (_hostname, lookupOptions, callback) => {
            if (lookupOptions.all) callback(null, [address]);
            else callback(null, address.address, address.family);
          }
        : undefined;
      const requestOptions: https.RequestOptions = {
        method,
        host: literal?.address ?? url.hostname,
        port: url.port || undefined,
        path: `${url.pathname}${url.search}`,
        headers: outgoing,
        agent: false,
        lookup: pinnedLookup,
        servername: literal === null ? url.hostname : undefined,
      };
      const request = (url.protocol === "https:" ? https : http).request(requestOptions);

      request.on("response", (response) => {
        status = response.statusCode ?? 0;
        const declared = Number(response.headers["content-length"]);
        const encoding = String(response.headers["content-encoding"] ?? "")
          .toLowerCase()
          .trim();
        const redirect = REDIRECT_STATUSES.has(status);
        if (!redirect && !encoding && declared > maxResponseBytes) {
          fail(limitFailure.tooLarge(url, maxResponseBytes));
          return;
        }
        const what = `the response from ${url.href}`;
        let stream: Readable = response;
        const decoder = redirect || method === "HEAD" ? null : contentDecoder(encoding);
        if (decoder) {
          response.on("error", (error) => fail(error));
          stream = response.pipe(decoder);
        }
        // A declared length is held before the body is read: a response that cannot fit fails
        // at once, and its body lands in one buffer instead of chunks joined by a second copy.
        const hasBody = method !== "HEAD" && !redirect && status !== 204 && status !== 304;
        const sized =
          hasBody && !decoder && response.headers["content-length"] !== undefined ? declared : null;
        let whole: Buffer | null = null;
        if (sized !== null && Number.isSafeInteger(sized) && sized >= 0) {
          try {
            hold.take(sized, what);
          } catch (error) {
            fail(error as Error);
            return;
          }
          whole = Buffer.alloc(sized);
        }
        const chunks: Buffer[] = [];
        let total = 0;
        stream.on("data", (chunk: Buffer) => {
          if (finished) return;
          const at = total;
          total += chunk.length;
          if (total > maxResponseBytes) return fail(limitFailure.tooLarge(url, maxResponseBytes));
          if (whole !== null && total <= whole.length) {
            chunk.copy(whole, at);
            return;
          }
          try {
            hold.take(chunk.length, what);
          } catch (error) {
            return fail(error as Error);
          }
          chunks.push(chunk);
        });
        stream.on("error", (error) =>
          fail(new NetworkError(`could not read the response from ${url.href}: ${error.message}`)),
        );
        stream.on("end", () => {
          if (finished) return;
          finished = true;
          signal.removeEventListener("abort", onAbort);
          const pairs: [string, string][] = [];
          const raw = response.rawHeaders;
          for (let i = 0; i + 1 < raw.length; i += 2)
            pairs.push([raw[i] as string, raw[i + 1] as string]);
          const bytes =
            whole !== null && chunks.length === 0
              ? whole.subarray(0, total)
              : Buffer.concat(whole === null ? chunks : [whole, ...chunks], total);
          chunks.length = 0;
          resolveHop({
            status: status ?? 0,
            statusText: response.statusMessage ?? "",
            headers: pairs,
            body: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
          });
        });
      });
      request.on("error", (error: NodeJS.ErrnoException) =>
        fail(new NetworkError(`request to ${url.href} failed: ${error.code ?? error.message}`)),
      );
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      request.end(
        body === null ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      );
    });
  }

  async function fetch(request: FetchRequest, signal: AbortSignal): Promise<FetchResponse> {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      throw new NetworkError(`${formatValue(request.url)} is not a valid absolute URL`);
    }
    url.hash = "";
    let method = request.method;
    let body = request.body;
    let headers = requestHeaders(request.headers);
    let redirected = false;
    const hold = request.heldBytes?.forRequest() ?? UNLIMITED_HOLD;

    // One signal for the whole fetch: the caller's abort or the deadline, whichever comes first.
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, requestTimeoutMs);
    const forwardAbort = () => controller.abort();
    if (signal.aborted) controller.abort();
    else signal.addEventListener("abort", forwardAbort, { once: true });

    try {
      for (let hop = 0; ; hop++) {
        const started = performance.now();
        const current = url;
        const attempt = { method, url: recordedUrl(current) };
        let response: HopResponse;
        try {
          if (requestCount >= maxRequests) {
            throw limitFailure.tooManyRequests(current, maxRequests);
          }
          requestCount++;
          // The body is held while it is sent, for every hop that sends it again.
          if (hop === 0 && body !== null && body.length > 0) {
            hold.take(body.length, `the request body for ${current.href} (${body.length} bytes)`);
          }
          // A resolver that never answers still ends at the deadline or on abort.
          const address = await untilAborted(checkDestination(current), controller.signal, () =>
            abortError(current, timedOut, requestTimeoutMs),
          );
          response = await performHop(
            current,
            method,
            headers,
            body,
            address,
            controller.signal,
            () => abortError(current, timedOut, requestTimeoutMs),
            hold,
          );
        } catch (caught) {
          const failure = isHopFailure(caught) ? caught : { error: caught as Error, status: null };
          record({
            ...attempt,
            status: failure.status,
            reason: failure.error.message,
            duration_ms: elapsed(started),
          });
          throw failure.error;
        }
        record({ ...attempt, status: response.status, duration_ms: elapsed(started) });

        const location = headerValue(response.headers, "location");
        if (
          !REDIRECT_STATUSES.has(response.status) ||
          location === null ||
          request.redirect === "manual"
        ) {
          return { ...response, url: current.href, redirected };
        }
        if (request.redirect === "error") {
          throw new NetworkError(
            `${current.href} redirected (${response.status}) to ${location}, and the request's redirect mode is "error"`,
          );
        }
        if (hop >= maxRedirects) {
          throw limitFailure.tooManyRedirects(request.url, maxRedirects);
        }
        let next: URL;
        try {
          next = new URL(location, current);
        } catch {
          throw new NetworkError(
            `${current.href} redirected to an invalid URL: ${formatValue(location)}`,
          );
        }
        next.hash = "";
        const redirectedTo = redirectedMethod(response.status, method);
        if (redirectedTo !== null) {
          method = redirectedTo;
          body = null;
          headers = headers.filter(([name]) => !BODY_HEADERS.has(name));
        }
        if (next.origin !== current.origin) {
          headers = headers.filter(([name]) => !CREDENTIAL_HEADERS.has(name));
        }
        // The redirect's own body is dropped here.
        hold.release(response.body.length);
        url = next;
        redirected = true;
      }
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", forwardAbort);
      // The response (if any) goes straight into the task's memory, where its ram counts it.
      hold.releaseAll();
    }
  }

  return { fetch };
}

/** The task's headers, lowercased, without connection-level ones (and those Connection names). */
function requestHeaders(headers: readonly [string, string][]): [string, string][] {
  const lowered = headers.map(([name, value]): [string, string] => [name.toLowerCase(), value]);
  const named = new Set(CONNECTION_HEADERS);
  for (const [name, value] of lowered) {
    if (name === "connection") {
      for (const token of value.split(",")) named.add(token.trim().toLowerCase());
    }
  }
  return lowered.filter(([name]) => !named.has(name));
}

function headerValue(headers: readonly [string, string][], name: string): string | null {
  const entry = headers.find(([key]) => key.toLowerCase() === name);
  return entry ? entry[1] : null;
}

function contentDecoder(
  encoding: string,
): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | null {
  switch (encoding) {
    case "gzip":
    case "x-gzip":
      return zlib.createGunzip();
    case "deflate":
      return zlib.createInflate();
    case "br":
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

function abortError(url: URL, timedOut: boolean, timeoutMs: number): NetworkError {
  return timedOut ? limitFailure.timedOut(url, timeoutMs) : limitFailure.aborted(url);
}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal, reason: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(reason());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reason());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function isHopFailure(value: unknown): value is HopFailure {
  return typeof value === "object" && value !== null && "error" in value && "status" in value;
}

/** The URL as records show it: no credentials, no fragment. */
function recordedUrl(url: URL): string {
  if (!url.username && !url.password) return url.href;
  const copy = new URL(url.href);
  copy.username = "";
  copy.password = "";
  return copy.href;
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
