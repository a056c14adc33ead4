import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { CELL_LIMIT_KEYS } from "../../core/agent/cell.ts";
import { checkComponentHeader } from "../../core/component/answer.ts";
import { meteredClocks } from "../../core/component/clock.ts";
import { componentImportMap, taskEnvironment } from "../../core/component/imports.ts";
import { holdRunMemory } from "../../core/component/memory.ts";
import { definesMemory, meterComponentCore } from "../../core/component/meter.ts";
import { encodePrepared, PREPARED_FORMAT } from "../../core/component/prepared.ts";
import {
  budgetedDescriptor,
  readOnlyDescriptor,
  type WriteBudget,
} from "../../core/component/read-only.ts";
import {
  type AttemptContext,
  admitRequest,
  type ComponentProgram,
  type ComponentRun,
  componentDefaults,
  componentRun,
  type GlueInstantiate,
  methodName,
  type OutgoingRequest,
  requestUrl,
  runComponentTask,
} from "../../core/component/run.ts";
import { parseTaskOptions } from "../../core/config/options.ts";
import { CompileError, ConfigError } from "../../core/errors.ts";
import type { EnvironmentHost, Grant } from "../../core/host.ts";
import { NETWORK_DEFAULTS } from "../../core/policy/requests.ts";
import { taskGrants } from "../../core/runtime/capabilities.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import { envelopeForError } from "../../core/runtime/envelope.ts";
import type { LifecycleListener } from "../../core/runtime/events.ts";
import { DEFAULT_SETTINGS } from "../../core/runtime/settings.ts";
import { processMemory } from "./pool.ts";
import { createNodeProvider, parseMounts } from "./provider.ts";

export { MAX_COMPONENT_DEPTH, MAX_COMPONENT_TASKS } from "../../core/component/run.ts";

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
  /** Lifecycle events of the run's tasks (created, running, retrying, completed, ...). */
  onEvent?: LifecycleListener;
}

interface Transpiled extends ComponentProgram {
  hash: string;
  /** The folder holding the transpiled files (manifest.json, the glue, the core modules). */
  dir: string;
}

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
    dir,
    instantiate: glue.instantiate,
    modules,
    engineModule,
    memoryMinPages: manifest.memoryMinPages,
  };
}

/** Where `prepareComponent` writes by default: `task.wasm` gives `task.prepared.bin`. */
export function preparedName(file: string): string {
  return `${file.replace(/\.wasm$/i, "")}.prepared.bin`;
}

/**
 * Writes `file`'s component prepared for a page (core/component/prepared.ts): transpiled and
 * metered here, once per component (the same cache `execComponent` uses), so the page needs no
 * transpiler. Returns the path written and its size.
 */
export async function prepareComponent(
  file: string,
  options: { cwd?: string; cacheDir?: string; output?: string } = {},
): Promise<{ output: string; bytes: number; sha256: string }> {
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const cacheDir = path.resolve(cwd, options.cacheDir ?? path.join(".capsule", "cache"));
  const source = path.resolve(cwd, file);
  const component = await loadComponent(source, cacheDir);
  const manifest = JSON.parse(
    readFileSync(path.join(component.dir, "manifest.json"), "utf8"),
  ) as Manifest;
  const files = new Map<string, Uint8Array>();
  for (const name of manifest.files.filter((name) => name.endsWith(".wasm"))) {
    files.set(name, readFileSync(path.join(component.dir, name)));
  }
  files.set(PAGE_GLUE, await pageGlue(source, component.dir));
  const bytes = encodePrepared(
    {
      format: PREPARED_FORMAT,
      component_sha256: component.hash,
      glue: PAGE_GLUE,
      engine: manifest.engine,
      memoryMinPages: manifest.memoryMinPages,
      files: [...files].map(([name, content]) => ({ name, bytes: content.byteLength })),
    },
    files,
  );
  const output = path.resolve(cwd, options.output ?? preparedName(file));
  writeFileSync(`${output}.tmp`, bytes);
  renameSync(`${output}.tmp`, output);
  return { output, bytes: bytes.byteLength, sha256: component.hash };
}

/** The glue a page runs: jco's JSPI build of it, kept beside the component's other files. */
const PAGE_GLUE = "component.jspi.js";

/**
 * The glue with JSPI (WebAssembly.Suspending/promising): in a page a host call cannot block, so
 * the component's waits (poll, blocking reads and writes, a sub-task) suspend it until the answer
 * comes. jco makes the same core modules either way, so the metered engine is shared; only this
 * glue is made (about 2 s) and cached.
 */
async function pageGlue(source: string, dir: string): Promise<Uint8Array> {
  const cached = path.join(dir, PAGE_GLUE);
  if (existsSync(cached)) return readFileSync(cached);
  const { transpileBytes } = await peer(
    "@bytecodealliance/jco-transpile",
    () => import("@bytecodealliance/jco-transpile"),
  );
  const { files } = await transpileBytes(readFileSync(source), {
    name: "component",
    instantiation: "sync",
    emitTypescriptDeclarations: false,
    asyncMode: "jspi",
    asyncImports: [...ASYNC_WASI_IMPORTS, "capsule:host/api#schedule-task"],
    asyncExports: ["capsule:host/task-runner#run"],
  });
  const glue = files["component.js"];
  if (glue === undefined) throw new CompileError(`jco wrote no glue for ${source}`);
  writeFileSync(`${cached}.${process.pid}.tmp`, glue);
  renameSync(`${cached}.${process.pid}.tmp`, cached);
  return glue;
}

/** jco-transpile's list of the WASI imports that wait (its constants.js, not exported). */
const ASYNC_WASI_IMPORTS = [
  "wasi:io/poll#poll",
  "wasi:io/poll#[method]pollable.block",
  "wasi:io/streams#[method]input-stream.blocking-read",
  "wasi:io/streams#[method]input-stream.blocking-skip",
  "wasi:io/streams#[method]output-stream.blocking-flush",
  "wasi:io/streams#[method]output-stream.blocking-write-and-flush",
  "wasi:io/streams#[method]output-stream.blocking-write-zeroes-and-flush",
  "wasi:io/streams#[method]output-stream.blocking-splice",
];

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
    const defaults = componentDefaults(component);
    const limits = parseTaskOptions(
      { name: taskName, ...pick(options, CELL_LIMIT_KEYS) },
      defaults,
    );
    const provider = createNodeProvider({
      projectRoot: cwd,
      mounts: parseMounts(options.mounts ?? [], cwd),
      env: options.env ?? process.env,
      cacheDir,
    });
    // What the run's tasks may write in all, as our own tasks' write quota (limits.writeBytes).
    const writeBudget: WriteBudget = { bytes: 0, maxBytes: DEFAULT_SETTINGS.writeBytes };
    // The run's tasks hold their ram in the process's budget, as our own tasks do (pool.ts).
    const memory = await holdRunMemory(processMemory, limits);
    try {
      const run: ComponentRun<Grant[]> = componentRun(
        component,
        {
          grants: (task) => taskGrants(task, provider),
          imports: (attempt) => componentImports(run, provider.env, writeBudget, attempt),
          holdMemory: memory.holdMemory,
        },
        defaults,
        limits,
        options.onEvent,
      );
      return await runComponentTask(run, limits, JSON.stringify(options.args ?? []), 0, null);
    } finally {
      memory.release();
    }
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
  run: ComponentRun<Grant[]>,
  env: EnvironmentHost,
  writeBudget: WriteBudget,
  { limits, grants, hostRequests, deadline, api, fuelSpent }: AttemptContext<Grant[]>,
): Record<string, unknown> {
  const p2 = shimModules as Shim;
  const create = (
    p2.filesystem as unknown as {
      createFilesystem(o: { preopens: Record<string, string> }): {
        types: unknown;
        preopens: { getDirectories(): [object, string][] };
      };
    }
  ).createFilesystem;
  const of = (mode: "rw" | "ro") =>
    create({
      preopens: Object.fromEntries(
        grants.filter((grant) => grant.mode === mode).map((g) => [g.guestPath, g.hostPath]),
      ),
    });
  const writable = of("rw");
  const readable = of("ro");
  // A read-only grant's descriptors refuse every change (core/component/read-only.ts).
  const readOnlyDirectories = readable.preopens
    .getDirectories()
    .map(([descriptor, guestPath]) => [readOnlyDescriptor(descriptor), guestPath]);
  const writableDirectories = writable.preopens
    .getDirectories()
    .map(([descriptor, guestPath]) => [budgetedDescriptor(descriptor, writeBudget), guestPath]);
  const fs = {
    types: writable.types,
    preopens: {
      getDirectories: () => [...writableDirectories, ...readOnlyDirectories],
    },
  };
  const http = p2.http as unknown as {
    outgoingHandler: {
      handle(request: OutgoingRequest, options: RequestOptions | undefined): unknown;
    };
    types: { RequestOptions: new () => RequestOptions };
  };
  const outgoingHandler = {
    handle(request: OutgoingRequest, options: RequestOptions | undefined) {
      try {
        admitRequest(run, limits, methodName(request.method()), requestUrl(request), hostRequests);
      } catch {
        throw { tag: "HTTP-request-denied" };
      }
      return http.outgoingHandler.handle(
        request,
        boundedOptions(options ?? new http.types.RequestOptions(), deadline()),
      );
    },
  };
  return componentImportMap({
    api,
    environment: taskEnvironment(limits, (name) => env.get(name)),
    shim: {
      cli: p2.cli as unknown as Record<string, unknown>,
      io: p2.io,
      random: p2.random,
      httpTypes: http.types,
    },
    // The time the component reads is its fuel and its timers', never the machine's (clock.ts).
    clocks: meteredClocks(fuelSpent, p2.clocks.monotonicClock),
    fs,
    outgoingHandler,
  });
}
