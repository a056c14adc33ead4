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
}

/**
 * Declares a task. Inside a running task, calling the returned function runs the task in a NEW
 * sandbox with its own limits and returns a Promise of its envelope; calls started together run
 * concurrently.
 */
export function task<Args extends unknown[], Result>(
  options: TaskOptions,
  fn: (...args: Args) => Result,
): (...args: Args) => Promise<TaskEnvelope<Awaited<Result>>> {
  const runtime = (globalThis as { __capsule?: CapsuleGuestRuntime }).__capsule;
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
