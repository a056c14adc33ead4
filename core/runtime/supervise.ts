import { asCapsuleError, CancelledError, type CapsuleError } from "../errors.ts";
import type { AttemptOutcome } from "./attempt.ts";
import type { Envelope, EnvelopeError, HostRequest } from "./envelope.ts";
import type { LifecycleEvent, LifecycleListener, SubtaskCall } from "./events.ts";
import { createRequestLog } from "./request-log.ts";

/** One run of a task, whatever engine runs its attempts. */
export interface SupervisedTask<Prepared> {
  taskName: string;
  depth: number;
  /** Set for a sub-task: the id of the task run that started it. */
  parentId?: string | null;
  /** Set for a sub-task: which call of its parent started it (on its `created` event). */
  call?: SubtaskCall;
  onEvent?: LifecycleListener;
  signal?: AbortSignal;
  /** Reads the task's limits (and whatever else its attempts need); throws a CapsuleError. */
  prepare(): Promise<Prepared & { maxRetries: number }>;
  /**
   * Set where an attempt's sandbox takes a while to start (a Python process): the attempt calls
   * `context.running()` once its code is handed over, and `running` is reported then, so the
   * events show start-up as the time before it. Unset: `running` is reported as an attempt begins.
   */
  reportsRunning?: boolean;
  /** One attempt in a fresh sandbox; never throws (a failure is an outcome). */
  attempt(
    prepared: Prepared,
    context: {
      attempt: number;
      id: string;
      record: (request: HostRequest) => void;
      /** Reports `running` (once; see `reportsRunning`). */
      running: () => void;
    },
  ): Promise<AttemptOutcome>;
  /** Rewrites an error message before it reaches the envelope (bundle positions to sources). */
  describeError?: (message: string) => string;
}

/**
 * Runs a task's attempts with its retries, reports each step to `onEvent`, and always resolves
 * to an envelope: a task's failure is data, never an exception.
 */
export async function superviseTask<Prepared>(task: SupervisedTask<Prepared>): Promise<Envelope> {
  const started = performance.now();
  const { taskName } = task;
  const hostRequests = createRequestLog();
  const finish = (
    outcome: { result: unknown } | { error: CapsuleError },
    usage: { retries: number; fuel: number; ram: number },
  ): Envelope => {
    const error: EnvelopeError | null =
      "error" in outcome
        ? {
            error_type: outcome.error.errorType,
            message: task.describeError?.(outcome.error.message) ?? outcome.error.message,
          }
        : null;
    return {
      success: error === null,
      result: "result" in outcome ? (outcome.result ?? null) : null,
      error,
      execution: {
        task_name: taskName,
        duration_ms: Math.round(performance.now() - started),
        retries: usage.retries,
        fuel_consumed: usage.fuel,
        ram_used: usage.ram,
        host_requests: hostRequests.list,
      },
    };
  };
  const id = crypto.randomUUID();
  const parentId = task.parentId ?? null;
  const emit = (event: Omit<LifecycleEvent, "task" | "depth" | "at" | "id" | "parentId">) =>
    task.onEvent?.({ task: taskName, id, parentId, depth: task.depth, at: Date.now(), ...event });

  emit({ type: "created", attempt: 0, ...(task.call === undefined ? {} : { call: task.call }) });
  let prepared: Prepared & { maxRetries: number };
  try {
    prepared = await task.prepare();
  } catch (error) {
    const envelope = finish({ error: asCapsuleError(error) }, { retries: 0, fuel: 0, ram: 0 });
    emit({
      type: "failed",
      attempt: 0,
      error: envelope.error ?? undefined,
      duration_ms: envelope.execution.duration_ms,
    });
    return envelope;
  }

  let fuel = 0;
  let ram = 0;
  const record = (request: HostRequest) => hostRequests.add(request);
  for (let attempt = 1; ; attempt++) {
    let reported = false;
    const running = () => {
      if (reported) return;
      reported = true;
      emit({ type: "running", attempt });
    };
    if (!task.reportsRunning) running();
    const outcome = await task.attempt(prepared, { attempt, id, record, running });
    // An attempt that ended before its code started is still an attempt, reported in order.
    running();
    fuel += Math.max(0, outcome.fuelConsumed);
    ram = Math.max(ram, outcome.ramUsed);
    const retries = attempt - 1;
    if (outcome.ok) {
      const envelope = finish({ result: outcome.value }, { retries, fuel, ram });
      emit({
        type: "completed",
        attempt,
        duration_ms: envelope.execution.duration_ms,
        fuel_consumed: fuel,
      });
      return envelope;
    }
    const retryable =
      attempt <= prepared.maxRetries &&
      !task.signal?.aborted &&
      outcome.error.errorType !== "config_error" &&
      outcome.error.errorType !== "compile_error";
    if (retryable) {
      emit({
        type: "retrying",
        attempt,
        error: { error_type: outcome.error.errorType, message: outcome.error.message },
      });
      continue;
    }
    // A sub-task stopped from outside was stopped by its parent ending (which the caller's own
    // cancel also does): say so, whichever thread or process ran it.
    const cancelled = outcome.error instanceof CancelledError;
    const error = cancelled ? CancelledError.at(task.depth) : outcome.error;
    const envelope = finish({ error }, { retries, fuel, ram });
    emit({
      type: cancelled ? "cancelled" : error.errorType === "timeout" ? "timed_out" : "failed",
      attempt,
      duration_ms: envelope.execution.duration_ms,
      fuel_consumed: fuel,
      error: envelope.error ?? undefined,
    });
    return envelope;
  }
}
