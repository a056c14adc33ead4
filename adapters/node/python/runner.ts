/**
 * Python tasks on Node: each job (reading a file's tasks, or one attempt) runs in its own child
 * process (child.ts) that holds no authority, from a small pool of processes started ahead
 * (Pyodide takes seconds to load). This file starts, checks and kills those processes; what runs
 * in them, and how their requests are answered, is core/python/tasks.ts, as in a page.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmdirSync,
} from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  type CapsuleError,
  FuelExhaustedError,
  InternalError,
  MemoryExceededError,
  TaskError,
  TimeoutError,
} from "../../../core/errors.ts";
import {
  checkPythonRequest,
  type PythonJob,
  type PythonJobResult,
  type PythonReply,
  type PythonRequest,
} from "../../../core/python/protocol.ts";
import {
  cancelled,
  createPythonRunner,
  fuelExhausted,
  interpreterBroken,
  type PythonTaskRequest,
  type SandboxRun,
} from "../../../core/python/tasks.ts";
import type { Envelope } from "../../../core/runtime/envelope.ts";
import { checkSessionImage, maxImageBytes } from "../../../core/session/python-image.ts";
import { packageRoot } from "../paths.ts";
import { DIES_WITH_PARENT, findSetpriv } from "../setpriv.ts";
import { type ChildMessage, MessageReader, OUTCOME_TAG, type ParentMessage } from "./protocol.ts";

const childEntry = join(packageRoot, "dist", "python", "child.mjs");
const engineFile = join(packageRoot, "dist", "pyodide-metered.wasm");
/** A loaded interpreter's memory, made by the build; a child starts from it when it is there. */
const snapshotFile = join(packageRoot, "dist", "python", "pyodide-snapshot.bin");

/** What keeps a Python child from the host, on this machine. */
export interface PythonIsolation {
  /**
   * Always: Node's permission model, an empty environment, no code from strings, the wasm
   * memory's size capped by V8 at the task's ram (`--wasm-max-mem-pages`), which holds even for
   * code that reaches the memory object from JavaScript, and a JavaScript realm whose argv,
   * execPath, cwd, title, diagnostic report and os host facts are neutral before the task runs.
   */
  permissionModel: true;
  /** Linux namespaces: no network, no other processes to signal; as user nobody. */
  namespaces: boolean;
  /**
   * "interpreter-only": the child runs in its own mount and UTS namespaces, rooted in an empty
   * read-only tmpfs that holds only what it needs (the node binary and its libraries, Pyodide,
   * the child script, the metered engine, all read-only under /capsule), with host name
   * "capsule": no host socket, file or path is there to find. "host": it sees the host's files
   * (reads refused by the permission model) and their paths.
   */
  fileView: "interpreter-only" | "host";
  /**
   * What keeps a task from the host's IPC: Unix sockets in the file system (D-Bus, databases,
   * Docker, X11) and abstract ones. "namespaces": the file view above holds no socket and the
   * network namespace no abstract one; "permission-model": Node 25 and later refuse every
   * connection without `--allow-net`; "none": neither is available here, and a Python task can
   * connect to any Unix socket that the child's user may open.
   */
  hostIpcRefusedBy: "namespaces" | "permission-model" | "none";
  /**
   * Node's permission model refuses the child every connection of its own, TCP, UDP and Unix
   * sockets alike (Node 25 and later: the child is not given `--allow-net`). Behind the
   * namespaces where both are there; the only wall against the network where the OS gives no
   * namespaces. Before Node 25 the permission model has no say over the network.
   */
  permissionModelRefusesNetwork: boolean;
  /**
   * The process's data size capped (RLIMIT_DATA, through `prlimit`) at the task's ram plus what
   * Node and Pyodide need: memory the guest allocates from JavaScript is bounded too.
   */
  processMemoryCap: boolean;
}

/** Where the child finds its files: the same paths as the host's, or under /capsule. */
interface ChildPaths {
  node: string;
  pyodideDir: string;
  child: string;
  engine: string;
  snapshot: string | null;
}

interface IsolationSetup {
  /** Runs the child in namespaces as nobody; empty where the OS refuses. */
  wrapper: string[];
  /** Where `prlimit` works: the command prefix that caps a child's data size (and no core). */
  dataLimit: ((bytes: number) => string[]) | null;
  paths: ChildPaths;
  active: PythonIsolation;
}

let isolation: IsolationSetup | undefined;
let detecting: Promise<void> | undefined;

/** Tries the wrappers once; where the OS refuses one, children run without it. */
function isolationSetup(): IsolationSetup {
  isolation ??= detectIsolation({}, probeNow);
  return isolation;
}

/**
 * Tries the wrappers before the first child is started, with every probe at once and none of
 * them blocking the event loop: run one at a time with spawnSync, the three probes (each starts
 * node) held a server's event loop for 0.2-0.4 s, and for seconds on a loaded machine.
 */
function detectIsolationAhead(): Promise<void> {
  if (isolation !== undefined) return Promise.resolve();
  detecting ??= (async () => {
    // The probes detection would make: asked with every answer "no", the fallbacks are asked too.
    const asked: string[][] = [];
    detectIsolation({}, (command) => {
      asked.push(command);
      return false;
    });
    const answers = await Promise.all(asked.map(probeLater));
    const known = new Map(asked.map((command, i) => [command.join("\0"), answers[i]]));
    isolation ??= detectIsolation(
      {},
      (command) => known.get(command.join("\0")) ?? probeNow(command),
    );
  })().catch(() => {
    // Detection failed (no Pyodide?): the first child tries again, and its run says why.
  });
  return detecting;
}

/** Whether `command` runs and exits 0, with nothing from the host's environment. */
function probeNow(command: string[]): boolean {
  return (
    spawnSync(command[0] as string, command.slice(1), {
      env: {},
      stdio: "ignore",
      timeout: PROBE_TIMEOUT_MS,
    }).status === 0
  );
}

function probeLater(command: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command[0] as string, command.slice(1), {
      env: {},
      stdio: "ignore",
      timeout: PROBE_TIMEOUT_MS,
    });
    child.once("error", () => resolve(false));
    child.once("exit", (code) => resolve(code === 0));
  });
}

const PROBE_TIMEOUT_MS = 10_000;

/** What keeps a Python child from the host on this machine, for the features table. */
export function pythonIsolation(): PythonIsolation {
  return isolationSetup().active;
}

/**
 * From here on, Python children run without namespaces or the interpreter-only root, as on a
 * machine that gives neither: Node's permission model, the empty environment and the process
 * caps are their walls. For tests that show what the permission model alone refuses on the Node
 * line they run on; not exported by the package. Children started before are ended.
 */
export function usePermissionModelOnly(): void {
  shutdownPython();
  isolation = detectIsolation({ namespaces: false }, probeNow);
}

/**
 * The permission model's flag for this Node: `--permission` from 22.13 and 23.5 (24 and later
 * refuse the old name), `--experimental-permission` before.
 */
export function permissionFlag(version: string = process.versions.node): string {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  const stable = major >= 24 || (major === 23 && minor >= 5) || (major === 22 && minor >= 13);
  return stable ? "--permission" : "--experimental-permission";
}

/** From Node 25 the permission model refuses all networking, Unix sockets included. */
export function permissionCoversNetwork(version: string = process.versions.node): boolean {
  return Number(version.split(".")[0]) >= 25;
}

/**
 * What Node, Pyodide's JavaScript side and a restored snapshot hold besides the wasm memory
 * (measured: 277 MB of data once ready), with room for a run's own messages.
 */
const PROCESS_OVERHEAD_BYTES = 512 * 1024 * 1024;

/**
 * The child's own JavaScript heap (a task's wasm memory is not in it; about 20 MiB is in use once
 * ready), the same on every Node line. Without it, a task allocating in its JavaScript realm up to
 * the process's data cap ended on Node 20 and 22 as memory_exceeded in about 4 s, but on Node 24
 * and 26 kept the collector busy until the CPU backstop ended it as fuel_exhausted (10-13 s);
 * with it, every line ends it as memory_exceeded in about 4-5 s.
 */
const CHILD_HEAP_MIB = 256;

/** The host name a Python task sees (in the UTS namespace, and from Node's os module). */
export const PYTHON_HOST_NAME = "capsule";

/**
 * Run as root inside new mount, UTS, network and process namespaces: mounts an empty tmpfs on
 * the root directory given, binds each `source target` pair read-only into it, makes it
 * read-only, names the host, and runs the command there with an empty environment (the shell's
 * own PWD not passed on). Arguments: root, `chroot-drops-user` or `command-drops-user` (the
 * command becomes nobody itself, as setpriv does), pairs, `--`, command.
 */
const FILE_VIEW_SCRIPT = `set -e
root=$1; drop=$2; shift 2
mount -t tmpfs -o size=1m,mode=0755,nosuid,nodev capsule-python "$root"
while [ "$1" != "--" ]; do
  src=$1; dst=$root$2; shift 2
  if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "\${dst%/*}"; : > "$dst"; fi
  mount --bind -o ro,nosuid,nodev "$src" "$dst"
done
shift
echo ${PYTHON_HOST_NAME} > /proc/sys/kernel/hostname
mount -o remount,ro,nosuid,nodev "$root"
if [ "$drop" = chroot-drops-user ]; then set -- --userspec=65534:65534 --groups=65534 "$root" "$@"; else set -- "$root" "$@"; fi
exec env -i "$(command -v chroot)" "$@"`;

// A process ends when the one that started it ends, by the kernel (setpriv's parent-death
// signal, ../setpriv.ts, applied after any change of user, which clears it). The child's own check
// (`endIfOrphaned`) cannot be relied on against a hostile task, which holds the child's realm: it
// can replace `process.exit` or wait in JavaScript, outside the engine. Without this, a host killed
// (Ctrl-C, SIGKILL, a crash) left a sleeping task's process, 236 MB, running as long as it slept.

/** Drops to nobody, as the last step before the child: the parent-death signal survives it. */
const AS_NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];

const librariesOf = new Map<string, string[]>();

/** The node binary's shared libraries and loader, as `ldd` names them and where they really are. */
function sharedLibraries(binary: string): string[] {
  const known = librariesOf.get(binary);
  if (known !== undefined) return known;
  const listing = execFileSync("ldd", [binary], { encoding: "utf8", env: {}, timeout: 5_000 });
  const paths = new Set<string>();
  for (const match of listing.matchAll(/(?:=>\s*|^\s*)(\/[^\s]+)/gm)) {
    const path = match[1] as string;
    paths.add(path);
    paths.add(realpathSync(path));
  }
  librariesOf.set(binary, [...paths]);
  return [...paths];
}

/** Empty: the mount point of each child's tmpfs root (in its namespace). */
let rootDir: string | undefined;

/**
 * One directory per user, kept and shared by every process: a directory made per process was left
 * behind by each one that ended without its `exit` event (a signal, a terminated worker). Used
 * only while it is ours and not a link; otherwise a fresh one, removed at exit where it can be.
 */
function mountPoint(): string {
  const uid = process.getuid?.() ?? 0;
  const shared = join(tmpdir(), `capsule-python-root-${uid}`);
  try {
    mkdirSync(shared, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const seen = lstatSync(shared);
  if (seen.isDirectory() && seen.uid === uid && (seen.mode & 0o077) === 0) return shared;
  const made = mkdtempSync(join(tmpdir(), "capsule-python-root-"));
  process.once("exit", () => {
    try {
      rmdirSync(made);
    } catch {
      // Still mounted in a child's namespace that is going away, or gone: nothing to keep.
    }
  });
  return made;
}

function detectIsolation(
  options: { namespaces?: boolean },
  works: (command: string[]) => boolean,
): IsolationSetup {
  const linux = process.platform === "linux";
  const tryNamespaces = linux && options.namespaces !== false;
  const hostPaths: ChildPaths = {
    node: process.execPath,
    pyodideDir: pyodideDir(),
    child: childEntry,
    engine: engineFile,
    snapshot: existsSync(snapshotFile) ? snapshotFile : null,
  };
  const limit = (bytes: number) => ["prlimit", `--data=${bytes}`, "--core=0", "--"];
  const dataLimit =
    linux && works([...limit(PROCESS_OVERHEAD_BYTES), process.execPath, "-e", "0"]) ? limit : null;
  const ipcByPermission = permissionCoversNetwork();
  const setpriv = linux ? findSetpriv() : null;
  // The outermost process (unshare, or node itself) ends with the host.
  const guard =
    setpriv !== null && works([setpriv, ...DIES_WITH_PARENT, process.execPath, "-e", "0"])
      ? [setpriv, ...DIES_WITH_PARENT]
      : [];
  const fileView = tryNamespaces ? tryFileView(hostPaths, setpriv, works) : null;
  if (fileView) {
    return {
      wrapper: [...guard, ...fileView.wrapper],
      dataLimit,
      paths: fileView.paths,
      active: {
        permissionModel: true,
        namespaces: true,
        fileView: "interpreter-only",
        hostIpcRefusedBy: "namespaces",
        permissionModelRefusesNetwork: ipcByPermission,
        processMemoryCap: dataLimit !== null,
      },
    };
  }
  // Inside, the node process ends with unshare: the signal is set after the change of user.
  const wrapper = [
    "unshare",
    "--net",
    "--pid",
    "--fork",
    "--kill-child",
    "setpriv",
    ...AS_NOBODY,
    ...DIES_WITH_PARENT,
  ];
  const namespaces = tryNamespaces && works([...wrapper, process.execPath, "-e", "0"]);
  return {
    wrapper: [...guard, ...(namespaces ? wrapper : [])],
    dataLimit,
    paths: hostPaths,
    active: {
      permissionModel: true,
      namespaces,
      fileView: "host",
      hostIpcRefusedBy: ipcByPermission ? "permission-model" : "none",
      permissionModelRefusesNetwork: ipcByPermission,
      processMemoryCap: dataLimit !== null,
    },
  };
}

/** The namespaces and the interpreter-only root, where this machine allows them (root, unshare). */
function tryFileView(
  host: ChildPaths,
  setpriv: string | null,
  works: (command: string[]) => boolean,
): { wrapper: string[]; paths: ChildPaths } | null {
  const inside: ChildPaths = {
    node: "/capsule/node",
    pyodideDir: "/capsule/pyodide",
    child: "/capsule/child.mjs",
    engine: "/capsule/pyodide-metered.wasm",
    snapshot: host.snapshot === null ? null : "/capsule/pyodide-snapshot.bin",
  };
  try {
    // target -> source: the node binary and setpriv share libraries, each bound once.
    const binds = new Map<string, string>();
    const bindLibraries = (binary: string) => {
      for (const library of sharedLibraries(binary)) binds.set(library, realpathSync(library));
    };
    bindLibraries(host.node);
    for (const key of ["node", "pyodideDir", "child", "engine", "snapshot"] as const) {
      const source = host[key];
      const target = inside[key];
      if (source !== null && target !== null) binds.set(target, realpathSync(source));
    }
    // setpriv inside the root drops to nobody and keeps the parent-death signal (chroot's own
    // --userspec would clear it); without setpriv, chroot drops the user.
    const dropper = setpriv === null ? [] : ["/capsule/setpriv", ...AS_NOBODY, ...DIES_WITH_PARENT];
    if (setpriv !== null) {
      bindLibraries(setpriv);
      binds.set("/capsule/setpriv", realpathSync(setpriv));
    }
    rootDir ??= mountPoint();
    const root = rootDir;
    const wrapper = [
      "unshare",
      "--mount",
      "--uts",
      "--net",
      "--pid",
      "--fork",
      "--kill-child",
      "sh",
      "-c",
      FILE_VIEW_SCRIPT,
      "capsule-python",
      root,
      setpriv === null ? "chroot-drops-user" : "command-drops-user",
      ...[...binds].flatMap(([target, source]) => [source, target]),
      "--",
      ...dropper,
    ];
    return works([...wrapper, inside.node, "-e", "0"]) ? { wrapper, paths: inside } : null;
  } catch {
    return null;
  }
}

function pyodideDir(): string {
  return dirname(createRequire(join(packageRoot, "package.json")).resolve("pyodide/package.json"));
}

/** Answers the guest's requests during one job. */
type RequestHandler = (request: PythonRequest) => Promise<PythonReply>;

/** One child process: started at once, given one job, then gone. */
class PythonChild {
  readonly process: ChildProcess;
  readonly ready: Promise<void>;
  #onMessage: ((message: ChildMessage) => void) | null = null;
  /** Set when the child says, before it exits, why it is stopping, or when it is stopped. */
  #stopped: CapsuleError | null = null;
  #onRequest: RequestHandler | null = null;
  /** The job's fuel budget, for the error when the child says it is spent. */
  #budget = "0";
  #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last bytes the child wrote to stderr: how a process that died says why. */
  #stderrTail = "";
  /** A blocking request is being answered; a well-behaved child waits for it. */
  #requestPending = false;
  #callsPending = 0;
  /** Replies to awaited calls written to fd 0 and not yet taken by the child. */
  #unreadReplyBytes = 0;

  /** The ram this process is capped at; a job must ask for exactly this. */
  readonly ramBytes: number;

  constructor(ramBytes: number) {
    this.ramBytes = ramBytes;
    const { wrapper, dataLimit, paths } = isolationSetup();
    const node = [
      `--wasm-max-mem-pages=${Math.floor(ramBytes / WASM_PAGE_BYTES)}`,
      permissionFlag(),
      `--allow-fs-read=${paths.pyodideDir}`,
      `--allow-fs-read=${paths.child}`,
      `--allow-fs-read=${paths.engine}`,
      ...(paths.snapshot === null ? [] : [`--allow-fs-read=${paths.snapshot}`]),
      "--disallow-code-generation-from-strings",
      // The set-up's dropped proxies are finalized before a session's image may be copied in
      // (core/python/engine.ts).
      "--expose-gc",
      `--max-old-space-size=${CHILD_HEAP_MIB}`,
      "--no-warnings",
      paths.child,
      paths.pyodideDir,
      paths.engine,
      ...(paths.snapshot === null ? [] : ["--snapshot", paths.snapshot]),
    ];
    const [command, ...args] = [
      ...(dataLimit ? dataLimit(ramBytes + PROCESS_OVERHEAD_BYTES) : []),
      ...wrapper,
      paths.node,
      ...node,
    ] as [string, ...string[]];
    this.process = spawn(command, args, {
      env: {},
      // What the child's process.argv0 says where no wrapper names it (/capsule/node inside).
      ...(wrapper.length === 0 && dataLimit === null ? { argv0: "node" } : {}),
      // Its own process group, so one signal ends the wrapper and the node inside it at once.
      detached: true,
      // 0: the job and every reply; 2: the child's own last words (kept short; shown with
      // CAPSULE_PYTHON_DEBUG=1; a task's print() goes to its log); 3: the child's messages.
      // See protocol.ts.
      // 4: a session's image, both ways, raw (protocol.ts).
      stdio: ["pipe", "ignore", "pipe", "pipe", "pipe"],
    });
    // "close", not "exit": its pipes are drained first, so a last message (fuel spent) is read.
    this.#exited = new Promise((resolve) =>
      this.process.once("close", (code, signal) => resolve({ code, signal })),
    );
    this.ready = new Promise((resolve, reject) => {
      this.#onMessage = (message) => {
        if (message.type === "ready") resolve();
        else if (message.type === "failed")
          reject(new InternalError(`Python engine: ${message.message}`));
      };
      this.#exited.then(() =>
        reject(new InternalError("the Python process exited before it was ready")),
      );
    });
    this.ready.catch(() => {});
    this.#readMessages();
    this.#readStderr();
    // A pipe the child closed early is its own doing; the exit says what happened.
    this.process.stdin?.on("error", () => {});
  }

  /** Reads fd 3 a line at a time, each bounded before it is parsed. */
  #readMessages() {
    const messages = this.process.stdio[3];
    if (!messages || !("on" in messages)) return;
    const reader = new MessageReader(
      (tag, body) => this.#receiveLine(tag, body),
      (tag, limit) =>
        this.#stop(
          new TaskError(
            tag === OUTCOME_TAG
              ? `the Python task sent the runtime an outcome larger than ${limit / MiB} MiB (a result past its limit, or the task's own writes to the runtime's channel); its process was stopped`
              : `the Python task sent the runtime a message larger than ${limit / MiB} MiB (a request too large, or the task's own writes to the runtime's channel); its process was stopped`,
          ),
        ),
    );
    this.#reader = reader;
    messages.on("data", (chunk: Buffer) => reader.push(chunk));
    messages.on("error", () => {});
  }

  /** The child's channel; stopped at its first outcome, or once the child is stopped. */
  #reader: MessageReader | null = null;

  #readStderr() {
    const stderr = this.process.stderr;
    if (!stderr) return;
    const debug = process.env.CAPSULE_PYTHON_DEBUG === "1";
    stderr.on("data", (chunk: Buffer) => {
      if (debug) process.stderr.write(chunk);
      this.#stderrTail = (this.#stderrTail + chunk.toString("utf8", 0, STDERR_TAIL)).slice(
        -STDERR_TAIL,
      );
    });
  }

  #receiveLine(tag: string, body: Buffer) {
    // Lines read in the same chunk as the one that stopped the child are not believed either.
    if (this.#stopped !== null) return;
    let message: unknown;
    try {
      message = JSON.parse(body.toString("utf8"));
    } catch {
      message = undefined;
    }
    if (tag === OUTCOME_TAG) {
      // The outcome ends the job, well-formed or not: a second one is never read (a task that
      // writes a malformed one and then returns must not have its real outcome believed, when
      // both arrive in one read).
      this.#reader?.stop();
      const done = message as { type?: unknown; outcomeJson?: unknown };
      if (done?.type === "done" && typeof done.outcomeJson === "string") {
        this.#onMessage?.(done as ChildMessage);
      } else {
        this.#stop(new TaskError("the Python process sent a malformed outcome"));
      }
      return;
    }
    const call = message as { type?: unknown; id?: unknown; request?: unknown };
    if (call?.type === "request") {
      if (this.#requestPending) {
        this.#stop(
          new TaskError(
            "the Python task sent a blocking request before the runtime answered the last one",
          ),
        );
        return;
      }
      this.#requestPending = true;
      void this.#answer(call.request).then((reply) => {
        this.#requestPending = false;
        // The child exits right after a fuel_exhausted request: it waits for no reply.
        if (reply !== null) this.#write({ type: "answer", reply } satisfies ParentMessage);
      });
      return;
    }
    if (call?.type === "call") {
      if (!Number.isSafeInteger(call.id)) return;
      if (++this.#callsPending > MAX_CALLS_PENDING) {
        this.#stop(
          new TaskError(
            `the Python task has more than ${MAX_CALLS_PENDING} requests waiting for the runtime`,
          ),
        );
        return;
      }
      const id = call.id as number;
      void this.#answer(call.request).then((reply) => {
        this.#callsPending--;
        if (reply !== null) {
          this.#write({ type: "reply", id, reply } satisfies ParentMessage, true);
        }
      });
      return;
    }
    if (message !== undefined) this.#onMessage?.(message as ChildMessage);
  }

  /**
   * One JSON line to the child on fd 0, unless it is gone. The answer to a blocking request is
   * read at once (the child waits for it); replies to awaited calls a child leaves unread past
   * a bound stop it.
   */
  #write(message: ParentMessage, awaited = false) {
    const stdin = this.process.stdin;
    if (!stdin || stdin.destroyed || this.#stopped !== null) return;
    const line = `${JSON.stringify(message)}\n`;
    if (!awaited) {
      stdin.write(line);
      return;
    }
    this.#unreadReplyBytes += line.length;
    stdin.write(line, () => {
      this.#unreadReplyBytes -= line.length;
    });
    if (this.#unreadReplyBytes > MAX_UNREAD_REPLY_BYTES) {
      this.#stop(new TaskError("the Python task stopped reading the runtime's replies"));
    }
  }

  /** Ends the child for what it did; the job ends with `error`. */
  #stop(error: CapsuleError) {
    this.#stopped ??= error;
    this.#reader?.stop();
    this.kill();
  }

  /** Checks a request from the guest, then acts on it; null when no reply is due. */
  async #answer(value: unknown): Promise<PythonReply | null> {
    try {
      const request = checkPythonRequest(value);
      if (request.op === "fuel_exhausted") {
        // The budget named is the runtime's, not the guest's word for it.
        this.#stopped ??= fuelExhausted(this.#budget);
        return null;
      }
      return this.#onRequest ? await this.#onRequest(request) : { error: "no task is running" };
    } catch (error) {
      return { error: (error as Error).message };
    }
  }

  /**
   * Why the process ended while its task ran, when it said nothing: once the task's code runs,
   * the process is the task's to break (process.exit, process.abort, a crash or the memory of
   * its own realm), so the failure is the task's.
   */
  #endedDuringTask(code: number | null, signal: NodeJS.Signals | null): CapsuleError {
    const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
    const lastWords = this.#stderrTail.trim().split("\n").slice(-3).join(" | ").slice(0, 500);
    if (/out of memory|allocation failed|heap limit|cannot allocate/i.test(this.#stderrTail)) {
      return new MemoryExceededError(
        `the Python process ran out of memory outside the engine and ended (${how}): ${lastWords}`,
      );
    }
    return new TaskError(
      `the Python process ended (${how}) while the task ran: the task's code ended or broke its own process${lastWords ? ` (${lastWords})` : ""}`,
    );
  }

  /**
   * Collects what the child sends on fd 4 (a session's new image), up to `limit` bytes: past
   * it the child is stopped. `received(n)` resolves once n bytes are in, or the child is gone.
   */
  #collectImage(limit: number): { received(bytes: number): Promise<Uint8Array | null> } {
    const channel = this.process.stdio[4];
    const chunks: Buffer[] = [];
    let size = 0;
    let wanted = Number.POSITIVE_INFINITY;
    let done: ((image: Uint8Array | null) => void) | null = null;
    const settle = () => {
      if (done === null || size < wanted) return;
      done(size === wanted ? Buffer.concat(chunks, size) : null);
      done = null;
    };
    if (channel && "on" in channel) {
      channel.on("data", (chunk: Buffer) => {
        if (this.#stopped !== null) return;
        size += chunk.length;
        if (size > limit) {
          this.#stop(
            new TaskError(
              `the Python task sent a session state larger than ${limit} bytes; its process was stopped`,
            ),
          );
          return;
        }
        chunks.push(chunk);
        settle();
      });
      channel.on("error", () => {});
    }
    return {
      received: (bytes) =>
        new Promise((resolve) => {
          wanted = bytes;
          done = resolve;
          settle();
          this.#exited.then(() => {
            done?.(size === wanted ? Buffer.concat(chunks, size) : null);
            done = null;
          });
        }),
    };
  }

  /** Runs one job; resolves to the guest's outcome, or rejects with why it ended. */
  run(
    job: PythonJob,
    handlers: {
      timeoutMs: number | null;
      onLog: (level: "log" | "error", text: string) => void;
      onRequest: RequestHandler;
      /** A session's call: the image to restore (null: none). */
      session?: { image: Uint8Array | null };
    },
  ): Promise<PythonJobResult> {
    this.#onRequest = handlers.onRequest;
    this.#budget = job.fuel;
    const session = handlers.session;
    const images = session && this.#collectImage(maxImageBytes(job.ramBytes));
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const timer =
        handlers.timeoutMs === null
          ? undefined
          : setTimeout(() => {
              this.kill();
              finish(() => reject(new TimeoutError(`timed out after ${handlers.timeoutMs} ms`)));
            }, handlers.timeoutMs);
      this.#onMessage = (message) => {
        if (message?.type === "log" && typeof message.text === "string") {
          handlers.onLog(message.level === "error" ? "error" : "log", message.text);
        } else if (message?.type === "done" && typeof message.outcomeJson === "string") {
          const count = (value: unknown) =>
            Number.isSafeInteger(value) && (value as number) >= 0 ? (value as number) : 0;
          const fuelConsumed = count(message.fuelConsumed);
          // The count comes from the task's own process: one past the budget is not believed.
          if (fuelConsumed > Number(job.fuel)) {
            finish(() =>
              reject(
                new TaskError(
                  `the Python process reported ${fuelConsumed} fuel, more than the task's budget of ${job.fuel}: a report of its own making`,
                ),
              ),
            );
            return;
          }
          const result: PythonJobResult = {
            outcomeJson: message.outcomeJson,
            ramUsed: count(message.ramUsed),
            fuelConsumed,
          };
          const image = message.image as { bytes?: unknown; refused?: unknown } | undefined;
          if (images === undefined || image === undefined) {
            finish(() => resolve(result));
          } else if (typeof image.refused === "string") {
            finish(() => reject(new TaskError(image.refused as string)));
          } else if (Number.isSafeInteger(image.bytes)) {
            void images
              .received(image.bytes as number)
              .then((bytes) =>
                finish(() =>
                  bytes === null
                    ? reject(
                        this.#stopped ??
                          new TaskError("the Python task's state image was cut short"),
                      )
                    : resolve({ ...result, image: bytes }),
                ),
              );
          } else {
            finish(() => reject(new TaskError("the Python process sent a malformed outcome")));
          }
        } else if (message?.type === "failed") {
          // Once the job is sent, the process is the task's realm: what it says broke, the task
          // may have broken (or written), so it is the task's failure, not the runtime's.
          finish(() =>
            reject(new TaskError(`the Python task's process failed: ${String(message.message)}`)),
          );
        } else if (message?.type === "crashed") {
          finish(() => reject(interpreterBroken(String(message.message))));
        }
      };
      this.#exited.then(({ code, signal }) =>
        finish(() => reject(this.#stopped ?? this.#endedDuringTask(code, signal))),
      );
      const imageBytes = session?.image?.byteLength ?? 0;
      this.#write({
        type: "job",
        job,
        ...(session && { session: { imageBytes } }),
      } satisfies ParentMessage);
      if (session?.image) {
        const channel = this.process.stdio[4];
        if (channel && "write" in channel) channel.write(session.image);
      }
      const watch = this.#watchCpu(job.fuel);
      this.#exited.then(() => clearInterval(watch));
    });
  }

  /**
   * Ends the process once its CPU time for this job passes what the job's fuel allows at a tenth
   * of the engine's speed: fuel counts only the engine's own code, and a guest that runs
   * JavaScript in its process (the realm is its to use) is bounded this way, with or without a
   * timeout. Read from /proc, where there is one.
   */
  #watchCpu(fuel: string): ReturnType<typeof setInterval> | undefined {
    const nodePid = this.#nodePid();
    const start = nodePid === null ? null : cpuSecondsOf(nodePid);
    if (nodePid === null || start === null) return undefined;
    const allowed = Number(fuel) / BACKSTOP_FUEL_PER_CPU_SECOND + CPU_SLACK_SECONDS;
    const timer = setInterval(() => {
      const used = cpuSecondsOf(nodePid);
      if (used === null || used - start <= allowed) return;
      clearInterval(timer);
      this.#stop(
        new FuelExhaustedError(
          `the task used more CPU time than its fuel allows (${Math.ceil(allowed)} s): work outside the metered engine counts too`,
        ),
      );
    }, CPU_WATCH_MS);
    timer.unref();
    return timer;
  }

  /** The node process itself: inside the namespace wrapper, the one child `unshare` forked. */
  #nodePid(): number | null {
    const pid = this.process.pid;
    if (pid === undefined || process.platform !== "linux") return null;
    // Without namespaces every wrapper (prlimit, setpriv) runs node in its own process.
    if (!isolationSetup().active.namespaces) return pid;
    try {
      const child = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ")[0]);
      return Number.isSafeInteger(child) && child > 0 ? child : null;
    } catch {
      return null;
    }
  }

  /**
   * Whether this process keeps the host's event loop alive. A process waiting for a job does
   * not: a script that ran a Python task ends when its own work does, without shutdown().
   */
  holdHost(hold: boolean) {
    const handles = [this.process, ...this.process.stdio];
    for (const handle of handles) {
      const switchable = handle as { ref?: () => void; unref?: () => void } | null;
      if (hold) switchable?.ref?.();
      else switchable?.unref?.();
    }
  }

  kill() {
    const { pid } = this.process;
    if (pid === undefined || this.process.exitCode !== null || this.process.signalCode !== null) {
      return;
    }
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
}

const MiB = 1024 * 1024;
/** The stderr bytes kept from a child, for the error when it dies. */
const STDERR_TAIL = 2048;
/** Sub-task calls one child may have waiting at once (each is a sub-task run). */
const MAX_CALLS_PENDING = 1024;
/** Replies written to a child that it has not read yet, past which it is stopped. */
const MAX_UNREAD_REPLY_BYTES = 64 * 1024 * 1024;
const WASM_PAGE_BYTES = 65_536;
/**
 * About a tenth of what the metered engine does per CPU second here (4.6-16 billion fuel, see
 * FUEL_PER_CLOCK_MS), so fuel decides first for the engine's own work.
 */
const BACKSTOP_FUEL_PER_CPU_SECOND = 500_000_000;
/** The runner's own work around a job, which fuel does not count. */
const CPU_SLACK_SECONDS = 3;
const CPU_WATCH_MS = 250;

/** A process's CPU time so far (user + system), or null when /proc cannot say. */
function cpuSecondsOf(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    // utime and stime, in clock ticks: 100 per second on Linux.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / 100 : null;
  } catch {
    return null;
  }
}

/**
 * Children started ahead, so a task does not wait for Pyodide to load: one per ram size in
 * recent use (a process is capped at one size when it starts), the most recent last.
 */
const warm = new Map<number, PythonChild>();
const live = new Set<PythonChild>();
const WARM_SIZES = 3;

function takeChild(ramBytes: number): PythonChild {
  const ready = warm.get(ramBytes);
  warm.delete(ramBytes);
  ready?.holdHost(true);
  return ready ?? startChild(ramBytes);
}

/**
 * Loads a process for this ram size once a job is over, not while it runs: a process restored
 * from the snapshot takes about 3 s of CPU in its first seconds, which on a small machine the job
 * would otherwise share (measured: warm p50 30-36 ms with the refill at the job's start, about
 * 14 ms after it; a first run 6 s against less).
 */
function refill(ramBytes: number) {
  if (warm.has(ramBytes)) return;
  const spare = startChild(ramBytes);
  spare.holdHost(false);
  warm.set(ramBytes, spare);
  while (warm.size > WARM_SIZES) {
    const [oldest, spare] = warm.entries().next().value as [number, PythonChild];
    warm.delete(oldest);
    spare.kill();
  }
}

/** Counts shutdowns, so a refill due before one does not start a process after it. */
let generation = 0;

function startChild(ramBytes: number): PythonChild {
  const child = new PythonChild(ramBytes);
  live.add(child);
  child.process.once("exit", () => live.delete(child));
  return child;
}

/** Ends every Python process this runtime started. */
export function shutdownPython(): void {
  generation++;
  warm.clear();
  for (const child of live) child.kill();
  live.clear();
}
process.once("exit", shutdownPython);

/**
 * Python processes that may run a job at once; more wait. Each is a whole interpreter (about
 * 100 MB resident, up to its ram cap).
 */
export const PYTHON_SANDBOXES_AT_ONCE = Math.max(4, availableParallelism());

const runPython = createPythonRunner({ runInSandbox, sandboxesAtOnce: PYTHON_SANDBOXES_AT_ONCE });

/** Runs a Python task (and its sub-tasks) and resolves to its envelope; never throws. */
export async function runPythonTask(request: PythonTaskRequest): Promise<Envelope> {
  await detectIsolationAhead();
  return runPython(request);
}

let imageKey: string | undefined;

/**
 * What a Python session's image belongs to: the metered engine and the child script (which
 * holds the SDK and runner), as the build's snapshot stamp names them. An image taken under
 * another build is refused, never restored.
 */
export function pythonImageKey(): string {
  imageKey ??= `python:${createHash("sha256")
    .update(readFileSync(engineFile))
    .update(readFileSync(childEntry))
    .digest("hex")}`;
  return imageKey;
}

/** One job in a fresh child process from the pool, which is killed afterwards in any case. */
async function runInSandbox(run: SandboxRun): Promise<PythonJobResult> {
  if (run.signal?.aborted) throw cancelled();
  const child = takeChild(run.job.ramBytes);
  const cancel = () => child.kill();
  run.signal?.addEventListener("abort", cancel, { once: true });
  try {
    await child.ready;
    if (run.session?.image) checkSessionImage(run.session.image, run.job.ramBytes);
    run.onStarted?.();
    return await child.run(run.job, {
      timeoutMs: run.timeoutMs,
      onLog: run.onLog,
      onRequest: run.onRequest,
      ...(run.session && { session: run.session }),
    });
  } catch (error) {
    // However the process ended, a cancelled run says so.
    if (run.signal?.aborted) throw cancelled();
    throw error;
  } finally {
    run.signal?.removeEventListener("abort", cancel);
    child.kill();
    const due = generation;
    setImmediate(() => {
      if (due === generation) refill(run.job.ramBytes);
    });
  }
}
