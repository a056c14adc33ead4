import type { LogLevel } from "./chunk.ts";

/**
 * The host functions the runtime places in `globalThis.__capsule_host` before the prelude runs.
 * The prelude captures them and deletes the global, so task code never sees them.
 */
export interface HostBridge {
  log(level: LogLevel, text: string): void;
  monotonic(): number;
  randomBytes(n: number): ArrayBuffer;
  setTimer(id: number, delayMs: number): void;
  clearTimer(id: number): void;
  /**
   * Runs a sub-task in a new sandbox; resolves to its envelope, parsed on the host by the engine's
   * own JSON.parse (no guest code runs, and the fuel does not depend on the envelope's timings).
   */
  callTask(name: string, argsJson: string): Promise<unknown>;
  /**
   * The named chunk, compiled by the host once per sandbox: a function that runs the chunk's top
   * level (charged, as guest code) and returns its installer.
   */
  polyfill(name: string): () => unknown;
  /**
   * One synchronous file-system operation (see core/host.ts FileSystemHost), checked on the host.
   * `argsJson` is a JSON object of the operation's arguments (paths as the guest wrote them);
   * `data` carries bytes to write. Returns an ArrayBuffer for byte results (readFile, read), else
   * a JSON string: `{"ok": value}` or `{"error": {"code","syscall","path","message"}}`.
   */
  fsCall(op: string, argsJson: string, data?: ArrayBuffer): string | ArrayBuffer;
  /**
   * Starts one HTTP request under the task's host policy. `requestJson`:
   * `{"id","method","url","headers":[[k,v]...],"redirect"}`; `body` the request bytes. Resolves to
   * `{ meta: string, body: ArrayBuffer }` with meta JSON `{"status","statusText","url",
   * "redirected","headers":[[k,v]...]}`; rejects with an Error whose message says why (a denied
   * host names the host and the rule).
   */
  fetch(requestJson: string, body?: ArrayBuffer): Promise<{ meta: string; body: ArrayBuffer }>;
  /** Aborts the request started with this id (AbortController.abort in the guest). */
  abortFetch(id: number): void;
  /** The environment and working directory the task may see: `{"env":{...},"cwd":"/project"}`. */
  processInfo(): string;
}

/** The prelude's completion value: what the host calls into. */
export interface GuestControl {
  fireTimer(id: number): void;
  /** JSON: `[{ "name": ..., "options": {...} } | { "name": ..., "optionsError": "..." }]`. */
  listTasks(): string;
  /** Resolves to JSON: `{"ok":true,"value":...}` or `{"ok":false,"error":{name,message,stack?}}`. */
  start(name: string, argsJson: string): Promise<string>;
}

/** The non-enumerable `__capsule` global the guest SDK talks to. */
export interface CapsuleGlobal {
  register(options: { name: string }, fn: (...args: never[]) => unknown): void;
  call(name: string, args: unknown[]): Promise<unknown>;
  /** A Node built-in module the sandbox provides (fs, path, process, buffer), for compiled imports. */
  require(name: string): unknown;
}

export interface TaskFailure {
  name: string;
  message: string;
  stack?: string;
  /** The error was a capability refusal (a file or host the task was not granted). */
  denied?: boolean;
}
