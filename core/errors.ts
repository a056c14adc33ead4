import type { ErrorType } from "./runtime/envelope.ts";

/**
 * One class per failure kind; each maps to exactly one envelope `error_type`, so callers branch
 * on types and messages stay specific.
 */
export abstract class CapsuleError extends Error {
  abstract readonly errorType: ErrorType;
}

export class TaskError extends CapsuleError {
  override name = "TaskError";
  readonly errorType = "task_error" as const;
}

export class TimeoutError extends CapsuleError {
  override name = "TimeoutError";
  readonly errorType = "timeout" as const;
}

/**
 * The task was stopped from outside before it finished. The envelope keeps Capsule's error type
 * for it (`timeout`); lifecycle events call it `cancelled`, its own state.
 */
export class CancelledError extends TimeoutError {
  override name = "CancelledError";

  /** The stop of a task at `depth`: a sub-task's comes from its parent ending before it. */
  static at(depth = 0): CancelledError {
    return new CancelledError(
      depth > 0
        ? "cancelled: the task that started it ended before it finished"
        : "the task was cancelled by its caller",
    );
  }
}

export class FuelExhaustedError extends CapsuleError {
  override name = "FuelExhaustedError";
  readonly errorType = "fuel_exhausted" as const;
}

export class MemoryExceededError extends CapsuleError {
  override name = "MemoryExceededError";
  readonly errorType = "memory_exceeded" as const;
}

/** A task option (or runtime option) has a value we refuse; the message names option and value. */
export class ConfigError extends CapsuleError {
  override name = "ConfigError";
  readonly errorType = "config_error" as const;
}

export class CompileError extends CapsuleError {
  override name = "CompileError";
  readonly errorType = "compile_error" as const;
}

export class PermissionDeniedError extends CapsuleError {
  override name = "PermissionDeniedError";
  readonly errorType = "permission_denied" as const;
}

export class InternalError extends CapsuleError {
  override name = "InternalError";
  readonly errorType = "internal_error" as const;
}

/** Any thrown value as a CapsuleError: ours as they are, anything else an internal error. */
export function asCapsuleError(error: unknown): CapsuleError {
  if (error instanceof CapsuleError) return error;
  return new InternalError(error instanceof Error ? error.message : String(error));
}
