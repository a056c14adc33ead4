/**
 * One Python task attempt, in a child process that holds no authority: it is started with an
 * empty environment, Node's permission model (it may read Pyodide's own files and nothing else),
 * no code generation from strings, and, where the OS allows, in its own network and process
 * namespaces as an unprivileged user. Pyodide is not a sandbox; this process is the boundary.
 * Everything the task asks of the world goes to the parent as a message, which the parent checks:
 * the guest can forge any message, so nothing here is trusted by the parent.
 *
 * Channels (protocol.ts): messages out on fd 3, a line each and bounded by the runtime; the job,
 * the replies to awaited calls and the answer to a blocking call in on fd 0.
 */
import { constants, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import os from "node:os";
// Built into this script, so a pooled process imports them before its job arrives.
import sdkSource from "../../../core/python/capsule.py" with { type: "text" };
import runnerSource from "../../../core/python/capsule_runner.py" with { type: "text" };
import {
  type PyodideSources,
  type PythonBridge,
  PythonEngine,
} from "../../../core/python/engine.ts";
import { gateFinalizers } from "../../../core/python/finalizer-gate.ts";
import type { PythonReply, PythonRequest } from "../../../core/python/protocol.ts";
import {
  type ChildMessage,
  encodeChildMessage,
  LOG_CHUNK_CHARS,
  type ParentMessage,
} from "./protocol.ts";

const MESSAGE_FD = 3;
const INBOX_FD = 0;
/** A session's image, in and out (protocol.ts). */
const IMAGE_FD = 4;

// Pyodide's file-system set-up asks for the constants binding, which the permission model denies.
(process as unknown as { binding: (name: string) => unknown }).binding = (name: string) => {
  if (name === "constants") return { fs: constants };
  throw new Error(`process.binding("${name}") is not available`);
};

/**
 * What differs between Node lines and reaches the interpreter, taken away before Pyodide looks,
 * so that every line loads, snapshots and runs Python alike, with the same fuel, and a snapshot
 * made on one line starts on every other (one made on Node 22 or later failed on Node 20 with
 * "table index is out of bounds", and each line counted other fuel for the same task):
 * - `navigator` (Node 21 and later): the glue derives the interpreter's LANG from its language,
 *   "en_US.UTF-8" there against "C.UTF-8" without it; it also tells the host's CPU count.
 * - the engine's stack switching (JSPI, Node 24 and later), which Pyodide takes wherever it is
 *   offered and keeps in its memory. A task here never switches stacks: a call to the runtime
 *   blocks.
 */
Reflect.deleteProperty(globalThis, "navigator");
for (const name of ["Suspending", "Suspender", "promising"]) {
  Reflect.deleteProperty(WebAssembly, name);
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Writes the whole line before returning, so exiting after it loses nothing. */
function send(message: ChildMessage): void {
  writeAll(MESSAGE_FD, Buffer.from(encodeChildMessage(message)));
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(fd, bytes, offset);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The runtime went away: nothing is left to run for.
      if (code !== "EAGAIN") process.exit(0);
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/** Reads exactly `length` bytes of a session's image from fd 4. */
function readImage(length: number): Uint8Array {
  const image = new Uint8Array(length);
  let offset = 0;
  while (offset < length) {
    let read: number;
    try {
      read = readSync(IMAGE_FD, image, offset, length - offset, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Atomics.wait(pause, 0, 0, 1);
      continue;
    }
    if (read === 0) throw new Error("the runtime closed the image channel");
    offset += read;
  }
  return image;
}

/** Lines the runtime sent on fd 0, read and not yet taken. */
const inboxLines: string[] = [];
let inboxPartial: Buffer[] = [];
const inboxBuffer = Buffer.alloc(64 * 1024);

/** Splits what came in on fd 0 into lines, in order, whichever reader read it. */
function takeIn(data: Buffer) {
  let start = 0;
  for (let newline = data.indexOf(10); newline >= 0; newline = data.indexOf(10, start)) {
    inboxPartial.push(Buffer.from(data.subarray(start, newline)));
    inboxLines.push(Buffer.concat(inboxPartial).toString("utf8"));
    inboxPartial = [];
    start = newline + 1;
  }
  if (start < data.length) inboxPartial.push(Buffer.from(data.subarray(start)));
}

/**
 * Reads what the runtime has sent so far, without waiting (fd 0 is non-blocking: Node's stdin
 * stream, below, makes it so); false once the runtime closed it. Used while the event loop is
 * blocked in a synchronous call; otherwise the stream reads.
 */
function readInbox(): boolean {
  for (;;) {
    let read: number;
    try {
      read = readSync(INBOX_FD, inboxBuffer, 0, inboxBuffer.length, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") return true;
      throw error;
    }
    if (read === 0) return false;
    takeIn(inboxBuffer.subarray(0, read));
  }
}

/** How the runtime's answer to a blocking request starts (it writes it with JSON.stringify). */
const ANSWER_PREFIX = '{"type":"answer"';

/** A blocking call to the parent: one message out on fd 3, its answer back on fd 0. */
function callParent(request: PythonRequest): PythonReply {
  send({ type: "request", request });
  for (;;) {
    if (!readInbox()) throw new Error("the runtime closed the channel");
    const index = inboxLines.findIndex((line) => line.startsWith(ANSWER_PREFIX));
    if (index >= 0) {
      const [line] = inboxLines.splice(index, 1);
      // Other lines read meanwhile (awaited replies) are handled once the event loop runs.
      if (inboxLines.length > 0) setImmediate(dispatch);
      return (JSON.parse(line as string) as { reply: PythonReply }).reply;
    }
    Atomics.wait(pause, 0, 0, 1);
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
  return withoutGcTrampoline(() => PythonEngine.load(sources, bridge, snapshot.make === true));
}

/**
 * CPython calls C function pointers through a trampoline: Pyodide compiles one with wasm GC
 * instructions where the engine has them (Node 22 and later) and calls through JavaScript where
 * it does not (Node 20, whose V8 knows only an older draft). The choice is a table index kept in
 * the interpreter's memory, and so in the build's snapshot: one made on Node 22 named a slot Node
 * 20 never fills ("table index is out of bounds"), and each path counts other fuel. Here the
 * trampoline module is refused while Pyodide loads, so every line calls through JavaScript (no
 * slower measurably here: the metered engine's own work dominates), and a snapshot made on any
 * line starts on every other with the same fuel.
 */
async function withoutGcTrampoline<T>(load: () => Promise<T>): Promise<T> {
  const NativeModule = WebAssembly.Module;
  const isTrampoline = (module: WebAssembly.Module) =>
    NativeModule.exports(module).some((entry) => entry.name === "trampoline_call") &&
    NativeModule.imports(module).some((entry) => entry.name === "__indirect_function_table");
  const guarded: typeof WebAssembly.Module = new Proxy(NativeModule, {
    construct(target, args, newTarget): WebAssembly.Module {
      const module: WebAssembly.Module = Reflect.construct(
        target,
        args,
        newTarget === guarded ? target : newTarget,
      );
      if (isTrampoline(module)) {
        throw new WebAssembly.CompileError("the wasm GC call trampoline is not used here");
      }
      return module;
    },
  });
  WebAssembly.Module = guarded;
  try {
    return await load();
  } finally {
    WebAssembly.Module = NativeModule;
  }
}

/** The channels to the runtime: every message out on fd 3, every reply in on fd 0. */
const bridge: PythonBridge = {
  callSync: callParent,
  callAsync: (request) => callParentAsync(request),
  log: (level, text) => {
    for (let start = 0; start < text.length || start === 0; start += LOG_CHUNK_CHARS) {
      send({ type: "log", level, text: text.slice(start, start + LOG_CHUNK_CHARS) });
    }
  },
  // The process is the sandbox: it ends here, where no handler in the engine can catch it.
  fuelExhausted: (budget) => {
    send({ type: "request", request: { op: "fuel_exhausted", budget: budget.toString() } });
    process.exit(0);
  },
  // While the task holds the event loop, the stdin stream cannot see the runtime go away.
  endIfOrphaned: () => {
    if (!readInbox()) process.exit(0);
    if (inboxLines.length > 0) setImmediate(dispatch);
  },
};

const pendingCalls = new Map<number, (reply: PythonReply) => void>();
let nextCall = 0;

/** A call the guest awaits while it goes on: the reply comes back on fd 0, in its turn. */
function callParentAsync(request: PythonRequest): Promise<PythonReply> {
  const id = ++nextCall;
  return new Promise((resolve) => {
    pendingCalls.set(id, resolve);
    send({ type: "call", id, request });
  });
}

const [pyodideDir = "", engineFile = "", mode = "", snapshotFile = ""] = process.argv.slice(2);
if (mode === "--make-snapshot") {
  // Run by the build, outside any sandbox and on no task: load, then save the memory.
  const loaded = await loadEngine(pyodideDir, engineFile, { make: true });
  writeFileSync(snapshotFile, loaded.makeSnapshot());
  process.exit(0);
}
// Before the engine's glue makes its registry (core/python/finalizer-gate.ts).
const finalizers = gateFinalizers();
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
  send({ type: "crashed", message: describe(error) });
  process.exit(0);
};
process.on("uncaughtException", crashed);
process.on("unhandledRejection", crashed);

let started = false;
function receive(message: ParentMessage) {
  if (message.type === "reply") {
    pendingCalls.get(message.id)?.(message.reply);
    pendingCalls.delete(message.id);
    return;
  }
  if (message.type !== "job" || started) return;
  started = true;
  const received = performance.now();
  const session = message.session;
  engine
    .then((loaded) => {
      // No finalization lands during the job, where its timing would change the task's fuel.
      finalizers.stop();
      if (session !== undefined && session.imageBytes > 0) {
        loaded.restoreSession(readImage(session.imageBytes), message.job.ramBytes);
      }
      hideHostFacts();
      return loaded.run(message.job).then((result) => ({ ...result, loaded }));
    })
    .then(({ steps, loaded, outcomeJson, ramUsed, fuelConsumed }) => {
      // A session's image, taken only when its task succeeded (the runtime keeps no other).
      let image: { bytes: number } | { refused: string } | undefined;
      if (session !== undefined && outcomeJson.startsWith('{"ok": true')) {
        const taken = loaded.takeSession();
        if ("refused" in taken) image = taken;
        else {
          for (const part of taken.parts) writeAll(IMAGE_FD, part);
          image = { bytes: taken.parts.reduce((sum, part) => sum + part.byteLength, 0) };
        }
      }
      // Where the run's time went, for the bench's report of each step.
      send({
        type: "done",
        outcomeJson,
        ramUsed,
        fuelConsumed,
        steps: { ...steps, childMs: performance.now() - received },
        ...(image && { image }),
      });
    })
    .catch((error: unknown) => send({ type: "failed", message: describe(error) }))
    .finally(() => process.exit(0));
}

// The job and the replies to awaited calls arrive on Node's stdin stream (no thread: a read
// waiting on one would keep the process from exiting; allowed under the permission model on
// every Node line). Its end means the runtime went away: nothing is left to run for.
const dispatch = () => {
  for (let line = inboxLines.shift(); line !== undefined; line = inboxLines.shift()) {
    receive(JSON.parse(line) as ParentMessage);
  }
};
process.stdin
  .on("data", (chunk: Buffer) => {
    takeIn(chunk);
    dispatch();
  })
  .on("end", () => process.exit(0))
  .on("error", () => process.exit(0));

/**
 * What this realm says about the host, made neutral before the task's code runs: the task sees
 * what a JavaScript task sees (working directory "/", no arguments, no host name or paths).
 * Inside the interpreter-only root the paths are neutral anyway (/capsule/...); this covers the
 * values Node keeps from its start and machines where that root is not available.
 */
function hideHostFacts() {
  const fix = (target: object, key: string, value: unknown) =>
    Object.defineProperty(target, key, {
      value,
      writable: false,
      configurable: false,
      enumerable: true,
    });
  fix(process, "argv", []);
  // process.argv0 cannot be redefined: it is the path the child was started by, /capsule/node
  // inside the interpreter-only root, "node" where no wrapper runs (see runner.ts).
  fix(process, "execArgv", []);
  fix(process, "execPath", "/capsule/node");
  fix(process, "title", "node");
  fix(process, "cwd", () => "/");
  fix(process, "chdir", () => {
    throw new Error("process.chdir is not available");
  });
  // The diagnostic report holds the host's name, paths, command line, libraries and network.
  fix(process, "report", undefined);
  fix(process, "mainModule", undefined);
  const neutral: Record<string, unknown> = {
    hostname: () => "capsule",
    homedir: () => "/",
    userInfo: () => ({ uid: 65534, gid: 65534, username: "nobody", homedir: "/", shell: null }),
    networkInterfaces: () => ({}),
  };
  for (const [key, value] of Object.entries(neutral)) fix(os, key, value);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
