/**
 * One Python task attempt, in a child process that holds no authority: it is started with an
 * empty environment, Node's permission model (it may read Pyodide's own files and nothing else),
 * no code generation from strings, and, where the OS allows, in its own network and process
 * namespaces as an unprivileged user. Pyodide is not a sandbox; this process is the boundary.
 * Everything the task asks of the world goes to the parent as a message, which the parent checks:
 * the guest can forge any message, so nothing here is trusted by the parent.
 *
 * Channels (protocol.ts): messages out on fd 3, a line each and bounded by the runtime; the job
 * and the replies to awaited calls in on fd 4; the reply to a blocking call in on fd 0.
 */
import {
  constants,
  createReadStream,
  readFileSync,
  readSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import os from "node:os";
// Built into this script, so a pooled process imports them before its job arrives.
import sdkSource from "../../../core/python/capsule.py" with { type: "text" };
import runnerSource from "../../../core/python/capsule_runner.py" with { type: "text" };
import {
  type PyodideSources,
  type PythonBridge,
  PythonEngine,
} from "../../../core/python/engine.ts";
import type { PythonReply, PythonRequest } from "../../../core/python/protocol.ts";
import {
  type ChildMessage,
  encodeChildMessage,
  LOG_CHUNK_CHARS,
  type ParentMessage,
} from "./protocol.ts";

const MESSAGE_FD = 3;
const INBOX_FD = 4;
const REPLY_FD = 0;

// Pyodide's file-system set-up asks for the constants binding, which the permission model denies.
(process as unknown as { binding: (name: string) => unknown }).binding = (name: string) => {
  if (name === "constants") return { fs: constants };
  throw new Error(`process.binding("${name}") is not available`);
};

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Writes the whole line before returning, so exiting after it loses nothing. */
function send(message: ChildMessage): void {
  const bytes = Buffer.from(encodeChildMessage(message));
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(MESSAGE_FD, bytes, offset);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The runtime went away: nothing is left to run for.
      if (code !== "EAGAIN") process.exit(0);
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

/** A blocking call to the parent: one message out on fd 3, one line back on fd 0. */
function callParent(request: PythonRequest): PythonReply {
  send({ type: "request", request });
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
};

const pendingCalls = new Map<number, (reply: PythonReply) => void>();
let nextCall = 0;

/** A call the guest awaits while it goes on: the reply comes back on fd 4. */
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
  engine
    .then((loaded) => {
      hideHostFacts();
      return loaded.run(message.job);
    })
    .then(({ steps, ...result }) =>
      // Where the run's time went, for the bench's report of each step.
      send({ type: "done", ...result, steps: { ...steps, childMs: performance.now() - received } }),
    )
    .catch((error: unknown) => send({ type: "failed", message: describe(error) }))
    .finally(() => process.exit(0));
}

// fd 4 is read on a thread of its own (a blocking read): Node 25 and later refuse a socket on
// it without --allow-net. Its end means the runtime went away: nothing is left to run for.
let inbox = "";
createReadStream("", { fd: INBOX_FD, encoding: "utf8" })
  .on("data", (chunk) => {
    inbox += chunk;
    for (let newline = inbox.indexOf("\n"); newline >= 0; newline = inbox.indexOf("\n")) {
      const line = inbox.slice(0, newline);
      inbox = inbox.slice(newline + 1);
      receive(JSON.parse(line) as ParentMessage);
    }
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
