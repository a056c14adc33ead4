/**
 * One Python sandbox: a classic Worker started from a blob URL inside an opaque-origin iframe whose
 * policy allows no network at all (connect-src 'none') and no code from strings. Pyodide is not a
 * sandbox, so this realm is the boundary: it holds nothing of the page's (no DOM, no storage, no
 * cookies, no fetch), and the one MessagePort it is given leads to a page that checks every
 * message. It loads Pyodide from bytes the page posted, runs one job, and is terminated.
 *
 * Built by scripts/build.mjs into one classic script (Pyodide's loader and its glue included):
 * a module Worker would need each module as a blob URL of its own, and Pyodide refuses a classic
 * Worker only where `importScripts` of a data: URL works, which this policy forbids.
 */
import { loadPyodide } from "pyodide";
import createPyodideModule from "pyodide/pyodide.asm.mjs";
import { LoadedTree } from "../../../core/files/loaded-tree.ts";
import { createMemoryFileSystem } from "../../../core/files/memory-tree.ts";
import sdkSource from "../../../core/python/capsule.py" with { type: "text" };
import runnerSource from "../../../core/python/capsule_runner.py" with { type: "text" };
import {
  type PyodideSources,
  type PythonBridge,
  PythonEngine,
} from "../../../core/python/engine.ts";
import { answerFileCall } from "../../../core/python/files.ts";
import { gateFinalizers } from "../../../core/python/finalizer-gate.ts";
import type { PythonReply, PythonRequest } from "../../../core/python/protocol.ts";
import type { SandboxFileCopy } from "../../../core/python/tasks.ts";
import { bindFileOperations } from "../../../core/runtime/capabilities.ts";
import { MAX_SNAPSHOT_BYTES } from "../files.ts";
import type { PageMessage, SandboxFiles, SandboxMessage } from "./protocol.ts";

/** Where Pyodide believes its files are; only the fetch below answers for this address. */
const INDEX_URL = "https://pyodide.invalid/";

interface WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
  fetch: typeof fetch;
  addEventListener(type: string, listener: (event: Event) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

scope.onmessage = (event: MessageEvent) => {
  scope.onmessage = null;
  const { port, files, seal, makeSnapshot } = (event.data ?? {}) as {
    port?: MessagePort;
    files?: SandboxFiles;
    seal?: string;
    makeSnapshot?: boolean;
  };
  if (port === undefined || files === undefined) return;
  if (makeSnapshot === true) snapshot(port, files);
  else if (typeof seal === "string") start(port, files, seal);
};

/**
 * The build's snapshot of a loaded interpreter, made here because a snapshot keeps how the
 * engine that made it switches stacks: one made on Node cannot switch stacks in Chromium. Only
 * the build asks for it (scripts/browser-snapshot.mjs), in a Worker of its own; a sandbox's
 * Worker is started by the frame, which never sends this.
 */
function snapshot(port: MessagePort, files: SandboxFiles) {
  const bridge: PythonBridge = {
    callAsync: () => Promise.resolve({ error: "no runtime while a snapshot is made" }),
    log: () => {},
    fuelExhausted: () => {
      throw new Error("no fuel is counted while a snapshot is made");
    },
  };
  serveFilesFromMemory(files);
  loadEngine(files, bridge, true).then(
    (engine) => {
      const bytes = engine.makeSnapshot();
      port.postMessage({ type: "snapshot", bytes }, [bytes.buffer]);
    },
    (error: unknown) => port.postMessage({ type: "failed", message: describe(error) }),
  );
}

/**
 * `seal`: the page's secret for this sandbox, known before any guest code runs and kept only in
 * this closure. Every message this script sends carries it, through a postMessage bound to the
 * port before the guest could replace it; a message without it is the guest's, and the page ends
 * the run on it. The guest can still bend what this script reports (it shares the realm), so the
 * page decides no outcome on a figure from here alone (sandbox.ts).
 */
function start(port: MessagePort, files: SandboxFiles, seal: string) {
  const post = port.postMessage.bind(port);
  const send = (message: SandboxMessage) => post({ ...message, seal });
  // A task that breaks the interpreter (ctypes into the engine, say) ends its own run.
  const crashed = (error: unknown) => send({ type: "crashed", message: describe(error) });
  // Reported here, not passed up to the frame as an uncaught error.
  scope.addEventListener("error", (event) => {
    event.preventDefault();
    crashed((event as ErrorEvent).error ?? (event as ErrorEvent).message);
  });
  scope.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    crashed((event as PromiseRejectionEvent).reason);
  });

  const pending = new Map<number, (reply: PythonReply) => void>();
  let nextCall = 0;
  const call = (request: PythonRequest): Promise<PythonReply> => {
    const id = ++nextCall;
    return new Promise((resolve) => {
      pending.set(id, resolve);
      send({ type: "call", id, request });
    });
  };
  // The task's copy of its granted directories, set when its job arrives.
  let copy: { tree: LoadedTree; fsCall: ReturnType<typeof bindFileOperations> } | undefined;
  const bridge: PythonBridge = {
    // No shared memory here, so nothing blocks on the page: file calls are answered from the
    // copy, under the same policy, and a plain def task waits for the rest by switching stacks.
    answerFiles: (request) => {
      if (request.op !== "fs") throw new Error("only file calls are answered in the sandbox");
      return answerFileCall(request, (copy ?? NO_FILES).fsCall);
    },
    callAsync: call,
    log: (level, text) => send({ type: "log", level, text }),
    fuelExhausted: (budget) => {
      send({
        type: "call",
        id: ++nextCall,
        request: { op: "fuel_exhausted", budget: `${budget}` },
      });
      // Returning into the engine could land in one of its catch-all handlers: wait here until
      // the page, which terminates the Worker on that message, does so.
      for (;;) {}
    },
  };

  const started = performance.now();
  serveFilesFromMemory(files);
  // Before the engine's glue makes its registry (core/python/finalizer-gate.ts).
  const finalizers = gateFinalizers();
  const engine = loadEngine(files, bridge);
  engine.then(
    () => {
      // Nothing of the guest's has run yet: what it could use to run code of its own goes now.
      closeCodeRoutes();
      send({
        type: "ready",
        loadMs: Math.round(performance.now() - started),
        fromSnapshot: usableSnapshot(files) !== undefined,
      });
    },
    (error: unknown) => send({ type: "failed", message: `Python engine: ${describe(error)}` }),
  );

  let ran = false;
  port.onmessage = (event: MessageEvent<PageMessage>) => {
    const message = event.data;
    if (message?.type === "reply") {
      pending.get(message.id)?.(message.reply);
      pending.delete(message.id);
    } else if (message?.type === "run" && !ran) {
      ran = true;
      if (message.files) copy = copyOfGrants(message.files);
      const session = message.session;
      engine
        .then((python) => {
          // No finalization lands during the job, where its timing would change the task's fuel.
          finalizers.stop();
          if (session?.image) {
            python.restoreSession(session.image, message.job.ramBytes);
          }
          return python.run(message.job).then((result) => ({ ...result, python }));
        })
        .then(
          ({ python, steps: _steps, ...result }) => {
            const image =
              session && result.outcomeJson.startsWith('{"ok": true')
                ? takeImage(python)
                : undefined;
            post(
              {
                type: "done",
                ...result,
                changes: copy?.tree.changes(),
                ...(image && { session: image.session }),
                seal,
              } satisfies SandboxMessage & { seal: string },
              image?.transfer ?? [],
            );
          },
          (error: unknown) => send({ type: "failed", message: describe(error) }),
        );
    }
  };
}

/**
 * A session's image once its call has ended, as one buffer handed over to the page without a
 * copy (core/session/python-image.ts); or why the call's state cannot carry over.
 */
function takeImage(python: PythonEngine): {
  session: { image: Uint8Array } | { refused: string };
  transfer: Transferable[];
} {
  const taken = python.takeSession();
  if ("refused" in taken) return { session: taken, transfer: [] };
  const image = new Uint8Array(taken.parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of taken.parts) {
    image.set(part, offset);
    offset += part.byteLength;
  }
  return { session: { image }, transfer: [image.buffer] };
}

/**
 * The ways into this realm for code the engine does not meter, closed before the guest runs.
 * The frame's policy must let this Worker start from a blob, and a Worker inherits that policy,
 * so `importScripts(blob)` and `new Worker(blob)` would otherwise run any script the guest
 * writes, and 'wasm-unsafe-eval' (which the engine needs) any module it compiles. The engine is
 * compiled by now; nothing later needs these. Prototypes this script still uses while the guest
 * runs (the port, its messages, the fuel counter, promises) are frozen, so the guest cannot read
 * or redirect what passes through them. Code from strings is refused by the policy already.
 */
function closeCodeRoutes() {
  const removeEverywhere = (name: string) => {
    for (let holder: object | null = globalThis; holder !== null; ) {
      Reflect.deleteProperty(holder, name);
      holder = Object.getPrototypeOf(holder);
    }
  };
  for (const name of ["importScripts", "Worker", "SharedWorker"]) removeEverywhere(name);
  const wasm = WebAssembly as unknown as Record<string, unknown>;
  for (const name of ["compile", "compileStreaming", "instantiate", "instantiateStreaming"]) {
    delete wasm[name];
  }
  restrictModules();
  for (const frozen of [
    WebAssembly,
    WebAssembly.Global.prototype,
    WebAssembly.Memory.prototype,
    WebAssembly.Table.prototype,
    MessagePort.prototype,
    MessageEvent.prototype,
    Event.prototype,
    EventTarget.prototype,
    Promise,
    Promise.prototype,
  ]) {
    Object.freeze(frozen);
  }
  // Names this script looks up while the guest runs cannot be pointed elsewhere.
  for (const name of ["Number", "BigInt", "Promise", "Object", "WebAssembly", "JSON"]) {
    Object.defineProperty(globalThis, name, { writable: false, configurable: false });
  }
}

/**
 * The engine's glue still compiles one kind of module while a task runs: a wrapper that lets the
 * interpreter call a JavaScript function through its function table (ctypes, for one). Such a
 * module has a type, one imported function and its export, and no code of its own, so it runs
 * nothing unmetered; every other module is refused, and only a wrapper is instantiated.
 */
function restrictModules() {
  const NativeModule = WebAssembly.Module;
  const NativeInstance = WebAssembly.Instance;
  const wrappers = new WeakSet<WebAssembly.Module>();
  const refuse = () =>
    new TypeError(
      "this sandbox compiles no WebAssembly of its own (only the engine's wrappers of JavaScript functions)",
    );
  const Module = function Module(bytes: BufferSource) {
    if (new.target === undefined || !isFunctionWrapper(bytes)) throw refuse();
    const module = new NativeModule(bytes);
    wrappers.add(module);
    return module;
  } as unknown as typeof WebAssembly.Module;
  const Instance = function Instance(module: WebAssembly.Module, imports?: WebAssembly.Imports) {
    if (new.target === undefined || !wrappers.has(module)) throw refuse();
    return new NativeInstance(module, imports);
  } as unknown as typeof WebAssembly.Instance;
  for (const [replacement, native] of [
    [Module, NativeModule],
    [Instance, NativeInstance],
  ] as const) {
    Object.defineProperty(replacement, "prototype", { value: native.prototype });
    // Else `module.constructor` would hand back the constructor that compiles anything.
    Object.defineProperty(native.prototype, "constructor", { value: replacement });
    Object.freeze(native.prototype);
  }
  Object.assign(WebAssembly, { Module, Instance });
}

/** The tail every wrapper has after its type section: import e.f (type 0), export f. */
const WRAPPER_TAIL = [2, 7, 1, 1, 101, 1, 102, 0, 0, 7, 5, 1, 1, 102, 0, 0];

/** Header, one type section holding one function type, then `WRAPPER_TAIL`, and nothing else. */
function isFunctionWrapper(source: BufferSource): boolean {
  const bytes = ArrayBuffer.isView(source)
    ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
    : new Uint8Array(source);
  const header = [0, 97, 115, 109, 1, 0, 0, 0, 1];
  if (!header.every((byte, index) => bytes[index] === byte)) return false;
  let length = 0;
  let shift = 0;
  let at = header.length;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined || shift > 28) return false;
    length |= (byte & 0x7f) << shift;
    shift += 7;
    if ((byte & 0x80) === 0) break;
  }
  // One type, a function type (0x60).
  if (bytes[at] !== 1 || bytes[at + 1] !== 0x60) return false;
  const tail = at + length;
  return (
    bytes.length === tail + WRAPPER_TAIL.length &&
    WRAPPER_TAIL.every((byte, index) => bytes[tail + index] === byte)
  );
}

/** A task granted no files: every file call is refused by the policy, as on every host. */
const NO_FILES = { fsCall: bindFileOperations(null, []) };

/** The granted directories as the page copied them in, and the file policy over them. */
function copyOfGrants(files: SandboxFileCopy) {
  const tree = LoadedTree.fromEntries(files.granted, files.entries, {
    maxBytes: MAX_SNAPSHOT_BYTES,
  });
  return { tree, fsCall: bindFileOperations(createMemoryFileSystem(tree), files.grants) };
}

/**
 * The build's snapshot, where this engine can restore it: it was made with stack switching
 * (JSPI), and an engine without it loads from scratch instead.
 */
function usableSnapshot(files: SandboxFiles): Blob | undefined {
  return "Suspending" in WebAssembly ? files.snapshot : undefined;
}

async function loadEngine(
  files: SandboxFiles,
  bridge: PythonBridge,
  forSnapshot = false,
): Promise<PythonEngine> {
  const snapshot = usableSnapshot(files);
  const sources: PyodideSources = {
    loadPyodide: loadPyodide as unknown as PyodideSources["loadPyodide"],
    createModule: createPyodideModule as PyodideSources["createModule"],
    indexURL: INDEX_URL,
    // Compiles while the bytes are still being read.
    engine: await WebAssembly.compileStreaming(
      new Response(files.engine, { headers: { "content-type": "application/wasm" } }),
    ),
    ...(snapshot && { snapshot: new Uint8Array(await snapshot.arrayBuffer()) }),
    // Imported while the sandbox waits, as on Node: not every task's cost, and the same fuel.
    python: { sdk: sdkSource, runner: runnerSource },
  };
  return PythonEngine.load(sources, bridge, forSnapshot);
}

/**
 * The policy refuses every request this realm could make; Pyodide's loader still asks for its
 * files by URL, so `fetch` answers from the bytes the page posted, and refuses anything else.
 */
function serveFilesFromMemory(files: SandboxFiles) {
  const served = new Map<string, () => Response>([
    [`${INDEX_URL}python_stdlib.zip`, () => new Response(files.stdlib)],
    [
      `${INDEX_URL}pyodide-lock.json`,
      () => new Response(files.lock, { headers: { "content-type": "application/json" } }),
    ],
    // Asked for by Pyodide's default loader, which the engine replaces: never read.
    [`${INDEX_URL}pyodide.asm.wasm`, () => new Response(null, { status: 404 })],
  ]);
  scope.fetch = async (input: RequestInfo | URL) => {
    const url = input instanceof Request ? input.url : String(input);
    const answer = served.get(url);
    if (answer === undefined) {
      throw new TypeError(`this sandbox has no network: ${url} cannot be fetched`);
    }
    return answer();
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
