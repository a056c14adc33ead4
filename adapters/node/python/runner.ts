/**
 * Python tasks on Node: each attempt runs in its own child process (child.ts) that holds no
 * authority, from a small pool of processes started ahead (Pyodide takes seconds to load). The
 * runtime discovers the file's tasks in one child, then runs each attempt in a fresh one, kills a
 * child at its deadline, and answers the child's requests (sub-tasks) after checking them.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parseTaskOptions, type TaskLimits } from "../../../core/config/options.ts";
import {
  asCapsuleError,
  type CapsuleError,
  CompileError,
  ConfigError,
  FuelExhaustedError,
  InternalError,
  MemoryExceededError,
  TaskError,
  TimeoutError,
} from "../../../core/errors.ts";
import type { Grant } from "../../../core/host.ts";
import { PYTHON_RESERVED_DIRECTORIES } from "../../../core/python/files.ts";
import {
  checkPythonRequest,
  type PythonJob,
  type PythonJobResult,
  type PythonReply,
  type PythonRequest,
  type PythonTaskJob,
} from "../../../core/python/protocol.ts";
import type { AttemptCapabilities } from "../../../core/runtime/attempt.ts";
import {
  bindCapabilities,
  type CapabilityProvider,
  taskGrants,
} from "../../../core/runtime/capabilities.ts";
import { type Envelope, envelopeForError } from "../../../core/runtime/envelope.ts";
import type { LifecycleListener } from "../../../core/runtime/events.ts";
import type { RuntimeSettings } from "../../../core/runtime/settings.ts";
import { superviseTask } from "../../../core/runtime/supervise.ts";
import { packageRoot } from "../paths.ts";
import type { ChildMessage, ParentMessage } from "./protocol.ts";

const childEntry = join(packageRoot, "dist", "python", "child.mjs");
const engineFile = join(packageRoot, "dist", "pyodide-metered.wasm");
/** A loaded interpreter's memory, made by the build; a child starts from it when it is there. */
const snapshotFile = join(packageRoot, "dist", "python", "pyodide-snapshot.bin");
const sourcesDir = join(packageRoot, "core", "python");

/** Below this the interpreter cannot start: Pyodide's memory is 30 MiB before any import. */
export const PYTHON_MIN_RAM_BYTES = 48 * 1024 * 1024;

export interface PythonRunRequest {
  source: string;
  /** The name tracebacks show, relative to the project. */
  fileName: string;
  taskName: string;
  args: unknown[];
  /** Files, network and environment, as for JavaScript tasks. */
  provider: CapabilityProvider;
  settings: RuntimeSettings;
  onEvent?: LifecycleListener;
  onLog?: (level: "log" | "error", text: string, task: string) => void;
  /** Ends the run: its processes are killed, sub-tasks' too. */
  signal?: AbortSignal;
}

/** What keeps a Python child from the host, on this machine. */
export interface PythonIsolation {
  /**
   * Always: Node's permission model, an empty environment, no code from strings, and the wasm
   * memory's size capped by V8 at the task's ram (`--wasm-max-mem-pages`), which holds even for
   * code that reaches the memory object from JavaScript.
   */
  permissionModel: true;
  /** Linux namespaces: no network, no other processes to signal; as user nobody. */
  namespaces: boolean;
  /**
   * The process's data size capped (RLIMIT_DATA, through `prlimit`) at the task's ram plus what
   * Node and Pyodide need: memory the guest allocates from JavaScript is bounded too.
   */
  processMemoryCap: boolean;
}

interface IsolationSetup {
  /** Runs the child in namespaces as nobody; empty where the OS refuses. */
  wrapper: string[];
  /** Where `prlimit` works: the command prefix that caps a child's data size. */
  dataLimit: ((bytes: number) => string[]) | null;
  active: PythonIsolation;
}

let isolation: IsolationSetup | undefined;

/** Tries the wrappers once; where the OS refuses one, children run without it. */
function isolationSetup(): IsolationSetup {
  isolation ??= detectIsolation();
  return isolation;
}

/** What keeps a Python child from the host on this machine, for the features table. */
export function pythonIsolation(): PythonIsolation {
  return isolationSetup().active;
}

/**
 * What Node, Pyodide's JavaScript side and a restored snapshot hold besides the wasm memory
 * (measured: 277 MB of data once ready), with room for a run's own messages.
 */
const PROCESS_OVERHEAD_BYTES = 512 * 1024 * 1024;

function detectIsolation(): IsolationSetup {
  const wrapper = [
    "unshare",
    "--net",
    "--pid",
    "--fork",
    "--kill-child",
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
  ];
  const works = (command: string[]) =>
    spawnSync(command[0] as string, [...command.slice(1), process.execPath, "-e", "0"], {
      env: {},
      stdio: "ignore",
      timeout: 5_000,
    }).status === 0;
  const linux = process.platform === "linux";
  const namespaces = linux && works(wrapper);
  const limit = (bytes: number) => ["prlimit", `--data=${bytes}`, "--"];
  const dataLimit = linux && works(limit(PROCESS_OVERHEAD_BYTES)) ? limit : null;
  return {
    wrapper: namespaces ? wrapper : [],
    dataLimit,
    active: { permissionModel: true, namespaces, processMemoryCap: dataLimit !== null },
  };
}

function pyodideDir(): string {
  return dirname(createRequire(join(packageRoot, "package.json")).resolve("pyodide/package.json"));
}

let sources: { sdk: string; runner: string } | undefined;
function pythonSources() {
  sources ??= {
    sdk: readFileSync(join(sourcesDir, "capsule.py"), "utf8"),
    runner: readFileSync(join(sourcesDir, "capsule_runner.py"), "utf8"),
  };
  return sources;
}

/** Answers the guest's requests during one job. */
type RequestHandler = (request: PythonRequest) => Promise<PythonReply>;

/** One child process: started at once, given one job, then gone. */
class PythonChild {
  readonly process: ChildProcess;
  readonly ready: Promise<void>;
  #onMessage: ((message: ChildMessage) => void) | null = null;
  /** Set when the child says, before it exits, why it is stopping. */
  #stopped: CapsuleError | null = null;
  #onRequest: RequestHandler | null = null;
  #exited: Promise<number | null>;

  /** The ram this process is capped at; a job must ask for exactly this. */
  readonly ramBytes: number;

  constructor(ramBytes: number) {
    this.ramBytes = ramBytes;
    const { wrapper, dataLimit } = isolationSetup();
    const dir = pyodideDir();
    const node = [
      `--wasm-max-mem-pages=${Math.floor(ramBytes / WASM_PAGE_BYTES)}`,
      "--experimental-permission",
      `--allow-fs-read=${dir}`,
      `--allow-fs-read=${childEntry}`,
      `--allow-fs-read=${engineFile}`,
      "--disallow-code-generation-from-strings",
      "--no-warnings",
      childEntry,
      dir,
      engineFile,
    ];
    if (existsSync(snapshotFile)) {
      node.splice(4, 0, `--allow-fs-read=${snapshotFile}`);
      node.push("--snapshot", snapshotFile);
    }
    const [command, ...args] = [
      ...(dataLimit ? dataLimit(ramBytes + PROCESS_OVERHEAD_BYTES) : []),
      ...wrapper,
      process.execPath,
      ...node,
    ] as [string, ...string[]];
    this.process = spawn(command, args, {
      env: {},
      // Its own process group, so one signal ends the wrapper and the node inside it: the
      // wrapper's death alone does not (changing user clears the parent-death signal).
      detached: true,
      // fd 0: replies to the guest's blocking requests; fd 2: the engine's own fatal messages,
      // shown only with CAPSULE_PYTHON_DEBUG=1 (a task's print() goes to its log); 3: IPC, which
      // also carries the requests the guest awaits; 4: blocking requests.
      stdio: [
        "pipe",
        "ignore",
        process.env.CAPSULE_PYTHON_DEBUG === "1" ? "inherit" : "ignore",
        "ipc",
        "pipe",
      ],
      serialization: "json",
    });
    // "close", not "exit": its pipes are drained first, so a last request (fuel spent) is read.
    this.#exited = new Promise((resolve) => this.process.once("close", (code) => resolve(code)));
    this.ready = new Promise((resolve, reject) => {
      this.#onMessage = (message) => {
        if (message.type === "ready") resolve();
        else if (message.type === "failed")
          reject(new InternalError(`Python engine: ${message.message}`));
      };
      this.#exited.then(() =>
        reject(new InternalError("the Python process exited before it was ready")),
      );
    });
    this.ready.catch(() => {});
    this.process.on("message", (message: unknown) => this.#receive(message));
    this.#readRequests();
  }

  #receive(message: unknown) {
    const call = message as { type?: unknown; id?: unknown; request?: unknown };
    if (call?.type === "call") {
      if (!Number.isSafeInteger(call.id)) return;
      const id = call.id as number;
      void this.#answer(call.request).then((reply) => {
        if (reply !== null && this.process.connected) {
          this.process.send({ type: "reply", id, reply } satisfies ParentMessage);
        }
      });
      return;
    }
    this.#onMessage?.(message as ChildMessage);
  }

  /** Blocking requests arrive as JSON lines on fd 4; each is answered on its fd 0. */
  #readRequests() {
    const requests = this.process.stdio[4];
    if (!requests || !("on" in requests)) return;
    let pending = "";
    requests.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8");
      for (let newline = pending.indexOf("\n"); newline >= 0; newline = pending.indexOf("\n")) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        void this.#answerLine(line);
      }
    });
  }

  async #answerLine(line: string) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    const reply = await this.#answer(parsed);
    // The child exits right after a fuel_exhausted line: it waits for no reply.
    if (reply !== null) this.process.stdin?.write(`${JSON.stringify(reply)}\n`);
  }

  /** Checks a request from the guest, then acts on it; null when no reply is due. */
  async #answer(value: unknown): Promise<PythonReply | null> {
    try {
      const request = checkPythonRequest(value);
      if (request.op === "fuel_exhausted") {
        this.#stopped = new FuelExhaustedError(
          `fuel exhausted: the task used its budget of ${request.budget} fuel`,
        );
        return null;
      }
      return this.#onRequest ? await this.#onRequest(request) : { error: "no task is running" };
    } catch (error) {
      return { error: (error as Error).message };
    }
  }

  /** Runs one job; resolves to the guest's outcome, or rejects with why it ended. */
  run(
    job: PythonJob,
    handlers: {
      timeoutMs: number | null;
      onLog: (level: "log" | "error", text: string) => void;
      onRequest: RequestHandler;
    },
  ): Promise<PythonJobResult> {
    this.#onRequest = handlers.onRequest;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const timer =
        handlers.timeoutMs === null
          ? undefined
          : setTimeout(() => {
              this.kill();
              finish(() => reject(new TimeoutError(`timed out after ${handlers.timeoutMs} ms`)));
            }, handlers.timeoutMs);
      this.#onMessage = (message) => {
        if (message?.type === "log" && typeof message.text === "string") {
          handlers.onLog(message.level === "error" ? "error" : "log", message.text);
        } else if (message?.type === "done" && typeof message.outcomeJson === "string") {
          const count = (value: unknown) => (Number.isSafeInteger(value) ? (value as number) : 0);
          finish(() =>
            resolve({
              outcomeJson: message.outcomeJson,
              ramUsed: count(message.ramUsed),
              fuelConsumed: count(message.fuelConsumed),
            }),
          );
        } else if (message?.type === "failed") {
          finish(() => reject(new InternalError(`Python engine: ${String(message.message)}`)));
        } else if (message?.type === "crashed") {
          finish(() =>
            reject(new TaskError(`the task broke its interpreter: ${String(message.message)}`)),
          );
        }
      };
      this.#exited.then((code) =>
        finish(() =>
          reject(
            this.#stopped ??
              new InternalError(`the Python process ended (exit code ${code}) before the task did`),
          ),
        ),
      );
      this.process.send({ type: "job", job } satisfies ParentMessage);
    });
  }

  kill() {
    const { pid } = this.process;
    if (pid === undefined || this.process.exitCode !== null || this.process.signalCode !== null) {
      return;
    }
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
}

const WASM_PAGE_BYTES = 65_536;

/**
 * Children started ahead, so a task does not wait for Pyodide to load: one per ram size in
 * recent use (a process is capped at one size when it starts), the most recent last.
 */
const warm = new Map<number, PythonChild>();
const live = new Set<PythonChild>();
const WARM_SIZES = 3;

function takeChild(ramBytes: number): PythonChild {
  const ready = warm.get(ramBytes);
  warm.delete(ramBytes);
  const child = ready ?? startChild(ramBytes);
  warm.set(ramBytes, startChild(ramBytes));
  while (warm.size > WARM_SIZES) {
    const [oldest, spare] = warm.entries().next().value as [number, PythonChild];
    warm.delete(oldest);
    spare.kill();
  }
  return child;
}

function startChild(ramBytes: number): PythonChild {
  const child = new PythonChild(ramBytes);
  live.add(child);
  child.process.once("exit", () => live.delete(child));
  return child;
}

/** Ends every Python process this runtime started. */
export function shutdownPython(): void {
  warm.clear();
  for (const child of live) child.kill();
  live.clear();
}
process.once("exit", shutdownPython);

interface GuestFailure {
  kind: "syntax" | "memory" | "task";
  name: string;
  message: string;
}

function parseOutcome(
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

function guestError(error: GuestFailure): CapsuleError {
  if (error.kind === "syntax") return new CompileError(error.message);
  if (error.kind === "memory") return new MemoryExceededError(`out of memory: ${error.message}`);
  return new TaskError(error.message);
}

/** A run tree's shared count of sub-tasks. */
interface TreeState {
  subtasks: number;
}

/** Runs a Python task (and its sub-tasks) and resolves to its envelope; never throws. */
export async function runPythonTask(request: PythonRunRequest): Promise<Envelope> {
  // The caller's mounts are known before the file is read: a bad one fails at once.
  try {
    refuseReservedGrants(request.provider.mounts);
  } catch (error) {
    return envelopeForError(request.taskName, error, 0);
  }
  return runInTree(request, 0, null, { subtasks: 0 });
}

function runInTree(
  request: PythonRunRequest,
  depth: number,
  parentId: string | null,
  tree: TreeState,
): Promise<Envelope> {
  return superviseTask({
    taskName: request.taskName,
    depth,
    parentId,
    onEvent: request.onEvent,
    signal: request.signal,
    prepare: () => discover(request),
    attempt: async (limits, { id, record }) => {
      let fuelConsumed = 0;
      let ramUsed = 0;
      const capabilities = bindCapabilities(limits, limits.grants, request.provider, record);
      // Ends with the attempt, or with the caller: its fetches and sub-tasks end with it.
      const aborts = new AbortController();
      const stop = () => aborts.abort();
      request.signal?.addEventListener("abort", stop, { once: true });
      try {
        const { env } = JSON.parse(capabilities.processInfo()) as { env: Record<string, string> };
        const outcome = await runChild(
          { ...request, signal: aborts.signal },
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
          (guest) =>
            answerGuest(guest, capabilities, aborts.signal, (sub) =>
              runSubtask({ ...request, signal: aborts.signal }, sub, depth, id, tree),
            ),
        );
        fuelConsumed = outcome.fuelConsumed;
        ramUsed = outcome.ramUsed;
        const parsed = parseOutcome(outcome.outcomeJson);
        if (!parsed.ok) throw guestError(parsed.error);
        const value: unknown = JSON.parse(String(parsed.value.value_json));
        return { ok: true, value, fuelConsumed, ramUsed };
      } catch (error) {
        const failure = asCapsuleError(error);
        if (failure.errorType === "fuel_exhausted") fuelConsumed = limits.fuel;
        return { ok: false, error: failure, fuelConsumed, ramUsed };
      } finally {
        request.signal?.removeEventListener("abort", stop);
        aborts.abort();
        capabilities.close();
      }
    },
  });
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
    case "fs": {
      const data = request.data === undefined ? undefined : Buffer.from(request.data, "base64");
      const answer = capabilities.fsCall(request.call, request.argsJson, data);
      if (typeof answer !== "string") return { bytes: Buffer.from(answer).toString("base64") };
      return { json: answer.startsWith('{"error"') ? pythonSpelling(answer) : answer };
    }
    case "fetch":
      return { json: await fetchForGuest(request.requestJson, capabilities, signal) };
    default:
      return { error: "the runtime does not understand this request" };
  }
}

/** The policy's messages name options as JavaScript spells them; a Python task spells them so. */
function pythonSpelling(message: string): string {
  return message
    .replaceAll("allowedFiles", "allowed_files")
    .replaceAll("allowedHosts", "allowed_hosts");
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
  const body = typeof asked.body === "string" ? Buffer.from(asked.body, "base64") : undefined;
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
    return JSON.stringify({ ...parsed, body: Buffer.from(answer).toString("base64") });
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

async function runSubtask(
  request: PythonRunRequest,
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

/** Each file's tasks, by its text: reading them costs a whole interpreter run. */
const discovered = new Map<string, Promise<Record<string, unknown>>>();
const DISCOVERED_FILES = 64;

/** Runs the file once to read its tasks (once per text); returns the chosen task's limits. */
async function discover(
  request: PythonRunRequest,
): Promise<TaskLimits & { grants: Grant[]; maxRetries: number }> {
  const key = `${request.fileName}\0${request.source}`;
  let listing = discovered.get(key);
  if (listing === undefined) {
    listing = listTasks(request);
    discovered.set(key, listing);
    listing.catch(() => discovered.delete(key));
    if (discovered.size > DISCOVERED_FILES) {
      discovered.delete(discovered.keys().next().value as string);
    }
  }
  const value = await listing;
  const tasks = Array.isArray(value.tasks)
    ? (value.tasks as { name: string; options: unknown }[])
    : [];
  const declared = tasks.find((task) => task?.name === request.taskName);
  const options =
    declared?.options ??
    (request.taskName === "main" && value.plain_main === true ? { name: "main" } : undefined);
  if (options === undefined) {
    const known = tasks.map((task) => JSON.stringify(task.name)).join(", ") || "none";
    throw new ConfigError(
      `no task named ${JSON.stringify(request.taskName)} in the task file (declared: ${known}); declare it with @task(name="main") or define a plain main()`,
    );
  }
  const limits = parseTaskOptions(options, {
    ramBytes: request.settings.defaultRamBytes,
    minRamBytes: PYTHON_MIN_RAM_BYTES,
  });
  const grants = pythonGrants(limits, request.provider);
  refuseReservedGrants(grants);
  return { ...limits, grants };
}

/** A grant over the interpreter's own directories would hide its standard library or devices. */
function refuseReservedGrants(grants: readonly Grant[]) {
  for (const grant of grants) {
    const top = grant.guestPath.split("/")[1] ?? "";
    if ((PYTHON_RESERVED_DIRECTORIES as readonly string[]).includes(top)) {
      const shown =
        grant.source === "mount"
          ? `mount at ${grant.guestPath}`
          : `allowed_files entry ".${grant.guestPath}"`;
      throw new ConfigError(
        `${shown} would hide the Python interpreter's own /${top}; grant a directory under another name (reserved in Python tasks: ${PYTHON_RESERVED_DIRECTORIES.map((name) => `/${name}`).join(", ")})`,
      );
    }
  }
}

/** The task's grants; the messages name the option as a Python task spells it. */
function pythonGrants(limits: TaskLimits, provider: CapabilityProvider): Grant[] {
  try {
    return taskGrants(limits, provider);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(pythonSpelling(error.message));
  }
}

async function listTasks(request: PythonRunRequest): Promise<Record<string, unknown>> {
  const { outcomeJson } = await runChild(
    request,
    {
      mode: "discover",
      source: request.source,
      file_name: request.fileName,
      task_name: request.taskName,
      args_json: "[]",
      env: {},
      grants: [],
    },
    {
      ramBytes: request.settings.defaultRamBytes,
      fuel: request.settings.discoveryFuel,
      timeoutMs: request.settings.discoveryTimeoutMs,
    },
    async () => ({ error: "a task file cannot reach the runtime while it is being read" }),
  );
  const outcome = parseOutcome(outcomeJson);
  if (!outcome.ok) throw guestError(outcome.error);
  return outcome.value;
}

async function runChild(
  request: PythonRunRequest,
  task: PythonTaskJob,
  limits: { ramBytes: number; fuel: number; timeoutMs: number | null },
  onRequest: RequestHandler,
): Promise<PythonJobResult> {
  if (request.signal?.aborted) throw new TimeoutError("the task was cancelled by its caller");
  const child = takeChild(limits.ramBytes);
  const cancel = () => child.kill();
  request.signal?.addEventListener("abort", cancel, { once: true });
  try {
    await child.ready;
    const { sdk, runner } = pythonSources();
    return await child.run(
      {
        task,
        ramBytes: limits.ramBytes,
        fuel: String(limits.fuel),
        sdkSource: sdk,
        runnerSource: runner,
      },
      {
        timeoutMs: limits.timeoutMs,
        onLog: (level, text) => request.onLog?.(level, text, task.task_name),
        onRequest: async (guest) => {
          try {
            return await onRequest(guest);
          } catch (error) {
            return { error: (error as Error).message };
          }
        },
      },
    );
  } catch (error) {
    // However the process ended, a cancelled run says so.
    if (request.signal?.aborted) throw new TimeoutError("the task was cancelled by its caller");
    throw error;
  } finally {
    request.signal?.removeEventListener("abort", cancel);
    child.kill();
  }
}
