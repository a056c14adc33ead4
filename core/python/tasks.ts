/**
 * Python tasks on every host: reading a file's tasks, attempts and retries (through the same
 * supervisor as JavaScript tasks), sub-tasks and their limits, the guest's requests answered
 * through the task's capabilities, and the envelope. A host supplies only `runInSandbox`: one job
 * in one fresh sandbox that holds no authority (a child process on Node, an opaque-origin Worker
 * in a page), ended at its deadline, when its fuel is spent, or when the run is aborted.
 */
import { withTaskDefaults } from "../config/capsule-toml.ts";
import { parseTaskOptions, type TaskLimits } from "../config/options.ts";
import { fromBase64, toBase64 } from "../encoding/base64.ts";
import {
  asCapsuleError,
  CancelledError,
  type CapsuleError,
  CompileError,
  ConfigError,
  FuelExhaustedError,
  InternalError,
  MemoryExceededError,
  TaskError,
  TimeoutError,
} from "../errors.ts";
import type { TreeEntry } from "../files/loaded-tree.ts";
import { WriteQuota } from "../files/quota.ts";
import type { Grant } from "../host.ts";
import type { AttemptCapabilities } from "../runtime/attempt.ts";
import { bindCapabilities, type CapabilityProvider, taskGrants } from "../runtime/capabilities.ts";
import { type Envelope, envelopeForError } from "../runtime/envelope.ts";
import type { LifecycleListener } from "../runtime/events.ts";
import type { LogLevel } from "../runtime/prepared.ts";
import type { RuntimeSettings } from "../runtime/settings.ts";
import { superviseTask } from "../runtime/supervise.ts";
import { answerFileCall, PYTHON_RESERVED_DIRECTORIES, pythonSpelling } from "./files.ts";
import type {
  PythonJob,
  PythonJobResult,
  PythonReply,
  PythonRequest,
  PythonTaskJob,
} from "./protocol.ts";

/** Below this the interpreter cannot start: Pyodide's memory is 30 MiB before any import. */
export const PYTHON_MIN_RAM_BYTES = 48 * 1024 * 1024;

/** One job for one fresh sandbox, and what to do with what the guest asks on the way. */
export interface SandboxRun {
  job: PythonJob;
  /** Wall-clock limit from the moment the job is handed over; null: none. */
  timeoutMs: number | null;
  /**
   * Wall-clock limit on the sandbox's start-up, from when the job has its place: a cold process
   * loads the interpreter in about 5 s on an idle machine, a page's Pyodide in about 3.5 s, and
   * either many times that on a loaded one. Past it the attempt fails as the runtime's failure.
   */
  startMs: number;
  /**
   * Called by the host when it hands the job to a ready sandbox: where `timeoutMs` starts. What
   * comes before (starting the process, loading the interpreter) is bounded by `startMs`.
   */
  onStarted?(): void;
  /** Aborting ends the sandbox: the host rejects with `cancelled()`. */
  signal?: AbortSignal;
  onLog(level: "log" | "error", text: string): void;
  /**
   * Answers a request the host has checked (`checkPythonRequest`); never rejects. A
   * `fuel_exhausted` request never comes here: the host ends the sandbox and rejects with
   * `fuelExhausted(job.fuel)`.
   */
  onRequest(request: PythonRequest): Promise<PythonReply>;
  /**
   * The granted directories' contents, for a host whose sandbox answers file calls from its own
   * copy (`GrantCopies`); absent where the sandbox asks the runtime for each call.
   */
  files?: SandboxFileCopy;
  /**
   * A session's call: the sandbox restores `image` (null: a fresh state) before the job, and
   * sends its new image back when the task succeeded (`PythonJobResult.image`).
   */
  session?: { image: Uint8Array | null };
}

/** A copy of the granted directories that a sandbox works on; its policy runs on the copy. */
export interface SandboxFileCopy {
  grants: Grant[];
  /** Host paths of the granted directories that exist, as `LoadedTree.granted`. */
  granted: string[];
  entries: TreeEntry[];
}

/**
 * For a host whose sandbox cannot wait while the runtime answers a file call (a page: no shared
 * memory to block on). Before each attempt the granted directories are copied into the sandbox,
 * which answers the task's file calls from the copy under the same policy; afterwards the
 * changes it reports are checked against the grants again, since the sandbox could forge them,
 * and saved. Sub-tasks and other runs see the changes once the attempt has ended.
 */
export interface GrantCopies {
  /** Throws a ConfigError naming the entry when a granted directory does not exist. */
  check(grants: readonly Grant[]): Promise<void>;
  /** The granted directories as they are now, for one attempt. */
  load(grants: readonly Grant[]): Promise<LoadedGrants>;
}

export interface LoadedGrants {
  granted: string[];
  entries: TreeEntry[];
  /** Checks the sandbox's report of changes against the grants, then saves it; all or nothing. */
  save(report: unknown, quota: WriteQuota): Promise<void>;
}

/**
 * Runs one job in a new sandbox and throws the sandbox away, whatever happens. Resolves to what
 * the sandbox reported; rejects with a CapsuleError when it ended otherwise: TimeoutError at the
 * deadline, `fuelExhausted`, `interpreterBroken`, `cancelled`, InternalError when the host failed.
 */
export type RunInSandbox = (run: SandboxRun) => Promise<PythonJobResult>;

/** A host's sandboxes; each has the SDK and runner (core/python/*.py) built in. */
export interface PythonHost {
  runInSandbox: RunInSandbox;
  /**
   * How many sandboxes may run a job at once; more wait for a free place. Each holds a whole
   * interpreter, so without this a task that gathers its 256 sub-tasks would start 256. A job
   * gives its place up once it waits for a sub-task, so a tree of tasks cannot block itself.
   */
  sandboxesAtOnce: number;
}

export interface PythonTaskRequest {
  source: string;
  /** The name tracebacks show, relative to the project. */
  fileName: string;
  taskName: string;
  args: unknown[];
  /** Files, network and environment, as for JavaScript tasks. */
  provider: CapabilityProvider;
  settings: RuntimeSettings;
  onEvent?: LifecycleListener;
  onLog?: (level: LogLevel, text: string, task: string) => void;
  /** Aborting ends the run and its sub-tasks with a `timeout` envelope; no retry follows. */
  signal?: AbortSignal;
  /** Where the host's sandboxes work on copies of the granted directories (a page). */
  fileCopies?: GrantCopies;
  /**
   * The wall-clock bound of an attempt whose task sets no `timeout`, where the host cannot trust
   * the sandbox's own meter to end it (a page); `note` says where the bound comes from. Absent:
   * such a task has no wall-clock bound.
   */
  untimedBound?: { ms: number; note: string };
  /**
   * A session's call (core/session/python-image.ts): each attempt of the top task restores
   * `image`; a successful one hands its new image to `onImage`. Sub-tasks run without it.
   */
  session?: { image: Uint8Array | null; onImage(image: Uint8Array): void };
  /**
   * Task lists kept beyond this process (Node: signed files beside the compile cache). Reading a
   * file's tasks takes an interpreter of its own, started before the one that runs the task; a
   * list found here saves that start.
   */
  taskLists?: TaskListStore;
}

/** What a file's tasks are, by its name and text, as a task list read before returned them. */
export interface TaskListStore {
  get(fileName: string, source: string): Record<string, unknown> | undefined;
  /** Keeps a list read from the file; failures are the store's to report, never the run's. */
  put(fileName: string, source: string, listing: Record<string, unknown>): void;
}

/** The end of a sandbox whose budget ran out; the budget is the runtime's, not the guest's word. */
export function fuelExhausted(budget: string | number): FuelExhaustedError {
  return new FuelExhaustedError(`fuel exhausted: the task used its budget of ${budget} fuel`);
}

/** A task that broke its interpreter (ctypes into the engine, say): its own failure. */
export function interpreterBroken(message: string): TaskError {
  return new TaskError(`the task broke its interpreter: ${message}`);
}

/** The end of a sandbox whose run was aborted, worded as for JavaScript tasks. */
export function cancelled(): CancelledError {
  return CancelledError.at();
}

/** `work`, or `cancelled()` as soon as `signal` aborts (the work itself goes on). */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(cancelled());
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** What the guest's runner reports for a failure (capsule_runner.py). */
interface GuestFailure {
  kind: "syntax" | "memory" | "task";
  name: string;
  message: string;
}

/** The guest's outcome text, checked: the guest could have written anything there. */
export function parseOutcome(
  text: string,
): { ok: true; value: Record<string, unknown> } | { ok: false; error: GuestFailure } {
  let outcome: Record<string, unknown> | undefined;
  try {
    outcome = JSON.parse(text);
  } catch {
    outcome = undefined;
  }
  if (outcome?.ok === true) return { ok: true, value: outcome };
  const error = outcome?.error as GuestFailure | undefined;
  if (outcome?.ok === false && typeof error?.message === "string") return { ok: false, error };
  throw new TaskError("the task's reply to the runtime was malformed");
}

/** The task's result from its outcome; text that is not JSON is the guest's fault. */
function parseValue(valueJson: unknown): unknown {
  try {
    if (typeof valueJson === "string") return JSON.parse(valueJson);
  } catch {
    // Reported below, as for a value that is not text.
  }
  throw new TaskError("the task's reply to the runtime was malformed");
}

export function guestError(error: GuestFailure): CapsuleError {
  if (error.kind === "syntax") return new CompileError(error.message);
  if (error.kind === "memory") return new MemoryExceededError(`out of memory: ${error.message}`);
  return new TaskError(error.message);
}

/**
 * One attempt's print() output for the caller, up to `maxLogBytes` characters (as for JavaScript
 * tasks): past that, one note, and the rest is dropped.
 */
function attemptLog(request: PythonTaskRequest): (level: "log" | "error", text: string) => void {
  const limit = request.settings.maxLogBytes;
  let written = 0;
  return (level, text) => {
    if (written > limit) return;
    written += text.length + 1;
    if (written > limit) {
      request.onLog?.(
        "warn",
        `[capsule] console output truncated after ${limit} characters`,
        request.taskName,
      );
    } else {
      request.onLog?.(level, text, request.taskName);
    }
  };
}

/** A run tree's shared count of sub-tasks, and its write quota. */
interface TreeState {
  subtasks: number;
  writeQuota: WriteQuota;
}

type PreparedTask = TaskLimits & { grants: Grant[] };

/** Each file's tasks, by its text: reading them costs a whole interpreter run. */
const DISCOVERED_FILES = 64;

/** Runs Python tasks on `host`'s sandboxes; the function resolves to an envelope, never throws. */
export function createPythonRunner(
  host: PythonHost,
): (request: PythonTaskRequest) => Promise<Envelope> {
  const discovered = new Map<string, Promise<Record<string, unknown>>>();

  const job = (task: PythonTaskJob, limits: { ramBytes: number; fuel: number }): PythonJob => ({
    task,
    ramBytes: limits.ramBytes,
    fuel: String(limits.fuel),
  });

  const places = new Places(host.sandboxesAtOnce);

  /**
   * Runs a job once a place is free, turning a request the handler fails on into an error reply
   * for the guest. The job's place goes to its sub-tasks when it starts waiting for one.
   */
  const runJob = async (run: SandboxRun) => {
    await places.take(run.signal);
    let holding = true;
    const giveUp = () => {
      if (holding) places.give();
      holding = false;
    };
    // The sandbox's start-up has its own bound; the job's timeout starts at the hand-over.
    const startAborts = new AbortController();
    const stopStarting = () => startAborts.abort();
    if (run.signal?.aborted) stopStarting();
    run.signal?.addEventListener("abort", stopStarting, { once: true });
    let failStart = (_error: Error) => {};
    const startFailed = new Promise<never>((_resolve, reject) => {
      failStart = reject;
    });
    startFailed.catch(() => {});
    const startBound = setTimeout(() => {
      startAborts.abort();
      failStart(
        new InternalError(
          `the Python sandbox did not start within ${run.startMs} ms (limits.pythonStartMs); the machine may be overloaded`,
        ),
      );
    }, run.startMs);
    try {
      const running = host.runInSandbox({
        ...run,
        signal: startAborts.signal,
        onStarted: () => {
          clearTimeout(startBound);
          run.onStarted?.();
        },
        onRequest: async (request) => {
          if (request.op === "run_subtask") giveUp();
          try {
            return await run.onRequest(request);
          } catch (error) {
            return { error: (error as Error).message };
          }
        },
      });
      running.catch(() => {});
      return await Promise.race([running, startFailed]);
    } finally {
      clearTimeout(startBound);
      run.signal?.removeEventListener("abort", stopStarting);
      giveUp();
    }
  };

  function runInTree(
    request: PythonTaskRequest,
    depth: number,
    parentId: string | null,
    tree: TreeState,
  ): Promise<Envelope> {
    return superviseTask<PreparedTask>({
      taskName: request.taskName,
      depth,
      parentId,
      onEvent: request.onEvent,
      signal: request.signal,
      prepare: () => discover(request),
      reportsRunning: true,
      attempt: async (limits, { id, record, running: reportRunning }) => {
        let fuelConsumed = 0;
        let ramUsed = 0;
        const capabilities = bindCapabilities(
          limits,
          limits.grants,
          request.provider,
          // The task was told `allowed_hosts`: its host_requests say so too.
          (hostRequest) =>
            record(
              hostRequest.reason === undefined
                ? hostRequest
                : { ...hostRequest, reason: pythonSpelling(hostRequest.reason) },
            ),
          tree.writeQuota,
        );
        // Ends with the attempt, or with the caller: the sandbox, its fetches and its sub-tasks
        // end with it.
        const aborts = new AbortController();
        const stop = () => aborts.abort();
        // The wall clock runs from the hand-over, as the sandbox's own timer does: waiting for a
        // place and the sandbox's start-up (seconds for a cold process) are not the task's time,
        // and have their own bound (limits.pythonStartMs). A page's bound for a task that set no
        // timeout is the sandbox's own, counted from the same moment.
        const timeoutMs = limits.timeoutMs;
        let timedOut = false;
        let expire = () => {};
        // At the deadline the attempt ends at once; the sandbox is stopped meanwhile, and a
        // process takes a while to exit.
        const expired = new Promise<never>((_resolve, reject) => {
          expire = () => reject(new TimeoutError(`timed out after ${timeoutMs} ms`));
        });
        expired.catch(() => {});
        let deadline: ReturnType<typeof setTimeout> | undefined;
        const started = () => {
          reportRunning();
          if (timeoutMs === null || deadline !== undefined || aborts.signal.aborted) return;
          deadline = setTimeout(() => {
            timedOut = true;
            aborts.abort();
            expire();
          }, timeoutMs);
        };
        const session = depth === 0 ? request.session : undefined;
        request.signal?.addEventListener("abort", stop, { once: true });
        try {
          if (request.signal?.aborted) throw cancelled();
          const { env } = JSON.parse(capabilities.processInfo()) as { env: Record<string, string> };
          const copies =
            request.fileCopies && limits.grants.length > 0
              ? await request.fileCopies.load(limits.grants)
              : undefined;
          const running = runJob({
            job: job(
              {
                mode: "run",
                source: request.source,
                file_name: request.fileName,
                task_name: request.taskName,
                args_json: JSON.stringify(request.args),
                env,
                grants: limits.grants.map((grant) => grant.guestPath),
              },
              limits,
            ),
            timeoutMs: timeoutMs ?? request.untimedBound?.ms ?? null,
            startMs: request.settings.pythonStartMs,
            onStarted: started,
            signal: aborts.signal,
            onLog: attemptLog(request),
            onRequest: (guest) =>
              answerGuest(guest, capabilities, aborts.signal, (sub) =>
                runSubtask({ ...request, signal: aborts.signal }, sub, depth, id, tree),
              ),
            ...(copies && {
              files: { grants: limits.grants, granted: copies.granted, entries: copies.entries },
            }),
            ...(session && { session: { image: session.image } }),
          });
          running.catch(() => {});
          const outcome = await Promise.race([running, expired]);
          fuelConsumed = outcome.fuelConsumed;
          ramUsed = outcome.ramUsed;
          // Saved whether or not the task succeeded, as its writes on a disk would stay.
          await copies?.save(outcome.changes, tree.writeQuota);
          const parsed = parseOutcome(outcome.outcomeJson);
          if (!parsed.ok) throw guestError(parsed.error);
          const value = parseValue(parsed.value.value_json);
          if (session) {
            if (outcome.image === undefined) {
              throw new TaskError("the Python sandbox sent no state image for the session");
            }
            session.onImage(outcome.image);
          }
          return { ok: true, value, fuelConsumed, ramUsed };
        } catch (error) {
          let failure = timedOut
            ? new TimeoutError(`timed out after ${timeoutMs} ms`)
            : asCapsuleError(error);
          if (failure.errorType === "fuel_exhausted") fuelConsumed = limits.fuel;
          const bound = request.untimedBound;
          if (
            failure instanceof TimeoutError &&
            limits.timeoutMs === null &&
            bound !== undefined &&
            !request.signal?.aborted
          ) {
            failure = new TimeoutError(`${failure.message} (${bound.note})`);
          }
          return { ok: false, error: failure, fuelConsumed, ramUsed };
        } finally {
          clearTimeout(deadline);
          request.signal?.removeEventListener("abort", stop);
          aborts.abort();
          capabilities.close();
        }
      },
    });
  }

  async function runSubtask(
    request: PythonTaskRequest,
    sub: { name: string; argsJson: string },
    depth: number,
    parentId: string,
    tree: TreeState,
  ): Promise<string> {
    if (depth + 1 > request.settings.maxSubtaskDepth) {
      throw new Error(`sub-tasks may nest ${request.settings.maxSubtaskDepth} deep`);
    }
    if (++tree.subtasks > request.settings.maxSubtasksPerRun) {
      throw new Error(`a run may start at most ${request.settings.maxSubtasksPerRun} sub-tasks`);
    }
    const args: unknown = JSON.parse(sub.argsJson);
    if (!Array.isArray(args)) throw new Error("sub-task arguments must be a list");
    const envelope = await runInTree(
      { ...request, taskName: sub.name, args },
      depth + 1,
      parentId,
      tree,
    );
    return JSON.stringify(envelope);
  }

  /** Runs the file once to read its tasks (once per text); returns the chosen task's limits. */
  async function discover(request: PythonTaskRequest): Promise<PreparedTask> {
    const key = `${request.fileName}\0${request.source}`;
    let listing = discovered.get(key);
    if (listing === undefined) {
      const stored = request.taskLists?.get(request.fileName, request.source);
      listing =
        stored !== undefined
          ? Promise.resolve(stored)
          : listTasks(request).then((read) => {
              request.taskLists?.put(request.fileName, request.source, read);
              return read;
            });
      discovered.set(key, listing);
      listing.catch(() => discovered.delete(key));
      if (discovered.size > DISCOVERED_FILES) {
        discovered.delete(discovered.keys().next().value as string);
      }
    }
    // Shared by every run of this text: an abort stops waiting for it, not the reading.
    const value = await untilAborted(listing, request.signal);
    const tasks = Array.isArray(value.tasks)
      ? (value.tasks as { name: string; options: unknown }[])
      : [];
    const declared = tasks.find((task) => task?.name === request.taskName);
    // As in Capsule's SDK, the entry of a file with neither a main task nor a plain main() is its
    // first declared task (capsule_runner.py runs the same one).
    const entry = request.taskName === "main" && value.plain_main !== true ? tasks[0] : undefined;
    const options =
      declared?.options ??
      (request.taskName === "main" && value.plain_main === true
        ? { name: "main" }
        : entry?.options);
    if (options === undefined) {
      const known = tasks.map((task) => JSON.stringify(task?.name)).join(", ") || "none";
      throw new ConfigError(
        `no task named ${JSON.stringify(request.taskName)} in the task file (declared: ${known}); declare it with @task(name="main") or define a plain main()`,
      );
    }
    const limits = parseTaskOptions(withTaskDefaults(options, request.settings.taskDefaults), {
      ramBytes: request.settings.defaultRamBytes,
      minRamBytes: PYTHON_MIN_RAM_BYTES,
    });
    return { ...limits, grants: await pythonGrants(limits, request) };
  }

  async function listTasks(request: PythonTaskRequest): Promise<Record<string, unknown>> {
    const { outcomeJson } = await runJob({
      job: job(
        {
          mode: "discover",
          source: request.source,
          file_name: request.fileName,
          task_name: request.taskName,
          args_json: "[]",
          env: {},
          grants: [],
        },
        { ramBytes: request.settings.defaultRamBytes, fuel: request.settings.discoveryFuel },
      ),
      timeoutMs: request.settings.discoveryTimeoutMs,
      startMs: request.settings.pythonStartMs,
      onLog: attemptLog(request),
      onRequest: async () => ({
        error: "a task file cannot reach the runtime while it is being read",
      }),
    });
    const outcome = parseOutcome(outcomeJson);
    if (!outcome.ok) throw guestError(outcome.error);
    return outcome.value;
  }

  return async (request) => {
    // The caller's mounts are known before the file is read: a bad one fails at once.
    try {
      refuseReservedGrants(request.provider.mounts);
    } catch (error) {
      return envelopeForError(request.taskName, error, 0);
    }
    return runInTree(request, 0, null, {
      subtasks: 0,
      writeQuota: new WriteQuota(request.settings),
    });
  };
}

/** A count of free places, and the jobs waiting for one in the order they came. */
class Places {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(count: number) {
    this.#free = count;
  }

  /** Resolves once the caller has a place; rejects with `cancelled()` when `signal` aborts first. */
  take(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(cancelled());
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const granted = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const index = this.#waiting.indexOf(granted);
        if (index !== -1) this.#waiting.splice(index, 1);
        reject(cancelled());
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(granted);
    });
  }

  /** Hands the place to the next waiting job, or frees it. */
  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** A grant over the interpreter's own directories would hide its standard library or devices. */
function refuseReservedGrants(grants: readonly Grant[]) {
  const reserved = PYTHON_RESERVED_DIRECTORIES.map((name) => `/${name}`).join(", ");
  for (const grant of grants) {
    const top = grant.guestPath.split("/")[1] ?? "";
    const wholeRoot = top === "";
    if (!wholeRoot && !(PYTHON_RESERVED_DIRECTORIES as readonly string[]).includes(top)) continue;
    const shown =
      grant.source === "mount"
        ? `mount at ${grant.guestPath}`
        : `allowed_files entry "${wholeRoot ? "." : `.${grant.guestPath}`}"`;
    throw new ConfigError(
      wholeRoot
        ? `${shown} would put the project over the Python interpreter's own root (${reserved}); grant the project's subdirectories instead, such as "./data"`
        : `${shown} would hide the Python interpreter's own /${top}; grant a directory under another name (reserved in Python tasks: ${reserved})`,
    );
  }
}

/**
 * The task's grants, each checked (by the provider, and where the host copies files, that the
 * directory is there); the messages name the option as a Python task spells it.
 */
async function pythonGrants(limits: TaskLimits, request: PythonTaskRequest): Promise<Grant[]> {
  try {
    const grants = taskGrants(limits, request.provider);
    refuseReservedGrants(grants);
    await request.fileCopies?.check(grants);
    return grants;
  } catch (error) {
    throw error instanceof ConfigError ? new ConfigError(pythonSpelling(error.message)) : error;
  }
}

/** A guest request during a run, answered through the same capabilities as a JavaScript task's. */
async function answerGuest(
  request: PythonRequest,
  capabilities: AttemptCapabilities,
  signal: AbortSignal,
  onSubtask: (sub: { name: string; argsJson: string }) => Promise<string>,
): Promise<PythonReply> {
  switch (request.op) {
    case "run_subtask":
      return { json: await onSubtask(request) };
    case "fs":
      return answerFileCall(request, capabilities.fsCall);
    case "fetch":
      return { json: await fetchForGuest(request.requestJson, capabilities, signal) };
    default:
      return { error: "the runtime does not understand this request" };
  }
}

/** capsule.fetch's request, through the task's network policy; a refusal is data for the SDK. */
async function fetchForGuest(
  requestJson: string,
  capabilities: AttemptCapabilities,
  signal: AbortSignal,
): Promise<string> {
  const asked = JSON.parse(requestJson) as {
    url?: unknown;
    method?: unknown;
    headers?: unknown;
    body?: unknown;
  };
  const headers = Array.isArray(asked.headers)
    ? asked.headers
        .filter((pair): pair is [string, string] => Array.isArray(pair) && pair.length === 2)
        .map(([key, value]) => [String(key), String(value)])
    : [];
  const body = typeof asked.body === "string" ? fromBase64(asked.body) : undefined;
  try {
    const { meta, body: answer } = await capabilities.fetch(
      JSON.stringify({
        url: String(asked.url),
        method: typeof asked.method === "string" ? asked.method : "GET",
        headers,
        redirect: "follow",
      }),
      body,
      signal,
    );
    const parsed = JSON.parse(meta) as Record<string, unknown>;
    return JSON.stringify({ ...parsed, body: toBase64(answer) });
  } catch (error) {
    const failure = asCapsuleError(error);
    return JSON.stringify({
      error: {
        message: pythonSpelling(failure.message),
        denied: failure.errorType === "permission_denied",
      },
    });
  }
}
