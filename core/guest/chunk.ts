/**
 * Shared shapes for the code that runs inside the sandbox: the eager prelude and the lazily
 * evaluated polyfill chunks. A chunk's source evaluates to an installer; the prelude calls it once
 * with a ChunkContext and keeps the record of values it returns.
 */

import type { Base64Exports } from "./polyfills/base64.ts";
import type { ConsoleExports } from "./polyfills/console.ts";
import type { CryptoExports } from "./polyfills/crypto.ts";
import type { DomExceptionExports } from "./polyfills/dom-exception.ts";
import type { EncodingExports } from "./polyfills/encoding.ts";
import type { InspectExports } from "./polyfills/inspect.ts";
import type { PerformanceExports } from "./polyfills/performance.ts";
import type { StructuredCloneExports } from "./polyfills/structured-clone.ts";
import type { UrlExports } from "./polyfills/url.ts";

export type LogLevel = "debug" | "info" | "log" | "warn" | "error";

/** The host functions a chunk may use (captured by the prelude; never visible to task code). */
export interface ChunkHost {
  log(level: LogLevel, text: string): void;
  monotonic(): number;
  randomBytes(n: number): ArrayBuffer;
}

export interface ChunkContext {
  host: ChunkHost;
  /** Evaluates a chunk once (uncharged) and returns its exports. */
  load<Name extends ChunkName>(name: Name): ChunkExports[Name];
}

export type ChunkInstaller<Exports> = (ctx: ChunkContext) => Exports;

/**
 * Which globals each chunk provides. A chunk with no globals is internal (used by other chunks).
 * The build emits one source per chunk name; the prelude defines one lazy accessor per global.
 */
export const CHUNK_GLOBALS = {
  console: ["console"],
  inspect: [],
  url: ["URL", "URLSearchParams"],
  encoding: ["TextEncoder", "TextDecoder"],
  "structured-clone": ["structuredClone"],
  base64: ["atob", "btoa"],
  crypto: ["crypto"],
  performance: ["performance"],
  "dom-exception": ["DOMException"],
} as const satisfies Record<string, readonly string[]>;

export type ChunkName = keyof typeof CHUNK_GLOBALS;

export const CHUNK_NAMES = Object.keys(CHUNK_GLOBALS) as ChunkName[];

export interface ChunkExports {
  console: ConsoleExports;
  inspect: InspectExports;
  url: UrlExports;
  encoding: EncodingExports;
  "structured-clone": StructuredCloneExports;
  base64: Base64Exports;
  crypto: CryptoExports;
  performance: PerformanceExports;
  "dom-exception": DomExceptionExports;
}
