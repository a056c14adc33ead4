/**
 * Pyodide on the fuel-metered engine, as every host runs it: the host supplies Pyodide's loader,
 * the compiled metered module and a bridge to the runtime; this file wires the limits (fuel, ram,
 * clock) into the module's imports and runs one job at a time.
 *
 * Pyodide is not a sandbox: whatever realm runs this file must hold no authority of its own (a
 * locked-down child process on Node, an opaque-origin Worker in a page). The bridge is the only
 * way out, and the runtime on its other side checks every request.
 */

import { FUEL_PER_CLOCK_MS } from "../engine/fuel-clock.ts";
import {
  type PyodideInternals,
  restoreImage,
  type SandboxBaseline,
  takeBaseline,
  takeImage,
} from "../session/python-image.ts";
import { lastFileError, mountGrants, type PythonFiles } from "./files.ts";
import type { PythonJob, PythonJobResult, PythonReply, PythonRequest } from "./protocol.ts";

/** The part of Pyodide's API this file uses. */
export interface PyodideApi {
  runPythonAsync(code: string, options?: { globals?: unknown }): Promise<unknown>;
  registerJsModule(name: string, module: object): void;
  setStdin(options: { error: boolean }): void;
  setStdout(options: { batched: (text: string) => void }): void;
  setStderr(options: { batched: (text: string) => void }): void;
  FS: PythonFiles["FS"] & { writeFile(path: string, data: string): void };
  ERRNO_CODES: Record<string, number>;
  makeMemorySnapshot(): Uint8Array;
  pyimport(name: string): unknown;
  toPy(value: unknown): unknown;
  _module: PyodideInternals;
}

export interface PyodideSources {
  /** `loadPyodide` of pyodide.mjs. */
  loadPyodide(options: Record<string, unknown>): Promise<PyodideApi>;
  /** The default export of pyodide.asm.mjs: the emscripten glue. */
  createModule(settings: Record<string, unknown>): unknown;
  /** Where Pyodide's other files are (the stdlib archive, the lock file). */
  indexURL: string;
  /** dist/pyodide-metered.wasm, compiled. */
  engine: WebAssembly.Module;
  /** A loaded interpreter's memory (`makeSnapshot`), to start from instead of loading. */
  snapshot?: Uint8Array;
  /**
   * The SDK and runner, built into the host's sandbox script: imported while the sandbox waits
   * for its job, so no run pays for it. Required to run jobs; a snapshot is made without them.
   */
  python?: PythonSources;
}

/** capsule.py and capsule_runner.py. */
export interface PythonSources {
  sdk: string;
  runner: string;
}

/** Where one run's time went, in milliseconds. */
export interface PythonRunSteps {
  /** Granted directories mounted, the job encoded for the runner. */
  setupMs: number;
  /** The runner's main: the task file executed, the task run, the outcome as JSON. */
  mainMs: number;
}

/** Where a call can neither block nor switch stacks, only `async def` tasks may call the runtime. */
const CANNOT_BLOCK =
  "this host cannot block a Python task while the runtime answers: call it from an async def task with await";

/** How the sandbox reaches the runtime. */
export interface PythonBridge {
  /**
   * A blocking call; absent where the host cannot block (a page). There a plain `def` task
   * waits for the runtime by switching stacks (JSPI), where the engine has it.
   */
  callSync?: (request: PythonRequest) => PythonReply;
  /**
   * Answers the guest's file calls where the sandbox holds a copy of its granted files (a
   * page); elsewhere they go through `callSync`.
   */
  answerFiles?: (request: PythonRequest) => PythonReply;
  /** A call the guest awaits: concurrent sub-tasks from `asyncio.gather`. */
  callAsync(request: PythonRequest): Promise<PythonReply>;
  log(level: "log" | "error", text: string): void;
  /**
   * The budget is spent: the sandbox must end now, without returning into the engine (a throw
   * could be caught by one of the engine's own catch-all handlers).
   */
  fuelExhausted(budget: bigint): never;
  /**
   * Asked about every 30 ms of a task's work and between the pieces of a long `time.sleep`:
   * ends the sandbox, without returning, when its runtime is gone. A host that went away (killed,
   * Ctrl-C) can no longer enforce the task's timeout; without this, a busy task ran on until its
   * fuel was spent, and a sleeping one for as long as it slept.
   */
  endIfOrphaned?: () => void;
}

/** Fuel between two of `endIfOrphaned`'s checks: about 30 ms of work. */
const CHECK_IN_FUEL = 1n << 27n;

/** The longest piece of a sleep between two of `endIfOrphaned`'s checks. */
const CHECK_IN_MS = 50;

/** Fuel that stands for "unmetered" while the runtime itself sets up. */
const UNMETERED = 1n << 62n;

/** What every run imports, imported while the sandbox waits for a job (~150 ms saved per run). */
const PRELOADED_MODULES =
  "import asyncio, base64, functools, http.client, inspect, io, json, linecache, traceback, urllib.request";

/**
 * Imports the runner (and the SDK it imports) from /lib/capsule, dropping any earlier import and
 * its cached bytecode.
 */
const IMPORT_RUNNER = `import importlib, shutil, sys
for name in ("capsule_runner", "capsule"):
    sys.modules.pop(name, None)
shutil.rmtree("/lib/capsule/__pycache__", ignore_errors=True)
importlib.invalidate_caches()
if "/lib/capsule" not in sys.path:
    sys.path.insert(0, "/lib/capsule")
import capsule_runner`;

/** capsule_runner, as JavaScript calls it. */
interface Runner {
  prepare(): void;
  main: {
    (jobJson: string): Promise<string>;
    /** With stack switching: the task may wait with pyodide.ffi.run_sync (a page's plain def). */
    callPromising(jobJson: string): Promise<Promise<string>>;
  };
}

export class PythonEngine {
  readonly #pyodide: PyodideApi;
  readonly #meter: Meter;

  private constructor(pyodide: PyodideApi, meter: Meter) {
    this.#pyodide = pyodide;
    this.#meter = meter;
  }

  /**
   * Loads Pyodide on the metered engine: from `sources.snapshot` when given (about a second on
   * Node), else from scratch (several seconds). With `forSnapshot`, only loads: the caller then
   * takes `makeSnapshot()`, which must hold nothing a job adds.
   */
  static async load(
    sources: PyodideSources,
    bridge: PythonBridge,
    forSnapshot = false,
  ): Promise<PythonEngine> {
    const meter = new Meter(bridge);
    const pyodide = await sources.loadPyodide({
      indexURL: sources.indexURL,
      ...(forSnapshot ? { _makeSnapshot: true } : {}),
      ...(sources.snapshot ? { _loadSnapshot: sources.snapshot } : {}),
      // Fixed string hashing: a dict's order, and so the work a task does, must not depend on chance.
      env: { PYTHONHASHSEED: "0", HOME: "/home/pyodide" },
      createPyodideModule: (settings: Record<string, unknown>) => {
        // The glue would give the interpreter the host's script path (sys.executable, kept in
        // the snapshot): its length changes the work a task does, and so its fuel, by host and
        // by checkout. Every host gets the same name.
        settings.thisProgram = "/capsule/python";
        settings.instantiateWasm = (
          imports: Record<string, Record<string, unknown>>,
          done: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void,
        ) => {
          meter.wire(imports);
          WebAssembly.instantiate(sources.engine, imports as WebAssembly.Imports).then(
            (instance) => {
              meter.attach(instance);
              done(instance, sources.engine);
            },
          );
          return {};
        };
        return sources.createModule(settings);
      },
    });
    const engine = new PythonEngine(pyodide, meter);
    if (!forSnapshot) await engine.#prepare(bridge, sources.python);
    return engine;
  }

  makeSnapshot(): Uint8Array {
    return this.#pyodide.makeMemorySnapshot();
  }

  async #prepare(bridge: PythonBridge, python: PythonSources | undefined) {
    const pyodide = this.#pyodide;
    this.#switchStacks = bridge.callSync === undefined && "Suspending" in WebAssembly;
    // Standard input is closed; print() goes to the task's log.
    pyodide.setStdin({ error: true });
    pyodide.setStdout({ batched: (text) => bridge.log("log", text) });
    pyodide.setStderr({ batched: (text) => bridge.log("error", text) });
    const blocking = (request: PythonRequest): PythonReply => {
      if (bridge.callSync === undefined) throw new Error(CANNOT_BLOCK);
      return bridge.callSync(request);
    };
    const jsonOf = (reply: PythonReply): string => {
      if ("error" in reply) throw new Error(reply.error);
      if ("json" in reply) return reply.json;
      throw new Error("the runtime answered with bytes where text was expected");
    };
    pyodide.registerJsModule("_capsule_host", {
      run_subtask: (name: string, argsJson: string) =>
        jsonOf(blocking({ op: "run_subtask", name: String(name), argsJson: String(argsJson) })),
      run_subtask_async: async (name: string, argsJson: string) =>
        jsonOf(
          await bridge.callAsync({
            op: "run_subtask",
            name: String(name),
            argsJson: String(argsJson),
          }),
        ),
      fetch: (requestJson: string) =>
        jsonOf(blocking({ op: "fetch", requestJson: String(requestJson) })),
      fetch_async: async (requestJson: string) =>
        jsonOf(await bridge.callAsync({ op: "fetch", requestJson: String(requestJson) })),
      sleep: (seconds: number) => this.#meter.sleep(Number(seconds)),
      sleep_async: (seconds: number) => this.#meter.sleepAsync(Number(seconds)),
      // Whether the blocking calls above block; where they do not but the task's stack can
      // switch, the SDK waits on the async ones (pyodide.ffi.run_sync).
      blocks: bridge.callSync !== undefined,
      switches_stacks: this.#switchStacks,
      task_started: () => this.#meter.markTaskStart(),
      task_finished: () => this.#meter.markTaskEnd(),
      advance_clock: (seconds: number) => this.#meter.advanceClock(Number(seconds)),
      last_file_error: () => lastFileError.message,
    });
    const answerFiles = bridge.answerFiles ?? blocking;
    this.#files = { FS: pyodide.FS, ERRNO_CODES: pyodide.ERRNO_CODES, call: answerFiles };
    await pyodide.runPythonAsync(PRELOADED_MODULES);
    // Compiling the two files costs ~40M fuel (~10 ms here): paid once while the sandbox waits,
    // not by every task.
    if (python) {
      await this.#importRunner(python);
      // What every job installs (time.sleep, timers, urllib's opener: ~5M fuel), done ahead.
      (this.#runner as Runner).prepare();
    }
    // What a session's image is checked against (core/session/python-image.ts). Proxies the
    // set-up dropped are finalized first: a finalizer that ran only after an image was copied
    // in would release an object of the image's.
    await settleFinalizers();
    this.#baseline = takeBaseline(pyodide._module);
  }

  #baseline: SandboxBaseline | undefined;

  /**
   * Copies a session's image over this freshly set-up sandbox (before `run`); throws a
   * ConfigError when it does not fit.
   */
  restoreSession(image: Uint8Array, ramBytes: number): void {
    if (this.#baseline === undefined) throw new Error("the engine was loaded only for a snapshot");
    restoreImage(this.#pyodide._module, this.#baseline, image, (bytes) =>
      bytes <= ramBytes ? this.#meter.grow(bytes) : false,
    );
  }

  /** The session's image once `run` has ended, or why the call's state cannot carry over. */
  takeSession(): ReturnType<typeof takeImage> {
    if (this.#baseline === undefined) throw new Error("the engine was loaded only for a snapshot");
    return takeImage(this.#pyodide._module, this.#baseline);
  }

  #files: (PythonFiles & { call: (request: PythonRequest) => PythonReply }) | undefined;
  #runner: Runner | undefined;
  /** Where nothing blocks and the engine has JSPI: a plain def task then waits by switching stacks. */
  #switchStacks = false;

  /** Writes the SDK and runner where tracebacks quote them from, and imports them afresh. */
  async #importRunner(python: PythonSources) {
    const pyodide = this.#pyodide;
    pyodide.FS.mkdirTree("/lib/capsule");
    pyodide.FS.writeFile("/lib/capsule/capsule.py", python.sdk);
    pyodide.FS.writeFile("/lib/capsule/capsule_runner.py", python.runner);
    const globals = pyodide.toPy({}) as { destroy(): void };
    await pyodide.runPythonAsync(IMPORT_RUNNER, { globals });
    globals.destroy();
    this.#runner = pyodide.pyimport("capsule_runner") as Runner;
  }

  /** Runs one job; a sandbox runs one job and is then thrown away. */
  async run(job: PythonJob): Promise<PythonJobResult & { steps: PythonRunSteps }> {
    const pyodide = this.#pyodide;
    if (this.#files === undefined) throw new Error("the engine was loaded only for a snapshot");
    if (this.#runner === undefined) throw new Error("the engine was loaded without the SDK");
    const started = performance.now();
    mountGrants(this.#files, job.task.grants, this.#files.call);
    const runner = this.#runner as Runner;
    const jobJson = JSON.stringify(job.task);
    const mainStarted = performance.now();
    this.#meter.start(job);
    // Entered with stack switching only where the task may need it: it is another path into
    // Python, with other allocations, and so other fuel (SECURITY.md).
    const outcomeJson = await (this.#switchStacks
      ? await runner.main.callPromising(jobJson)
      : runner.main(jobJson));
    const fuelConsumed = this.#meter.stop();
    return {
      outcomeJson,
      ramUsed: pyodide._module.HEAPU8.byteLength,
      fuelConsumed,
      steps: {
        setupMs: mainStarted - started,
        mainMs: performance.now() - mainStarted,
      },
    };
  }
}

/**
 * Runs the finalizers of the objects dropped so far, where the realm lets code collect garbage
 * (Node's --expose-gc, which the Python child is given); elsewhere it only waits a turn.
 */
async function settleFinalizers() {
  const collect = (globalThis as { gc?: () => void }).gc;
  for (let round = 0; round < 2; round++) {
    collect?.();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/**
 * The limits inside the module: the fuel counter (refuel is called only once the budget is
 * spent), the ram cap on heap growth, and the clock the guest sees.
 */
class Meter {
  readonly #bridge: PythonBridge;
  #fuel: WebAssembly.Global | undefined;
  /** `refuel` is called once the counter is below it (core/engine/instrument.ts). */
  #tick: WebAssembly.Global | undefined;
  #budget = 0n;
  /** Until a job arrives, the loader's own needs are not capped. */
  #ramLimit = Number.POSITIVE_INFINITY;
  #memory: WebAssembly.Memory | undefined;
  /** The clock the task reads, while a job runs; the host's clock before. */
  #clock: TaskClock | undefined;

  constructor(bridge: PythonBridge) {
    this.#bridge = bridge;
  }

  wire(imports: Record<string, Record<string, unknown>>) {
    const env = imports.env as Record<string, unknown>;
    const wasi = imports.wasi_snapshot_preview1 as Record<string, unknown>;
    const clockTimeGet = wasi.clock_time_get as (
      id: number,
      precision: bigint,
      at: number,
    ) => number;
    const dateNow = env.emscripten_date_now as () => number;
    const getNow = env.emscripten_get_now as () => number;
    env.emscripten_date_now = () => (this.#clock ? this.#clock.wall() : dateNow());
    env.emscripten_get_now = () => (this.#clock ? this.#clock.monotonic() : getNow());
    wasi.clock_time_get = (id: number, precision: bigint, at: number) => {
      if (this.#clock === undefined || (id !== 0 && id !== 1))
        return clockTimeGet(id, precision, at);
      const ms = id === 0 ? this.#clock.wall() : this.#clock.monotonic();
      const view = new DataView((this.#memory as WebAssembly.Memory).buffer);
      view.setBigUint64(at >>> 0, BigInt(Math.round(ms * 1e6)), true);
      return 0;
    };
    // Growing the heap past the task's ram fails, and Python raises MemoryError.
    const resize = env.emscripten_resize_heap as (bytes: number) => number;
    this.#resize = resize;
    env.emscripten_resize_heap = (bytes: number) =>
      bytes >>> 0 > this.#ramLimit ? 0 : resize(bytes);
    // Pyodide's own fallback for the helper module it would otherwise compile from bytes at run
    // time, which a realm without code generation refuses.
    const marker = Symbol("error");
    env.Jsv_GetError_import = () => marker;
    env.JsvError_Check = (value: unknown) => value === marker;
    imports.capsule = { refuel: (counter: bigint) => this.#refuel(counter) };
  }

  #resize: ((bytes: number) => number) | undefined;

  /** Grows the heap to at least `bytes` through emscripten, whose views then follow. */
  grow(bytes: number): boolean {
    return this.#resize !== undefined && this.#resize(bytes) !== 0;
  }

  attach(instance: WebAssembly.Instance) {
    this.#memory = instance.exports.memory as WebAssembly.Memory;
    this.#fuel = instance.exports.fuel as WebAssembly.Global;
    this.#tick = instance.exports.tick as WebAssembly.Global;
    this.#tick.value = 0n;
    this.#fuel.value = UNMETERED;
  }

  start(job: PythonJob) {
    if (this.#fuel === undefined) throw new Error("the engine has no fuel counter");
    this.#ramLimit = job.ramBytes;
    this.#budget = BigInt(job.fuel);
    this.#fuel.value = this.#budget;
    this.#tickBelow(this.#budget);
    this.#clock = new TaskClock(() => this.#budget - (this.#fuel?.value as bigint));
  }

  /**
   * The runner marks where the task's own work begins and ends (before its file runs, once its
   * outcome is written): what the interpreter does around that (the event loop settling the
   * runner's coroutine) differs by host and is not reported. The counter keeps counting against
   * the budget throughout, so a guest that marks an end early only under-reports itself.
   */
  markTaskStart() {
    if (this.#window.start === null) this.#window.start = this.#counter();
  }

  markTaskEnd() {
    if (this.#window.start !== null && this.#window.end === null) {
      this.#window.end = this.#counter();
    }
  }

  #counter(): bigint {
    return (this.#fuel as WebAssembly.Global).value as bigint;
  }

  /** Ends metering; returns the fuel the task's own work spent. */
  stop(): number {
    const fuel = this.#fuel as WebAssembly.Global;
    const { start = null, end = null } = this.#window;
    const spent = Number((start ?? this.#budget) - (end ?? (fuel.value as bigint)));
    fuel.value = UNMETERED;
    (this.#tick as WebAssembly.Global).value = 0n;
    this.#budget = 0n;
    this.#clock = undefined;
    this.#window = { start: null, end: null };
    return spent;
  }

  #window: { start: bigint | null; end: bigint | null } = { start: null, end: null };

  /** time.sleep: waits on the host, spends no fuel, and moves the task's clock by `seconds`. */
  sleep(seconds: number) {
    const check = this.#bridge.endIfOrphaned;
    const ms = this.#advanceForSleep(seconds);
    if (check === undefined) return waitMilliseconds(ms);
    for (let left = ms; left > 0; left -= CHECK_IN_MS) {
      check();
      waitMilliseconds(Math.min(left, CHECK_IN_MS));
    }
  }

  /** time.sleep where the host cannot block: the task's stack waits on this promise. */
  sleepAsync(seconds: number): Promise<void> {
    const ms = this.#advanceForSleep(seconds);
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  #advanceForSleep(seconds: number): number {
    const ms = Math.max(0, seconds * 1000);
    this.#clock?.advanceBy(ms);
    return ms;
  }

  /** A timer the task set for monotonic time `seconds` fired: its clock is there now. */
  advanceClock(seconds: number) {
    this.#clock?.advanceTo(seconds * 1000);
  }

  /**
   * Called when the counter drops below `tick`: every CHECK_IN_FUEL where the host asks to check
   * in, and when the budget is spent. The counter is returned as it came, so the fuel a task
   * spends does not depend on the checks.
   */
  #refuel(counter: bigint): bigint {
    if (this.#budget === 0n) return counter;
    if (counter < 0n) return this.#bridge.fuelExhausted(this.#budget);
    this.#bridge.endIfOrphaned?.();
    this.#tickBelow(counter);
    return counter;
  }

  #tickBelow(counter: bigint) {
    if (this.#tick === undefined || this.#bridge.endIfOrphaned === undefined) return;
    this.#tick.value = counter > CHECK_IN_FUEL ? counter - CHECK_IN_FUEL : 0n;
  }
}

/**
 * The time a task sees: its work (fuel) plus the time it waited (sleeps, timers), from the wall
 * time when it started. Two runs of a task that reads the clock take the same steps and spend
 * the same fuel, whatever the machine's speed or load.
 */
class TaskClock {
  readonly #spent: () => bigint;
  readonly #startWall = Date.now();
  /** Milliseconds the task waited. */
  #waited = 0;

  constructor(spent: () => bigint) {
    this.#spent = spent;
  }

  /** Milliseconds since the task started; starts at 1 s so no clock reads zero. */
  monotonic(): number {
    return 1000 + Number(this.#spent()) / FUEL_PER_CLOCK_MS + this.#waited;
  }

  wall(): number {
    return this.#startWall + this.monotonic() - 1000;
  }

  advanceBy(ms: number) {
    this.#waited += ms;
  }

  advanceTo(monotonicMs: number) {
    this.#waited += Math.max(0, monotonicMs - this.monotonic());
  }
}

/** Blocks the sandbox's thread; with shared memory it sleeps, else it spins outside the engine. */
function waitMilliseconds(ms: number) {
  if (ms <= 0) return;
  if (typeof SharedArrayBuffer === "function") {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    return;
  }
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // Spinning in JavaScript spends no fuel: only the engine's own code is metered.
  }
}
