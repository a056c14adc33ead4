/**
 * One `POST /run` request's task, run on this thread: what the app runs itself when it keeps no
 * journal, and what a run's Durable Object runs (run-object.ts) when it does.
 */
import { CODE_SOURCE_NAME, compileTaskModule } from "../../core/compile/task-module.ts";
import type { Engine } from "../../core/engine/engine.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import { type Envelope, envelopeForError } from "../../core/runtime/envelope.ts";
import type { LifecycleListener } from "../../core/runtime/events.ts";
import { MemoryBudget, type MemoryWaits } from "../../core/runtime/memory-budget.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import { runTreeInProcess } from "../../core/runtime/run-in-process.ts";
import { type Bundle, resolveLimits } from "../../core/runtime/run-task.ts";
import { type RuntimeSettings, resolveSettings } from "../../core/runtime/settings.ts";
import type { SubtaskHook } from "../../core/runtime/subtasks.ts";
import type { CapsuleAppOptions } from "./app.ts";
import { bundledEngine } from "./engine.ts";
import { features } from "./features.ts";
import { type FileContent, RequestFileTree } from "./files.ts";
import { createWorkersProvider } from "./provider.ts";
import type { RunRequest } from "./request.ts";

export interface ExecuteContext {
  engine: () => Engine;
  settings: RuntimeSettings;
  memory: MemoryBudget;
  maxFileBytes: number;
  onLog?: (level: LogLevel, text: string, task: string) => void;
  signal?: AbortSignal;
}

const DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024;
const WORKERS_SETTINGS: Partial<RuntimeSettings> = {
  defaultRamBytes: 16 * 1024 * 1024,
  preparedSandboxes: 0,
};
/** How long a task waits for memory in an isolate with none left before it is refused. */
const WORKERS_MEMORY_WAITS: MemoryWaits = { entryMs: 10_000, subtaskMs: 3_000 };

/** The settings, engine and memory budget runs get under the app's options. */
export function executeContextOf(options: CapsuleAppOptions): ExecuteContext {
  return {
    settings: resolveSettings({ ...WORKERS_SETTINGS, ...options.limits }),
    engine: options.engine ?? bundledEngine,
    maxFileBytes: options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
    // One budget per app (per isolate): its requests share it. Shorter waits than on other
    // hosts: a request that holds the isolate's memory while its sub-tasks wait blocks the rest.
    memory: new MemoryBudget(
      options.memoryBudgetBytes ?? features.memoryBudgetBytes,
      "this Worker's isolate",
      WORKERS_MEMORY_WAITS,
    ),
    ...(options.onLog === undefined ? {} : { onLog: options.onLog }),
  };
}

export interface ExecuteHooks {
  onEvent?: LifecycleListener;
  /** The run's sub-task hook, given a task's resolved options as JSON (the journal's call key). */
  subtasks?: (optionsOf: (task: string) => Promise<string | null>) => SubtaskHook;
  /** The run's fetch hook (the journal's record and replay of responses). */
  replies?: ReplyHook;
}

/** The file name a request's code runs as (stack traces, the journal's `file`). */
export function requestSourceName(request: RunRequest): string {
  return `${CODE_SOURCE_NAME}.${request.language}`;
}

/** Runs the request's task and sub-tasks: the envelope and the files they changed. */
export async function executeRun(
  request: RunRequest,
  context: ExecuteContext,
  hooks: ExecuteHooks = {},
): Promise<{ envelope: Envelope; files: Record<string, FileContent | null> }> {
  const files = new RequestFileTree(request.files, context.maxFileBytes);
  const started = performance.now();
  const { settings } = context;
  let envelope: Envelope;
  try {
    const bundle: Bundle = await compileTaskModule(request.code, request.language, {
      sourceName: requestSourceName(request),
      loadSucrase: () => import("sucrase"),
    });
    const engine = context.engine();
    const optionsOf = async (name: string): Promise<string | null> => {
      try {
        const limits = await resolveLimits({ engine, bundle, taskName: name, settings });
        const { compileFuel: _, taskName: __, ...options } = limits;
        return JSON.stringify(options);
      } catch {
        return null;
      }
    };
    envelope = await runTreeInProcess({
      engine,
      bundle,
      taskName: request.task,
      argsJson: JSON.stringify(request.args),
      // A request may only tighten the Worker's write quota.
      settings: {
        ...settings,
        writeBytes: Math.min(settings.writeBytes, request.limits.writeBytes ?? Infinity),
        writeFiles: Math.min(settings.writeFiles, request.limits.writeFiles ?? Infinity),
      },
      provider: createWorkersProvider(files, request.env),
      reserveMemory: context.memory.reserverFor(request),
      onLog: context.onLog,
      signal: context.signal,
      ...(hooks.onEvent === undefined ? {} : { onEvent: hooks.onEvent }),
      ...(hooks.subtasks === undefined ? {} : { subtasks: hooks.subtasks(optionsOf) }),
      ...(hooks.replies === undefined ? {} : { replies: hooks.replies }),
    });
  } catch (error) {
    envelope = envelopeForError(request.task, error, Math.round(performance.now() - started));
  }
  return { envelope, files: files.changes() };
}
