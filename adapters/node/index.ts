// First: a Node line too old gets one clear error, before anything else loads.
import "./supported-node.ts";
import { statSync } from "node:fs";
import { join, resolve } from "node:path";
import { CODE_SOURCE_NAME } from "../../core/compile/task-module.ts";
import type { ProjectConfig } from "../../core/config/capsule-toml.ts";
import { ConfigError } from "../../core/errors.ts";
import { resumeFailure, resumeOptionsError } from "../../core/journal/resume.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import { type Envelope, envelopeForError } from "../../core/runtime/envelope.ts";
import type { LifecycleListener } from "../../core/runtime/events.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import { runTreeInProcess } from "../../core/runtime/run-in-process.ts";
import { checkCommonRunOptions, describe } from "../../core/runtime/run-options.ts";
import { type Bundle, resolveLimits } from "../../core/runtime/run-task.ts";
import { type RuntimeSettings, resolveSettings } from "../../core/runtime/settings.ts";
import type { SubtaskHook } from "../../core/runtime/subtasks.ts";
import { compileCode, compileFile, readPythonFile } from "./compile.ts";
import { loadEngine } from "./engine.ts";
import { openResume, type RunJournal, startRunJournal } from "./journal.ts";
import { sdkEntry } from "./paths.ts";
import { processMemory, WorkerPool } from "./pool.ts";
import { loadProjectConfig } from "./project-config.ts";
import { createNodeProvider, type NodeProviderConfig, parseMounts } from "./provider.ts";
import { runPythonTask, shutdownPython } from "./python/runner.ts";
import { taskListStore } from "./python/task-lists.ts";

export type { HostFeatures } from "../../core/features.ts";
export type { Envelope, EnvelopeError, ErrorType, Execution } from "../../core/runtime/envelope.ts";
export type { LifecycleEvent, LifecycleEventType } from "../../core/runtime/events.ts";
export type { RuntimeSettings } from "../../core/runtime/settings.ts";
export {
  CELL_DEFAULTS,
  type CellEnvelope,
  type CellLimits,
  type CellResult,
  type CodeOptions,
  loadJavaScriptSandbox,
  loadPythonSandbox,
  loadSandboxes,
  type RunCodeOptions,
  runCode,
  runJavaScript,
  runPython,
} from "./agent.ts";
export { features } from "./features.ts";
export {
  inspectRun,
  listRuns,
  pruneRuns,
  RUN_STATES,
  type RunDetail,
  RunLookupError,
  type RunState,
  type RunSummary,
  type TaskRunRecord,
} from "./journal.ts";
/** Which protections a Python task's process gets on this machine (SECURITY.md). */
export { type PythonIsolation, pythonIsolation } from "./python/runner.ts";
export { Session, type SessionOptions } from "./session.ts";
export {
  type CapsuleTools,
  type CapsuleToolsOptions,
  capsuleTools,
  type ToolDefinition,
  type ToolResult,
} from "./tools.ts";
export type { LogLevel };

export interface RunOptions {
  /**
   * A task file (.ts, .js, .mjs, or .py), relative to `cwd`. With neither `file` nor `code`, the
   * entry point of the capsule.toml in `cwd` (`[workflow] entrypoint`).
   */
  file?: string;
  /** Task source an agent produced, instead of `file`. */
  code?: string;
  /** Language of `code`; "py" runs a Python task. A `file` ending in .py is Python too. */
  language?: "ts" | "js" | "py";
  /** Positional arguments for the task, as strings. */
  args?: string[];
  /** Project root: task files and imports resolve from here. Defaults to `process.cwd()`. */
  cwd?: string;
  /** The task to run; defaults to "main". */
  task?: string;
  onEvent?: LifecycleListener;
  /** Console output of the task and its sub-tasks. Dropped when not given. */
  onLog?: (level: LogLevel, text: string, task: string) => void;
  /**
   * Worker threads to run on: a number sizes a pool for this call only; 0 runs on the calling
   * thread (fastest for tiny tasks, but a busy guest blocks the event loop while it computes).
   * By default tasks share one pool sized to the machine's cores.
   */
  threads?: number;
  /** Runtime-wide limits (sub-task depth and count, result size, ...). */
  limits?: Partial<RuntimeSettings>;
  /** Aborting ends the run with a `timeout` envelope. */
  signal?: AbortSignal;
  /** Where compiled bundles are cached; defaults to `<cwd>/.capsule/cache`. */
  cacheDir?: string;
  /**
   * Host directories for the task and all its sub-tasks: `HOST_PATH[::GUEST_PATH][:ro|:rw]`, e.g.
   * `"./data:ro"` or `"/srv/datasets::/datasets:ro"`. A relative host path is relative to `cwd`.
   */
  mounts?: string[];
  /** Where `envVariables` are read from; defaults to `process.env`. */
  env?: Record<string, string | undefined>;
  /**
   * Record the run in `<cwd>/.capsule/journal.db` (default true); `false` keeps no record. A
   * journal that cannot be written never fails the run: it warns once (CAPSULE_JOURNAL).
   */
  journal?: boolean;
  /**
   * A recorded run's id (or a unique prefix of it) to resume: its entry task runs again, from the
   * same file with the same task and arguments (so leave out `file`, `code`, `task`, `args`), and
   * every sub-task call that completed in that run returns its recorded envelope instead of
   * running again (core/journal/resume.ts). A new run records it, with `resumed_from`. Resuming a
   * completed run returns its recorded envelope. `mounts`, `env`, `threads` and the like are this
   * call's; `limits` defaults to the recorded run's.
   */
  resume?: string;
}

const KNOWN_OPTIONS = new Set([
  "file",
  "code",
  "language",
  "args",
  "cwd",
  "task",
  "onEvent",
  "onLog",
  "threads",
  "limits",
  "signal",
  "cacheDir",
  "mounts",
  "env",
  "journal",
  "resume",
]);

/** What a resume takes from the journal, so it may not be given too. */
const RECORDED_OPTIONS = ["file", "code", "language", "task", "args"] as const;

let sharedPool: WorkerPool | undefined;

/**
 * Runs a task file (or code string) in fresh fuel-metered sandboxes and resolves to its envelope.
 * It never throws for the task's own failure, nor for a bad option: those are envelopes too.
 */
export async function run(options: RunOptions): Promise<Envelope> {
  const runId = crypto.randomUUID();
  if (typeof options === "object" && options !== null && options.resume !== undefined) {
    return runResumed(options, runId);
  }
  return runJournaled(options, journalFor(options, runId), runId);
}

async function runJournaled(
  options: RunOptions,
  journal: RunJournal | null,
  runId: string,
): Promise<Envelope> {
  let diverged: string | null = null;
  const stop = new AbortController();
  const hook =
    journal === null
      ? undefined
      : (optionsOf: (task: string) => Promise<string | null>) =>
          journal.subtasks(optionsOf, (message) => {
            diverged ??= message;
            stop.abort();
          });
  const signal =
    options.signal instanceof AbortSignal
      ? AbortSignal.any([options.signal, stop.signal])
      : stop.signal;
  let envelope = await runUnrecorded(
    journal === null || (options.onEvent !== undefined && typeof options.onEvent !== "function")
      ? options
      : {
          ...options,
          onEvent: journal.onEvent,
          ...(options.signal === undefined || options.signal instanceof AbortSignal
            ? { signal }
            : {}),
        },
    hook,
    journal?.replies(),
  );
  if (diverged !== null) {
    envelope = envelopeForError(
      envelope.execution.task_name,
      new ConfigError(diverged),
      envelope.execution.duration_ms,
    );
  }
  envelope.execution.run_id = runId;
  await journal?.finish(envelope);
  return envelope;
}

/** run({ resume }): the recorded run again, its completed sub-task calls from the journal. */
async function runResumed(options: RunOptions, runId: string): Promise<Envelope> {
  const started = performance.now();
  const fail = (error: unknown) => resumeFailure(options, runId, started, error);
  const refused = resumeOptionsError(options, RECORDED_OPTIONS, "file, task and arguments");
  if (refused !== null) return fail(refused);
  const cwd = options.cwd ?? process.cwd();
  if (
    typeof cwd !== "string" ||
    cwd === "" ||
    !statSync(cwd, { throwIfNoEntry: false })?.isDirectory()
  ) {
    return fail(new ConfigError(`run(): cwd must be a directory path, got ${describe(cwd)}`));
  }
  let resumed: ReturnType<typeof openResume>;
  try {
    resumed = openResume(cwd, options.resume);
  } catch (error) {
    return fail(error);
  }
  const { target, matcher, replies } = resumed;
  // A completed run: its recorded envelope, under its own id.
  if (target.completed !== null) return target.completed;
  const { resume: _, ...rest } = options;
  const again: RunOptions = {
    ...rest,
    file: target.file,
    args: target.args,
    task: target.task,
    ...(target.language === "ts" || target.language === "js" ? { language: target.language } : {}),
    ...(options.limits === undefined && target.limits !== null
      ? { limits: target.limits as Partial<RuntimeSettings> }
      : {}),
  };
  const listener = typeof options.onEvent === "function" ? options.onEvent : undefined;
  const journal = startRunJournal(
    {
      runId,
      cwd,
      task: target.task,
      file: target.file,
      language: target.language,
      args: target.args,
      limits: again.limits ?? null,
      resume: matcher,
      replies,
    },
    listener,
  );
  return runJournaled(again, journal, runId);
}

/** The run's journal (adapters/node/journal.ts), unless turned off or its cwd is no directory. */
function journalFor(options: RunOptions, runId: string): RunJournal | null {
  if (typeof options !== "object" || options === null || options.journal === false) return null;
  const cwd = options.cwd ?? process.cwd();
  if (
    typeof cwd !== "string" ||
    cwd === "" ||
    !statSync(cwd, { throwIfNoEntry: false })?.isDirectory()
  ) {
    return null;
  }
  const listener = typeof options.onEvent === "function" ? options.onEvent : undefined;
  return startRunJournal(
    {
      runId,
      cwd,
      task: typeof options.task === "string" ? options.task : "main",
      file: typeof options.file === "string" ? options.file : entrypointOf(options, cwd),
      language: typeof options.language === "string" ? options.language : null,
      args: Array.isArray(options.args) ? options.args.map(String) : [],
      limits: options.limits ?? null,
    },
    listener,
  );
}

/** A run of neither file nor code runs the project's entry point: the file it records. */
function entrypointOf(options: RunOptions, cwd: string): string | null {
  if (options.code !== undefined) return null;
  try {
    return loadProjectConfig(resolve(cwd))?.workflow.entrypoint ?? null;
  } catch {
    // A bad capsule.toml is the run's config_error to report.
    return null;
  }
}

async function runUnrecorded(
  options: RunOptions,
  hookFor?: (optionsOf: (task: string) => Promise<string | null>) => SubtaskHook,
  replies?: ReplyHook,
): Promise<Envelope> {
  const taskName = typeof options?.task === "string" ? options.task : "main";
  const started = performance.now();
  try {
    // A bad cwd is for checkRunOptions to name; it has no project file to read.
    const cwd = options?.cwd ?? process.cwd();
    const project = typeof cwd === "string" && cwd !== "" ? loadProjectConfig(resolve(cwd)) : null;
    const checked = checkRunOptions(options, project);
    // run()'s own limits win over the project's [portable] table.
    const settings: RuntimeSettings = resolveSettings({ ...project?.settings, ...checked.limits });
    if (project !== null) settings.taskDefaults = project.taskDefaults;
    if (isPython(checked)) return await runPython(checked, settings, taskName);
    const bundle = await compileEntry(checked);
    const argsJson = JSON.stringify(checked.args);
    const providerConfig: NodeProviderConfig = {
      projectRoot: checked.cwd,
      mounts: parseMounts(checked.mounts ?? [], checked.cwd),
      env: { ...(checked.env ?? process.env) },
      cacheDir: cacheDirOf(checked),
    };
    // A sub-task's options, as the run journal records them with each call (resume matches them).
    const optionsOf = async (name: string): Promise<string | null> => {
      try {
        const limits = await resolveLimits({
          engine: loadEngine(),
          bundle,
          taskName: name,
          settings,
        });
        const { compileFuel: _, taskName: __, ...options } = limits;
        return JSON.stringify(options);
      } catch {
        return null;
      }
    };
    const tree = {
      bundle,
      taskName,
      argsJson,
      settings,
      providerConfig,
      onEvent: checked.onEvent,
      onLog: checked.onLog,
      signal: checked.signal,
      ...(hookFor === undefined ? {} : { subtasks: hookFor(optionsOf) }),
      ...(replies === undefined ? {} : { replies }),
    };
    if (checked.threads === 0) {
      const provider = createNodeProvider(providerConfig);
      return await runTreeInProcess({
        ...tree,
        engine: loadEngine(),
        provider,
        reserveMemory: processMemory.reserverFor(tree),
      });
    }
    if (checked.threads !== undefined) {
      const pool = new WorkerPool(loadEngine(), checked.threads);
      try {
        return await pool.runTree(tree);
      } finally {
        await pool.close();
      }
    }
    sharedPool ??= new WorkerPool(loadEngine());
    return await sharedPool.runTree(tree);
  } catch (error) {
    return envelopeForError(taskName, error, Math.round(performance.now() - started));
  }
}

/** Stops the shared worker pool and the Python processes (tests, or a server shutting down). */
export async function shutdown(): Promise<void> {
  const pool = sharedPool;
  sharedPool = undefined;
  shutdownPython();
  await pool?.close();
}

function isPython(options: CheckedOptions): boolean {
  return options.language === "py" || (options.file !== undefined && /\.py$/i.test(options.file));
}

/** A Python task: each attempt in its own locked-down child process (python/runner.ts). */
async function runPython(
  options: CheckedOptions,
  settings: RuntimeSettings,
  taskName: string,
): Promise<Envelope> {
  const source =
    options.file !== undefined ? readPythonFile(options.file, options.cwd) : (options.code ?? "");
  return runPythonTask({
    source,
    fileName: options.file ?? `${CODE_SOURCE_NAME}.py`,
    taskName,
    args: options.args,
    provider: createNodeProvider({
      projectRoot: options.cwd,
      mounts: parseMounts(options.mounts ?? [], options.cwd),
      env: { ...(options.env ?? process.env) },
      cacheDir: cacheDirOf(options),
    }),
    settings,
    onEvent: options.onEvent,
    onLog: (level, text, task) => options.onLog?.(level, text, task),
    signal: options.signal,
    taskLists: taskListStore(cacheDirOf(options)),
  });
}

const PYTHON_TOO = ["ts", "js", "py"];

interface CheckedOptions extends RunOptions {
  cwd: string;
  args: string[];
}

function checkRunOptions(options: RunOptions, project: ProjectConfig | null): CheckedOptions {
  checkCommonRunOptions(options, KNOWN_OPTIONS, '{ file: "task.ts" }', undefined, PYTHON_TOO);
  const { code, args = [] } = options;
  let { file } = options;
  if (file === undefined && code === undefined) {
    // As `capsule run` with no file: the project's entry point.
    file = project?.workflow.entrypoint;
    if (file === undefined) {
      throw new ConfigError(
        `run(): give \`file\` (a task file path) or \`code\` (task source)${project === null ? ", or set [workflow] entrypoint in a capsule.toml in cwd" : `, or set [workflow] entrypoint in ${project.file}`}`,
      );
    }
  }
  if (file !== undefined && code !== undefined) {
    throw new ConfigError(
      "run(): give exactly one of `file` (a task file path) or `code` (task source)",
    );
  }
  if (file !== undefined && (typeof file !== "string" || file === "")) {
    throw new ConfigError(`run(): file must be a non-empty path string, got ${describe(file)}`);
  }
  if (options.cwd !== undefined && (typeof options.cwd !== "string" || options.cwd === "")) {
    throw new ConfigError(`run(): cwd must be a directory path, got ${describe(options.cwd)}`);
  }
  if (options.mounts !== undefined && !Array.isArray(options.mounts)) {
    throw new ConfigError(
      `run(): mounts must be an array of mount specs, got ${describe(options.mounts)}`,
    );
  }
  if (options.journal !== undefined && typeof options.journal !== "boolean") {
    throw new ConfigError(`run(): journal must be true or false, got ${describe(options.journal)}`);
  }
  const threads = options.threads;
  if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 0 || threads > 256)) {
    throw new ConfigError(`run(): threads ${describe(threads)} is not an integer from 0 to 256`);
  }
  return {
    ...options,
    ...(file !== undefined ? { file } : {}),
    cwd: resolve(options.cwd ?? process.cwd()),
    args,
  };
}

/** Where compiled bundles are kept, as compile.ts places them. */
function cacheDirOf(options: CheckedOptions): string {
  return resolve(options.cwd, options.cacheDir ?? join(".capsule", "cache"));
}

async function compileEntry(options: CheckedOptions): Promise<Bundle> {
  const compileOptions = { sdkEntry, ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}) };
  const compiled =
    options.file !== undefined
      ? await compileFile(options.file, options.cwd, compileOptions)
      : await compileCode(
          options.code ?? "",
          // Python never gets here (runPython above).
          (options.language ?? "ts") as "ts" | "js",
          options.cwd,
          compileOptions,
        );
  const { code, hash, sourceMap, sourceName } = compiled;
  return { code, hash, sourceMap, ...(sourceName === undefined ? {} : { sourceName }) };
}
