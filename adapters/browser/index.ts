/**
 * capsule-portable in a web page: `import { run } from "./capsule.js"`. Tasks run in module Web
 * Workers (never on the page's thread), one fresh fuel-metered sandbox per attempt, and resolve
 * to the same envelope as on Node.
 */
import { CODE_SOURCE_NAME } from "../../core/compile/task-module.ts";
import { type CapsuleError, CompileError, ConfigError, InternalError } from "../../core/errors.ts";
import { resumeFailure, resumeOptionsError } from "../../core/journal/resume-request.ts";
import { splitPath } from "../../core/policy/paths.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import { type Envelope, type ErrorType, envelopeForError } from "../../core/runtime/envelope.ts";
import type { LifecycleListener } from "../../core/runtime/events.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import { checkCommonRunOptions, describe } from "../../core/runtime/run-options.ts";
import type { Bundle } from "../../core/runtime/run-task.ts";
import { type RuntimeSettings, resolveSettings } from "../../core/runtime/settings.ts";
import type { SubtaskHook } from "../../core/runtime/subtasks.ts";
import { appRootHandle, checkAppRoot, directoryHandle } from "./files.ts";
import type { PageResume, PageRunJournal } from "./journal.ts";
import { WorkerPool } from "./pool.ts";
import type { PythonReadiness } from "./python/index.ts";
import { journalModule, recordRun } from "./runs.ts";

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
  shutdownCells,
} from "./agent.ts";
export type { ComponentOptions } from "./component.ts";
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
} from "./runs.ts";
export { Session, type SessionOptions } from "./session.ts";
export {
  type CapsuleTools,
  type CapsuleToolsOptions,
  capsuleTools,
  type ToolDefinition,
  type ToolResult,
} from "./tools.ts";
export type { LogLevel };
export type { PythonReadiness } from "./python/index.ts";

export interface RunOptions {
  /** Task source an agent produced. */
  code: string;
  /** Language of `code`; default "ts". "py" runs a Python task (in its own sandbox, python/). */
  language?: "ts" | "js" | "py";
  /** Positional arguments for the task, as strings. */
  args?: string[];
  /** The task to run; defaults to "main". */
  task?: string;
  /** The variables `envVariables` may read: a page has no environment of its own. */
  env?: Record<string, string | undefined>;
  /** The app's directory in OPFS that `allowedFiles` are relative to; default "capsule". */
  opfsRoot?: string;
  onEvent?: LifecycleListener;
  /** Console output of the task and its sub-tasks. Dropped when not given. */
  onLog?: (level: LogLevel, text: string, task: string) => void;
  /** Runtime-wide limits (sub-task depth and count, result size, ...). */
  limits?: Partial<RuntimeSettings>;
  /** Aborting ends the run with a `timeout` envelope. */
  signal?: AbortSignal;
  /**
   * Record the run in the page's journal in OPFS (default true); `false` keeps no record. A
   * journal that cannot be opened or written never fails the run: it warns once on the console.
   */
  journal?: boolean;
  /**
   * A recorded run's id (or a unique prefix of it) to resume: its entry task runs again, from the
   * same source with the same task and arguments (so leave out `code`, `language`, `task`,
   * `args`), and every sub-task call that completed in that run returns its recorded envelope
   * instead of running again (core/journal/resume.ts). A new run records it, with
   * `resumed_from`. Resuming a completed run returns its recorded envelope. `limits` defaults to
   * the recorded run's.
   */
  resume?: string;
}

export interface PoolOptions {
  /** Web Workers tasks share; default the number of cores, at most 8. */
  workers?: number;
  /** How long a task may overrun its timeout before its worker is terminated; default 1000 ms. */
  graceMs?: number;
  /**
   * What the sandboxes of the page's runs may hold together (the sum of their `ram`); default
   * 1 GiB, or a quarter of `navigator.deviceMemory` where that is less.
   */
  memoryBudgetBytes?: number;
}

const KNOWN_OPTIONS = new Set([
  "code",
  "language",
  "args",
  "task",
  "env",
  "opfsRoot",
  "onEvent",
  "onLog",
  "limits",
  "signal",
  "journal",
  "resume",
]);
/** What a resume takes from the journal, so it may not be given too. */
const RECORDED_OPTIONS = ["code", "language", "task", "args"] as const;
const DEFAULT_OPFS_ROOT = "capsule";
const BUNDLE_CACHE_SIZE = 64;

let sharedPool: WorkerPool | undefined;
let poolOptions: PoolOptions = {};
const bundles = new Map<string, Promise<Bundle>>();

/**
 * Runs a task in fresh fuel-metered sandboxes in a Web Worker and resolves to its envelope. It
 * never throws for the task's own failure, nor for a bad option: those are envelopes too. The
 * run is recorded in the page's journal (journal.ts) unless `journal: false`.
 */
export async function run(options: RunOptions): Promise<Envelope> {
  const runId = crypto.randomUUID();
  if (typeof options === "object" && options !== null && options.resume !== undefined) {
    return runResumed(options, runId);
  }
  let journal: PageRunJournal | null = null;
  const recordable =
    typeof options === "object" &&
    options !== null &&
    options.journal !== false &&
    typeof options.code === "string" &&
    (options.language === undefined || ["ts", "js", "py"].includes(options.language));
  if (recordable) {
    // The first run of a page opens the journal (SQLite, a Worker, OPFS) while the task compiles
    // and starts: its events wait for the journal in order (journal.ts).
    journal = recordRun(
      {
        runId,
        task: typeof options.task === "string" ? options.task : "main",
        code: options.code,
        language: options.language ?? "ts",
        args: Array.isArray(options.args) ? options.args.map(String) : [],
        limits: options.limits ?? null,
      },
      typeof options.onEvent === "function" ? options.onEvent : undefined,
    );
  }
  return runJournaled(options, journal, runId);
}

async function runJournaled(
  options: RunOptions,
  journal: PageRunJournal | null,
  runId: string,
): Promise<Envelope> {
  let diverged: string | null = null;
  const stop = new AbortController();
  const signal =
    options.signal instanceof AbortSignal
      ? AbortSignal.any([options.signal, stop.signal])
      : stop.signal;
  const subtasks = journal?.subtasks((message) => {
    diverged ??= message;
    stop.abort();
  });
  let envelope = await runUnnamed(
    journal === null || (options.onEvent !== undefined && typeof options.onEvent !== "function")
      ? options
      : {
          ...options,
          onEvent: journal.onEvent,
          ...(options.signal === undefined || options.signal instanceof AbortSignal
            ? { signal }
            : {}),
        },
    subtasks,
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
  // The envelope comes back once its record is durable.
  await journal?.finish(envelope);
  return envelope;
}

/** run({ resume }): the recorded run again, its completed sub-task calls from the journal. */
async function runResumed(options: RunOptions, runId: string): Promise<Envelope> {
  const started = performance.now();
  const fail = (error: unknown) => resumeFailure(options, runId, started, error);
  const refused = resumeOptionsError(options, RECORDED_OPTIONS, "source, task and arguments");
  if (refused !== null) return fail(refused);
  let journalCode: Awaited<ReturnType<typeof journalModule>>;
  try {
    journalCode = await journalModule();
  } catch (error) {
    return fail(error);
  }
  const { pageJournal, openPageResume, startPageRunJournal } = journalCode;
  const store = await pageJournal();
  if (store === null) {
    return fail(
      new ConfigError(
        `resume: no run ${JSON.stringify(options.resume)}: this page has no journal (see the console's warning)`,
      ),
    );
  }
  let resumed: PageResume;
  try {
    resumed = openPageResume(store, options.resume);
  } catch (error) {
    return fail(error);
  }
  // A completed run: its recorded envelope, under its own id.
  if (resumed.completed !== null) return resumed.completed;
  const { resume: _, ...rest } = options;
  const again: RunOptions = {
    ...rest,
    code: resumed.code,
    language: resumed.language,
    task: resumed.task,
    args: resumed.args,
    ...(options.limits === undefined && resumed.limits !== null ? { limits: resumed.limits } : {}),
  };
  const journal = await startPageRunJournal(
    store,
    {
      runId,
      task: resumed.task,
      code: resumed.code,
      language: resumed.language,
      args: resumed.args,
      limits: again.limits ?? null,
      resume: resumed.matcher,
      replies: resumed.replies,
    },
    typeof options.onEvent === "function" ? options.onEvent : undefined,
  );
  return runJournaled(again, journal, runId);
}

async function runUnnamed(
  options: RunOptions,
  subtasks?: SubtaskHook,
  replies?: ReplyHook,
): Promise<Envelope> {
  const taskName = typeof options?.task === "string" ? options.task : "main";
  const started = performance.now();
  try {
    const checked = checkRunOptions(options);
    const settings = resolveSettings(checked.limits);
    if (checked.language === "py") return await runPython(checked, settings, taskName);
    sharedPool ??= newPool();
    const bundle = await compile(sharedPool, checked.code, checked.language ?? "ts");
    return await sharedPool.runTree({
      bundle,
      taskName,
      argsJson: JSON.stringify(checked.args ?? []),
      settings,
      providerConfig: {
        opfsRoot: checked.opfsRoot ?? DEFAULT_OPFS_ROOT,
        env: { ...(checked.env ?? {}) },
      },
      onEvent: checked.onEvent,
      onLog: checked.onLog,
      signal: checked.signal,
      ...(subtasks === undefined ? {} : { subtasks }),
      ...(replies === undefined ? {} : { replies }),
    });
  } catch (error) {
    return envelopeForError(taskName, error, Math.round(performance.now() - started));
  }
}

/**
 * Runs a task of a Capsule-built component, prepared on Node, in a sandbox of its own
 * (component.ts, loaded on first use) and resolves to its envelope.
 */
export async function execComponent(
  options: import("./component.ts").ComponentOptions,
): Promise<Envelope> {
  sharedPool ??= newPool();
  return (await import("./component.ts")).execComponent(options, sharedPool.memory);
}

function newPool(): WorkerPool {
  return new WorkerPool({
    size: poolOptions.workers,
    graceMs: poolOptions.graceMs,
    memoryBudgetBytes: poolOptions.memoryBudgetBytes,
  });
}

/** Sizes the shared worker pool; takes effect for the next run after the current pool closes. */
export function configure(options: PoolOptions): void {
  poolOptions = { ...options };
  const pool = sharedPool;
  sharedPool = undefined;
  pool?.close();
}

/** Terminates the shared workers and Python sandboxes; a later run starts new ones. */
export function shutdown(): void {
  configure(poolOptions);
  void pythonModule?.then((python) => python.shutdownPython());
}

// --- Python tasks (python/): loaded only when a page runs one ----------------------------------
let pythonModule: Promise<typeof import("./python/index.ts")> | undefined;

async function runPython(
  options: RunOptions,
  settings: RuntimeSettings,
  taskName: string,
): Promise<Envelope> {
  pythonModule ??= import("./python/index.ts");
  const { runPythonTask } = await pythonModule;
  return runPythonTask({
    source: options.code,
    fileName: `${CODE_SOURCE_NAME}.py`,
    taskName,
    args: options.args ?? [],
    env: { ...(options.env ?? {}) },
    opfsRoot: options.opfsRoot ?? DEFAULT_OPFS_ROOT,
    settings,
    onEvent: options.onEvent,
    onLog: options.onLog,
    signal: options.signal,
  });
}

/**
 * Loads a Python sandbox ahead (Pyodide takes seconds), so the next `language: "py"` run starts
 * at once; resolves when it is ready.
 */
export async function preparePython(): Promise<PythonReadiness> {
  pythonModule ??= import("./python/index.ts");
  return (await pythonModule).preparePython();
}
// --- end of Python tasks ---------------------------------------------------------------------------

/** Writes a file under the app's OPFS root (creating directories), for a task to read. */
export async function writeFile(
  path: string,
  data: string | Uint8Array,
  options: { opfsRoot?: string } = {},
): Promise<void> {
  const { directory, name } = await locate(path, options.opfsRoot, true);
  const file = await directory.getFileHandle(name, { create: true });
  const writable = await file.createWritable();
  await writable.write(typeof data === "string" ? data : (data as Uint8Array<ArrayBuffer>));
  await writable.close();
}

/** Reads a file under the app's OPFS root, as a task left it. */
export async function readFile(
  path: string,
  options: { opfsRoot?: string } = {},
): Promise<Uint8Array> {
  const { directory, name } = await locate(path, options.opfsRoot, false);
  const file = await (await directory.getFileHandle(name)).getFile();
  return new Uint8Array(await file.arrayBuffer());
}

/** Removes a file or directory (with its contents) under the app's OPFS root. */
export async function removeFile(path: string, options: { opfsRoot?: string } = {}) {
  const { directory, name } = await locate(path, options.opfsRoot, false);
  await directory.removeEntry(name, { recursive: true });
}

async function locate(path: string, opfsRoot = DEFAULT_OPFS_ROOT, create: boolean) {
  checkAppRoot(opfsRoot);
  const segments = splitPath(path);
  if (typeof path !== "string" || segments.length === 0 || segments.includes("..")) {
    throw new ConfigError(
      `OPFS path ${JSON.stringify(path)} must name a file below the app root, like "data/input.txt"`,
    );
  }
  const name = segments.pop() as string;
  const directory = await directoryHandle(await appRootHandle(opfsRoot), segments, create);
  return { directory, name };
}

/** Compiles once per source; only the worker that compiles loads the TypeScript transformer. */
function compile(pool: WorkerPool, code: string, language: "ts" | "js"): Promise<Bundle> {
  const key = `${language}\0${code}`;
  const cached = bundles.get(key);
  if (cached) {
    bundles.delete(key);
    bundles.set(key, cached);
    return cached;
  }
  const compiled = pool.compile(code, language).then((outcome) => {
    if (!outcome.ok) throw errorOf(outcome.errorType, outcome.message);
    return outcome.bundle;
  });
  bundles.set(key, compiled);
  compiled.catch(() => bundles.delete(key));
  if (bundles.size > BUNDLE_CACHE_SIZE) {
    const oldest = bundles.keys().next().value;
    if (oldest !== undefined) bundles.delete(oldest);
  }
  return compiled;
}

function errorOf(errorType: ErrorType, message: string): CapsuleError {
  if (errorType === "compile_error") return new CompileError(message);
  if (errorType === "config_error") return new ConfigError(message);
  return new InternalError(message);
}

function checkRunOptions(options: RunOptions): RunOptions {
  checkCommonRunOptions(
    options,
    KNOWN_OPTIONS,
    '{ code: "...", language: "ts" }',
    (key) => (key === "file" ? " (a page has no task files: pass the source as `code`)" : ""),
    ["ts", "js", "py"],
  );
  const { code, args = [], opfsRoot } = options;
  if (typeof code !== "string") {
    throw new ConfigError(`run(): code must be a string of task source, got ${describe(code)}`);
  }
  if (options.journal !== undefined && typeof options.journal !== "boolean") {
    throw new ConfigError(`run(): journal must be true or false, got ${describe(options.journal)}`);
  }
  if (
    opfsRoot !== undefined &&
    (typeof opfsRoot !== "string" || splitPath(opfsRoot).length === 0 || opfsRoot.includes(".."))
  ) {
    throw new ConfigError(
      `run(): opfsRoot must name a directory in the origin's private file system, like "my-app", got ${describe(opfsRoot)}`,
    );
  }
  if (opfsRoot !== undefined) checkAppRoot(opfsRoot);
  return { ...options, args };
}
