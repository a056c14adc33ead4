/**
 * Test helper: a real QuickJS context with a real `__capsule_host` (Node timers, node:crypto,
 * a monotonic clock), running the freshly bundled prelude and polyfill chunks.
 */

import { randomFillSync } from "node:crypto";
import { fileURLToPath } from "node:url";
import variant from "@jitl/quickjs-wasmfile-release-sync";
import * as esbuild from "esbuild";
import {
  newQuickJSWASMModuleFromVariant,
  type QuickJSContext,
  type QuickJSDeferredPromise,
  type QuickJSHandle,
  type QuickJSWASMModule,
  type VmCallResult,
} from "quickjs-emscripten-core";
import {
  guestModuleName,
  guestModuleSource,
  unresolvableImport,
} from "../runtime/guest-modules.ts";
import { bundleGuest, type GuestSources } from "./build.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

let modulePromise: Promise<QuickJSWASMModule> | undefined;
let sourcesPromise: Promise<GuestSources> | undefined;

export function quickJSModule(): Promise<QuickJSWASMModule> {
  modulePromise ??= newQuickJSWASMModuleFromVariant(variant);
  return modulePromise;
}

export function guestSources(): Promise<GuestSources> {
  sourcesPromise ??= bundleGuest({ root, esbuild });
  return sourcesPromise;
}

export interface LogEntry {
  level: string;
  text: string;
}

export interface SandboxOptions {
  /** Answers `__capsule.call`; default: an envelope echoing the name and arguments. */
  callTask?: (name: string, argsJson: string) => Promise<string> | string;
  /** Answers the bridge's `fetch`; default: rejects, as a sandbox without network would. */
  fetch?: (requestJson: string, body: Uint8Array | null) => Promise<FetchReply> | FetchReply;
  /** Told when the guest aborts a request it started. */
  abortFetch?: (id: number) => void;
  /** Answers the bridge's `fsCall`; default: every operation fails with EACCES. */
  fsCall?: FsCallHandler;
  /** The bridge's `processInfo` JSON; default `{"env":{},"cwd":"/"}`. */
  processInfo?: () => string;
}

/** The host side of `fsCall` in a test: JSON in, JSON or bytes out, as the bridge defines it. */
export type FsCallHandler = (
  op: string,
  argsJson: string,
  data?: Uint8Array,
) => string | Uint8Array;

/** What the bridge's `fetch` resolves to, on the host side of the test double. */
export interface FetchReply {
  meta: string;
  body: Uint8Array;
}

export interface GuestSandbox {
  readonly vm: QuickJSContext;
  readonly logs: LogEntry[];
  /** Chunk names in the order they were loaded. */
  /** Chunks loaded since the prelude's own set-up (which loads "tasks" ahead of any task). */
  readonly loadedChunks: string[];
  /** Evaluates a script and returns its dumped completion value; guest errors throw. */
  run(code: string): unknown;
  /** Evaluates a script whose value is a promise and waits for it, pumping jobs and timers. */
  runAsync(code: string, timeoutMs?: number): Promise<unknown>;
  start(name: string, args?: unknown[]): Promise<unknown>;
  listTasks(): unknown;
  /** Log texts at one level (or all levels). */
  output(level?: string): string[];
  dispose(): void;
}

/** Installs the host bridge, evaluates the prelude and returns the control object handle. */
export function installPrelude(
  vm: QuickJSContext,
  sources: GuestSources,
  hooks: HostHooks,
): QuickJSHandle {
  installHost(vm, sources, hooks);
  return vm.unwrapResult(vm.evalCode(sources.prelude, "capsule:prelude"));
}

export interface HostHooks {
  log(level: string, text: string): void;
  setTimer(id: number, delay: number): void;
  clearTimer(id: number): void;
  callTask(name: string, argsJson: string): QuickJSHandle;
  fetch?(requestJson: string, body: Uint8Array | null): QuickJSHandle;
  abortFetch?(id: number): void;
  fsCall?: FsCallHandler;
  processInfo?(): string;
  onChunk?(name: string): void;
  /** performance.now() when the sandbox started. */
  start: number;
}

/** Defines `globalThis.__capsule_host` with real implementations. */
export function installHost(vm: QuickJSContext, sources: GuestSources, hooks: HostHooks): void {
  const host = vm.newObject();
  const define = (
    name: string,
    fn: (...args: QuickJSHandle[]) => QuickJSHandle | VmCallResult<QuickJSHandle> | undefined,
  ) => {
    const handle = vm.newFunction(name, fn);
    vm.setProp(host, name, handle);
    handle.dispose();
  };
  define("log", (level, text) => {
    hooks.log(vm.getString(level as QuickJSHandle), vm.getString(text as QuickJSHandle));
    return undefined;
  });
  define("monotonic", () => vm.newNumber(performance.now() - hooks.start));
  define("randomBytes", (n) => {
    const count = vm.getNumber(n as QuickJSHandle);
    if (!(count >= 0 && count <= 65536))
      throw new RangeError(`randomBytes: ${count} is out of range`);
    return vm.newArrayBuffer(randomFillSync(new Uint8Array(count)).buffer);
  });
  define("setTimer", (id, delay) => {
    hooks.setTimer(vm.getNumber(id as QuickJSHandle), vm.getNumber(delay as QuickJSHandle));
    return undefined;
  });
  define("clearTimer", (id) => {
    hooks.clearTimer(vm.getNumber(id as QuickJSHandle));
    return undefined;
  });
  define("callTask", (name, args) =>
    hooks.callTask(vm.getString(name as QuickJSHandle), vm.getString(args as QuickJSHandle)),
  );
  define("fetch", (requestJson, body) => {
    if (!hooks.fetch) throw new Error("fetch: this sandbox has no network");
    let bytes: Uint8Array | null = null;
    if (body !== undefined && vm.typeof(body) !== "undefined") {
      const lifetime = vm.getArrayBuffer(body);
      bytes = lifetime.value.slice();
      lifetime.dispose();
    }
    return hooks.fetch(vm.getString(requestJson as QuickJSHandle), bytes);
  });
  define("abortFetch", (id) => {
    hooks.abortFetch?.(vm.getNumber(id as QuickJSHandle));
    return undefined;
  });
  define("fsCall", (op, argsJson, data) => {
    let bytes: Uint8Array | undefined;
    if (data !== undefined && vm.typeof(data) !== "undefined") {
      const lifetime = vm.getArrayBuffer(data);
      bytes = lifetime.value.slice();
      lifetime.dispose();
    }
    const opName = vm.getString(op as QuickJSHandle);
    const args = vm.getString(argsJson as QuickJSHandle);
    const reply = hooks.fsCall
      ? hooks.fsCall(opName, args, bytes)
      : JSON.stringify({ error: { code: "EACCES", syscall: opName, message: "no files here" } });
    return typeof reply === "string"
      ? vm.newString(reply)
      : vm.newArrayBuffer(new Uint8Array(reply).buffer);
  });
  define("processInfo", () =>
    vm.newString(hooks.processInfo?.() ?? JSON.stringify({ env: {}, cwd: "/" })),
  );
  // As the real host does (core/runtime/prepared.ts): the chunk compiled into a function that
  // runs its top level (the real host also keeps it, to compile each chunk only once).
  define("polyfill", (name) => {
    const chunk = vm.getString(name as QuickJSHandle);
    const source = sources.polyfills[chunk];
    if (source === undefined) throw new Error(`no polyfill chunk named ${chunk}`);
    hooks.onChunk?.(chunk);
    return vm.unwrapResult(vm.evalCode(`(()=>${source})`, "<input>", { type: "global" }));
  });
  vm.setProp(vm.global, "__capsule_host", host);
  host.dispose();
}

const echoCallTask = (name: string, argsJson: string) =>
  JSON.stringify({ success: true, result: { name, args: JSON.parse(argsJson) }, error: null });

export async function createSandbox(options: SandboxOptions = {}): Promise<GuestSandbox> {
  const [module, sources] = await Promise.all([quickJSModule(), guestSources()]);
  const vm = module.newContext();
  // Imports resolve as in a real sandbox (core/runtime/prepared.ts).
  vm.runtime.setModuleLoader(
    (name) => guestModuleSource(name) ?? { error: new Error(`no module ${name}`) },
    (_base, requested) =>
      guestModuleName(requested) ?? { error: new Error(unresolvableImport(requested)) },
  );
  const logs: LogEntry[] = [];
  const loadedChunks: string[] = [];
  const timers = new Map<number, ReturnType<typeof setTimeout>>();
  let disposed = false;
  // Requests the test double never answers still hold handles that must go before the context.
  const pendingFetches = new Set<QuickJSDeferredPromise>();
  const callTask = options.callTask ?? echoCallTask;

  const pump = () => {
    if (disposed) return;
    const result = vm.runtime.executePendingJobs();
    if (result.error) {
      const error = vm.dump(result.error);
      result.error.dispose();
      throw new Error(`a pending job failed: ${JSON.stringify(error)}`);
    }
  };

  const callControl = (method: string, ...args: QuickJSHandle[]): QuickJSHandle => {
    const fn = vm.getProp(control, method);
    try {
      return vm.unwrapResult(vm.callFunction(fn, control, ...args));
    } finally {
      fn.dispose();
    }
  };

  const control = installPrelude(vm, sources, {
    start: performance.now(),
    log: (level, text) => logs.push({ level, text }),
    setTimer(id, delay) {
      clearTimeout(timers.get(id));
      timers.set(
        id,
        setTimeout(() => {
          timers.delete(id);
          if (disposed) return;
          const idHandle = vm.newNumber(id);
          callControl("fireTimer", idHandle).dispose();
          idHandle.dispose();
          pump();
        }, delay),
      );
    },
    clearTimer(id) {
      clearTimeout(timers.get(id));
      timers.delete(id);
    },
    callTask(name, argsJson) {
      const deferred = vm.newPromise();
      Promise.resolve()
        .then(() => callTask(name, argsJson))
        .then(
          (envelope) => {
            if (disposed) return;
            // Parsed by the engine's JSON.parse, as the real host does (Sandbox.parseHostJson).
            const value = vm.unwrapResult(
              vm.evalCode(`JSON.parse(${JSON.stringify(envelope)})`, "capsule:envelope"),
            );
            deferred.resolve(value);
            value.dispose();
            pump();
          },
          (error: unknown) => {
            if (disposed) return;
            const value = vm.newError(String(error));
            deferred.reject(value);
            value.dispose();
            pump();
          },
        );
      return deferred.handle;
    },
    fetch(requestJson, body) {
      const deferred = vm.newPromise();
      pendingFetches.add(deferred);
      const answer = options.fetch;
      Promise.resolve()
        .then(() => {
          if (!answer) throw new Error("this sandbox has no network");
          return answer(requestJson, body);
        })
        .then(
          (reply) => {
            pendingFetches.delete(deferred);
            if (disposed) return;
            const value = vm.newObject();
            const meta = vm.newString(reply.meta);
            const bytes = vm.newArrayBuffer(reply.body.slice().buffer);
            vm.setProp(value, "meta", meta);
            vm.setProp(value, "body", bytes);
            meta.dispose();
            bytes.dispose();
            deferred.resolve(value);
            value.dispose();
            pump();
          },
          (error: unknown) => {
            pendingFetches.delete(deferred);
            if (disposed) return;
            const value = vm.newError(error instanceof Error ? error.message : String(error));
            deferred.reject(value);
            value.dispose();
            pump();
          },
        );
      return deferred.handle;
    },
    abortFetch: (id) => options.abortFetch?.(id),
    ...(options.fsCall && { fsCall: options.fsCall }),
    ...(options.processInfo && { processInfo: options.processInfo }),
    onChunk: (name) => loadedChunks.push(name),
  });
  loadedChunks.length = 0;

  async function settle(promise: QuickJSHandle, timeoutMs: number): Promise<unknown> {
    const native = vm.resolvePromise(promise);
    promise.dispose();
    pump();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`guest promise still pending after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      const result = await Promise.race([native, timeout]);
      if (result.error) {
        const error = vm.dump(result.error);
        result.error.dispose();
        throw Object.assign(new Error(`guest promise rejected: ${JSON.stringify(error)}`), {
          guest: error,
        });
      }
      const value = vm.dump(result.value);
      result.value.dispose();
      return value;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    vm,
    logs,
    loadedChunks,
    run(code) {
      const result = vm.evalCode(code, "task.js");
      if (result.error) {
        const error = vm.dump(result.error);
        result.error.dispose();
        throw Object.assign(new Error(`guest threw: ${JSON.stringify(error)}`), { guest: error });
      }
      const value = vm.dump(result.value);
      result.value.dispose();
      pump();
      return value;
    },
    async runAsync(code, timeoutMs = 5000) {
      const result = vm.evalCode(code, "task.js");
      if (result.error) {
        const error = vm.dump(result.error);
        result.error.dispose();
        throw Object.assign(new Error(`guest threw: ${JSON.stringify(error)}`), { guest: error });
      }
      return settle(result.value, timeoutMs);
    },
    async start(name, args = []) {
      const nameHandle = vm.newString(name);
      const argsHandle = vm.newString(JSON.stringify(args));
      const promise = callControl("start", nameHandle, argsHandle);
      nameHandle.dispose();
      argsHandle.dispose();
      return JSON.parse((await settle(promise, 5000)) as string);
    },
    listTasks() {
      const handle = callControl("listTasks");
      const text = vm.getString(handle);
      handle.dispose();
      return JSON.parse(text);
    },
    output(level) {
      return logs
        .filter((entry) => level === undefined || entry.level === level)
        .map((entry) => entry.text);
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const timer of timers.values()) clearTimeout(timer);
      timers.clear();
      for (const deferred of pendingFetches) deferred.dispose();
      control.dispose();
      vm.dispose();
    },
  };
}
