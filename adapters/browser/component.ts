/**
 * Capsule-built components in a web page: `execComponent({ component })` runs a component that
 * Node prepared (`capsule build --export` makes the component, `capsule prepare` transpiles and
 * meters it into one file) under the limits and grants of our own tasks,
 * and resolves to the same envelope as `capsule exec` on Node.
 *
 * The component runs in a sandbox of its own (component-sandbox.ts): a module Worker inside an
 * opaque-origin iframe with no network and no storage, one per run, terminated after it. The page
 * holds the authority: it loads the granted OPFS directories, sends copies in, checks what comes
 * back and saves only the writable ones; it stops a sandbox that outlives the task's timeout.
 */
import { CELL_LIMIT_KEYS } from "../../core/agent/cell.ts";
import { checkComponentHeader } from "../../core/component/answer.ts";
import { taskEnvironment } from "../../core/component/imports.ts";
import { holdRunMemory, type RunMemory } from "../../core/component/memory.ts";
import { decodePrepared, type PreparedComponent } from "../../core/component/prepared.ts";
import {
  componentDefaults,
  MAX_COMPONENT_DEPTH,
  refuseComponentDestination,
} from "../../core/component/run.ts";
import { parseTaskOptions, type TaskLimits } from "../../core/config/options.ts";
import {
  type CapsuleError,
  CompileError,
  ConfigError,
  InternalError,
  TimeoutError,
} from "../../core/errors.ts";
import type { Grant } from "../../core/host.ts";
import { HeldBytes } from "../../core/network/held-bytes.ts";
import { grantsFromAllowedFiles, isInside, splitPath } from "../../core/policy/paths.ts";
import { NETWORK_DEFAULTS } from "../../core/policy/requests.ts";
import { taskGrants } from "../../core/runtime/capabilities.ts";
import type { Envelope, ErrorType, HostRequest } from "../../core/runtime/envelope.ts";
import { envelopeForError, failureEnvelope } from "../../core/runtime/envelope.ts";
import type { LifecycleEvent, LifecycleListener } from "../../core/runtime/events.ts";
import type { MemoryBudget } from "../../core/runtime/memory-budget.ts";
import { describe } from "../../core/runtime/run-options.ts";
import type {
  ComponentSandboxDone,
  ComponentSandboxRun,
  FetchAnswer,
  FetchAsk,
  FileData,
  MemoryAnswer,
  MemoryAsk,
  MemoryRelease,
  SandboxGrant,
} from "./component-protocol.ts";
import { appRootHandle, directoryHandle, MAX_SNAPSHOT_BYTES } from "./files.ts";
import { createBrowserNetwork } from "./network.ts";
import { BROWSER_PROJECT_ROOT, missingDirectory } from "./provider.ts";
import { SANDBOX_POLICY } from "./python/sandbox.ts";

export interface ComponentOptions {
  /**
   * The prepared component: its bytes, or the URL to fetch them from (`capsule prepare` on Node
   * writes them; a raw component is refused with how to prepare it).
   */
  component: Uint8Array | ArrayBuffer | Blob | URL | string;
  /** The task to run; default "main". */
  task?: string;
  /** The task's arguments (JSON values). */
  args?: unknown[];
  compute?: string | number;
  ram?: string | number;
  timeout?: string | number;
  maxRetries?: number;
  /** Directories of the app's OPFS root; `{ path, mode: "ro" }` for read-only. */
  allowedFiles?: unknown[];
  allowedHosts?: string[];
  envVariables?: string[];
  /** The variables envVariables may read: a page has no environment of its own. */
  env?: Record<string, string | undefined>;
  /** The app's directory in OPFS that allowedFiles are relative to; default "capsule". */
  opfsRoot?: string;
  /** Aborting ends the run with a `timeout` envelope and terminates its sandbox. */
  signal?: AbortSignal;
  /** Lifecycle events of the run's tasks (created, running, retrying, completed, ...). */
  onEvent?: LifecycleListener;
}

const KNOWN = new Set([
  "component",
  "task",
  "args",
  "env",
  "opfsRoot",
  "signal",
  "onEvent",
  ...CELL_LIMIT_KEYS,
]);
const DEFAULT_OPFS_ROOT = "capsule";
/**
 * What a run's sandbox may send the page, above any honest run: each of at most 64 tasks sends at
 * most 23 events (created, and running, retrying and an end over 11 attempts), the run at most
 * 256 requests, 128 holds and releases of memory, and one answer: 1,857. Past this, a tampered
 * sandbox is flooding the page, which terminates it.
 */
const MAX_SANDBOX_MESSAGES = 4096;
/** How long a sandbox may outlive its task's timeout (it stops itself at the deadline). */
const GRACE_MS = 2000;
/** Starting the sandbox and compiling the component must not take longer than this. */
const START_WITHIN_MS = 120_000;

const SANDBOX_SCRIPT = new URL("./capsule-component-sandbox.txt", import.meta.url);

/** Prepared components by their bytes' SHA-256, decoded once per page. */
const prepared = new Map<string, Promise<{ component: PreparedComponent; blob: Blob }>>();
let sandboxScript: Promise<string> | undefined;

/** Timings of the last run, for measurements: fetching, starting the sandbox, compiling. */
export const lastComponentTimings = { loadMs: 0, compileMs: 0, runMs: 0 };

/**
 * Runs a task of a prepared Capsule component in a fresh sandbox; resolves to its envelope. It
 * never throws for the task's own failure, nor for a bad option: those are envelopes too.
 */
export async function execComponent(
  options: ComponentOptions,
  /** What all sandboxes of the page may hold together (the shared pool's). */
  memory?: MemoryBudget,
): Promise<Envelope> {
  const taskName = typeof options?.task === "string" ? options.task : "main";
  const started = performance.now();
  try {
    checkOptions(options);
    if (typeof (WebAssembly as { Suspending?: unknown }).Suspending !== "function") {
      throw new ConfigError(
        "running a component in a page needs JSPI (WebAssembly.Suspending), which this browser lacks; Chromium has it since version 137",
      );
    }
    const loadStarted = performance.now();
    const { component, blob } = await load(options.component);
    lastComponentTimings.loadMs = Math.round(performance.now() - loadStarted);
    const defaults = componentDefaults(component.manifest);
    const limitOptions: Record<string, unknown> = { name: taskName };
    for (const key of CELL_LIMIT_KEYS) {
      const value = (options as unknown as Record<string, unknown>)[key];
      if (value !== undefined) limitOptions[key] = value;
    }
    const limits = parseTaskOptions(limitOptions, defaults);
    const opfsRoot = options.opfsRoot ?? DEFAULT_OPFS_ROOT;
    const grants = await loadGrants(limits, opfsRoot);
    const env = options.env ?? {};
    // Own properties only: a name like "toString" is not a variable the page gave.
    const environment = taskEnvironment(limits, (name) =>
      Object.hasOwn(env, name) ? env[name] : undefined,
    );
    const glue = component.files.get(component.manifest.glue) as Uint8Array;
    // The run's tasks hold their ram in the page's budget, as our own tasks do (pool.ts).
    const held = memory && (await holdRunMemory(memory, limits));
    let done: ComponentSandboxDone;
    try {
      done = await runInSandbox(
        glue,
        {
          prepared: blob,
          limits,
          defaults,
          argsJson: JSON.stringify(options.args ?? []),
          environment,
          grants,
        },
        options.signal,
        options.onEvent,
        held,
      );
    } finally {
      held?.release();
    }
    const envelope = checkEnvelope(done.envelope, taskName);
    if (done.grants.length > 0) await saveGrants(grants, done.grants, opfsRoot, envelope);
    envelope.execution.duration_ms = Math.round(performance.now() - started);
    envelope.execution.run_id = crypto.randomUUID();
    return envelope;
  } catch (error) {
    const envelope = envelopeForError(taskName, error, Math.round(performance.now() - started));
    envelope.execution.run_id = crypto.randomUUID();
    return envelope;
  }
}

function checkOptions(options: ComponentOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new ConfigError(
      `execComponent(): options must be an object like { component: "/task.prepared.bin" }, got ${describe(options)}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      throw new ConfigError(
        `execComponent(): unknown option ${JSON.stringify(key)}; known options: ${[...KNOWN].join(", ")}`,
      );
    }
  }
  const { component, task, args, env, opfsRoot, signal } = options;
  if (
    !(component instanceof Uint8Array) &&
    !(component instanceof ArrayBuffer) &&
    !(component instanceof Blob) &&
    !(component instanceof URL) &&
    typeof component !== "string"
  ) {
    throw new ConfigError(
      `execComponent(): component must be the prepared component's bytes or URL, got ${describe(component)}`,
    );
  }
  if (task !== undefined && (typeof task !== "string" || task === "")) {
    throw new ConfigError(`execComponent(): task must be a task name, got ${describe(task)}`);
  }
  if (args !== undefined && !Array.isArray(args)) {
    throw new ConfigError(`execComponent(): args must be an array, got ${describe(args)}`);
  }
  if (
    env !== undefined &&
    (typeof env !== "object" ||
      env === null ||
      Object.values(env).some((v) => v !== undefined && typeof v !== "string"))
  ) {
    throw new ConfigError(
      `execComponent(): env must be an object of string variables, got ${describe(env)}`,
    );
  }
  if (
    opfsRoot !== undefined &&
    (typeof opfsRoot !== "string" || splitPath(opfsRoot).length === 0 || opfsRoot.includes(".."))
  ) {
    throw new ConfigError(
      `execComponent(): opfsRoot must name a directory in the origin's private file system, like "my-app", got ${describe(opfsRoot)}`,
    );
  }
  if (options.onEvent !== undefined && typeof options.onEvent !== "function") {
    throw new ConfigError(
      `execComponent(): onEvent must be a function, got ${describe(options.onEvent)}`,
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new ConfigError(
      `execComponent(): signal must be an AbortSignal, got ${describe(signal)}`,
    );
  }
}

/** The prepared component's bytes from what the caller gave, decoded once per content. */
async function load(source: ComponentOptions["component"]) {
  let name: string;
  let bytes: Uint8Array;
  if (source instanceof URL || typeof source === "string") {
    let url: URL;
    try {
      url = new URL(source, location.href);
    } catch {
      throw new ConfigError(`execComponent(): component ${JSON.stringify(source)} is not a URL`);
    }
    name = url.href;
    let response: Response;
    try {
      response = await fetch(url);
    } catch (error) {
      throw new CompileError(`cannot fetch component ${name}: ${String(error)}`);
    }
    if (!response.ok)
      throw new CompileError(`cannot fetch component ${name}: HTTP ${response.status}`);
    bytes = new Uint8Array(await response.arrayBuffer());
  } else {
    name = "the component given";
    bytes =
      source instanceof Blob
        ? new Uint8Array(await source.arrayBuffer())
        : source instanceof ArrayBuffer
          ? new Uint8Array(source)
          : source;
  }
  const hash = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>)),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
  let entry = prepared.get(hash);
  if (entry === undefined) {
    entry = (async () => {
      if (isRawComponent(bytes)) {
        throw new CompileError(
          `${name} is a WebAssembly component as capsule build --export writes it; a page runs it prepared: on Node, \`capsule prepare <file>.wasm\` writes <file>.prepared.bin`,
        );
      }
      const component = decodePrepared(bytes, name);
      return { component, blob: new Blob([bytes as Uint8Array<ArrayBuffer>]) };
    })();
    prepared.set(hash, entry);
    entry.catch(() => prepared.delete(hash));
  }
  return entry;
}

function isRawComponent(bytes: Uint8Array): boolean {
  try {
    checkComponentHeader(bytes, "component");
    return true;
  } catch {
    return false;
  }
}

// --- files ---------------------------------------------------------------------------------------

/**
 * The run's granted directories, loaded from OPFS (a grant inside another shares its files, so a
 * change through one shows through the other). Every task of the run gets these.
 */
async function loadGrants(limits: TaskLimits, opfsRoot: string): Promise<SandboxGrant[]> {
  const wanted = grantsFromAllowedFiles(limits.allowedFiles, BROWSER_PROJECT_ROOT);
  if (wanted.length === 0) return [];
  const appRoot = await appRootHandle(opfsRoot);
  const trees = new Map<string, FileData>();
  const budget = { bytes: 0 };
  // Outer directories first: an inner grant takes its part of the outer one's tree.
  for (const grant of [...wanted].sort((a, b) => a.hostPath.length - b.hostPath.length)) {
    const outer = [...trees.keys()].find((path) => isInside(grant.hostPath, path));
    if (outer !== undefined) {
      const relative = splitPath(grant.hostPath.slice(outer.length));
      let node: FileData | undefined = trees.get(outer);
      for (const name of relative) node = node?.dir?.[name];
      if (node?.dir !== undefined) trees.set(grant.hostPath, node);
      continue;
    }
    let handle: FileSystemDirectoryHandle;
    try {
      handle = await directoryHandle(appRoot, splitPath(grant.hostPath), false);
    } catch {
      continue;
    }
    trees.set(grant.hostPath, await readTree(handle, budget));
  }
  const grants: Grant[] = taskGrants(limits, {
    projectRoot: BROWSER_PROJECT_ROOT,
    mounts: [],
    checkDirectory(grant) {
      if (!trees.has(grant.hostPath)) throw missingDirectory(grant, opfsRoot);
      return grant.hostPath;
    },
    fileSystem: () => null,
    network: () => null,
    env: { get: () => undefined, names: () => [] } as never,
  });
  return grants.map((grant) => ({
    guestPath: grant.guestPath,
    mode: grant.mode,
    tree: trees.get(grant.hostPath) as FileData,
  }));
}

async function readTree(
  handle: FileSystemDirectoryHandle,
  budget: { bytes: number },
): Promise<FileData> {
  const dir: Record<string, FileData> = {};
  const entries = (
    handle as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }
  ).entries();
  for await (const [name, entry] of entries) {
    if (entry.kind === "directory") {
      dir[name] = await readTree(entry as FileSystemDirectoryHandle, budget);
    } else {
      const file = await (entry as FileSystemFileHandle).getFile();
      budget.bytes += file.size;
      if (budget.bytes > MAX_SNAPSHOT_BYTES) {
        throw new ConfigError(
          `the granted directories hold more than ${MAX_SNAPSHOT_BYTES} bytes; grant a smaller directory`,
        );
      }
      dir[name] = { source: new Uint8Array(await file.arrayBuffer()) };
    }
  }
  return { dir };
}

/** A name the sandbox sent back that OPFS may hold: no separators, no "." or "..". */
function safeName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !/[/\\\0]/.test(name);
}

/**
 * Saves what the tasks changed in the writable grants. What the sandbox sent is checked as
 * untrusted: only the writable grants the page sent in, only files and directories with plain
 * names, no more bytes in all than a load may hold; links are not saved.
 */
async function saveGrants(
  sent: readonly SandboxGrant[],
  returned: unknown,
  opfsRoot: string,
  envelope: Envelope,
): Promise<void> {
  if (!Array.isArray(returned)) throw new InternalError("the sandbox sent back no directories");
  const appRoot = await appRootHandle(opfsRoot);
  const budget = { bytes: 0 };
  for (const grant of sent) {
    if (grant.mode !== "rw") continue;
    const back = (returned as SandboxGrant[]).find(
      (candidate) => candidate?.guestPath === grant.guestPath && candidate?.mode === "rw",
    );
    if (back === undefined) continue;
    const handle = await directoryHandle(appRoot, splitPath(grant.guestPath), true);
    try {
      await syncTree(handle, grant.tree, back.tree, budget);
    } catch (error) {
      const message = `the task's files could not be saved to OPFS: ${(error as Error).message ?? error}`;
      envelope.success = false;
      envelope.result = null;
      envelope.error ??= { error_type: "internal_error", message };
    }
  }
}

async function syncTree(
  handle: FileSystemDirectoryHandle,
  before: FileData,
  after: unknown,
  budget: { bytes: number },
): Promise<void> {
  const next = (after as FileData | null)?.dir;
  if (typeof next !== "object" || next === null) return;
  const old = before.dir ?? {};
  for (const name of Object.keys(old)) {
    if (!Object.hasOwn(next, name)) await handle.removeEntry(name, { recursive: true });
  }
  for (const [name, entry] of Object.entries(next)) {
    if (!safeName(name) || typeof entry !== "object" || entry === null) continue;
    const previous = Object.hasOwn(old, name) ? old[name] : undefined;
    if (entry.dir !== undefined) {
      if (previous !== undefined && previous.dir === undefined) await handle.removeEntry(name);
      const child = await handle.getDirectoryHandle(name, { create: true });
      await syncTree(child, previous?.dir !== undefined ? previous : { dir: {} }, entry, budget);
    } else if (entry.source instanceof Uint8Array) {
      budget.bytes += entry.source.byteLength;
      if (budget.bytes > MAX_SNAPSHOT_BYTES) {
        throw new Error(`the task left more than ${MAX_SNAPSHOT_BYTES} bytes`);
      }
      if (previous?.source !== undefined && sameBytes(previous.source, entry.source)) continue;
      if (previous !== undefined && previous.source === undefined) {
        await handle.removeEntry(name, { recursive: true });
      }
      const file = await handle.getFileHandle(name, { create: true });
      const stream = await file.createWritable({ keepExistingData: false });
      await stream.write(entry.source as Uint8Array<ArrayBuffer>);
      await stream.close();
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

// --- the sandbox -----------------------------------------------------------------------------

const FRAME_SCRIPT = `
addEventListener("message", (event) => {
  const data = event.data;
  if (event.source !== parent || !data || data.type !== "start") return;
  const worker = new Worker(URL.createObjectURL(data.script), { name: "capsule-component" });
  worker.postMessage({ port: data.port }, [data.port]);
  worker.onerror = (event) => {
    event.preventDefault();
    data.control.postMessage({ type: "error", message: String(event.message || "the sandbox script failed") });
  };
  data.control.onmessage = () => {
    worker.terminate();
    data.control.postMessage({ type: "terminated" });
  };
}, { once: true });
`;

const FRAME_DOCUMENT = `<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="${SANDBOX_POLICY}"><script>${FRAME_SCRIPT}</script></head></html>`;

async function loadSandboxScript(): Promise<string> {
  sandboxScript ??= fetch(SANDBOX_SCRIPT).then(async (response) => {
    const page = response.headers.get("content-type")?.startsWith("text/html") ?? false;
    if (!response.ok || page) {
      sandboxScript = undefined;
      throw new InternalError(
        `the component runtime could not load ${SANDBOX_SCRIPT.href} (${page ? "an HTML page came back" : `HTTP ${response.status}`}); copy the whole dist/browser folder`,
      );
    }
    return response.text();
  });
  return sandboxScript;
}

/**
 * jco's glue as a classic script: its two top-level exports (`instantiate`, `_util`) become plain
 * declarations that the sandbox script after it sees. A Worker in the opaque-origin frame is a
 * classic one, as the Python sandbox's is; the glue with sync instantiation imports nothing.
 */
function classicGlue(glue: Uint8Array): string {
  const text = new TextDecoder().decode(glue);
  const classic = text.replace(/^export (async function|function|const|let|class) /gm, "$1 ");
  if (/^(export|import)\b/m.test(classic) || !/^function instantiate\(/m.test(classic)) {
    throw new CompileError(
      "the prepared component's glue is not jco's sync-instantiation module; prepare it again with this version",
    );
  }
  return classic;
}

/** Starts a sandbox, runs the job, and removes it; rejects with why it ended early. */
async function runInSandbox(
  glue: Uint8Array,
  job: ComponentSandboxRun,
  signal: AbortSignal | undefined,
  onEvent: LifecycleListener | undefined,
  memory: RunMemory | undefined,
): Promise<ComponentSandboxDone> {
  const script = new Blob([classicGlue(glue), "\n", await loadSandboxScript()], {
    type: "text/javascript",
  });
  const page = new MessageChannel();
  const control = new MessageChannel();
  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts");
  frame.setAttribute("referrerpolicy", "no-referrer");
  frame.setAttribute("aria-hidden", "true");
  frame.tabIndex = -1;
  frame.style.display = "none";
  frame.srcdoc = FRAME_DOCUMENT;
  const started = performance.now();
  return new Promise<ComponentSandboxDone>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      control.port1.postMessage("terminate");
      setTimeout(() => frame.remove(), 1000);
      outcome();
    };
    const onAbort = () =>
      finish(() => reject(new TimeoutError("the run was aborted; its sandbox was terminated")));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    // Until the sandbox reports, it is starting and compiling; then the task's own timeout runs.
    const timeoutMs = job.limits.timeoutMs;
    timer = setTimeout(
      () =>
        finish(() =>
          reject(
            new TimeoutError(
              timeoutMs === null
                ? `the component sandbox did not finish starting within ${START_WITHIN_MS / 1000} s`
                : `the task exceeded its timeout of ${timeoutMs} ms and did not stop within ${GRACE_MS} ms; its sandbox was terminated`,
            ),
          ),
        ),
      timeoutMs === null ? START_WITHIN_MS : START_WITHIN_MS + timeoutMs + GRACE_MS,
    );
    const network = pageNetwork(job.limits.allowedHosts, job.limits.ramBytes, () => timeoutMs);
    const answerMemory = memoryHolds(memory, (answer) => page.port1.postMessage(answer));
    let messages = 0;
    page.port1.onmessage = (event) => {
      if (++messages > MAX_SANDBOX_MESSAGES) {
        finish(() =>
          reject(
            new InternalError(
              `the component sandbox sent more than ${MAX_SANDBOX_MESSAGES} messages, more than any run sends; it was terminated`,
            ),
          ),
        );
        return;
      }
      const data = event.data as
        | Partial<ComponentSandboxDone>
        | FetchAsk
        | Partial<MemoryAsk | MemoryRelease>
        | { type: "event" }
        | null;
      if (data?.type === "event") {
        const event = checkEvent((data as { event?: unknown }).event);
        if (event !== null && !settled) {
          try {
            onEvent?.(event);
          } catch {
            // The listener's failure is its own.
          }
        }
        return;
      }
      if (data?.type === "fetch") {
        void network(data as FetchAsk).then((answer) => {
          if (!settled) {
            page.port1.postMessage(answer, answer.ok ? [answer.body] : []);
          }
        });
        return;
      }
      if (data?.type === "hold" || data?.type === "release") {
        if (!settled) answerMemory(data as Partial<MemoryAsk | MemoryRelease>);
        return;
      }
      if (data?.type !== "done") return;
      lastComponentTimings.compileMs = Math.round(Number(data.compileMs) || 0);
      lastComponentTimings.runMs = Math.round(performance.now() - started);
      finish(() =>
        resolve({
          type: "done",
          envelope: data.envelope,
          compileMs: Number(data.compileMs) || 0,
          grants: Array.isArray(data.grants) ? data.grants : [],
        }),
      );
    };
    control.port1.onmessage = (event) => {
      const data = event.data as { type?: unknown; message?: unknown } | null;
      if (data?.type === "terminated") frame.remove();
      else if (data?.type === "error") {
        finish(() =>
          reject(new InternalError(`the component sandbox failed: ${String(data.message)}`)),
        );
      }
    };
    frame.addEventListener(
      "load",
      () => {
        if (settled) return;
        frame.contentWindow?.postMessage(
          { type: "start", script, port: page.port2, control: control.port2 },
          "*",
          [page.port2, control.port2],
        );
        page.port1.postMessage(job);
      },
      { once: true },
    );
    (document.body ?? document.documentElement).append(frame);
  });
}

/**
 * The sandbox's asks to hold its sub-tasks' ram, answered from the page's budget. What the sandbox
 * sends is not trusted: a malformed ask is refused, an id already held is not held twice, and
 * RunMemory bounds how many a run holds; everything is freed when the run ends.
 */
function memoryHolds(
  memory: RunMemory | undefined,
  answer: (message: MemoryAnswer) => void,
): (ask: Partial<MemoryAsk | MemoryRelease>) => void {
  const releases = new Map<number, () => void>();
  return (ask) => {
    const id = ask.id;
    if (typeof id !== "number" || !Number.isSafeInteger(id)) return;
    if (ask.type === "release") {
      releases.get(id)?.();
      releases.delete(id);
      return;
    }
    const { name, depth, ramBytes } = ask as Partial<MemoryAsk>;
    let refusal: MemoryAnswer["refusal"] = null;
    if (
      releases.has(id) ||
      typeof name !== "string" ||
      name.length > 256 ||
      typeof depth !== "number" ||
      !Number.isSafeInteger(depth) ||
      depth < 1 ||
      depth >= MAX_COMPONENT_DEPTH ||
      typeof ramBytes !== "number" ||
      !Number.isSafeInteger(ramBytes) ||
      ramBytes <= 0
    ) {
      refusal = { errorType: "internal_error", message: "the sandbox asked for memory wrongly" };
    } else if (memory !== undefined) {
      try {
        releases.set(id, memory.holdMemory(ramBytes, { name, depth }));
      } catch (error) {
        const refused = error as CapsuleError;
        refusal = { errorType: refused.errorType, message: refused.message };
      }
    }
    answer({ type: "held", id, refusal });
  };
}

/**
 * The sandbox's requests, made by the page: what the sandbox sends is not trusted, so each one is
 * checked again as the sandbox should have (the run's allowedHosts, names only when listed
 * exactly, at most NETWORK_DEFAULTS.maxRequests a run), then made by the browser network host,
 * which checks every redirect hop and bounds time and size.
 */
function pageNetwork(
  allowedHosts: readonly string[],
  ramBytes: number,
  timeoutMs: () => number | null,
) {
  const network = createBrowserNetwork({ allowedHosts: [...allowedHosts] });
  // What the page holds for the run's requests in flight counts against its ram, as a task's
  // does: without it, 256 requests of 16 MiB each would sit in the page's memory.
  const heldBytes = new HeldBytes(ramBytes);
  let made = 0;
  return async (ask: FetchAsk): Promise<FetchAnswer> => {
    const id = Number(ask?.id);
    try {
      const url = new URL(String(ask.url));
      refuseComponentDestination(url, allowedHosts);
      if (++made > NETWORK_DEFAULTS.maxRequests) {
        throw new Error(`a component run makes at most ${NETWORK_DEFAULTS.maxRequests} requests`);
      }
      const headers = Array.isArray(ask.headers)
        ? ask.headers.filter(
            (pair): pair is [string, string] =>
              Array.isArray(pair) && typeof pair[0] === "string" && typeof pair[1] === "string",
          )
        : [];
      const limit = timeoutMs();
      const response = await network.fetch(
        {
          method: String(ask.method),
          url: url.href,
          headers,
          body: ask.body instanceof ArrayBuffer ? new Uint8Array(ask.body) : null,
          redirect: "follow",
          heldBytes,
        },
        limit === null
          ? AbortSignal.timeout(NETWORK_DEFAULTS.requestTimeoutMs)
          : AbortSignal.timeout(Math.min(limit, NETWORK_DEFAULTS.requestTimeoutMs)),
      );
      const body = response.body.slice().buffer as ArrayBuffer;
      return {
        type: "fetched",
        id,
        ok: true,
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
        body,
      };
    } catch (error) {
      return {
        type: "fetched",
        id,
        ok: false,
        message: String((error as Error)?.message ?? error),
      };
    }
  };
}

const EVENT_TYPES = new Set<LifecycleEvent["type"]>([
  "created",
  "running",
  "retrying",
  "completed",
  "failed",
  "timed_out",
  "cancelled",
]);

/** An event from the sandbox, rebuilt from checked fields (it is not trusted), or null. */
function checkEvent(value: unknown): LifecycleEvent | null {
  const sent = value as Partial<LifecycleEvent> | null;
  if (typeof sent !== "object" || sent === null) return null;
  if (!EVENT_TYPES.has(sent.type as LifecycleEvent["type"])) return null;
  const text = (v: unknown) => (typeof v === "string" ? v.slice(0, 200) : "");
  const count = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0);
  const event: LifecycleEvent = {
    type: sent.type as LifecycleEvent["type"],
    task: text(sent.task),
    id: text(sent.id),
    parentId: typeof sent.parentId === "string" ? text(sent.parentId) : null,
    depth: count(sent.depth),
    attempt: count(sent.attempt),
    at: count(sent.at),
  };
  if (sent.duration_ms !== undefined) event.duration_ms = count(sent.duration_ms);
  if (sent.fuel_consumed !== undefined) event.fuel_consumed = count(sent.fuel_consumed);
  if (sent.error && typeof sent.error === "object") {
    event.error = {
      error_type: ERROR_TYPES.has(sent.error.error_type) ? sent.error.error_type : "internal_error",
      message: text(sent.error.message),
    };
  }
  if (sent.call && typeof sent.call === "object") {
    event.call = { attempt: count(sent.call.attempt), index: count(sent.call.index) };
  }
  return event;
}

const ERROR_TYPES = new Set<ErrorType>([
  "task_error",
  "timeout",
  "fuel_exhausted",
  "memory_exceeded",
  "config_error",
  "compile_error",
  "permission_denied",
  "internal_error",
]);

/** The sandbox's envelope, rebuilt from checked fields: what it sent is not trusted. */
function checkEnvelope(value: unknown, taskName: string): Envelope {
  const sent = value as Partial<Envelope> | null;
  const execution = (sent?.execution ?? {}) as Partial<Envelope["execution"]>;
  if (typeof sent !== "object" || sent === null || typeof sent.success !== "boolean") {
    return failureEnvelope(taskName, {
      error_type: "internal_error",
      message: "the component sandbox sent no envelope",
    });
  }
  const count = (n: unknown) => (Number.isSafeInteger(n) && (n as number) >= 0 ? (n as number) : 0);
  const error = sent.error as { error_type?: unknown; message?: unknown } | null;
  const requests: HostRequest[] = Array.isArray(execution.host_requests)
    ? execution.host_requests.slice(0, 10_000).map((request) => ({
        method: String(request?.method),
        url: String(request?.url),
        status: Number.isSafeInteger(request?.status) ? (request.status as number) : null,
        ...(typeof request?.reason === "string" ? { reason: request.reason } : {}),
      }))
    : [];
  return {
    success: sent.success,
    result: sent.success ? (sent.result ?? null) : null,
    error: sent.success
      ? null
      : {
          error_type: ERROR_TYPES.has(error?.error_type as ErrorType)
            ? (error?.error_type as ErrorType)
            : "internal_error",
          message: typeof error?.message === "string" ? error.message : "the task failed",
        },
    execution: {
      task_name: typeof execution.task_name === "string" ? execution.task_name : taskName,
      duration_ms: count(execution.duration_ms),
      retries: count(execution.retries),
      fuel_consumed: count(execution.fuel_consumed),
      ram_used: count(execution.ram_used),
      host_requests: requests,
    },
  };
}
