import type { QuickJSHandle } from "quickjs-emscripten-core";
import { formatBytes } from "../config/units.ts";
import type { Engine } from "../engine/engine.ts";
import type { Sandbox } from "../engine/sandbox.ts";
import {
  asCapsuleError,
  CancelledError,
  CapsuleError,
  InternalError,
  MemoryExceededError,
  PermissionDeniedError,
  TaskError,
  TimeoutError,
} from "../errors.ts";
import {
  type GuestHost,
  type LogLevel,
  type PreparedSandbox,
  reserveFor,
  toArrayBuffer,
} from "./prepared.ts";

/**
 * What a sandbox used after its attempt ended throws: one error for all of them, since making an
 * Error (its stack trace) on every attempt's end showed in profiles, and it is never expected.
 */
const SANDBOX_ENDED = new InternalError("sandbox used after its attempt ended");

export type { LogLevel };

/** What an attempt needs from the world outside its sandbox; the runtime provides it. */
export interface AttemptServices {
  /** Runs a sub-task; resolves to its envelope as JSON. Never rejects for the task's own failure. */
  callTask(name: string, argsJson: string, signal: AbortSignal): Promise<string>;
  log(level: LogLevel, text: string): void;
}

/** The task's capabilities for one attempt (files, network, environment), already policy-bound. */
export interface AttemptCapabilities {
  fsCall(op: string, argsJson: string, data: Uint8Array | undefined): string | Uint8Array;
  fetch(
    requestJson: string,
    body: Uint8Array | undefined,
    signal: AbortSignal,
  ): Promise<{ meta: string; body: Uint8Array }>;
  processInfo(): string;
  /** The attempt ended: release what it held (open files). */
  close(): void;
}

/** An attempt with no capabilities at all: every file and network call is refused. */
export const NO_CAPABILITIES: AttemptCapabilities = {
  fsCall: (op) =>
    JSON.stringify({
      error: {
        code: "EACCES",
        syscall: op,
        message: `EACCES: permission denied, ${op} (the task has no allowedFiles)`,
      },
    }),
  fetch: async (requestJson) => {
    const { url } = JSON.parse(requestJson) as { url: string };
    throw new Error(`network access denied: the task has no allowedHosts (requested ${url})`);
  },
  processInfo: () => JSON.stringify({ env: {}, cwd: "/" }),
  close: () => {},
};

export interface AttemptLimits {
  fuel: number;
  ramBytes: number;
  timeoutMs: number | null;
  maxResultBytes: number;
  maxLogBytes: number;
}

export type AttemptMode =
  /** Compile the module without running it; the value is the fuel compiling took. */
  | { kind: "measure-compile" }
  | { kind: "discover" }
  | { kind: "run"; taskName: string; argsJson: string }
  /**
   * Like run, but first evaluates `script` as a global script (top-level await allowed) and
   * leaves the promise of its completion record, `{ value }`, at `globalThis[CELL_SLOT]` for the
   * task to await.
   */
  | { kind: "cell"; taskName: string; argsJson: string; script: string };

/** Where a cell's completion waits for the task that awaits it. */
export const CELL_SLOT = "__capsule_cell";

/** The name a cell has in stack traces. */
export const CELL_FILENAME = "<cell>";

/** JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_ASYNC: a global script that may await at its top level. */
const ASYNC_GLOBAL_SCRIPT = 1 << 7;

/**
 * State one attempt hands to the next (a session): restored into the fresh sandbox before any
 * guest code runs, captured from it once the attempt succeeded.
 */
export interface AttemptState {
  /** Makes the prepared sandbox hold the state; throws a CapsuleError when it cannot. */
  restore(prepared: PreparedSandbox): void;
  /** The attempt succeeded; called while no guest or engine code runs. */
  capture(sandbox: Sandbox): void;
}

export interface AttemptRequest {
  engine: Engine;
  code: string;
  filename: string;
  mode: AttemptMode;
  limits: AttemptLimits;
  services: AttemptServices;
  /** Aborting ends the attempt (the caller gave up, or a parent task ended). */
  signal?: AbortSignal;
  /**
   * Polled while the guest runs (every ~1 ms of guest work): true ends the attempt as cancelled.
   * For callers whose abort cannot arrive as an event while the guest keeps the thread busy (a
   * flag in shared memory set by another thread).
   */
  cancelled?: () => boolean;
  /**
   * Sandboxes this thread keeps prepared ahead of need (0: prepare on demand, and keep no ended
   * sandbox's memory for the next one).
   */
  preparedSandboxes?: number;
  /** Files, network and environment for this attempt; none when left out. */
  capabilities?: AttemptCapabilities;
  /** A session's state: the sandbox starts from it, and a success hands its own back. */
  state?: AttemptState;
}

export type AttemptOutcome =
  | { ok: true; value: unknown; fuelConsumed: number; ramUsed: number }
  | { ok: false; error: CapsuleError; fuelConsumed: number; ramUsed: number };

interface GuestFailure {
  name?: string;
  message?: string;
  stack?: string;
  denied?: boolean;
}

/**
 * One attempt: a fresh sandbox, the prelude, the task's module, then either the list of tasks it
 * declares (discover) or one task's result (run). The sandbox is dropped afterwards, whatever
 * happened.
 */
export async function runAttempt(request: AttemptRequest): Promise<AttemptOutcome> {
  const attempt = new Attempt(request);
  return attempt.run();
}

/**
 * Fuel a guest may burn per millisecond of its timeout before it is stopped whatever the clock
 * says: about 4x what this engine runs per ms on a current server core (~24M). Workers do not
 * advance Date.now() during synchronous code, so a busy loop there would otherwise only ever meet
 * its fuel limit; with this bound a 300 ms timeout holds within ~1.2 s of guest work.
 */
export const MAX_FUEL_PER_TIMEOUT_MS = 100_000_000;

class Attempt {
  readonly #request: AttemptRequest;
  #sandbox: Sandbox | null = null;
  readonly #deadline: number;
  /** The timeout measured in work, for clocks that stand still (see MAX_FUEL_PER_TIMEOUT_MS). */
  readonly #workDeadline: number;
  #failure: CapsuleError | null = null;
  #interrupted = false;
  readonly #queue: (() => void)[] = [];
  #wake: (() => void) | null = null;
  #pendingHostCalls = 0;
  readonly #timers = new Map<number, ReturnType<typeof setTimeout>>();
  /**
   * One per sub-task call in flight, aborted when the attempt ends: a signal of its own for each
   * call, so that many calls at once do not pile listeners onto one signal.
   */
  readonly #hostCalls = new Set<AbortController>();
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #logBytes = 0;
  #logTruncated = false;
  readonly #started = performance.now();

  constructor(request: AttemptRequest) {
    this.#request = request;
    const { timeoutMs } = request.limits;
    this.#deadline = timeoutMs === null ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    this.#workDeadline =
      timeoutMs === null ? Number.POSITIVE_INFINITY : timeoutMs * MAX_FUEL_PER_TIMEOUT_MS;
  }

  #pastDeadline(): boolean {
    if (this.#workDeadline === Number.POSITIVE_INFINITY) return false;
    return (
      Date.now() > this.#deadline || (this.#sandbox?.fuelConsumedNow ?? 0) > this.#workDeadline
    );
  }

  async run(): Promise<AttemptOutcome> {
    const { signal, limits } = this.#request;
    const onAbort = () => this.#fail(CancelledError.at());
    signal?.addEventListener("abort", onAbort, { once: true });
    if (limits.timeoutMs !== null) {
      this.#deadlineTimer = setTimeout(
        () => this.#fail(new TimeoutError(`timed out after ${limits.timeoutMs} ms`)),
        limits.timeoutMs,
      );
    }
    try {
      const value = await this.#execute();
      return { ok: true, value, ...this.#usage() };
    } catch (error) {
      return { ok: false, error: this.#classify(error), ...this.#usage() };
    } finally {
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(this.#deadlineTimer);
      for (const timer of this.#timers.values()) clearTimeout(timer);
      this.#timers.clear();
      for (const call of this.#hostCalls) call.abort();
      this.#hostCalls.clear();
      for (const controller of this.#fetches.values()) controller.abort();
      this.#fetches.clear();
      this.#capabilities.close();
      // A host that keeps sandboxes ready has room for their memories too; one that prepares
      // none (Workers, whose isolate holds only its tasks' budget) gives them back.
      this.#sandbox?.retire(SANDBOX_ENDED, (this.#request.preparedSandboxes ?? 0) > 0);
      this.#sandbox = null;
    }
  }

  #usage() {
    return {
      fuelConsumed: this.#sandbox?.fuelConsumed ?? 0,
      ramUsed: this.#sandbox?.memoryBytes ?? 0,
    };
  }

  async #execute(): Promise<unknown> {
    const { engine, limits, code, filename, mode } = this.#request;
    if (this.#request.signal?.aborted) throw CancelledError.at();
    const prepared = await reserveFor(engine, this.#request.preparedSandboxes ?? 0).take(
      limits.ramBytes,
    );
    const { sandbox, control } = prepared;
    // The memory the runtime's own set-up holds, before any state is restored over it.
    const setUpBytes = sandbox.memoryBytes;
    this.#request.state?.restore(prepared);
    this.#sandbox = sandbox;
    this.#control = control;
    prepared.setTenant(this.#guestHost(sandbox));
    sandbox.lease({
      fuel: limits.fuel,
      clock: { now: () => Date.now() },
      shouldInterrupt: () => {
        if (this.#failure === null && this.#request.cancelled?.()) {
          this.#failure = CancelledError.at();
        }
        if (this.#failure !== null || this.#pastDeadline()) {
          this.#interrupted = true;
          return true;
        }
        return false;
      },
    });
    const { context, runtime } = sandbox;
    // The engine's own allocator cap, below the hard linear-memory cap, gives the guest a clean
    // "out of memory" error in most cases instead of a failed grow.
    runtime.setMemoryLimit(Math.max(limits.ramBytes - setUpBytes, 512 * 1024));

    try {
      // Unwrapped metered, here and below: describing a thrown value reads its properties, which
      // may be the task's getters.
      const moduleValue = sandbox.metered(() => {
        const evaluated = context.evalCode(code, filename, {
          type: "module",
          compileOnly: mode.kind === "measure-compile",
        });
        // Read here, not through unwrapResult, which renames its error after the guest's (a
        // SyntaxError the engine finds while compiling) and so hides that the guest threw it.
        if (evaluated.error) throw this.#guestThrown(evaluated.error);
        return evaluated.value;
      });
      if (mode.kind === "measure-compile") {
        moduleValue.dispose();
        return sandbox.fuelConsumed;
      }
      if (context.typeof(moduleValue) === "object" && isPromise(sandbox, moduleValue)) {
        (await this.#settle(moduleValue)).dispose();
      }
      moduleValue.dispose();
    } catch (error) {
      // An import the sandbox cannot resolve fails the module before any of its code runs.
      throw prepared.importFailure() ?? error;
    }

    if (mode.kind === "discover") {
      const listed = sandbox.metered(() =>
        context.unwrapResult(context.callMethod(control, "listTasks", [])),
      );
      try {
        return JSON.parse(guestString(sandbox, listed));
      } catch {
        throw new TaskError(
          "the task file's list of tasks was malformed: its code replaced or changed a built-in the runtime relies on",
        );
      }
    }

    if (mode.kind === "cell") this.#evaluateCell(sandbox, mode.script);

    const promise = sandbox.metered(() =>
      context.unwrapResult(
        context.callMethod(control, "start", [
          context.newString(mode.taskName),
          context.newString(mode.argsJson),
        ]),
      ),
    );
    const settled = await this.#settle(promise);
    const text = guestString(sandbox, settled);
    if (text.length > limits.maxResultBytes) {
      throw new TaskError(
        `the task's result is ${text.length} characters of JSON, over the ${limits.maxResultBytes} limit`,
      );
    }
    // The outcome wraps the result in one object: its own level is not the result's.
    if (jsonDepthOver(text, MAX_RESULT_DEPTH + 1)) {
      throw new TaskError(`the task's result is nested more than ${MAX_RESULT_DEPTH} levels deep`);
    }
    const outcome = parseOutcome(text);
    if (!outcome.ok) throw guestFailureToError(outcome.error);
    this.#request.state?.capture(sandbox);
    return outcome.value;
  }

  /**
   * Runs a cell as a global script and leaves the promise of its completion record for the task,
   * which awaits it: a rejection then fails the task as any task's exception does.
   */
  #evaluateCell(sandbox: Sandbox, script: string): void {
    const { context } = sandbox;
    const completion = sandbox.metered(() => {
      const evaluated = context.evalCode(
        script,
        CELL_FILENAME,
        ASYNC_GLOBAL_SCRIPT as Parameters<typeof context.evalCode>[2],
      );
      if (evaluated.error) throw this.#guestThrown(evaluated.error);
      return evaluated.value;
    });
    // Defined, not set: setting would run any setter the cell put on the global object.
    context.defineProp(context.global, CELL_SLOT, {
      value: completion,
      configurable: true,
      enumerable: false,
    });
    completion.dispose();
  }

  #guestHost(sandbox: Sandbox): GuestHost {
    return {
      log: (level, text) => this.#log(level, text),
      monotonic: () => performance.now() - this.#started,
      setTimer: (id, delay) => this.#setTimer(id, delay, sandbox),
      clearTimer: (id) => {
        clearTimeout(this.#timers.get(id));
        this.#timers.delete(id);
      },
      callTask: (name, argsJson) => this.#callTask(sandbox, name, argsJson),
      fsCall: (op, argsJson, data) => this.#capabilities.fsCall(op, argsJson, data),
      fetch: (requestJson, body) => this.#fetch(sandbox, requestJson, body),
      abortFetch: (id) => this.#fetches.get(id)?.abort(),
      processInfo: () => this.#capabilities.processInfo(),
    };
  }

  #log(level: LogLevel, text: string) {
    if (this.#logTruncated) return;
    this.#logBytes += text.length + 1;
    if (this.#logBytes > this.#request.limits.maxLogBytes) {
      this.#logTruncated = true;
      this.#request.services.log(
        "warn",
        `[capsule] console output truncated after ${this.#request.limits.maxLogBytes} characters`,
      );
      return;
    }
    this.#request.services.log(level, text);
  }

  #setTimer(id: number, delay: number, sandbox: Sandbox) {
    clearTimeout(this.#timers.get(id));
    const ms = Number.isFinite(delay) ? Math.min(Math.max(0, delay), 2 ** 31 - 1) : 0;
    const timer = setTimeout(() => {
      this.#timers.delete(id);
      this.#post(() => {
        this.#fireTimer(sandbox, id);
      });
    }, ms);
    this.#timers.set(id, timer);
  }

  #fireTimer(sandbox: Sandbox, id: number) {
    const { context } = sandbox;
    const fire = this.#controlFunction(sandbox, "fireTimer");
    const idHandle = context.newNumber(id);
    try {
      sandbox.metered(() =>
        context.unwrapResult(context.callFunction(fire, context.undefined, idHandle)).dispose(),
      );
    } finally {
      idHandle.dispose();
      fire.dispose();
    }
  }

  #control: QuickJSHandle | null = null;
  #controlFunction(sandbox: Sandbox, name: string): QuickJSHandle {
    if (this.#control === null) throw new InternalError("prelude control object missing");
    return sandbox.context.getProp(this.#control, name);
  }

  #callTask(sandbox: Sandbox, name: string, argsJson: string): QuickJSHandle {
    const { context } = sandbox;
    const deferred = context.newPromise();
    this.#pendingHostCalls++;
    const call = new AbortController();
    this.#hostCalls.add(call);
    const settled = this.#request.services.callTask(name, argsJson, call.signal);
    settled.finally(() => this.#hostCalls.delete(call)).catch(() => {});
    settled.then(
      (envelopeJson) =>
        this.#post(() => {
          this.#pendingHostCalls--;
          const value = sandbox.parseHostJson(envelopeJson);
          sandbox.metered(() => deferred.resolve(value));
          value.dispose();
        }),
      (error: unknown) =>
        this.#post(() => {
          this.#pendingHostCalls--;
          // Made metered: setting its message runs any setter the task put on Error.prototype.
          sandbox.metered(() => {
            const value = context.newError(error instanceof Error ? error.message : String(error));
            deferred.reject(value);
            value.dispose();
          });
        }),
    );
    return deferred.handle;
  }

  get #capabilities(): AttemptCapabilities {
    return this.#request.capabilities ?? NO_CAPABILITIES;
  }

  readonly #fetches = new Map<number, AbortController>();

  #fetch(sandbox: Sandbox, requestJson: string, body: Uint8Array | undefined): QuickJSHandle {
    const { context } = sandbox;
    const deferred = context.newPromise();
    const { id } = JSON.parse(requestJson) as { id: number };
    const controller = new AbortController();
    this.#fetches.set(id, controller);
    this.#pendingHostCalls++;
    const settle = () => {
      this.#pendingHostCalls--;
      this.#fetches.delete(id);
    };
    this.#capabilities.fetch(requestJson, body, controller.signal).then(
      (response) =>
        this.#post(() => {
          settle();
          const value = context.newObject();
          let meta: QuickJSHandle | undefined;
          let bytes: QuickJSHandle | undefined;
          try {
            meta = context.newString(response.meta);
            bytes = context.newArrayBuffer(toArrayBuffer(response.body));
          } catch (error) {
            // The body does not fit in what is left of the task's memory: a fetch failure the
            // task can catch, not a fault of the runtime.
            if (!(error instanceof MemoryExceededError)) throw error;
            value.dispose();
            meta?.dispose();
            const message = `the response body (${response.body.length} bytes) does not fit in what is left of the task's ram (${formatBytes(this.#request.limits.ramBytes)})`;
            // Made metered: setting its message runs any setter the task put on Error.prototype.
            sandbox.metered(() => {
              const failure = context.newError(message);
              deferred.reject(failure);
              failure.dispose();
            });
            return;
          }
          // Defined, not set: setting would run any setter the task put on Object.prototype.
          context.defineProp(value, "meta", { value: meta, configurable: true, enumerable: true });
          context.defineProp(value, "body", { value: bytes, configurable: true, enumerable: true });
          meta.dispose();
          bytes.dispose();
          sandbox.metered(() => deferred.resolve(value));
          value.dispose();
        }),
      (error: unknown) =>
        this.#post(() => {
          settle();
          // Made metered: setting its properties runs any setter the task put on Error.prototype.
          sandbox.metered(() => {
            const value = context.newError(error instanceof Error ? error.message : String(error));
            // A refusal by policy (host not allowed, private address): the guest's fetch marks
            // its TypeError, so an uncaught one ends the task as permission_denied.
            if (isDenial(error)) context.setProp(value, "denied", context.true);
            deferred.reject(value);
            value.dispose();
          });
        }),
    );
    return deferred.handle;
  }

  #post(job: () => void) {
    this.#queue.push(job);
    this.#wake?.();
  }

  #fail(error: CapsuleError) {
    this.#failure ??= error;
    this.#wake?.();
  }

  /** Drives the sandbox's event loop until `promise` settles, the deadline passes, or nothing is left. */
  async #settle(promise: QuickJSHandle): Promise<QuickJSHandle> {
    const sandbox = this.#sandbox;
    if (sandbox === null) throw new InternalError("no sandbox");
    const { context, runtime } = sandbox;
    for (;;) {
      // One job per metered call: the fuel a task spends must not depend on how host events
      // happened to batch up between pumps, only on which jobs ran.
      while (runtime.hasPendingJob()) {
        const jobs = sandbox.metered(() => runtime.executePendingJobs(1));
        if (jobs.error) throw this.#guestThrown(jobs.error);
      }
      if (this.#failure) throw this.#failure;
      const state = context.getPromiseState(promise);
      if (state.type === "fulfilled") return state.value;
      if (state.type === "rejected") throw this.#guestThrown(state.error);
      await this.#nextEvent();
    }
  }

  async #nextEvent(): Promise<void> {
    while (this.#queue.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#pendingHostCalls === 0 && this.#timers.size === 0) {
        throw new TaskError(
          "the task's promise never settled: it awaits something that can never finish (no timers or host calls are pending)",
        );
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = null;
    }
    if (this.#failure) throw this.#failure;
    for (const job of this.#queue.splice(0)) job();
  }

  #guestThrown(handle: QuickJSHandle): Error {
    const sandbox = this.#sandbox;
    if (sandbox === null) return new InternalError("no sandbox");
    let dumped: GuestFailure | string;
    try {
      // Metered: describing the value reads its properties, which may be the task's getters.
      dumped = sandbox.metered(() => sandbox.context.dump(handle)) as GuestFailure | string;
    } catch (error) {
      return error instanceof Error ? error : new InternalError(String(error));
    } finally {
      if (handle.alive) handle.dispose();
    }
    const failure: GuestFailure =
      typeof dumped === "object" && dumped !== null ? dumped : { message: String(dumped) };
    return guestFailureToError(failure);
  }

  #classify(error: unknown): CapsuleError {
    if (this.#interrupted && this.#failure === null && this.#pastDeadline()) {
      this.#failure = new TimeoutError(`timed out after ${this.#request.limits.timeoutMs} ms`);
    }
    if (this.#failure) return this.#failure;
    if (error instanceof CapsuleError) return error;
    if (error instanceof Error && error.name === "QuickJSUnwrapError") {
      const cause = (error as { cause?: unknown }).cause;
      return guestFailureToError(
        typeof cause === "object" && cause !== null
          ? (cause as GuestFailure)
          : { message: String(cause) },
      );
    }
    return asCapsuleError(error);
  }
}

function isDenial(error: unknown): boolean {
  return (
    error instanceof PermissionDeniedError ||
    (typeof error === "object" && error !== null && (error as { denied?: unknown }).denied === true)
  );
}

function isPromise(sandbox: Sandbox, handle: QuickJSHandle): boolean {
  const state = sandbox.context.getPromiseState(handle);
  // getPromiseState reports non-promises as already fulfilled with the value itself.
  return !(state.type === "fulfilled" && state.notAPromise);
}

/**
 * The guest's reply to `start`. It comes from the runtime's own guest code, but that code shares
 * the realm with the task, so a task that tampers with built-ins can bend it: a reply of the wrong
 * shape is the task's failure, not the runtime's.
 */
/**
 * A reply of the runtime's guest code, which should be a string. The task can bend that code (it
 * shares the realm), and reading any other value would run the task's toString uncharged, so
 * anything else is a malformed reply.
 */
function guestString(sandbox: Sandbox, handle: QuickJSHandle): string {
  if (sandbox.context.typeof(handle) !== "string") {
    throw new TaskError(
      "the task's reply to the runtime was malformed: the task replaced or changed a built-in the runtime relies on",
    );
  }
  return sandbox.context.getString(handle);
}

/**
 * How deeply a result may nest. A host hands a result on by structured clone (between threads)
 * and JSON.stringify (to print it), both recursive in V8, which gave up at 2,100-3,400 levels on
 * Node 20-26; a result 20,000 levels deep came back from the engine on Node 22 and later once
 * the engine's code was optimised (its frames are smaller), and failed the host as an
 * internal_error where Node 20 failed it as the task's stack overflow.
 */
const MAX_RESULT_DEPTH = 1000;

/** Whether JSON text nests arrays and objects more than `limit` deep (strings skipped). */
function jsonDepthOver(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      // A backslash escapes the next character; a quote ends the string.
      if (code === 92) i++;
      else if (code === 34) inString = false;
    } else if (code === 34) {
      inString = true;
    } else if (code === 91 || code === 123) {
      if (++depth > limit) return true;
    } else if (code === 93 || code === 125) {
      depth--;
    }
  }
  return false;
}

function parseOutcome(
  text: string,
): { ok: true; value: unknown } | { ok: false; error: GuestFailure } {
  let outcome: unknown;
  try {
    outcome = JSON.parse(text);
  } catch {
    outcome = undefined;
  }
  const shape = outcome as { ok?: unknown; value?: unknown; error?: unknown } | undefined;
  if (shape?.ok === true && "value" in shape) return { ok: true, value: shape.value };
  const error = shape?.error as GuestFailure | undefined;
  if (
    shape?.ok === false &&
    typeof error === "object" &&
    error !== null &&
    ["name", "message", "stack"].every(
      (key) =>
        error[key as keyof GuestFailure] === undefined ||
        typeof error[key as keyof GuestFailure] === "string",
    )
  ) {
    return { ok: false, error };
  }
  throw new TaskError(
    "the task's reply to the runtime was malformed: the task replaced or changed a built-in the runtime relies on",
  );
}

function guestFailureToError(failure: GuestFailure): CapsuleError {
  const name = failure.name ?? "Error";
  const message = failure.message ?? "";
  if (failure.denied === true) return new PermissionDeniedError(`${name}: ${message}`);
  if (
    (name === "InternalError" || name === "MemoryExceededError") &&
    /out of memory/i.test(message)
  ) {
    return new MemoryExceededError("out of memory: the task exceeded its ram limit");
  }
  const text = `${name}: ${message}`;
  const stack = failure.stack?.trim();
  if (!stack) return new TaskError(text);
  // Some stacks already open with "Name: message"; print that line once.
  return new TaskError(stack.startsWith(text) ? stack : `${text}\n${stack}`);
}
