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
import type { ChildJob, ChildMessage, SyncReply, SyncRequest } from "./protocol.ts";

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
function callParent(request: SyncRequest): SyncReply {
  writeSync(REQUEST_FD, `${JSON.stringify(request)}\n`);
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(64 * 1024);
  for (;;) {
    const read = readBlocking(buffer);
    if (read === 0) throw new Error("the runtime closed the channel");
    const newline = buffer.subarray(0, read).indexOf(10);
    if (newline >= 0) {
      chunks.push(Buffer.from(buffer.subarray(0, newline)));
      return JSON.parse(Buffer.concat(chunks).toString("utf8")) as SyncReply;
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

interface PyodideLike {
  runPythonAsync(code: string, options?: { globals?: unknown }): Promise<unknown>;
  registerJsModule(name: string, module: object): void;
  setStdin(options: { error: boolean }): void;
  setStdout(options: { batched: (text: string) => void }): void;
  setStderr(options: { batched: (text: string) => void }): void;
  FS: { writeFile(path: string, data: string): void; mkdirTree(path: string): void };
  makeMemorySnapshot(): Uint8Array;
  toPy(value: unknown): unknown;
}

/** The task's ram, set when the job arrives; until then the loader's own needs. */
let ramLimit = Number.POSITIVE_INFINITY;

/** The metered engine's counter while a task runs; a huge allowance while the runtime sets up. */
const UNMETERED = 1n << 62n;
let fuelGlobal: WebAssembly.Global | undefined;
let budget = 0n;

/**
 * Called by the engine when the counter drops below `tick` (kept at 0: only when the budget is
 * spent). The process is the sandbox, so it ends here: a throw could be caught by one of the
 * engine's own catch-all handlers, an exit cannot.
 */
function refuel(counter: bigint): bigint {
  if (counter >= 0n || budget === 0n) return counter;
  writeSync(REQUEST_FD, `${JSON.stringify({ op: "fuel_exhausted", budget: budget.toString() })}\n`);
  process.exit(0);
}

/**
 * Loads Pyodide on the metered engine before any job, so a pooled process is ready at once:
 * from a memory snapshot of a loaded interpreter when the build made one (about a second), else
 * from scratch (several seconds). With `make`, only loads: the build then snapshots that state,
 * which must not hold anything this process adds afterwards.
 */
async function loadEngine(
  pyodideDir: string,
  engineFile: string,
  snapshot: { load?: string; make?: boolean },
): Promise<PyodideLike> {
  const indexURL = pyodideDir.endsWith("/") ? pyodideDir : `${pyodideDir}/`;
  const { loadPyodide } = (await import(`${indexURL}pyodide.mjs`)) as {
    loadPyodide(options: Record<string, unknown>): Promise<PyodideLike>;
  };
  const createModule = ((await import(`${indexURL}pyodide.asm.mjs`)) as { default: unknown })
    .default as (settings: Record<string, unknown>) => unknown;
  const module = await WebAssembly.compile(readFileSync(engineFile));
  const pyodide = await loadPyodide({
    indexURL,
    ...(snapshot.make ? { _makeSnapshot: true } : {}),
    ...(snapshot.load ? { _loadSnapshot: readFileSync(snapshot.load) } : {}),
    // Fixed string hashing: a dict's order, and so the work a task does, must not depend on chance.
    env: { PYTHONHASHSEED: "0", HOME: "/home/pyodide" },
    createPyodideModule: (settings: Record<string, unknown>) => {
      settings.instantiateWasm = (
        imports: Record<string, Record<string, unknown>>,
        done: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void,
      ) => {
        const env = imports.env as Record<string, unknown>;
        // Growing the heap past the task's ram fails, and Python raises MemoryError.
        const resize = env.emscripten_resize_heap as (bytes: number) => number;
        env.emscripten_resize_heap = (bytes: number) =>
          bytes >>> 0 > ramLimit ? 0 : resize(bytes);
        // Pyodide's own fallback for the helper module it would compile from bytes at run time.
        const marker = Symbol("error");
        env.Jsv_GetError_import = () => marker;
        env.JsvError_Check = (value: unknown) => value === marker;
        imports.capsule = { refuel };
        WebAssembly.instantiate(module, imports as WebAssembly.Imports).then((instance) => {
          fuelGlobal = instance.exports.fuel as WebAssembly.Global;
          (instance.exports.tick as WebAssembly.Global).value = 0n;
          fuelGlobal.value = UNMETERED;
          done(instance, module);
        });
        return {};
      };
      return createModule(settings);
    },
  });
  if (snapshot.make) return pyodide;
  // The protocol owns fd 0 and fd 1: Python's input() fails, print() goes to the task's log.
  pyodide.setStdin({ error: true });
  pyodide.setStdout({ batched: (text) => send({ type: "log", level: "log", text }) });
  pyodide.setStderr({ batched: (text) => send({ type: "log", level: "error", text }) });
  pyodide.registerJsModule("_capsule_host", {
    run_subtask: (name: string, argsJson: string) => {
      const reply = callParent({
        op: "run_subtask",
        name: String(name),
        argsJson: String(argsJson),
      });
      if ("error" in reply) throw new Error(reply.error);
      return reply.json;
    },
    fetch: (requestJson: string) => {
      const reply = callParent({ op: "fetch", requestJson: String(requestJson) });
      if ("error" in reply) throw new Error(reply.error);
      return reply.json;
    },
  });
  // What every run imports, imported while the process waits in the pool: a restored snapshot
  // has not run asyncio yet, and a run would otherwise pay for it (about 150 ms here).
  await pyodide.runPythonAsync(
    "import asyncio, base64, functools, inspect, json, linecache, traceback",
  );
  return pyodide;
}

async function run(pyodide: PyodideLike, job: ChildJob): Promise<void> {
  ramLimit = job.ramBytes;
  if (fuelGlobal === undefined) throw new Error("the engine has no fuel counter");
  pyodide.FS.mkdirTree("/lib/capsule");
  pyodide.FS.writeFile("/lib/capsule/capsule.py", job.sdkSource);
  pyodide.FS.writeFile("/lib/capsule/capsule_runner.py", job.runnerSource);
  const globals = pyodide.toPy({ job_json: JSON.stringify(job.task) });
  budget = BigInt(job.fuel);
  fuelGlobal.value = budget;
  const outcomeJson = (await pyodide.runPythonAsync(
    "import sys\nsys.path.insert(0, '/lib/capsule')\nimport capsule_runner\nawait capsule_runner.main(job_json)",
    { globals },
  )) as string;
  const fuelConsumed = Number(budget - (fuelGlobal.value as bigint));
  fuelGlobal.value = UNMETERED;
  const heap = (pyodide as unknown as { _module: { HEAPU8: Uint8Array } })._module.HEAPU8;
  await send({ type: "done", outcomeJson, ramUsed: heap.byteLength, fuelConsumed });
}

const [pyodideDir = "", engineFile = "", mode = "", snapshotFile = ""] = process.argv.slice(2);
if (mode === "--make-snapshot") {
  // Run by the build, outside any sandbox and on no task: load, then save the memory.
  const pyodide = await loadEngine(pyodideDir, engineFile, { make: true });
  writeFileSync(snapshotFile, pyodide.makeMemorySnapshot());
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
process.once("message", (job: ChildJob) => {
  engine
    .then((pyodide) => run(pyodide, job))
    .catch((error: unknown) => send({ type: "failed", message: describe(error) }))
    .finally(() => process.exit(0));
});

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
