import { type LimitDefaults, parseTaskOptions, type TaskLimits } from "../config/options.ts";
import { FUEL_PER_CLOCK_MS } from "../engine/fuel-clock.ts";
import {
  asCapsuleError,
  CompileError,
  ConfigError,
  FuelExhaustedError,
  MemoryExceededError,
  PermissionDeniedError,
  TaskError,
  TimeoutError,
} from "../errors.ts";
import { parseHostLiteral } from "../policy/addresses.ts";
import { limitFailure, NETWORK_DEFAULTS, refuseDestination } from "../policy/requests.ts";
import type { Envelope } from "../runtime/envelope.ts";
import { envelopeForError } from "../runtime/envelope.ts";
import type { LifecycleEvent, LifecycleListener } from "../runtime/events.ts";
import { createRequestLog, type RequestLog } from "../runtime/request-log.ts";
import { parseRunAnswer } from "./answer.ts";
import { COMPONENT_RUNTIME_NAMES } from "./meter.ts";

/**
 * Running a transpiled Capsule component, on any host: each attempt of each task gets a fresh
 * instance of the glue jco wrote, its engine core module (metered by meter.ts) with its own
 * memory capped at `ram` and its own fuel, retries as our tasks have them, and `schedule-task`
 * running a sub-task synchronously in a fresh instance inside its parent's import call, under
 * the run's grants. What differs per host (the WASI imports: files, HTTP, clocks) comes from
 * the host's `imports` function.
 */

/** Deepest chain of sub-tasks a component may start (each holds an instance on the stack). */
export const MAX_COMPONENT_DEPTH = 8;
/** Most tasks (main, sub-tasks and retries) one run may start. */
export const MAX_COMPONENT_TASKS = 64;
/** Fuel between two looks at the clock. */
const DEADLINE_SLICE = 10_000_000n;
export const PAGE = 65536;
export const DEFAULT_COMPONENT_RAM_BYTES = 256 * 1024 * 1024;
/** What the counter starts at while the glue sets the instance up, uncharged. */
const SETUP_FUEL = 1n << 62n;

/** The `instantiate` export of jco's glue (`--instantiation sync`). */
export type GlueInstantiate = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: Record<string, unknown>,
  instantiateCore: (
    module: WebAssembly.Module,
    imports?: WebAssembly.Imports,
  ) => WebAssembly.Instance,
) => Record<string, unknown>;

/** A component ready to instantiate: its glue and compiled core modules. */
export interface ComponentProgram {
  instantiate: GlueInstantiate;
  modules: Map<string, WebAssembly.Module>;
  engineModule: WebAssembly.Module;
  /** The engine memory's declared minimum, in pages: the floor of `ram`. */
  memoryMinPages: number;
}

/** What one attempt's imports are built from. */
export interface AttemptContext<G> {
  limits: TaskLimits;
  grants: G;
  hostRequests: RequestLog;
  /** The attempt's deadline (Date.now() time), or null. */
  deadline(): number | null;
  /** `capsule:host/api`, answered by the runtime (sub-tasks) and the policy (http-request). */
  api: Record<string, unknown>;
  /** The fuel the attempt has spent so far: what its clocks read (clock.ts `meteredClocks`). */
  fuelSpent(): number;
}

/** What a host supplies to run a component. */
export interface ComponentHost<G> {
  /** A task's grants from its limits (the run's files); throws a ConfigError for a bad one. */
  grants(limits: TaskLimits): G;
  /** The component's imports for one attempt, every capability behind our policy. */
  imports(context: AttemptContext<G>): Record<string, unknown>;
  /**
   * Holds a sub-task's ram in the host's memory budget (what all its sandboxes may hold) until
   * the returned function is called, or throws the CapsuleError that refuses it. A sub-task runs
   * inside its parent's import call, so it cannot wait in line; the caller holds the entry
   * task's ram before the run starts. A page's sandbox asks the page, which answers later.
   */
  holdMemory?(
    ramBytes: number,
    task: { name: string; depth: number },
  ): (() => void) | Promise<() => void>;
}

export interface ComponentRun<G> {
  program: ComponentProgram;
  host: ComponentHost<G>;
  defaults: LimitDefaults;
  /** What the caller granted the run; every task of the run gets these and no more. */
  grants: Pick<TaskLimits, "allowedFiles" | "allowedHosts" | "envVariables">;
  tasksStarted: number;
  /** HTTP requests the run's tasks have made (NETWORK_DEFAULTS.maxRequests at most). */
  requestsMade: number;
  /** Lifecycle events of the run's tasks, as our own tasks report them (runtime/events.ts). */
  onEvent?: LifecycleListener;
}

/** Where a sub-task was called from: its parent task run, attempt, and the call's place. */
interface Caller {
  id: string;
  attempt: number;
  index: number;
}

/** Starts a run's bookkeeping; `limits` are the entry task's, whose grants the run keeps. */
export function componentRun<G>(
  program: ComponentProgram,
  host: ComponentHost<G>,
  defaults: LimitDefaults,
  limits: TaskLimits,
  onEvent?: LifecycleListener,
): ComponentRun<G> {
  return { program, host, defaults, grants: limits, tasksStarted: 0, requestsMade: 0, onEvent };
}

/**
 * A task run's id: 128 random bits as a UUID. `crypto.randomUUID` needs a secure context, which a
 * page's component sandbox (an opaque origin) is not; `getRandomValues` works everywhere.
 */
function newTaskRunId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Reports an event; a listener that throws does not stop the run. */
function emit<G>(run: ComponentRun<G>, event: LifecycleEvent): void {
  try {
    run.onEvent?.(event);
  } catch {
    // The listener's failure is its own.
  }
}

function endEvent(envelope: Envelope): LifecycleEvent["type"] {
  if (envelope.success) return "completed";
  return envelope.error?.error_type === "timeout" ? "timed_out" : "failed";
}

/** The defaults a component's limits are read with: its memory's floor is the least `ram`. */
export function componentDefaults(program: Pick<ComponentProgram, "memoryMinPages">) {
  return {
    ramBytes: DEFAULT_COMPONENT_RAM_BYTES,
    minRamBytes: program.memoryMinPages * PAGE,
  } satisfies LimitDefaults;
}

/** One task with its retries; synchronous, since a sub-task runs inside its parent's import call. */
export function runComponentTask<G>(
  run: ComponentRun<G>,
  limits: TaskLimits,
  argsJson: string,
  depth: number,
  parentDeadline: number | null,
  caller?: Caller,
): Envelope;
/**
 * With glue whose `run` export returns a promise (jco's JSPI glue, which a page uses so a host
 * call can wait), each attempt and the task resolve later: the same steps, awaited.
 */
export function runComponentTask<G>(
  run: ComponentRun<G>,
  limits: TaskLimits,
  argsJson: string,
  depth: number,
  parentDeadline: number | null,
  caller?: Caller,
): Envelope | Promise<Envelope>;
export function runComponentTask<G>(
  run: ComponentRun<G>,
  limits: TaskLimits,
  argsJson: string,
  depth: number,
  parentDeadline: number | null,
  caller?: Caller,
): Envelope | Promise<Envelope> {
  const started = performance.now();
  const id = newTaskRunId();
  const event = (
    type: LifecycleEvent["type"],
    attempt: number,
    more: Partial<LifecycleEvent> = {},
  ): LifecycleEvent => ({
    type,
    task: limits.name,
    id,
    parentId: caller?.id ?? null,
    depth,
    attempt,
    at: Date.now(),
    ...more,
  });
  emit(
    run,
    event("created", 1, caller ? { call: { attempt: caller.attempt, index: caller.index } } : {}),
  );
  const refuse = (error: unknown): Envelope => {
    const refused = envelopeForError(limits.name, error, Math.round(performance.now() - started));
    emit(
      run,
      event("failed", 1, { duration_ms: 0, fuel_consumed: 0, error: refused.error ?? undefined }),
    );
    return refused;
  };
  let grants: G;
  let held: (() => void) | Promise<() => void> = () => {};
  try {
    grants = run.host.grants(limits);
    if (depth > 0 && run.host.holdMemory) {
      held = run.host.holdMemory(limits.ramBytes, { name: limits.name, depth });
    }
  } catch (error) {
    return refuse(error);
  }
  let release = () => {};
  const settle = (last: Envelope, attempt: number): Envelope | Promise<Envelope> => {
    last.execution.retries = attempt;
    const type = last.error?.error_type;
    const final =
      last.success ||
      attempt >= limits.maxRetries ||
      type === "config_error" ||
      type === "compile_error" ||
      type === "internal_error";
    if (!final) {
      emit(run, event("retrying", attempt + 2, { error: last.error ?? undefined }));
      return from(attempt + 1);
    }
    release();
    last.execution.duration_ms = Math.round(performance.now() - started);
    emit(
      run,
      event(endEvent(last), attempt + 1, {
        duration_ms: last.execution.duration_ms,
        fuel_consumed: last.execution.fuel_consumed,
        ...(last.error ? { error: last.error } : {}),
      }),
    );
    return last;
  };
  const from = (attempt: number): Envelope | Promise<Envelope> => {
    emit(run, event("running", attempt + 1));
    const outcome = runAttempt(run, limits, grants, argsJson, depth, parentDeadline, {
      id,
      attempt: attempt + 1,
      index: 0,
    });
    return outcome instanceof Promise
      ? outcome.then((last) => settle(last, attempt))
      : settle(outcome, attempt);
  };
  if (held instanceof Promise) {
    return held.then((settled) => {
      release = settled;
      return from(0);
    }, refuse);
  }
  release = held;
  return from(0);
}

function runAttempt<G>(
  run: ComponentRun<G>,
  limits: TaskLimits,
  grants: G,
  argsJson: string,
  depth: number,
  parentDeadline: number | null,
  /** This attempt, as its sub-tasks' caller (index counts its calls). */
  self: Caller,
): Envelope | Promise<Envelope> {
  const started = performance.now();
  const hostRequests = createRequestLog();
  const { program } = run;
  const budget = BigInt(limits.fuel);
  const ownDeadline = limits.timeoutMs === null ? null : Date.now() + limits.timeoutMs;
  const deadline =
    ownDeadline === null
      ? parentDeadline
      : parentDeadline === null
        ? ownDeadline
        : Math.min(ownDeadline, parentDeadline);
  const maximum = Math.floor(limits.ramBytes / PAGE);
  let memory: WebAssembly.Memory | null = null;
  let fuel: WebAssembly.Global | null = null;
  let tick: WebAssembly.Global | null = null;
  let stopped: Error | null = null;
  let running = false;

  const refuel = (counter: bigint): bigint => {
    if (stopped !== null) throw stopped;
    if (!running) return counter;
    if (counter < 0n) {
      stopped = new FuelExhaustedError(`task '${limits.name}' used its ${limits.fuel} fuel`);
      throw stopped;
    }
    if (deadline !== null && Date.now() > deadline) {
      stopped = new TimeoutError(
        `task '${limits.name}' ran past its timeout of ${limits.timeoutMs} ms`,
      );
      throw stopped;
    }
    if (tick) tick.value = counter > DEADLINE_SLICE ? counter - DEADLINE_SLICE : 0n;
    return counter;
  };

  const fuelUsed = (): number => {
    if (fuel === null) return 0;
    const left = fuel.value as bigint;
    return Number(left < 0n ? budget : budget - left);
  };

  const envelope = (success: boolean, result: unknown, error: unknown): Envelope => {
    const failure = error === null ? null : asCapsuleError(error);
    return {
      success,
      result: success ? result : null,
      error: failure === null ? null : { error_type: failure.errorType, message: failure.message },
      execution: {
        task_name: limits.name,
        duration_ms: Math.round(performance.now() - started),
        retries: 0,
        fuel_consumed: fuelUsed(),
        ram_used: memory?.buffer.byteLength ?? 0,
        host_requests: hostRequests.list,
      },
    };
  };

  if (++run.tasksStarted > MAX_COMPONENT_TASKS) {
    return envelope(
      false,
      null,
      new ConfigError(`a component run may start at most ${MAX_COMPONENT_TASKS} tasks`),
    );
  }
  if (maximum < program.memoryMinPages) {
    return envelope(
      false,
      null,
      new MemoryExceededError(
        `ram ${limits.ramBytes} bytes is below the component's floor of ${program.memoryMinPages * PAGE} bytes; use at least "${Math.ceil((program.memoryMinPages * PAGE) / 2 ** 20)}MB"`,
      ),
    );
  }
  try {
    memory = new WebAssembly.Memory({ initial: program.memoryMinPages, maximum });
    const imports = run.host.imports({
      limits,
      grants,
      hostRequests,
      deadline: () => deadline,
      api: capsuleApi(run, limits, hostRequests, depth, () => deadline, self),
      fuelSpent: () => Math.max(0, fuelUsed()),
    });
    const instantiateCore = (module: WebAssembly.Module, given: WebAssembly.Imports = {}) => {
      if (module !== program.engineModule) return new WebAssembly.Instance(module, given);
      const { refuelImport, memoryImport } = COMPONENT_RUNTIME_NAMES;
      const instance = new WebAssembly.Instance(module, {
        ...given,
        [refuelImport.module]: {
          [refuelImport.name]: refuel,
          [memoryImport.name]: memory as WebAssembly.Memory,
        },
      });
      fuel = instance.exports[COMPONENT_RUNTIME_NAMES.fuelExport] as WebAssembly.Global;
      tick = instance.exports[COMPONENT_RUNTIME_NAMES.tickExport] as WebAssembly.Global;
      fuel.value = SETUP_FUEL;
      tick.value = 0n;
      return instance;
    };
    const exports = program.instantiate(
      (name) => {
        const module = program.modules.get(name);
        if (module === undefined)
          throw new CompileError(`transpiled component has no core module ${name}`);
        return module;
      },
      imports,
      instantiateCore,
    );
    const runner = (exports["capsule:host/task-runner"] ?? exports.taskRunner) as
      | { run(argsJson: string): unknown }
      | undefined;
    if (typeof runner?.run !== "function") {
      throw new CompileError(
        "the component exports no capsule:host/task-runner.run; is it a Capsule component?",
      );
    }
    if (fuel === null || tick === null)
      throw new CompileError("the component's engine module was not instantiated");
    (fuel as WebAssembly.Global).value = budget;
    (tick as WebAssembly.Global).value = budget > DEADLINE_SLICE ? budget - DEADLINE_SLICE : 0n;
    running = true;
    let answer: unknown;
    try {
      answer = runner.run(JSON.stringify({ task_name: limits.name, args: JSON.parse(argsJson) }));
    } finally {
      running = false;
    }
    if (answer instanceof Promise) return awaitAnswer(answer);
    return envelope(true, parseRunAnswer(answer), null);
  } catch (error) {
    return envelope(false, null, classify(error, stopped, memory, maximum));
  }

  /**
   * JSPI glue: the task may wait on a host call, where no fuel check runs, so its deadline is
   * watched from outside too. Once the attempt has ended, its guest may not run again: a wait
   * that ends later resumes into a refuel that throws.
   */
  function awaitAnswer(answer: Promise<unknown>): Promise<Envelope> {
    running = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const overdue =
      deadline === null
        ? null
        : new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => {
                stopped ??= new TimeoutError(
                  `task '${limits.name}' ran past its timeout of ${limits.timeoutMs} ms`,
                );
                reject(stopped);
              },
              Math.max(0, (deadline as number) - Date.now()),
            );
          });
    return (overdue === null ? answer : Promise.race([answer, overdue])).then(
      (value) => finish(() => envelope(true, parseRunAnswer(value), null)),
      (error: unknown) =>
        finish(() => envelope(false, null, classify(error, stopped, memory, maximum))),
    );
    function finish(make: () => Envelope): Envelope {
      clearTimeout(timer);
      let result: Envelope;
      try {
        result = make();
      } catch (error) {
        result = envelope(false, null, classify(error, stopped, memory, maximum));
      }
      stopped ??= new TimeoutError(`task '${limits.name}' has ended`);
      return result;
    }
  }
}

/** What stopped an attempt, in the envelope's terms. */
function classify(
  error: unknown,
  stopped: Error | null,
  memory: WebAssembly.Memory | null,
  maximumPages: number,
): unknown {
  if (stopped !== null) return stopped;
  // The engine allocates in chunks of up to 1 MiB: within 2 MiB of the cap, a grow was refused.
  const atCap = memory !== null && memory.buffer.byteLength >= (maximumPages - 32) * PAGE;
  if (error instanceof TaskError && atCap && /out of memory/i.test(error.message)) {
    return new MemoryExceededError(
      `the task ran out of memory at ${maximumPages * PAGE} bytes (its ram)`,
    );
  }
  if (error instanceof TaskError || error instanceof CompileError || error instanceof ConfigError)
    return error;
  if (error instanceof WebAssembly.RuntimeError || error instanceof RangeError) {
    if (atCap)
      return new MemoryExceededError(
        `the task ran out of memory at ${maximumPages * PAGE} bytes (its ram)`,
      );
    return new TaskError(`the component trapped: ${error.message}`);
  }
  if (error instanceof Error && /memory/i.test(error.message) && atCap) {
    return new MemoryExceededError(
      `the task ran out of memory at ${maximumPages * PAGE} bytes (its ram)`,
    );
  }
  if (error instanceof Error) return new TaskError(error.message);
  return new TaskError(
    typeof error === "string" ? error : (JSON.stringify(error) ?? String(error)),
  );
}

/**
 * The destination check of our own tasks, and one more: a component's HTTP call is made by
 * preview2-shim, which resolves the name itself, so the address a name resolves to cannot be
 * checked (a pattern like "*" would let `localtest.me` reach 127.0.0.1). A name is reached only
 * when allowedHosts lists it exactly, which is also what lets our own tasks reach a name that
 * resolves to a private address; literal addresses get the usual address checks.
 */
export function refuseComponentDestination(url: URL, allowed: readonly string[]): void {
  refuseDestination(url, allowed);
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  if (parseHostLiteral(host) !== null) return;
  if (allowed.some((entry) => entry.toLowerCase().replace(/\.$/, "") === host)) return;
  throw new PermissionDeniedError(
    `host "${host}" matches allowedHosts only through a pattern; a component's request cannot check the address a name resolves to, so a component reaches a name only when allowedHosts lists it exactly ("${host}")`,
  );
}

/**
 * Admits one HTTP request of a task under its allowedHosts and the run's request count, or
 * throws a PermissionDeniedError saying why; either way it is recorded in `hostRequests`.
 */
export function admitRequest<G>(
  run: ComponentRun<G>,
  limits: TaskLimits,
  method: string,
  url: string,
  hostRequests: RequestLog,
  /** What the record says of a request that was admitted. */
  admittedReason?: string,
): void {
  try {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PermissionDeniedError(`${JSON.stringify(url)} is not a URL`);
    }
    refuseComponentDestination(parsed, limits.allowedHosts);
    // Each request may hold a socket while the component goes on: as many as our tasks may make.
    if (run.requestsMade >= NETWORK_DEFAULTS.maxRequests) {
      throw new PermissionDeniedError(
        limitFailure.tooManyRequests(parsed, NETWORK_DEFAULTS.maxRequests).message,
      );
    }
    run.requestsMade++;
  } catch (error) {
    const reason = error instanceof PermissionDeniedError ? error.message : String(error);
    hostRequests.add({ method, url, status: null, reason });
    throw error instanceof PermissionDeniedError ? error : new PermissionDeniedError(reason);
  }
  hostRequests.add({
    method,
    url,
    status: null,
    ...(admittedReason === undefined ? {} : { reason: admittedReason }),
  });
}

/**
 * A sub-task's envelope as its parent reads it. The parent's engine parses this text, and a
 * wall-clock duration's digits changed the fuel that parse spent (129 more when 9 ms became 10):
 * so the duration it reads is on the component's own clock, the sub-task's fuel at
 * FUEL_PER_CLOCK_MS (clock.ts), as every time a component reads is.
 */
function onGuestClock(envelope: Envelope): Envelope {
  const duration_ms = Math.round(envelope.execution.fuel_consumed / FUEL_PER_CLOCK_MS);
  return { ...envelope, execution: { ...envelope.execution, duration_ms } };
}

/** `capsule:host/api`: sub-tasks under the run's grants, and http-request under the policy. */
function capsuleApi<G>(
  run: ComponentRun<G>,
  limits: TaskLimits,
  hostRequests: RequestLog,
  depth: number,
  deadline: () => number | null,
  self: Caller,
): Record<string, unknown> {
  return {
    scheduleTask(name: string, argsJson: string, configJson: string): string | Promise<string> {
      const caller = { ...self };
      self.index++;
      if (depth + 1 >= MAX_COMPONENT_DEPTH) {
        const refusal = new ConfigError(`sub-tasks nest at most ${MAX_COMPONENT_DEPTH} deep`);
        return JSON.stringify(envelopeForError(name, refusal));
      }
      let subLimits: TaskLimits;
      try {
        const config = JSON.parse(configJson) as Record<string, unknown>;
        const declared = parseTaskOptions({ ...config, name }, run.defaults);
        // The component declares its sub-tasks' grants, but the caller granted the run: a
        // sub-task gets the run's files, hosts and variables, never more, whatever it declares.
        subLimits = {
          ...declared,
          allowedFiles: run.grants.allowedFiles,
          allowedHosts: run.grants.allowedHosts,
          envVariables: run.grants.envVariables,
        };
        JSON.parse(argsJson);
      } catch (error) {
        return JSON.stringify(envelopeForError(name, error));
      }
      const envelope = runComponentTask(run, subLimits, argsJson, depth + 1, deadline(), caller);
      return envelope instanceof Promise
        ? envelope.then((settled) => JSON.stringify(onGuestClock(settled)))
        : JSON.stringify(onGuestClock(envelope));
    },
    httpRequest(method: string, url: string): never {
      try {
        admitRequest(run, limits, method, url, hostRequests, "not supported for components");
      } catch (error) {
        throw { tag: "network-error", val: (error as Error).message };
      }
      throw {
        tag: "network-error",
        val: "capsule:host/api http-request is not supported here; use fetch",
      };
    },
  };
}

/** preview2-shim's outgoing request, as far as the policy reads it. */
export interface OutgoingRequest {
  method(): { tag: string; val?: string };
  scheme(): { tag: string; val?: string } | undefined;
  authority(): string | undefined;
  pathWithQuery(): string | undefined;
}

export function methodName(method: { tag: string; val?: string }): string {
  return (method.tag === "other" ? (method.val ?? "") : method.tag).toUpperCase();
}

export function requestUrl(request: OutgoingRequest): string {
  const scheme = request.scheme();
  const name =
    scheme === undefined
      ? "https"
      : scheme.tag === "other"
        ? (scheme.val ?? "")
        : scheme.tag.toLowerCase();
  return `${name}://${request.authority() ?? ""}${request.pathWithQuery() ?? "/"}`;
}
