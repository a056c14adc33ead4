import type { QuickJSHandle } from "quickjs-emscripten-core";
import type { Engine } from "../engine/engine.ts";
import { type HostFunction, Sandbox } from "../engine/sandbox.ts";
import { wholeString } from "../engine/whole-string.ts";
import { CompileError, InternalError } from "../errors.ts";
import { POLYFILL_SOURCES, PRELUDE_SOURCE } from "../guest/sources.generated.ts";
import {
  guestModuleName,
  guestModuleSource,
  SDK_MODULE,
  unresolvableImport,
} from "./guest-modules.ts";
import { templateCopy } from "./template.ts";

export type LogLevel = "debug" | "info" | "log" | "warn" | "error";

/** The host side of the guest bridge, implemented by the attempt that leases the sandbox. */
export interface GuestHost {
  log(level: LogLevel, text: string): void;
  monotonic(): number;
  setTimer(id: number, delayMs: number): void;
  clearTimer(id: number): void;
  /** Returns a guest promise handle that settles with the sub-task's envelope JSON. */
  callTask(name: string, argsJson: string): QuickJSHandle;
  /** One file operation: bytes for byte results, else JSON `{"ok":..}` / `{"error":{..}}`. */
  fsCall(op: string, argsJson: string, data: Uint8Array | undefined): string | Uint8Array;
  /** Returns a guest promise handle that settles with `{ meta, body }` or rejects. */
  fetch(requestJson: string, body: Uint8Array | undefined): QuickJSHandle;
  abortFetch(id: number): void;
  /** JSON `{"env":{..},"cwd":".."}`. */
  processInfo(): string;
}

/**
 * A sandbox with the guest API surface installed and nothing else: only trusted set-up code has
 * run in it. It goes to exactly one attempt, which becomes its tenant.
 */
export interface PreparedSandbox {
  sandbox: Sandbox;
  /** The prelude's control object (fireTimer, listTasks, start). */
  control: QuickJSHandle;
  setTenant(host: GuestHost): void;
  /** The last import the sandbox's module loader refused, if any. */
  importFailure(): CompileError | null;
}

let polyfillSourceLoader: ((name: string) => string) | null = null;

/**
 * Where the sources of guest chunks left out of this build come from: a page's worker fetches the
 * large, rarely used ones (URL, Buffer, TextDecoder...) the first time a task needs one, so a page
 * that runs small tasks never downloads them. The text is the same either way, and so is the fuel.
 */
export function setPolyfillSourceLoader(loader: (name: string) => string): void {
  polyfillSourceLoader = loader;
}

/**
 * The host side of one sandbox's guest bridge: its functions in a fixed order (a copy of a
 * recorded sandbox binds them under the ids the recorded guest objects hold), its module loader,
 * and its tenant.
 */
export interface Bridge {
  functions: { name: string; fn: HostFunction }[];
  loadModule: (name: string) => string | { error: Error };
  normalizeModule: (base: string, requested: string) => string | { error: Error };
  importFailure(): CompileError | null;
  setTenant(host: GuestHost): void;
  /** Guest chunks compiled in this sandbox, by name (a copy adopts its recorded sandbox's). */
  compiledChunks: Map<string, QuickJSHandle>;
}

export function bridgeFor(sandbox: Sandbox): Bridge {
  const { context } = sandbox;
  let tenant: GuestHost | null = null;
  const owner = (): GuestHost => {
    if (tenant === null) throw new InternalError("guest bridge called before an attempt owned it");
    return tenant;
  };
  const functions: Bridge["functions"] = [];
  const define = (name: string, fn: (...args: QuickJSHandle[]) => QuickJSHandle | undefined) => {
    functions.push({ name, fn: sandbox.hostFunction(fn) });
  };
  // A host function runs with metering paused, so it must never run guest code: it takes only
  // primitives, checked by type first, since reading any other value (toString, valueOf, a
  // getter, a Proxy trap) would run the task's code uncharged.
  const string = (handle: QuickJSHandle, what: string): string => {
    const type = context.typeof(handle);
    if (type !== "string") throw new TypeError(`${what} must be a string, got ${type}`);
    return context.getString(handle);
  };
  const number = (handle: QuickJSHandle, what: string): number => {
    const type = context.typeof(handle);
    if (type !== "number") throw new TypeError(`${what} must be a number, got ${type}`);
    return context.getNumber(handle);
  };
  define("log", (level, text) => {
    const line = string(text, "log text");
    owner().log(string(level, "log level") as LogLevel, wholeString(context, text, line));
    return undefined;
  });
  define("monotonic", () => context.newNumber(owner().monotonic()));
  define("randomBytes", (count) => {
    const n = number(count, "randomBytes count");
    if (!Number.isInteger(n) || n < 0 || n > 65536) {
      throw new RangeError(`randomBytes: ${n} is not an integer from 0 to 65536`);
    }
    const bytes = new Uint8Array(n);
    crypto.getRandomValues(bytes);
    return context.newArrayBuffer(bytes.buffer);
  });
  define("setTimer", (id, delay) => {
    owner().setTimer(number(id, "timer id"), number(delay, "timer delay"));
    return undefined;
  });
  define("clearTimer", (id) => {
    owner().clearTimer(number(id, "timer id"));
    return undefined;
  });
  define("callTask", (name, args) =>
    owner().callTask(string(name, "task name"), string(args, "task arguments")),
  );
  const optionalBytes = (handle: QuickJSHandle | undefined): Uint8Array | undefined => {
    if (handle === undefined) return undefined;
    const type = context.typeof(handle);
    if (type === "undefined") return undefined;
    // An ArrayBuffer is read without running guest code; anything else is refused here.
    if (type !== "object")
      throw new TypeError(`a request body must be an ArrayBuffer, got ${type}`);
    // Copied out: the view aliases guest memory, which the next guest allocation may move.
    return context.getArrayBuffer(handle).consume((view) => view.value.slice());
  };
  const bytesOrString = (value: string | Uint8Array): QuickJSHandle =>
    typeof value === "string"
      ? context.newString(value)
      : context.newArrayBuffer(toArrayBuffer(value));
  define("fsCall", (op, args, data) =>
    bytesOrString(
      owner().fsCall(
        string(op, "file operation"),
        string(args, "file operation arguments"),
        optionalBytes(data),
      ),
    ),
  );
  define("fetch", (request, body) =>
    owner().fetch(string(request, "fetch request"), optionalBytes(body)),
  );
  define("abortFetch", (id) => {
    owner().abortFetch(number(id, "fetch id"));
    return undefined;
  });
  define("processInfo", () => context.newString(owner().processInfo()));
  const compiledChunks = new Map<string, QuickJSHandle>();
  define("polyfill", (name) => {
    const key = string(name, "polyfill name");
    let chunk = compiledChunks.get(key);
    if (chunk === undefined) {
      const source = POLYFILL_SOURCES[key] ?? polyfillSourceLoader?.(key);
      if (source === undefined) throw new Error(`unknown polyfill ${JSON.stringify(key)}`);
      // Compiled here, uncharged, at most once per sandbox: compiling the runtime's own text runs
      // no guest code and costs the same on every run. What comes back is a function that runs
      // the chunk's top level, which the guest calls and pays for (it may reach built-ins the
      // task replaced), so a load the task makes fail repeats only that part, charged. The name
      // is the one an indirect eval gives, which the tasks chunk looks for to trim stacks.
      chunk = context.unwrapResult(
        context.evalCode(`(()=>${source})`, "<input>", { type: "global" }),
      );
      compiledChunks.set(key, chunk);
    }
    return chunk.dup();
  });
  let importFailure: CompileError | null = null;
  return {
    functions,
    loadModule: (name) =>
      guestModuleSource(name) ?? {
        error: new Error(importFailure?.message ?? `no module ${JSON.stringify(name)}`),
      },
    normalizeModule: (_base, requested) => {
      const name = guestModuleName(requested);
      if (name !== undefined) return name;
      importFailure = new CompileError(unresolvableImport(requested));
      return { error: new Error(importFailure.message) };
    },
    importFailure: () => importFailure,
    compiledChunks,
    setTenant(host) {
      if (tenant !== null) throw new InternalError("a prepared sandbox serves exactly one attempt");
      tenant = host;
    },
  };
}

/**
 * A prepared sandbox. With `copies`, a copy of this thread's recorded one once there is one and
 * it fits the memory cap (core/runtime/template.ts), else one set up from scratch; both behave
 * the same, to the unit of fuel.
 */
export async function prepareSandbox(
  engine: Engine,
  memoryBytes: number,
  options: { copies?: boolean } = {},
): Promise<PreparedSandbox> {
  if (options.copies) {
    const copy = await templateCopy(engine, memoryBytes, { setUp: setUpSandbox, bridgeFor });
    if (copy !== null) return copy;
  }
  return (await setUpSandbox(engine, memoryBytes)).prepared;
}

/** A sandbox set up from scratch: engine start, bridge, prelude, the SDK module. */
export async function setUpSandbox(
  engine: Engine,
  memoryBytes: number,
): Promise<{ prepared: PreparedSandbox; bridge: Bridge }> {
  const sandbox = await Sandbox.create({ engine, memoryBytes });
  const { context } = sandbox;
  const bridge = bridgeFor(sandbox);
  const host = context.newObject();
  for (const { name, fn } of bridge.functions) {
    const handle = context.newFunction(name, fn);
    context.setProp(host, name, handle);
    handle.dispose();
  }
  context.setProp(context.global, "__capsule_host", host);
  host.dispose();
  const control = context.unwrapResult(
    context.evalCode(PRELUDE_SOURCE, "capsule:prelude", { type: "global" }),
  );
  sandbox.runtime.setModuleLoader(bridge.loadModule, bridge.normalizeModule);
  // Loaded with the prelude, ahead of need like it, so a task's import finds it ready and its top
  // level (the guest API surface, not the task's work) is not charged.
  context
    .unwrapResult(
      context.evalCode(`import ${JSON.stringify(SDK_MODULE)};`, "capsule:sdk-preload", {
        type: "module",
      }),
    )
    .dispose();
  return {
    prepared: {
      sandbox,
      control,
      importFailure: bridge.importFailure,
      setTenant: bridge.setTenant,
    },
    bridge,
  };
}

/** Memory caps a thread keeps sandboxes ready for, most recently used first. */
const RESERVED_CAPS = 3;

/**
 * Sandboxes prepared ahead, in idle time, for the memory caps used last: taking one skips engine
 * start and the prelude on the task's critical path. A workflow whose sub-tasks ask for another
 * `ram` than their parent finds both ready. Each cap keeps up to `size` sandboxes, and a thread at
 * most `2 * size` in all (each holds a few MiB of touched memory), the least recently used cap
 * giving way first.
 *
 * Preparing starts with the second sandbox taken: a process that runs one task (`capsule run` of
 * a file without sub-tasks) would otherwise prepare sandboxes nobody takes, beside its task and
 * then before it can exit. Its timers do not keep a process alive.
 */
export class SandboxReserve {
  readonly #engine: Engine;
  readonly #size: number;
  /** Ready sandboxes by memory cap, in order of last use (the most recent last). */
  readonly #ready = new Map<number, PreparedSandbox[]>();
  #taken = 0;
  #filling = false;

  constructor(engine: Engine, size: number) {
    this.#engine = engine;
    this.#size = size;
  }

  async take(memoryBytes: number): Promise<PreparedSandbox> {
    if (this.#size === 0) return prepareSandbox(this.#engine, memoryBytes);
    const ready = this.#ready.get(memoryBytes) ?? [];
    // Moved to the end: the most recently used cap.
    this.#ready.delete(memoryBytes);
    this.#ready.set(memoryBytes, ready);
    while (this.#ready.size > RESERVED_CAPS) {
      const [oldest] = this.#ready.keys();
      this.#ready.delete(oldest as number);
    }
    const prepared = ready.pop();
    this.#taken++;
    if (this.#taken > 1) this.#refillSoon();
    return prepared ?? prepareSandbox(this.#engine, memoryBytes, { copies: true });
  }

  /** Sandboxes ready for this memory cap now (tests). */
  readyFor(memoryBytes: number): number {
    return this.#ready.get(memoryBytes)?.length ?? 0;
  }

  #refillSoon() {
    if (this.#filling) return;
    this.#filling = true;
    unref(setTimeout(() => void this.#refill(), 0));
  }

  /** The cap to prepare for next: the most recent one short of `size`, within the total. */
  #nextCap(): number | null {
    let total = 0;
    for (const list of this.#ready.values()) total += list.length;
    if (total >= 2 * this.#size) return null;
    for (const [memoryBytes, list] of [...this.#ready].reverse()) {
      if (list.length < this.#size) return memoryBytes;
    }
    return null;
  }

  async #refill() {
    try {
      for (let cap = this.#nextCap(); cap !== null; cap = this.#nextCap()) {
        const prepared = await prepareSandbox(this.#engine, cap, { copies: true });
        // Dropped if its cap gave way to others while it was being prepared.
        this.#ready.get(cap)?.push(prepared);
        // One at a time, with the event loop let through: a task arriving meanwhile goes first.
        await new Promise((resolve) => unref(setTimeout(resolve, 0)));
      }
    } catch {
      // Preparing ahead is an optimisation; a failure here shows up again on the critical path.
    } finally {
      this.#filling = false;
    }
  }
}

/** Node's timers can be told not to keep the process alive; other hosts' are numbers. */
function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}

const reserves = new WeakMap<Engine, SandboxReserve>();

/** The reserve for an engine on this thread, created on first use. */
export function reserveFor(engine: Engine, size: number): SandboxReserve {
  let reserve = reserves.get(engine);
  if (reserve === undefined) {
    reserve = new SandboxReserve(engine, size);
    reserves.set(engine, reserve);
  }
  return reserve;
}

/** An ArrayBuffer holding exactly these bytes (a view may cover part of a larger buffer). */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  if (
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer
  ) {
    return bytes.buffer;
  }
  return bytes.slice().buffer as ArrayBuffer;
}
