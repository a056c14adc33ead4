import { asCapsuleError } from "../errors.ts";

/** The JSON envelope every task run produces, on every host (DESIGN.md section 3). */

export type ErrorType =
  | "task_error"
  | "timeout"
  | "fuel_exhausted"
  | "memory_exceeded"
  | "config_error"
  | "compile_error"
  | "permission_denied"
  | "internal_error";

export interface EnvelopeError {
  error_type: ErrorType;
  message: string;
}

export interface HostRequest {
  method: string;
  url: string;
  status: number | null;
  reason?: string;
  duration_ms?: number;
}

export interface Execution {
  task_name: string;
  duration_ms: number;
  retries: number;
  fuel_consumed: number;
  ram_used: number;
  host_requests: HostRequest[];
  /**
   * The run's id, on every host: in Node's run journal (`capsule inspect <run_id>`); a page and a
   * Worker keep no journal yet.
   */
  run_id?: string;
}

export interface Envelope<T = unknown> {
  success: boolean;
  result: T | null;
  error: EnvelopeError | null;
  execution: Execution;
}

/** The envelope of a task that failed before (or without) running any guest code. */
export function failureEnvelope(taskName: string, error: EnvelopeError, durationMs = 0): Envelope {
  return {
    success: false,
    result: null,
    error,
    execution: {
      task_name: taskName,
      duration_ms: durationMs,
      retries: 0,
      fuel_consumed: 0,
      ram_used: 0,
      host_requests: [],
    },
  };
}

/** The envelope of a run that failed before its task ran: a bad option, a compile error, a fault. */
export function envelopeForError(taskName: string, error: unknown, durationMs = 0): Envelope {
  const failure = asCapsuleError(error);
  return failureEnvelope(
    taskName,
    { error_type: failure.errorType, message: failure.message },
    durationMs,
  );
}
