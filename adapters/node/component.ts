import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { CELL_LIMIT_KEYS } from "../../core/agent/cell.ts";
import { checkComponentHeader, parseRunAnswer } from "../../core/component/answer.ts";
import {
  COMPONENT_RUNTIME_NAMES,
  definesMemory,
  meterComponentCore,
} from "../../core/component/meter.ts";
import {
  type LimitDefaults,
  parseTaskOptions,
  type TaskLimits,
} from "../../core/config/options.ts";
import {
  asCapsuleError,
  CompileError,
  ConfigError,
  FuelExhaustedError,
  MemoryExceededError,
  PermissionDeniedError,
  TaskError,
  TimeoutError,
} from "../../core/errors.ts";
import type { Grant } from "../../core/host.ts";
import { parseHostLiteral } from "../../core/policy/addresses.ts";
import { limitFailure, NETWORK_DEFAULTS, refuseDestination } from "../../core/policy/requests.ts";
import { taskGrants } from "../../core/runtime/capabilities.ts";
import type { Envelope, HostRequest } from "../../core/runtime/envelope.ts";
import { envelopeForError } from "../../core/runtime/envelope.ts";
import { createNodeProvider, parseMounts } from "./provider.ts";

/**
 * Runs a Capsule-built WebAssembly component (`capsule build --export`, or Capsule's own) under
 * the limits and grants of our own tasks. The component is transpiled once by jco into core
 * modules and glue, its engine module metered by our fuel pass with its memory made an import,
 * and all of it cached under the cache directory by the component's hash. Each attempt of each
 * task gets a fresh instance, its own memory (capped at `ram`) and a fuel budget; its WASI imports
 * come from preview2-shim behind our policy: only granted directories are preopened, outgoing HTTP
 * passes allowedHosts and the address checks, and the environment holds only envVariables.
 * `schedule-task` runs a sub-task in a fresh instance of the same component, synchronously, as
 * the component's synchronous import needs.
 */

export interface ComponentRunOptions {
  /** The task to run; default "main". */
  task?: string;
  /** Positional arguments of the task. */
  args?: unknown[];
  /** Project root: allowedFiles and the file name are relative to it. Default process.cwd(). */
  cwd?: string;
  /** Where transpiled components are kept; default `<cwd>/.capsule/cache`. */
  cacheDir?: string;
  compute?: string | number;
  ram?: string | number;
  timeout?: string | number;
  maxRetries?: number;
  allowedFiles?: unknown[];
  allowedHosts?: string[];
  envVariables?: string[];
  /** `HOST_PATH[::GUEST_PATH][:ro|:rw]` specs; they pass on to sub-tasks. */
  mounts?: string[];
  /** Where envVariables are read from; default process.env. */
  env?: Record<string, string | undefined>;
}

/** Deepest chain of sub-tasks a component may start (each holds an instance on the stack). */
export const MAX_COMPONENT_DEPTH = 8;
/** Most tasks (main, sub-tasks and retries) one run may start. */
export const MAX_COMPONENT_TASKS = 64;
/** Fuel between two looks at the clock. */
const DEADLINE_SLICE = 10_000_000n;
const PAGE = 65536;
const DEFAULT_RAM_BYTES = 256 * 1024 * 1024;
/** What the counter starts at while the glue sets the instance up, uncharged. */
const SETUP_FUEL = 1n << 62n;

interface Transpiled {
  hash: string;
  instantiate: GlueInstantiate;
  modules: Map<string, WebAssembly.Module>;
  engineModule: WebAssembly.Module;
  memoryMinPages: number;
}

type GlueInstantiate = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: Record<string, unknown>,
  instantiateCore: (
    module: WebAssembly.Module,
    imports?: WebAssembly.Imports,
  ) => WebAssembly.Instance,
) => Record<string, unknown>;

interface Manifest {
  format: 1;
  files: string[];
  engine: string;
  memoryMinPages: number;
}

const MANIFEST_FORMAT = 1;
const loaded = new Map<string, Promise<Transpiled>>();

/** Reads, checks, transpiles and meters a component (cached on disk and in memory by hash). */
export async function loadComponent(file: string, cacheDir: string): Promise<Transpiled> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new CompileError(
      `cannot read component ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  checkComponentHeader(bytes, file);
  const hash = createHash("sha256").update(bytes).digest("hex");
  let entry = loaded.get(hash);
  if (entry === undefined) {
    entry = prepare(bytes, hash, path.join(cacheDir, "components", hash), file);
    loaded.set(hash, entry);
    entry.catch(() => loaded.delete(hash));
  }
  return entry;
}

async function prepare(
  bytes: Uint8Array,
  hash: string,
  dir: string,
  file: string,
): Promise<Transpiled> {
  const manifestPath = path.join(dir, "manifest.json");
  if (!existsSync(manifestPath)) await transpileInto(bytes, dir, file);
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest;
  const modules = new Map<string, WebAssembly.Module>();
  for (const name of manifest.files.filter((f) => f.endsWith(".wasm"))) {
    modules.set(name, await WebAssembly.compile(readFileSync(path.join(dir, name))));
  }
  const glue = (await import(pathToFileURL(path.join(dir, "component.js")).href)) as {
    instantiate: GlueInstantiate;
  };
  const engineModule = modules.get(manifest.engine);
  if (engineModule === undefined)
    throw new CompileError(`cached component ${dir} has no ${manifest.engine}; delete the folder`);
  return {
    hash,
    instantiate: glue.instantiate,
    modules,
    engineModule,
    memoryMinPages: manifest.memoryMinPages,
  };
}

/**
 * What running a component needs besides this package: optional peers, so that a project that
 * runs no component installs none of their ~130 MB.
 */
const COMPONENT_PEERS = [
  "@bytecodealliance/jco-transpile@0.15.0",
  "@bytecodealliance/preview2-shim@0.26.1",
  "binaryen@132.0.0",
];

/** `load()`, or a config_error naming the packages to install when one is missing. */
async function peer<T>(name: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") throw error;
    throw new ConfigError(
      `running a Capsule component needs the optional package ${name}, which is not installed; install what components need with: npm install ${COMPONENT_PEERS.join(" ")}`,
    );
  }
}

async function transpileInto(bytes: Uint8Array, dir: string, file: string): Promise<void> {
  const { transpileBytes } = await peer(
    "@bytecodealliance/jco-transpile",
    () => import("@bytecodealliance/jco-transpile"),
  );
  const { default: binaryen } = await peer("binaryen", () => import("binaryen"));
  let files: Record<string, Uint8Array>;
  try {
    ({ files } = await transpileBytes(bytes, {
      name: "component",
      instantiation: "sync",
      emitTypescriptDeclarations: false,
    }));
  } catch (error) {
    throw new CompileError(
      `cannot transpile component ${file}: ${(error as Error).message ?? error}`,
    );
  }
  const wasmNames = Object.keys(files).filter((name) => name.endsWith(".wasm"));
  const engine = wasmNames.find((name) => definesMemory(binaryen, files[name] as Uint8Array));
  if (engine === undefined)
    throw new CompileError(`component ${file} has no core module with a memory of its own`);
  const metered = meterComponentCore(binaryen, files[engine] as Uint8Array);
  files[engine] = metered.wasm;
  // Written aside and renamed, so a reader never sees half a folder.
  const temporary = `${dir}.${process.pid}.tmp`;
  rmSync(temporary, { recursive: true, force: true });
  mkdirSync(temporary, { recursive: true, mode: 0o700 });
  for (const [name, content] of Object.entries(files))
    writeFileSync(path.join(temporary, name), content);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    files: Object.keys(files),
    engine,
    memoryMinPages: metered.memoryMinPages,
  };
  writeFileSync(path.join(temporary, "manifest.json"), JSON.stringify(manifest));
  rmSync(dir, { recursive: true, force: true });
  renameSync(temporary, dir);
}

interface RunContext {
  component: Transpiled;
  projectRoot: string;
  mounts: Grant[];
  env: Record<string, string | undefined>;
  cacheDir: string;
  tasksStarted: number;
  /** HTTP requests the run's tasks have made (NETWORK_DEFAULTS.maxRequests at most). */
  requestsMade: number;
  defaults: LimitDefaults;
  /** What the caller granted the run; every task of the run gets these and no more. */
  grants: Pick<TaskLimits, "allowedFiles" | "allowedHosts" | "envVariables">;
}

/** Runs task `options.task` (default main) of the component in `file`; resolves to its envelope. */
export async function execComponent(
  file: string,
  options: ComponentRunOptions = {},
): Promise<Envelope> {
  const started = performance.now();
  const taskName = options.task ?? "main";
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const cacheDir = path.resolve(cwd, options.cacheDir ?? path.join(".capsule", "cache"));
  try {
    await loadShim();
    const component = await loadComponent(path.resolve(cwd, file), cacheDir);
    const defaults: LimitDefaults = {
      ramBytes: DEFAULT_RAM_BYTES,
      minRamBytes: component.memoryMinPages * PAGE,
    };
    const limits = parseTaskOptions(
      { name: taskName, ...pick(options, CELL_LIMIT_KEYS) },
      defaults,
    );
    const context: RunContext = {
      component,
      projectRoot: cwd,
      mounts: parseMounts(options.mounts ?? [], cwd),
      env: options.env ?? process.env,
      cacheDir,
      tasksStarted: 0,
      requestsMade: 0,
      defaults,
      grants: limits,
    };
    return runTask(context, limits, JSON.stringify(options.args ?? []), 0, null);
  } catch (error) {
    return envelopeForError(taskName, error, Math.round(performance.now() - started));
  }
}

function pick(
  options: ComponentRunOptions,
  keys: readonly (keyof ComponentRunOptions)[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) if (options[key] !== undefined) out[key] = options[key];
  return out;
}

/** One task with its retries; synchronous, since a sub-task runs inside its parent's import call. */
function runTask(
  context: RunContext,
  limits: TaskLimits,
  argsJson: string,
  depth: number,
  parentDeadline: number | null,
): Envelope {
  const started = performance.now();
  let last: Envelope | null = null;
  let grants: Grant[];
  try {
    grants = taskGrants(limits, provider(context));
    for (const grant of grants) {
      if (grant.mode === "ro") {
        throw new ConfigError(
          `read-only grants are not enforced for components yet: ${describeGrant(grant)}; grant it read-write or run the task file instead`,
        );
      }
    }
  } catch (error) {
    return envelopeForError(limits.name, error, Math.round(performance.now() - started));
  }
  for (let attempt = 0; attempt <= limits.maxRetries; attempt++) {
    last = runAttempt(context, limits, grants, argsJson, depth, parentDeadline);
    last.execution.retries = attempt;
    if (last.success) break;
    const type = last.error?.error_type;
    if (type === "config_error" || type === "compile_error" || type === "internal_error") break;
  }
  (last as Envelope).execution.duration_ms = Math.round(performance.now() - started);
  return last as Envelope;
}

function describeGrant(grant: Grant): string {
  return grant.source === "mount"
    ? `mount at ${grant.guestPath}`
    : `allowedFiles entry ".${grant.guestPath}"`;
}

function provider(context: RunContext) {
  return createNodeProvider({
    projectRoot: context.projectRoot,
    mounts: context.mounts,
    env: context.env,
    cacheDir: context.cacheDir,
  });
}

function runAttempt(
  context: RunContext,
  limits: TaskLimits,
  grants: readonly Grant[],
  argsJson: string,
  depth: number,
  parentDeadline: number | null,
): Envelope {
  const started = performance.now();
  const hostRequests: HostRequest[] = [];
  const { component } = context;
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
    if (!running) return counter;
    if (stopped !== null) throw stopped;
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
        host_requests: hostRequests,
      },
    };
  };

  if (++context.tasksStarted > MAX_COMPONENT_TASKS) {
    return envelope(
      false,
      null,
      new ConfigError(`a component run may start at most ${MAX_COMPONENT_TASKS} tasks`),
    );
  }
  if (maximum < component.memoryMinPages) {
    return envelope(
      false,
      null,
      new MemoryExceededError(
        `ram ${limits.ramBytes} bytes is below the component's floor of ${component.memoryMinPages * PAGE} bytes; use at least "${Math.ceil((component.memoryMinPages * PAGE) / 2 ** 20)}MB"`,
      ),
    );
  }
  try {
    memory = new WebAssembly.Memory({ initial: component.memoryMinPages, maximum });
    const imports = componentImports(context, limits, grants, hostRequests, depth, () => deadline);
    const instantiateCore = (module: WebAssembly.Module, given: WebAssembly.Imports = {}) => {
      if (module !== component.engineModule) return new WebAssembly.Instance(module, given);
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
    const exports = component.instantiate(
      (name) => {
        const module = component.modules.get(name);
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
    return envelope(true, parseRunAnswer(answer), null);
  } catch (error) {
    return envelope(false, null, classify(error, stopped, memory, maximum));
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
function refuseComponentDestination(url: URL, allowed: readonly string[]): void {
  refuseDestination(url, allowed);
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  if (parseHostLiteral(host) !== null) return;
  if (allowed.some((entry) => entry.toLowerCase().replace(/\.$/, "") === host)) return;
  throw new PermissionDeniedError(
    `host "${host}" matches allowedHosts only through a pattern; a component's request cannot check the address a name resolves to, so a component reaches a name only when allowedHosts lists it exactly ("${host}")`,
  );
}

/** preview2-shim's per-request timeouts, in nanoseconds (undefined: none). */
interface RequestOptions {
  connectTimeout(): bigint | undefined;
  setConnectTimeout(duration: bigint | undefined): void;
  firstByteTimeout(): bigint | undefined;
  setFirstByteTimeout(duration: bigint | undefined): void;
  betweenBytesTimeout(): bigint | undefined;
  setBetweenBytesTimeout(duration: bigint | undefined): void;
}

/** The longest a component's request may wait for a connection or its next bytes, as a fetch. */
const HTTP_IDLE_LIMIT_MS = NETWORK_DEFAULTS.requestTimeoutMs;

/**
 * A component's HTTP call blocks the thread until it answers, where the task's timeout cannot
 * reach it; without options it waits ten minutes. Each wait (connecting, the first byte, the
 * bytes after) is held to what is left of the task's time (at most HTTP_IDLE_LIMIT_MS), so a
 * slow or silent server stops it at about its timeout; a server that trickles bytes can hold it
 * for at most one more such wait, since the guest checks the deadline between reads.
 */
function boundedOptions(options: RequestOptions, deadline: number | null): RequestOptions {
  const leftMs =
    deadline === null ? HTTP_IDLE_LIMIT_MS : Math.min(HTTP_IDLE_LIMIT_MS, deadline - Date.now());
  const bound = BigInt(Math.max(1, leftMs)) * 1_000_000n;
  const tighten = (current: bigint | undefined) =>
    current === undefined || current <= 0n || current > bound ? bound : current;
  options.setConnectTimeout(tighten(options.connectTimeout()));
  options.setFirstByteTimeout(tighten(options.firstByteTimeout()));
  options.setBetweenBytesTimeout(tighten(options.betweenBytesTimeout()));
  return options;
}

async function shim() {
  await peer("@bytecodealliance/preview2-shim", () => import("@bytecodealliance/preview2-shim/io"));
  return {
    cli: await import("@bytecodealliance/preview2-shim/cli"),
    clocks: await import("@bytecodealliance/preview2-shim/clocks"),
    filesystem: await import("@bytecodealliance/preview2-shim/filesystem"),
    http: await import("@bytecodealliance/preview2-shim/http"),
    io: await import("@bytecodealliance/preview2-shim/io"),
    random: await import("@bytecodealliance/preview2-shim/random"),
  };
}
type Shim = Awaited<ReturnType<typeof shim>>;
let shimModules: Shim | null = null;
/** Loaded once before the first run; the imports are built synchronously from it. */
export async function loadShim(): Promise<void> {
  shimModules ??= await shim();
}

function componentImports(
  context: RunContext,
  limits: TaskLimits,
  grants: readonly Grant[],
  hostRequests: HostRequest[],
  depth: number,
  deadline: () => number | null,
): Record<string, unknown> {
  const p2 = shimModules as Shim;
  const fs = (
    p2.filesystem as unknown as {
      createFilesystem(o: { preopens: Record<string, string> }): {
        types: unknown;
        preopens: unknown;
      };
    }
  ).createFilesystem({
    preopens: Object.fromEntries(grants.map((grant) => [grant.guestPath, grant.hostPath])),
  });
  const env = provider(context).env;
  const environment = limits.envVariables.flatMap((name) => {
    const value = env.get(name);
    return value === undefined ? [] : [[name, value] as [string, string]];
  });
  const http = p2.http as unknown as {
    outgoingHandler: {
      handle(request: OutgoingRequest, options: RequestOptions | undefined): unknown;
    };
    types: { RequestOptions: new () => RequestOptions };
  };
  const outgoingHandler = {
    handle(request: OutgoingRequest, options: RequestOptions | undefined) {
      const url = requestUrl(request);
      const method = methodName(request.method());
      try {
        refuseComponentDestination(new URL(url), limits.allowedHosts);
        // Each request may hold a socket while the component goes on: as many as our tasks may make.
        if (context.requestsMade >= NETWORK_DEFAULTS.maxRequests) {
          throw new PermissionDeniedError(
            limitFailure.tooManyRequests(new URL(url), NETWORK_DEFAULTS.maxRequests).message,
          );
        }
        context.requestsMade++;
      } catch (error) {
        const reason = error instanceof PermissionDeniedError ? error.message : String(error);
        hostRequests.push({ method, url, status: null, reason });
        throw { tag: "HTTP-request-denied" };
      }
      hostRequests.push({ method, url, status: null });
      return http.outgoingHandler.handle(
        request,
        boundedOptions(options ?? new http.types.RequestOptions(), deadline()),
      );
    },
  };
  const api = {
    scheduleTask(name: string, argsJson: string, configJson: string): string {
      if (depth + 1 >= MAX_COMPONENT_DEPTH) {
        const refusal = new ConfigError(`sub-tasks nest at most ${MAX_COMPONENT_DEPTH} deep`);
        return JSON.stringify(envelopeForError(name, refusal));
      }
      let subLimits: TaskLimits;
      try {
        const config = JSON.parse(configJson) as Record<string, unknown>;
        const declared = parseTaskOptions({ ...config, name }, context.defaults);
        // The component declares its sub-tasks' grants, but the caller granted the run: a
        // sub-task gets the run's files, hosts and variables, never more, whatever it declares.
        subLimits = {
          ...declared,
          allowedFiles: context.grants.allowedFiles,
          allowedHosts: context.grants.allowedHosts,
          envVariables: context.grants.envVariables,
        };
        JSON.parse(argsJson);
      } catch (error) {
        return JSON.stringify(envelopeForError(name, error));
      }
      return JSON.stringify(runTask(context, subLimits, argsJson, depth + 1, deadline()));
    },
    httpRequest(method: string, url: string): never {
      try {
        refuseComponentDestination(new URL(url), limits.allowedHosts);
        // Each request may hold a socket while the component goes on: as many as our tasks may make.
        if (context.requestsMade >= NETWORK_DEFAULTS.maxRequests) {
          throw new PermissionDeniedError(
            limitFailure.tooManyRequests(new URL(url), NETWORK_DEFAULTS.maxRequests).message,
          );
        }
        context.requestsMade++;
      } catch (error) {
        hostRequests.push({ method, url, status: null, reason: (error as Error).message });
        throw { tag: "network-error", val: (error as Error).message };
      }
      hostRequests.push({ method, url, status: null, reason: "not supported for components" });
      throw {
        tag: "network-error",
        val: "capsule:host/api http-request is not supported here; use fetch",
      };
    },
  };
  const cli = p2.cli as unknown as Record<string, unknown>;
  return {
    "capsule:host/api": api,
    "wasi:cli/environment": {
      getEnvironment: () => environment,
      getArguments: () => [],
      initialCwd: () => undefined,
    },
    "wasi:cli/exit": cli.exit,
    "wasi:cli/stderr": cli.stderr,
    "wasi:cli/stdin": cli.stdin,
    "wasi:cli/stdout": cli.stdout,
    "wasi:cli/terminal-input": cli.terminalInput,
    "wasi:cli/terminal-output": cli.terminalOutput,
    "wasi:cli/terminal-stderr": cli.terminalStderr,
    "wasi:cli/terminal-stdin": cli.terminalStdin,
    "wasi:cli/terminal-stdout": cli.terminalStdout,
    "wasi:clocks/monotonic-clock": p2.clocks.monotonicClock,
    "wasi:clocks/wall-clock": p2.clocks.wallClock,
    "wasi:filesystem/preopens": fs.preopens,
    "wasi:filesystem/types": fs.types,
    "wasi:http/outgoing-handler": outgoingHandler,
    "wasi:http/types": http.types,
    "wasi:io/error": p2.io.error,
    "wasi:io/poll": p2.io.poll,
    "wasi:io/streams": p2.io.streams,
    "wasi:random/random": p2.random.random,
    "wasi:random/insecure": p2.random.insecure,
    "wasi:random/insecure-seed": p2.random.insecureSeed,
  };
}

interface OutgoingRequest {
  method(): { tag: string; val?: string };
  scheme(): { tag: string; val?: string } | undefined;
  authority(): string | undefined;
  pathWithQuery(): string | undefined;
}

function methodName(method: { tag: string; val?: string }): string {
  return (method.tag === "other" ? (method.val ?? "") : method.tag).toUpperCase();
}

function requestUrl(request: OutgoingRequest): string {
  const scheme = request.scheme();
  const name =
    scheme === undefined
      ? "https"
      : scheme.tag === "other"
        ? (scheme.val ?? "")
        : scheme.tag.toLowerCase();
  return `${name}://${request.authority() ?? ""}${request.pathWithQuery() ?? "/"}`;
}
