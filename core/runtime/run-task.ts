import { withTaskDefaults } from "../config/capsule-toml.ts";
import { parseTaskOptions, type TaskLimits } from "../config/options.ts";
import { type Engine, MAX_SANDBOX_RAM_BYTES, minimumRamBytes } from "../engine/engine.ts";
import { CompileError, ConfigError } from "../errors.ts";
import { WriteQuota } from "../files/quota.ts";
import type { Grant } from "../host.ts";
import {
  type AttemptCapabilities,
  type AttemptMode,
  type AttemptServices,
  type AttemptState,
  type LogLevel,
  runAttempt,
} from "./attempt.ts";
import { bindCapabilities, type CapabilityProvider, taskGrants } from "./capabilities.ts";
import type { Envelope, HostRequest } from "./envelope.ts";
import type { LifecycleListener, SubtaskCall } from "./events.ts";
import type { MemoryReserver } from "./memory-budget.ts";
import { type ReplyHook, replyingFetch } from "./replies.ts";
import type { RuntimeSettings } from "./settings.ts";
import { mapBundlePositions } from "./source-map.ts";
import { superviseTask } from "./supervise.ts";

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
  /** Which call of that task run's attempt this is (the run journal matches resumed calls by it). */
  call?: SubtaskCall,
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
  /** Set for a sub-task: which call of its parent started it. */
  call?: SubtaskCall;
  settings: RuntimeSettings;
  startSubtask: SubtaskStarter;
  onEvent?: LifecycleListener;
  onLog?: (level: LogLevel, text: string, task: string) => void;
  signal?: AbortSignal;
  /** See AttemptRequest.cancelled: an abort that can reach a busy thread. */
  cancelled?: () => boolean;
  /** Files, network and environment the adapter offers; none when left out. */
  provider?: CapabilityProvider;
  /** Reserves the task's `ram` in the host's memory budget before its first attempt. */
  reserveMemory?: MemoryReserver;
  /** The run's write quota, shared by all its tasks; this task's own when left out. */
  writeQuota?: WriteQuota;
  /** A cell the task's attempts evaluate before the task (AttemptMode "cell"). */
  cell?: string;
  /** A session's state, restored into each attempt's sandbox and captured from a success. */
  state?: AttemptState;
  /** The run journal's record and replay of the task's fetches (replies.ts); none: not kept. */
  replies?: ReplyHook;
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
export function runTask(request: TaskRunRequest): Promise<Envelope> {
  const { taskName } = request;
  // Held from the task's first attempt to the end of its last (memory-budget.ts).
  let releaseMemory: (() => void) | undefined;
  const writeQuota = request.writeQuota ?? new WriteQuota(request.settings);
  return superviseTask({
    taskName,
    depth: request.depth,
    parentId: request.parentId,
    call: request.call,
    onEvent: request.onEvent,
    signal: request.signal,
    describeError: (message) => mapBundlePositions(message, request.bundle),
    prepare: async () => {
      const limits = await resolveLimits(request);
      const grants: Grant[] = request.provider ? taskGrants(limits, request.provider) : [];
      releaseMemory = await request.reserveMemory?.(limits.ramBytes, {
        name: taskName,
        depth: request.depth,
      });
      return { ...limits, grants };
    },
    attempt: async (limits, { attempt, id, record }) => {
      let calls = 0;
      const services: AttemptServices = {
        callTask: async (name, argsJson, signal) => {
          const call = { attempt, index: calls++ };
          return JSON.stringify(
            await request.startSubtask(name, argsJson, request.depth + 1, signal, id, call),
          );
        },
        log: (level, text) => request.onLog?.(level, text, taskName),
      };
      const outcome = await runAttempt({
        engine: request.engine,
        code: request.bundle.code,
        filename: "task.js",
        mode:
          request.cell === undefined
            ? { kind: "run", taskName: limits.taskName, argsJson: request.argsJson }
            : {
                kind: "cell",
                taskName: limits.taskName,
                argsJson: request.argsJson,
                script: request.cell,
              },
        state: request.state,
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
          ? withReplies(
              bindCapabilities(limits, limits.grants, request.provider, record, writeQuota),
              request.replies,
              { taskRunId: id, attempt, callsMade: () => calls },
              limits.allowedHosts,
              record,
            )
          : undefined,
      });
      // The engine's parsing of the bundle is not the task's work (see Catalog.compileFuel).
      return { ...outcome, fuelConsumed: outcome.fuelConsumed - limits.compileFuel };
    },
  }).finally(() => releaseMemory?.());
}

/** The attempt's capabilities with its fetches through the run's ReplyHook, when it has one. */
function withReplies(
  capabilities: AttemptCapabilities,
  hook: ReplyHook | undefined,
  attempt: Parameters<typeof replyingFetch>[2],
  allowedHosts: readonly string[],
  record: (request: HostRequest) => void,
): AttemptCapabilities {
  if (hook === undefined) return capabilities;
  return {
    ...capabilities,
    fetch: replyingFetch(capabilities.fetch, hook, attempt, allowedHosts, record),
  };
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
): Promise<TaskLimits & { compileFuel: number; taskName: string }> {
  const catalog = await discoverTasks(request);
  const declared = entryTask(catalog.tasks, request.taskName);
  if (declared === undefined) {
    const known = catalog.tasks.map((t) => JSON.stringify(t.name)).join(", ") || "none";
    throw new ConfigError(
      `no task named ${JSON.stringify(request.taskName)} in the task file (declared: ${known}); declare tasks with task({ name: "main" }, ...)`,
    );
  }
  if (declared.optionsError !== undefined) {
    throw new ConfigError(`task ${JSON.stringify(declared.name)}: ${declared.optionsError}`);
  }
  const limits = parseTaskOptions(
    withTaskDefaults(declared.options, request.settings.taskDefaults),
    {
      ramBytes: request.settings.defaultRamBytes,
      minRamBytes: minimumRamBytes(request.engine),
    },
  );
  if (limits.ramBytes > MAX_SANDBOX_RAM_BYTES) {
    throw new ConfigError(
      `task ${JSON.stringify(declared.name)}: ram of ${limits.ramBytes / 2 ** 20} MiB is above 2GB, the most this engine's sandbox can hold; use "2GB" or less`,
    );
  }
  return { ...limits, compileFuel: catalog.compileFuel, taskName: declared.name };
}

/**
 * The task a run by this name runs. As in Capsule's SDK, a file without a task named "main" runs
 * its first declared task as the entry; any other name must be declared.
 */
function entryTask(tasks: DeclaredTask[], name: string): DeclaredTask | undefined {
  const declared = tasks.find((t) => t.name === name);
  if (declared !== undefined || name !== "main") return declared;
  return tasks[0];
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
