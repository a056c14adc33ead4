/**
 * Shared shapes for the code that runs inside the sandbox: the eager prelude and the lazily
 * evaluated polyfill chunks. A chunk's source evaluates to an installer; the prelude calls it once
 * with a ChunkContext and keeps the record of values it returns.
 */

import type { HostBridge } from "./bridge.ts";
import type { Base64Exports } from "./polyfills/base64.ts";
import type { BufferExports } from "./polyfills/buffer.ts";
import type { ConsoleExports } from "./polyfills/console.ts";
import type { CryptoExports } from "./polyfills/crypto.ts";
import type { DomExceptionExports } from "./polyfills/dom-exception.ts";
import type { EncodingExports } from "./polyfills/encoding.ts";
import type { FetchExports } from "./polyfills/fetch.ts";
import type { FsExports } from "./polyfills/fs.ts";
import type { InspectExports } from "./polyfills/inspect.ts";
import type { PathExports } from "./polyfills/path.ts";
import type { PerformanceExports } from "./polyfills/performance.ts";
import type { ProcessExports } from "./polyfills/process.ts";
import type { StructuredCloneExports } from "./polyfills/structured-clone.ts";
import type { TasksExports } from "./polyfills/tasks.ts";
import type { TimersExports } from "./polyfills/timers.ts";
import type { UrlExports } from "./polyfills/url.ts";

export type LogLevel = "debug" | "info" | "log" | "warn" | "error";

export interface ChunkContext {
  /** The host functions, captured by the prelude; never visible to task code. */
  host: HostBridge;
  /** Every registered task, by name; filled by `__capsule.register` in the prelude. */
  registry: Map<string, RegisteredTask>;
  /** JSON as it was before task code ran; task code may replace the global one. */
  json: { parse: typeof JSON.parse; stringify: typeof JSON.stringify };
  /** Evaluates a chunk once, charged to the task like its own code, and returns its exports. */
  load<Name extends ChunkName>(name: Name): ChunkExports[Name];
}

export interface RegisteredTask {
  fn: (...args: unknown[]) => unknown;
  /** The options as JSON, taken at registration so later mutation cannot change them. */
  optionsJson?: string;
  /** Why JSON.stringify refused the options, when it did. */
  optionsError?: unknown;
}

export type ChunkInstaller<Exports> = (ctx: ChunkContext) => Exports;

/**
 * Which globals each chunk provides. A chunk with no globals is internal (used by other chunks).
 * The build emits one source per chunk name; the prelude defines one lazy accessor per global.
 */
export const CHUNK_GLOBALS = {
  tasks: [],
  timers: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "queueMicrotask"],
  console: ["console"],
  inspect: [],
  url: ["URL", "URLSearchParams"],
  encoding: ["TextEncoder", "TextDecoder"],
  "structured-clone": ["structuredClone"],
  base64: ["atob", "btoa"],
  crypto: ["crypto"],
  performance: ["performance"],
  "dom-exception": ["DOMException"],
  fetch: [
    "fetch",
    "Request",
    "Response",
    "Headers",
    "FormData",
    "Blob",
    "File",
    "AbortController",
    "AbortSignal",
    "Event",
    "EventTarget",
  ],
  buffer: ["Buffer"],
  process: ["process"],
  path: [],
  fs: [],
} as const satisfies Record<string, readonly string[]>;

export type ChunkName = keyof typeof CHUNK_GLOBALS;

export const CHUNK_NAMES = /* @__PURE__ */ Object.keys(CHUNK_GLOBALS) as ChunkName[];

/**
 * CHUNK_GLOBALS as one string ("chunk:Global,Global;chunk:Global"), which the build inlines into
 * the prelude: a single string token compiles faster than the equivalent object literal.
 */
export function lazyGlobalsTable(): string {
  return Object.entries(CHUNK_GLOBALS)
    .filter(([, names]) => names.length > 0)
    .map(([chunk, names]) => `${chunk}:${names.join(",")}`)
    .join(";");
}

export interface ChunkExports {
  tasks: TasksExports;
  timers: TimersExports;
  console: ConsoleExports;
  inspect: InspectExports;
  url: UrlExports;
  encoding: EncodingExports;
  "structured-clone": StructuredCloneExports;
  base64: Base64Exports;
  crypto: CryptoExports;
  performance: PerformanceExports;
  "dom-exception": DomExceptionExports;
  fetch: FetchExports;
  buffer: BufferExports;
  process: ProcessExports;
  path: PathExports;
  fs: FsExports;
}

/**
 * The chunks that are Node modules: `__capsule.require(name)` returns their `module` export. The
 * task compiler maps "fs", "node:fs/promises", "path/posix" ... onto these (node-modules.ts).
 */
export const NODE_MODULE_CHUNKS = ["fs", "path", "process", "buffer"] as const;

export type NodeModuleChunk = (typeof NODE_MODULE_CHUNKS)[number];
