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
  const { port, files, makeSnapshot } = (event.data ?? {}) as {
    port?: MessagePort;
    files?: SandboxFiles;
    makeSnapshot?: boolean;
  };
  if (port === undefined || files === undefined) return;
  if (makeSnapshot === true) snapshot(port, files);
  else start(port, files);
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

function start(port: MessagePort, files: SandboxFiles) {
  const send = (message: SandboxMessage) => port.postMessage(message);
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
  const engine = loadEngine(files, bridge);
  engine.then(
    () =>
      send({
        type: "ready",
        loadMs: Math.round(performance.now() - started),
        fromSnapshot: usableSnapshot(files) !== undefined,
      }),
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
      engine
        .then((python) => python.run(message.job))
        .then(
          (result) => send({ type: "done", ...result, changes: copy?.tree.changes() }),
          (error: unknown) => send({ type: "failed", message: describe(error) }),
        );
    }
  };
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
