/**
 * The guest SDK: what `import { task } from "@capsule-run/sdk"` resolves to inside a sandbox.
 * Same shape as Capsule's TypeScript SDK, so task files written for Capsule run unchanged.
 */

export type ComputeLevel = "LOW" | "MEDIUM" | "HIGH" | (string & {});

export interface AllowedFileEntry {
  path: string;
  mode?: "read-only" | "ro" | "read-write" | "rw";
}

export interface TaskOptions {
  /** The task's identity; the runtime calls the task named `main`. */
  name: string;
  /** "LOW" (1e8 fuel), "MEDIUM" (2e9, the default), "HIGH" (5e10) or an exact fuel amount. */
  compute?: ComputeLevel | number;
  /** Memory cap, e.g. "64MB", "2GB", or bytes. */
  ram?: string | number;
  /** Wall-clock limit, e.g. "30s", "1h 30m", or milliseconds. */
  timeout?: string | number;
  maxRetries?: number;
  max_retries?: number;
  allowedFiles?: (string | AllowedFileEntry)[];
  allowed_files?: (string | AllowedFileEntry)[];
  allowedHosts?: string[];
  allowed_hosts?: string[];
  envVariables?: string[];
  env_variables?: string[];
}

export interface TaskEnvelope<T = unknown> {
  success: boolean;
  result: T | null;
  error: { error_type: string; message: string } | null;
  execution: {
    task_name: string;
    duration_ms: number;
    retries: number;
    fuel_consumed: number;
    ram_used: number;
    host_requests: { method: string; url: string; status: number | null }[];
  };
}

interface CapsuleGuestRuntime {
  register(options: TaskOptions, fn: (...args: never[]) => unknown): void;
  call(name: string, args: unknown[]): Promise<TaskEnvelope>;
  require(name: "fs" | "process"): Record<string, unknown>;
}

const guestRuntime = () => (globalThis as { __capsule?: CapsuleGuestRuntime }).__capsule;

/** Options of a declared task, as Capsule's SDK names its type. */
export type TaskConfig = TaskOptions;

/** This file's tasks by name, in the order they were declared: what TaskRunner runs. */
const declared = new Map<string, { fn: (...args: unknown[]) => unknown; config: TaskConfig }>();

/**
 * Declares a task. Inside a running task, calling the returned function runs the task in a NEW
 * sandbox with its own limits and returns a Promise of its envelope; calls started together run
 * concurrently.
 */
export function task<Args extends unknown[], Result>(
  options: TaskOptions,
  fn: (...args: Args) => Result,
): (...args: Args) => Promise<TaskEnvelope<Awaited<Result>>> {
  const runtime = guestRuntime();
  if (typeof options?.name === "string" && !declared.has(options.name)) {
    declared.set(options.name, { fn: fn as (...args: unknown[]) => unknown, config: options });
  }
  if (runtime === undefined) {
    // Outside a sandbox (plain Node, a unit test): run the function directly, still async.
    return async (...args: Args) => {
      const started = Date.now();
      try {
        const result = await fn(...args);
        return envelopeOutsideSandbox(options.name, started, true, result, null);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        return envelopeOutsideSandbox<Awaited<Result>>(options.name, started, false, null, message);
      }
    };
  }
  runtime.register(options, fn as (...args: never[]) => unknown);
  const name = options.name;
  return (...args: Args) => runtime.call(name, args) as Promise<TaskEnvelope<Awaited<Result>>>;
}

function envelopeOutsideSandbox<T>(
  taskName: string,
  started: number,
  success: boolean,
  result: T | null,
  message: string | null,
): TaskEnvelope<T> {
  return {
    success,
    result,
    error: message === null ? null : { error_type: "task_error", message },
    execution: {
      task_name: taskName,
      duration_ms: Date.now() - started,
      retries: 0,
      fuel_consumed: 0,
      ram_used: 0,
      host_requests: [],
    },
  };
}

/**
 * Capsule's task runner: `run(argsJson)` runs a task of this file in the current sandbox (no new
 * sandbox, no limits of its own) and resolves to JSON, `{"result": ...}` or
 * `{"error_type": "task_error", "message": ...}`. `argsJson` is `{"task_name", "args", "kwargs"}`;
 * an unknown name runs `main`, and a file without `main` runs its first task, as in Capsule.
 */
export class TaskRunner {
  async run(argsJson: string): Promise<string> {
    try {
      const data = JSON.parse(argsJson) as {
        task_name?: string;
        args?: unknown[];
        kwargs?: Record<string, unknown>;
      };
      const name = data.task_name ?? "main";
      const entry = declared.get(name) ?? declared.get("main") ?? declared.values().next().value;
      if (entry === undefined) {
        throw new Error(
          `No tasks or main() function found. Available tasks: ${[...declared.keys()].join(", ")}`,
        );
      }
      const result = await entry.fn(...(data.args ?? []), data.kwargs ?? {});
      return JSON.stringify({ result: result ?? null });
    } catch (error) {
      return JSON.stringify({
        error_type: "task_error",
        message: error instanceof Error ? error.message : String(error),
      });
    }
  }
}

/** The task runner Capsule's host calls; here for task files that export or use it. */
export const exports = new TaskRunner();

/** True inside a sandbox, false where the SDK runs as a plain module (Node, a unit test). */
export function isWasmMode(): boolean {
  return guestRuntime() !== undefined;
}

/**
 * A Node built-in, loaded on first use: inside a sandbox the guest's own (its files are the
 * task's granted directories), elsewhere Node's.
 */
function builtin<T extends object>(name: "fs" | "process", pick?: (module: T) => T): T {
  let loaded: T | undefined;
  const load = (): T => {
    if (loaded === undefined) {
      const runtime = guestRuntime();
      const host = (globalThis as { process?: { getBuiltinModule?: (name: string) => unknown } })
        .process;
      const module = (runtime?.require(name) ?? host?.getBuiltinModule?.(name)) as T | undefined;
      if (module === undefined) throw new Error(`the "${name}" module is not available here`);
      loaded = pick ? pick(module) : module;
    }
    return loaded;
  };
  return new Proxy({} as T, {
    get: (_target, key) => Reflect.get(load(), key),
    has: (_target, key) => Reflect.has(load(), key),
    ownKeys: () => Reflect.ownKeys(load()),
    getOwnPropertyDescriptor: (_target, key) => {
      const descriptor = Reflect.getOwnPropertyDescriptor(load(), key);
      return descriptor && { ...descriptor, configurable: true };
    },
  });
}

type FsModule = typeof import("node:fs");

/** Node's `fs`, as Capsule's SDK exports it: inside a sandbox, the task's granted files only. */
export const fs: FsModule = builtin<FsModule>("fs");
/** `fs.promises`. */
export const fsPromises: FsModule["promises"] = builtin<FsModule["promises"]>(
  "fs",
  (module) => (module as unknown as FsModule).promises,
);
/** `process`: inside a sandbox, only the task's `envVariables` are in `process.env`. */
export const process: typeof globalThis.process = builtin<typeof globalThis.process>("process");

/** Capsule's `os`: a WASI-like machine, the same values Capsule's SDK gives. */
export const os = {
  platform: () => "linux" as const,
  arch: () => "wasm32",
  tmpdir: () => "/tmp",
  homedir: () => "/home/capsule",
  uptime: () => 0,
  freemem: () => 0,
  totalmem: () => 0,
  cpus: (): unknown[] => [],
  hostname: () => "capsule-wasm",
  release: () => "wasi",
  type: () => "WASI",
  endianness: () => "LE" as const,
  networkInterfaces: (): Record<string, unknown[]> => ({}),
  userInfo: () => ({
    username: "capsule",
    uid: 1000,
    gid: 1000,
    shell: null,
    homedir: "/home/capsule",
  }),
  loadavg: () => [0, 0, 0],
  version: () => "WASI 0.2",
  machine: () => "wasm32",
  EOL: "\n",
  constants: { signals: {}, errno: {}, priority: {} },
  availableParallelism: () => 1,
  devNull: "/dev/null",
};
