import { formatValue } from "../config/units.ts";
import { ConfigError, PermissionDeniedError } from "../errors.ts";
import type { HostRequest } from "../runtime/envelope.ts";
import { destinationRefusal } from "./addresses.ts";
import { matchAllowedHost } from "./hosts.ts";

/** Connection-level headers: the host owns the connection, so a task's values never pass. */
export const CONNECTION_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
  "content-length",
  "expect",
]);

/** What every network host is built from: the task's rules and the host's limits. */
export interface NetworkOptions {
  /** The task's allowedHosts; an empty list refuses every request. */
  allowedHosts: readonly string[];
  /** Largest response body accepted, after content decoding. Default 16 MiB. */
  maxResponseBytes?: number;
  /** Time for one fetch, redirects and body included. Default 30 s. */
  requestTimeoutMs?: number;
  /** Requests (each redirect hop counts) this host will make in its lifetime. Default 256. */
  maxRequests?: number;
  /** Redirects followed per fetch. Default 20, as in browsers. */
  maxRedirects?: number;
  /** Told of every request made, for the envelope's host_requests. */
  onRequest?: (record: HostRequest) => void;
}

/**
 * The HTTP rules every network host applies alike (Node, browsers, Workers): which URLs a task
 * may reach, the default limits, and how a redirect changes the request.
 */

/** A request that started but could not complete: a limit, a timeout, a lost connection. */
export class NetworkError extends Error {
  override name = "NetworkError";
}

/**
 * What a task sees when a request hits a limit, worded once for every host: the task's fuel, and
 * what it may branch on, must not depend on which host ran it.
 */
export const limitFailure = {
  tooLarge: (url: URL, max: number) =>
    new NetworkError(
      `the response from ${url.href} is larger than maxResponseBytes (${max} bytes); the request was aborted`,
    ),
  tooManyRedirects: (url: string, max: number) =>
    new NetworkError(`too many redirects: ${url} redirected more than ${max} times (maxRedirects)`),
  tooManyRequests: (url: URL, max: number) =>
    new NetworkError(
      `request limit reached: a task may make at most ${max} HTTP requests (maxRequests), and ${url.href} would be one more`,
    ),
  timedOut: (url: URL, ms: number) =>
    new NetworkError(`request to ${url.href} timed out after ${ms} ms (requestTimeoutMs)`),
  aborted: (url: URL) => new NetworkError(`request to ${url.href} was aborted`),
};

export const NETWORK_DEFAULTS = {
  maxResponseBytes: 16 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  maxRequests: 256,
  maxRedirects: 20,
} as const;

export type NetworkLimits = { -readonly [Key in keyof typeof NETWORK_DEFAULTS]: number };

/** The limits with defaults filled in; a value that is not a non-negative integer is refused. */
export function networkLimits(
  options: Partial<Record<keyof NetworkLimits, number | undefined>>,
  who: string,
): NetworkLimits {
  const limits = { ...NETWORK_DEFAULTS } as NetworkLimits;
  for (const key of Object.keys(NETWORK_DEFAULTS) as (keyof NetworkLimits)[]) {
    const value = options[key] ?? NETWORK_DEFAULTS[key];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(
        `${who}: ${key} must be a non-negative integer, got ${formatValue(value)}`,
      );
    }
    limits[key] = value;
  }
  return limits;
}

export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/**
 * Refuses a URL the task may not reach: a scheme other than http(s), a host not in allowedHosts,
 * or a non-public address not listed literally. Checked again for every redirect hop.
 */
export function refuseDestination(url: URL, allowed: readonly string[]): void {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new PermissionDeniedError(
      `${url.protocol.slice(0, -1)} URLs cannot be fetched (${url.href}); only http and https`,
    );
  }
  const host = url.hostname;
  if (!matchAllowedHost(host, allowed)) {
    const listed = allowed.length
      ? `allowed: ${allowed.map((entry) => JSON.stringify(entry)).join(", ")}`
      : "allowedHosts is empty, so no host is";
    throw new PermissionDeniedError(`host "${host}" is not in allowedHosts (${listed})`);
  }
  const refusal = destinationRefusal(host, allowed);
  if (refusal !== null) throw new PermissionDeniedError(`host ${refusal}`);
}

/**
 * The method a redirect turns a request into, as fetch does: 303, and 301/302 after a POST,
 * become a GET (a HEAD stays HEAD) without a body. Null when the request goes on unchanged.
 */
export function redirectedMethod(status: number, method: string): string | null {
  if (status === 303 || ((status === 301 || status === 302) && method === "POST")) {
    return method === "HEAD" ? "HEAD" : "GET";
  }
  return null;
}
