/**
 * Python tasks on Node: each job (reading a file's tasks, or one attempt) runs in its own child
 * process (child.ts) that holds no authority, from a small pool of processes started ahead
 * (Pyodide takes seconds to load). This file starts, checks and kills those processes; what runs
 * in them, and how their requests are answered, is core/python/tasks.ts, as in a page.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import {
  type CapsuleError,
  FuelExhaustedError,
  InternalError,
  TimeoutError,
} from "../../../core/errors.ts";
import {
  checkPythonRequest,
  type PythonJob,
  type PythonJobResult,
  type PythonReply,
  type PythonRequest,
} from "../../../core/python/protocol.ts";
import {
  cancelled,
  createPythonRunner,
  fuelExhausted,
  interpreterBroken,
  type PythonTaskRequest,
  type SandboxRun,
} from "../../../core/python/tasks.ts";
import type { Envelope } from "../../../core/runtime/envelope.ts";
import { packageRoot } from "../paths.ts";
import type { ChildMessage, ParentMessage } from "./protocol.ts";

const childEntry = join(packageRoot, "dist", "python", "child.mjs");
const engineFile = join(packageRoot, "dist", "pyodide-metered.wasm");
/** A loaded interpreter's memory, made by the build; a child starts from it when it is there. */
const snapshotFile = join(packageRoot, "dist", "python", "pyodide-snapshot.bin");

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
  /** The job's fuel budget, for the error when the child says it is spent. */
  #budget = "0";
  #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

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
    this.#exited = new Promise((resolve) =>
      this.process.once("close", (code, signal) => resolve({ code, signal })),
    );
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
          // The process may be gone by the time the answer is ready (killed, cancelled).
          this.process.send(
            { type: "reply", id, reply } satisfies ParentMessage,
            undefined,
            {},
            () => {},
          );
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
        // The budget named is the runtime's, not the guest's word for it.
        this.#stopped = fuelExhausted(this.#budget);
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
    this.#budget = job.fuel;
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
          finish(() => reject(interpreterBroken(String(message.message))));
        }
      };
      this.#exited.then(({ code, signal }) =>
        finish(() =>
          reject(
            this.#stopped ??
              new InternalError(
                `the Python process ended (exit code ${code}, signal ${signal}) before the task did`,
              ),
          ),
        ),
      );
      this.process.send({ type: "job", job } satisfies ParentMessage);
      const watch = this.#watchCpu(job.fuel);
      this.#exited.then(() => clearInterval(watch));
    });
  }

  /**
   * Ends the process once its CPU time for this job passes what the job's fuel allows at a tenth
   * of the engine's speed: fuel counts only the engine's own code, and a guest that runs
   * JavaScript in its process (the realm is its to use) is bounded this way, with or without a
   * timeout. Read from /proc, where there is one.
   */
  #watchCpu(fuel: string): ReturnType<typeof setInterval> | undefined {
    const nodePid = this.#nodePid();
    const start = nodePid === null ? null : cpuSecondsOf(nodePid);
    if (nodePid === null || start === null) return undefined;
    const allowed = Number(fuel) / BACKSTOP_FUEL_PER_CPU_SECOND + CPU_SLACK_SECONDS;
    const timer = setInterval(() => {
      const used = cpuSecondsOf(nodePid);
      if (used === null || used - start <= allowed) return;
      clearInterval(timer);
      this.#stopped ??= new FuelExhaustedError(
        `the task used more CPU time than its fuel allows (${Math.ceil(allowed)} s): work outside the metered engine counts too`,
      );
      this.kill();
    }, CPU_WATCH_MS);
    timer.unref();
    return timer;
  }

  /** The node process itself: inside the namespace wrapper, the one child `unshare` forked. */
  #nodePid(): number | null {
    const pid = this.process.pid;
    if (pid === undefined || process.platform !== "linux") return null;
    if (isolationSetup().wrapper.length === 0) return pid;
    try {
      const child = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ")[0]);
      return Number.isSafeInteger(child) && child > 0 ? child : null;
    } catch {
      return null;
    }
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
 * About a tenth of what the metered engine does per CPU second here (4.6-16 billion fuel, see
 * FUEL_PER_CLOCK_MS), so fuel decides first for the engine's own work.
 */
const BACKSTOP_FUEL_PER_CPU_SECOND = 500_000_000;
/** The runner's own work around a job, which fuel does not count. */
const CPU_SLACK_SECONDS = 3;
const CPU_WATCH_MS = 250;

/** A process's CPU time so far (user + system), or null when /proc cannot say. */
function cpuSecondsOf(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    // utime and stime, in clock ticks: 100 per second on Linux.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : null;
  } catch {
    return null;
  }
}

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
  return ready ?? startChild(ramBytes);
}

/**
 * Loads a process for this ram size once a job is over, not while it runs: a process restored
 * from the snapshot takes about 3 s of CPU in its first seconds, which on a small machine the job
 * would otherwise share (measured: warm p50 30-36 ms with the refill at the job's start, about
 * 14 ms after it; a first run 6 s against less).
 */
function refill(ramBytes: number) {
  if (warm.has(ramBytes)) return;
  warm.set(ramBytes, startChild(ramBytes));
  while (warm.size > WARM_SIZES) {
    const [oldest, spare] = warm.entries().next().value as [number, PythonChild];
    warm.delete(oldest);
    spare.kill();
  }
}

/** Counts shutdowns, so a refill due before one does not start a process after it. */
let generation = 0;

function startChild(ramBytes: number): PythonChild {
  const child = new PythonChild(ramBytes);
  live.add(child);
  child.process.once("exit", () => live.delete(child));
  return child;
}

/** Ends every Python process this runtime started. */
export function shutdownPython(): void {
  generation++;
  warm.clear();
  for (const child of live) child.kill();
  live.clear();
}
process.once("exit", shutdownPython);

/**
 * Python processes that may run a job at once; more wait. Each is a whole interpreter (about
 * 100 MB resident, up to its ram cap).
 */
export const PYTHON_SANDBOXES_AT_ONCE = Math.max(4, availableParallelism());

const runPython = createPythonRunner({ runInSandbox, sandboxesAtOnce: PYTHON_SANDBOXES_AT_ONCE });

/** Runs a Python task (and its sub-tasks) and resolves to its envelope; never throws. */
export function runPythonTask(request: PythonTaskRequest): Promise<Envelope> {
  return runPython(request);
}

/** One job in a fresh child process from the pool, which is killed afterwards in any case. */
async function runInSandbox(run: SandboxRun): Promise<PythonJobResult> {
  if (run.signal?.aborted) throw cancelled();
  const child = takeChild(run.job.ramBytes);
  const cancel = () => child.kill();
  run.signal?.addEventListener("abort", cancel, { once: true });
  try {
    await child.ready;
    return await child.run(run.job, {
      timeoutMs: run.timeoutMs,
      onLog: run.onLog,
      onRequest: run.onRequest,
    });
  } catch (error) {
    // However the process ended, a cancelled run says so.
    if (run.signal?.aborted) throw cancelled();
    throw error;
  } finally {
    run.signal?.removeEventListener("abort", cancel);
    child.kill();
    const due = generation;
    setImmediate(() => {
      if (due === generation) refill(run.job.ramBytes);
    });
  }
}
