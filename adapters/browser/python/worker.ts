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
  CANNOT_BLOCK,
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

// Pyodide calls into Python through stack switching (JSPI) where the engine offers it, and
// through plain calls where it does not (Node 20): another path through the interpreter, with
// other allocations, and so other fuel for the same task. Every host takes the plain path.
for (const name of ["Suspending", "Suspender", "promising"]) {
  Reflect.deleteProperty(WebAssembly, name);
}

scope.onmessage = (event: MessageEvent) => {
  scope.onmessage = null;
  const { port, files } = (event.data ?? {}) as { port?: MessagePort; files?: SandboxFiles };
  if (port === undefined || files === undefined) return;
  start(port, files);
};

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
    // No shared memory here, so nothing can block on the page: file calls are answered from the
    // copy, under the same policy, and everything else needs an `async def` task.
    callSync: (request) => {
      if (request.op !== "fs" || copy === undefined) throw new Error(CANNOT_BLOCK);
      return answerFileCall(request, copy.fsCall);
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
        fromSnapshot: files.snapshot !== undefined,
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

/** The granted directories as the page copied them in, and the file policy over them. */
function copyOfGrants(files: SandboxFileCopy) {
  const tree = LoadedTree.fromEntries(files.granted, files.entries, {
    maxBytes: MAX_SNAPSHOT_BYTES,
  });
  return { tree, fsCall: bindFileOperations(createMemoryFileSystem(tree), files.grants) };
}

async function loadEngine(files: SandboxFiles, bridge: PythonBridge): Promise<PythonEngine> {
  const sources: PyodideSources = {
    loadPyodide: loadPyodide as unknown as PyodideSources["loadPyodide"],
    createModule: createPyodideModule as PyodideSources["createModule"],
    indexURL: INDEX_URL,
    // Compiles while the bytes are still being read.
    engine: await WebAssembly.compileStreaming(
      new Response(files.engine, { headers: { "content-type": "application/wasm" } }),
    ),
    ...(files.snapshot ? { snapshot: new Uint8Array(await files.snapshot.arrayBuffer()) } : {}),
    // Imported while the sandbox waits, as on Node: not every task's cost, and the same fuel.
    python: { sdk: sdkSource, runner: runnerSource },
  };
  return PythonEngine.load(sources, bridge);
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
