/**
 * One Python task attempt, in a child process that holds no authority: it is started with an
 * empty environment, Node's permission model (it may read Pyodide's own files and nothing else),
 * no code generation from strings, and, where the OS allows, in its own network and process
 * namespaces as an unprivileged user. Pyodide is not a sandbox; this process is the boundary.
 * Everything the task asks of the world goes to the parent as a message, which the parent checks:
 * the guest can forge any message, so nothing here is trusted by the parent.
 *
 * Channels: IPC for the job and its outcome (`process.send`); fd 4 (requests) and fd 0 (replies)
 * for calls the Python code makes synchronously, such as running a sub-task.
 */
import { constants, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
// Built into this script, so a pooled process imports them before its job arrives.
import sdkSource from "../../../core/python/capsule.py" with { type: "text" };
import runnerSource from "../../../core/python/capsule_runner.py" with { type: "text" };
import {
  type PyodideSources,
  type PythonBridge,
  PythonEngine,
} from "../../../core/python/engine.ts";
import type { PythonReply, PythonRequest } from "../../../core/python/protocol.ts";
import type { ChildMessage, ParentMessage } from "./protocol.ts";

const REQUEST_FD = 4;
const REPLY_FD = 0;

// Pyodide's file-system set-up asks for the constants binding, which the permission model denies.
(process as unknown as { binding: (name: string) => unknown }).binding = (name: string) => {
  if (name === "constants") return { fs: constants };
  throw new Error(`process.binding("${name}") is not available`);
};

/** Resolves once the message is handed to the channel, so exiting after it loses nothing. */
const send = (message: ChildMessage) =>
  new Promise<void>((resolve) => {
    if (process.send === undefined) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });

/** A blocking call to the parent: one JSON line out on fd 4, one line back on fd 0. */
function callParent(request: PythonRequest): PythonReply {
  writeSync(REQUEST_FD, `${JSON.stringify(request)}\n`);
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(64 * 1024);
  for (;;) {
    const read = readBlocking(buffer);
    if (read === 0) throw new Error("the runtime closed the channel");
    const newline = buffer.subarray(0, read).indexOf(10);
    if (newline >= 0) {
      chunks.push(Buffer.from(buffer.subarray(0, newline)));
      return JSON.parse(Buffer.concat(chunks).toString("utf8")) as PythonReply;
    }
    chunks.push(Buffer.from(buffer.subarray(0, read)));
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** The reply pipe is non-blocking (libuv makes it so): wait a millisecond between tries. */
function readBlocking(buffer: Buffer): number {
  for (;;) {
    try {
      return readSync(REPLY_FD, buffer, 0, buffer.length, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/**
 * Loads Pyodide on the metered engine before any job, so a pooled process is ready at once:
 * from the build's memory snapshot when there is one (about a second), else from scratch.
 */
async function loadEngine(
  pyodideDir: string,
  engineFile: string,
  snapshot: { load?: string; make?: boolean },
): Promise<PythonEngine> {
  const indexURL = pyodideDir.endsWith("/") ? pyodideDir : `${pyodideDir}/`;
  const { loadPyodide } = (await import(`${indexURL}pyodide.mjs`)) as {
    loadPyodide: PyodideSources["loadPyodide"];
  };
  const createModule = ((await import(`${indexURL}pyodide.asm.mjs`)) as { default: unknown })
    .default as PyodideSources["createModule"];
  const sources: PyodideSources = {
    loadPyodide,
    createModule,
    indexURL,
    engine: await WebAssembly.compile(readFileSync(engineFile)),
    ...(snapshot.load ? { snapshot: readFileSync(snapshot.load) } : {}),
    python: { sdk: sdkSource, runner: runnerSource },
  };
  return PythonEngine.load(sources, bridge, snapshot.make === true);
}

/** The channels to the runtime: sync calls over fd 4/fd 0, async ones and logs over IPC. */
const bridge: PythonBridge = {
  callSync: callParent,
  callAsync: (request) => callParentAsync(request),
  log: (level, text) => void send({ type: "log", level, text }),
  // The process is the sandbox: it ends here, where no handler in the engine can catch it.
  fuelExhausted: (budget) => {
    writeSync(
      REQUEST_FD,
      `${JSON.stringify({ op: "fuel_exhausted", budget: budget.toString() })}\n`,
    );
    process.exit(0);
  },
};

const pendingCalls = new Map<number, (reply: PythonReply) => void>();
let nextCall = 0;

/** A call the guest awaits while it goes on: the reply comes back as an IPC message. */
function callParentAsync(request: PythonRequest): Promise<PythonReply> {
  const id = ++nextCall;
  return new Promise((resolve) => {
    pendingCalls.set(id, resolve);
    void send({ type: "call", id, request });
  });
}

const [pyodideDir = "", engineFile = "", mode = "", snapshotFile = ""] = process.argv.slice(2);
if (mode === "--make-snapshot") {
  // Run by the build, outside any sandbox and on no task: load, then save the memory.
  const loaded = await loadEngine(pyodideDir, engineFile, { make: true });
  writeFileSync(snapshotFile, loaded.makeSnapshot());
  process.exit(0);
}
const engine = loadEngine(
  pyodideDir,
  engineFile,
  mode === "--snapshot" ? { load: snapshotFile } : {},
);
engine.then(
  () => send({ type: "ready" }),
  (error: unknown) => send({ type: "failed", message: describe(error) }),
);
// A task that breaks the interpreter (ctypes into the engine, say) ends its own run: what broke
// is reported as the task's failure, and the process, which is the sandbox, is gone with it.
const crashed = (error: unknown) => {
  void send({ type: "crashed", message: describe(error) }).finally(() => process.exit(0));
};
process.on("uncaughtException", crashed);
process.on("unhandledRejection", crashed);

// The runtime went away (killed, crashed): nothing is left to run for.
process.once("disconnect", () => process.exit(0));
let started = false;
process.on("message", (message: ParentMessage) => {
  if (message.type === "reply") {
    pendingCalls.get(message.id)?.(message.reply);
    pendingCalls.delete(message.id);
    return;
  }
  if (message.type !== "job" || started) return;
  started = true;
  const received = performance.now();
  engine
    .then((loaded) => loaded.run(message.job))
    .then(({ steps, ...result }) =>
      // Where the run's time went, for the bench's report of each step.
      send({ type: "done", ...result, steps: { ...steps, childMs: performance.now() - received } }),
    )
    .catch((error: unknown) => send({ type: "failed", message: describe(error) }))
    .finally(() => process.exit(0));
});

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
