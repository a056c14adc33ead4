import { parseTaskOptions, type TaskLimits } from "../config/options.ts";
import { type Engine, minimumRamBytes } from "../engine/engine.ts";
import { asCapsuleError, type CapsuleError, CompileError, ConfigError } from "../errors.ts";
import type { Grant } from "../host.ts";
import { type AttemptMode, type AttemptServices, type LogLevel, runAttempt } from "./attempt.ts";
import { bindCapabilities, type CapabilityProvider, taskGrants } from "./capabilities.ts";
import type { Envelope, EnvelopeError, HostRequest } from "./envelope.ts";
import type { LifecycleEvent, LifecycleListener } from "./events.ts";
import type { RuntimeSettings } from "./settings.ts";
import { mapBundlePositions } from "./source-map.ts";

/** A compiled task file: one ES module, identified by the hash of its code. */
export interface Bundle {
  code: string;
  hash: string;
  /** Maps positions in `code` back to the task's files, for error messages. */
  sourceMap?: string;
  /** Set instead of a map when `code` keeps its source's positions: the name they belong to. */
  sourceName?: string;
}

/** Starts a sub-task somewhere (this thread, another worker); resolves to its envelope. */
export type SubtaskStarter = (
  name: string,
  argsJson: string,
  depth: number,
  signal: AbortSignal,
  /** The id of the task run starting it, for its lifecycle events. */
  parentId: string,
) => Promise<Envelope>;

export interface TaskRunRequest {
  engine: Engine;
  bundle: Bundle;
  taskName: string;
  /** JSON array of the positional arguments. */
  argsJson: string;
  depth: number;
  /** Set for a sub-task: the id of the task run that started it. */
  parentId?: string | null;
  settings: RuntimeSettings;
  startSubtask: SubtaskStarter;
  onEvent?: LifecycleListener;
  onLog?: (level: LogLevel, text: string, task: string) => void;
  signal?: AbortSignal;
  /** See AttemptRequest.cancelled: an abort that can reach a busy thread. */
  cancelled?: () => boolean;
  /** Files, network and environment the adapter offers; none when left out. */
  provider?: CapabilityProvider;
}

interface DeclaredTask {
  name: string;
  options: unknown;
  optionsError?: string;
}

/** What evaluating a bundle once tells us; the same for every run of that bundle. */
interface Catalog {
  tasks: DeclaredTask[];
  /**
   * Fuel QuickJS spends compiling the bundle in a fresh sandbox. Every attempt is granted it on
   * top of its budget and it is left out of `fuel_consumed`: a task pays for running its code,
   * not for the engine parsing it (which would otherwise cost ~1M fuel per KB).
   */
  compileFuel: number;
}

const catalogs = new Map<string, Catalog>();
const CATALOG_CACHE_SIZE = 64;

/**
 * Runs one task of a bundle, with its own limits and retries, and always resolves to an
 * envelope: a task's failure is data, never an exception.
 */
export async function runTask(request: TaskRunRequest): Promise<Envelope> {
  const started = performance.now();
  const { taskName } = request;
  const hostRequests: HostRequest[] = [];
  const finish = (
    outcome: { result: unknown } | { error: CapsuleError },
    usage: { retries: number; fuel: number; ram: number },
  ): Envelope => {
    const error: EnvelopeError | null =
      "error" in outcome
        ? {
            error_type: outcome.error.errorType,
            message: mapBundlePositions(outcome.error.message, request.bundle),
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
        host_requests: hostRequests,
      },
    };
  };
  const id = crypto.randomUUID();
  const parentId = request.parentId ?? null;
  const emit = (event: Omit<LifecycleEvent, "task" | "depth" | "at" | "id" | "parentId">) =>
    request.onEvent?.({
      task: taskName,
      id,
      parentId,
      depth: request.depth,
      at: Date.now(),
      ...event,
    });

  emit({ type: "created", attempt: 0 });
  let limits: TaskLimits & { compileFuel: number };
  let grants: Grant[] = [];
  try {
    limits = await resolveLimits(request);
    if (request.provider) grants = taskGrants(limits, request.provider);
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

  const services: AttemptServices = {
    callTask: async (name, argsJson, signal) =>
      JSON.stringify(await request.startSubtask(name, argsJson, request.depth + 1, signal, id)),
    log: (level, text) => request.onLog?.(level, text, taskName),
  };

  let fuel = 0;
  let ram = 0;
  for (let attempt = 1; ; attempt++) {
    emit({ type: "running", attempt });
    const outcome = await runAttempt({
      engine: request.engine,
      code: request.bundle.code,
      filename: "task.js",
      mode: { kind: "run", taskName, argsJson: request.argsJson },
      limits: {
        fuel: limits.fuel + limits.compileFuel,
        ramBytes: limits.ramBytes,
        timeoutMs: limits.timeoutMs,
        maxResultBytes: request.settings.maxResultBytes,
        maxLogBytes: request.settings.maxLogBytes,
      },
      services,
      signal: request.signal,
      cancelled: request.cancelled,
      preparedSandboxes: request.settings.preparedSandboxes,
      capabilities: request.provider
        ? bindCapabilities(limits, grants, request.provider, (r) => hostRequests.push(r))
        : undefined,
    });
    fuel += Math.max(0, outcome.fuelConsumed - limits.compileFuel);
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
      attempt <= limits.maxRetries &&
      !request.signal?.aborted &&
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
    const envelope = finish({ error: outcome.error }, { retries, fuel, ram });
    emit({
      type: outcome.error.errorType === "timeout" ? "timed_out" : "failed",
      attempt,
      duration_ms: envelope.execution.duration_ms,
      fuel_consumed: fuel,
      error: envelope.error ?? undefined,
    });
    return envelope;
  }
}

/** What reading a task's limits needs: the bundle, which task, and the runtime's settings. */
export type LimitsRequest = Pick<
  TaskRunRequest,
  "engine" | "bundle" | "taskName" | "settings" | "signal"
>;

/**
 * A task's validated limits, read by evaluating its bundle once per thread (cached). Throws a
 * CapsuleError for a missing task or a bad option. Adapters use it too, to learn a task's timeout
 * and grants before running it, without evaluating the bundle again.
 */
export async function resolveLimits(
  request: LimitsRequest,
): Promise<TaskLimits & { compileFuel: number }> {
  const catalog = await discoverTasks(request);
  const declared = catalog.tasks.find((t) => t.name === request.taskName);
  if (declared === undefined) {
    const known = catalog.tasks.map((t) => JSON.stringify(t.name)).join(", ") || "none";
    throw new ConfigError(
      `no task named ${JSON.stringify(request.taskName)} in the task file (declared: ${known}); the entry task must be declared with task({ name: "main" }, ...)`,
    );
  }
  if (declared.optionsError !== undefined) {
    throw new ConfigError(`task ${JSON.stringify(declared.name)}: ${declared.optionsError}`);
  }
  const limits = parseTaskOptions(declared.options, {
    ramBytes: request.settings.defaultRamBytes,
    minRamBytes: minimumRamBytes(request.engine),
  });
  return { ...limits, compileFuel: catalog.compileFuel };
}

/** Evaluates the bundle in throwaway sandboxes to read the tasks it declares; cached per bundle. */
async function discoverTasks(request: LimitsRequest): Promise<Catalog> {
  const cached = catalogs.get(request.bundle.hash);
  if (cached) return cached;
  const evaluate = (mode: AttemptMode) =>
    runAttempt({
      engine: request.engine,
      code: request.bundle.code,
      filename: "task.js",
      mode,
      limits: {
        fuel: request.settings.discoveryFuel,
        ramBytes: request.settings.defaultRamBytes,
        timeoutMs: request.settings.discoveryTimeoutMs,
        maxResultBytes: request.settings.maxResultBytes,
        maxLogBytes: 0,
      },
      services: {
        callTask: async () => {
          throw new Error("sub-tasks cannot start while a task file is being loaded");
        },
        log: () => {},
      },
      signal: request.signal,
      preparedSandboxes: request.settings.preparedSandboxes,
    });
  const compiled = await evaluate({ kind: "measure-compile" });
  if (!compiled.ok) {
    // esbuild accepted the code but QuickJS cannot compile it (a syntax QuickJS lacks).
    if (compiled.error.errorType !== "task_error") throw compiled.error;
    throw new CompileError(`the engine could not compile the task: ${compiled.error.message}`);
  }
  const listed = await evaluate({ kind: "discover" });
  if (!listed.ok) throw listed.error;
  const catalog: Catalog = {
    tasks: listed.value as DeclaredTask[],
    compileFuel: compiled.value as number,
  };
  if (catalogs.size >= CATALOG_CACHE_SIZE) {
    const oldest = catalogs.keys().next().value;
    if (oldest !== undefined) catalogs.delete(oldest);
  }
  catalogs.set(request.bundle.hash, catalog);
  return catalog;
}
