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
  /** Runs a sub-task in a new sandbox; resolves to its envelope as JSON. */
  callTask(name: string, argsJson: string): Promise<string>;
  polyfillSource(name: string): string;
  /** Calls `fn` synchronously with fuel metering paused. */
  uncharged(fn: () => void): void;
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
}

export interface TaskFailure {
  name: string;
  message: string;
  stack?: string;
}
