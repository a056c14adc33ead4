/**
 * Sessions on Node: `new Session("javascript" | "python", options?)`. Between calls the whole
 * program state persists (core/session/image.ts: the QuickJS sandbox's memory image;
 * core/session/python-image.ts: the Pyodide sandbox's, taken in its child process and sent back
 * on a channel of its own), yet every call runs in a fresh sandbox with the call's own fuel,
 * memory and time limits. A failed call leaves the state as it was. The workspace directory
 * keeps its files between calls; the guest sees it at /workspace.
 *
 * A Python image is the interpreter's memory up to its last non-zero page (about 27 MB for a
 * small session here): it goes to the call's child through a pipe before the cell runs, and
 * back after it, which a call pays on top of a stateless cell's cost.
 *
 * Bounds: the state image is at most the call's `ram` (256 MB by default; the sandbox cannot grow
 * past it, and an image larger than a call's `ram` is refused as memory_exceeded); the host keeps
 * one image per session in memory (a fork shares it until either changes). The workspace holds at
 * most `diskBytes` (64 MiB by default) and `diskFiles` (10,000) entries: each call may write only
 * what is left, and importFile refuses what does not fit.
 */
import {
  copyFileSync,
  cpSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { CELL_TASK, type CellEnvelope, cellFailure, cellOutput } from "../../core/agent/cell.ts";
import { ConfigError } from "../../core/errors.ts";
import { describe } from "../../core/runtime/run-options.ts";
import { engineKey } from "../../core/session/image.ts";
import { imageFacts } from "../../core/session/python-image.ts";
import {
  configureSessionImages,
  type SessionImage,
  SessionState,
  type SessionStore,
  sessionImages,
} from "../../core/session/session.ts";
import { type CodeOptions, runJavaScriptCell, runPythonCell } from "./agent.ts";
import { loadEngine } from "./engine.ts";
import { pythonImageKey } from "./python/runner.ts";

// What the session images of this process may hold together: 1 GiB, or a quarter of the
// machine's memory where that is less; CAPSULE_SESSION_MEMORY ("2GB") or Session.imageBudget
// sets another (core/runtime/memory-budget.ts, ImageBudget).
configureSessionImages("this process", 2 ** 30, totalmem(), {
  name: "CAPSULE_SESSION_MEMORY",
  value: process.env.CAPSULE_SESSION_MEMORY,
});

export interface SessionOptions extends CodeOptions {
  /**
   * A directory that keeps the session across restarts: its state image (`state.img`) and its
   * workspace (`workspace/`). A new Session given the same directory continues where it ended.
   */
  store?: string;
  /** Bytes the workspace may hold; default 64 MiB. */
  diskBytes?: number;
  /** Files and directories the workspace may hold; default 10,000. */
  diskFiles?: number;
}

const DEFAULT_DISK_BYTES = 64 * 1024 * 1024;
const DEFAULT_DISK_FILES = 10_000;
const STATE_FILE = "state.img";
const WORKSPACE = "workspace";
/** Where the guest sees the workspace. */
export const GUEST_WORKSPACE = "/workspace";

const forkedImage = Symbol("forked image");

export class Session {
  /** The bytes of session images this process holds and may hold (`totalBytes` may be set). */
  static readonly imageBudget = sessionImages;
  readonly id: string;
  readonly language: "javascript" | "python";
  /** The workspace's host directory. */
  readonly workspace: string;
  readonly #options: SessionOptions;
  readonly #state: SessionState;
  readonly #cwd: string;
  readonly #temporary: boolean;

  constructor(language: "javascript" | "python" = "javascript", options: SessionOptions = {}) {
    if (language !== "javascript" && language !== "python") {
      throw new ConfigError(
        `Session: language must be "javascript" or "python", got ${describe(language)}`,
      );
    }
    if (options === null || typeof options !== "object") {
      throw new ConfigError(`Session: options must be an object, got ${describe(options)}`);
    }
    const { store, diskBytes, diskFiles } = options;
    for (const [name, value] of [
      ["diskBytes", diskBytes],
      ["diskFiles", diskFiles],
    ] as const) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) {
        throw new ConfigError(
          `Session: ${name} must be a positive integer, got ${describe(value)}`,
        );
      }
    }
    this.id = crypto.randomUUID().replaceAll("-", "");
    this.language = language;
    this.#options = { ...options };
    this.#cwd = resolve(options.cwd ?? process.cwd());
    const image = (options as { [forkedImage]?: SessionImage | null })[forkedImage] ?? null;
    if (store !== undefined) {
      if (typeof store !== "string" || store === "") {
        throw new ConfigError(`Session: store must be a directory path, got ${describe(store)}`);
      }
      const directory = resolve(this.#cwd, store);
      mkdirSync(directory, { recursive: true });
      this.workspace = join(directory, WORKSPACE);
      ensureDirectory(this.workspace);
      this.#temporary = false;
      this.#state = new SessionState(new DirectoryStore(directory), image);
    } else {
      this.workspace = mkdtempSync(join(tmpdir(), "capsule-session-"));
      this.#temporary = true;
      this.#state = new SessionState(null, image);
    }
  }

  /** Bytes of the state image held now (0 before the first successful call). */
  get stateBytes(): number {
    return this.#state.image?.bytes.byteLength ?? 0;
  }

  /** Runs a cell in the session; resolves to the envelope, never throws for the cell's failure. */
  async runCode(code: string): Promise<CellEnvelope> {
    const started = performance.now();
    try {
      if (this.language === "python") return await this.#runPython(code);
      const key = await engineKey(loadEngine());
      return await this.#state.call(key, (state) =>
        runJavaScriptCell({ code, taskName: CELL_TASK, state, options: this.#callOptions() }),
      );
    } catch (error) {
      return cellFailure(error, started);
    }
  }

  /** The options a call runs with: the session's, the workspace mounted, writes bounded. */
  #callOptions(): CodeOptions {
    const left = this.#diskLeft();
    const options = this.#options;
    const { store: _store, diskBytes: _bytes, diskFiles: _files, ...code_options } = options;
    return {
      ...code_options,
      cwd: this.#cwd,
      mounts: [...(options.mounts ?? []), `${this.workspace}::${GUEST_WORKSPACE}:rw`],
      limits: {
        ...options.limits,
        writeBytes: Math.max(1, Math.min(options.limits?.writeBytes ?? left.bytes, left.bytes)),
        writeFiles: Math.max(1, Math.min(options.limits?.writeFiles ?? left.files, left.files)),
      },
    };
  }

  /**
   * A Python call (core/session/python-image.ts): the child restores the image before the cell
   * and sends the new one back after it; the image is kept only when the call succeeded.
   */
  #runPython(code: string): Promise<CellEnvelope> {
    const key = pythonImageKey();
    return this.#state.callWith(async (image) => {
      if (image !== null && image.engineKey !== key) {
        throw new ConfigError(
          "the session's saved state belongs to another build of the Python engine; reset() the session or use a new store",
        );
      }
      let next: SessionImage | null = null;
      const envelope = await runPythonCell(code, this.#callOptions(), {
        image: image?.bytes ?? null,
        onImage: (bytes) => {
          // Checked before it is kept: a sandbox may have sent anything.
          const { memoryBytes } = imageFacts(bytes);
          next = { bytes, runtime: memoryBytes, context: 0, engineKey: key };
        },
      });
      return { envelope, image: next };
    });
  }

  /**
   * Runs a cell and returns the console output followed by the last value; throws an Error
   * naming the error_type and message when the cell fails (the state is then as before).
   */
  async run(code: string): Promise<string> {
    return cellOutput(await this.runCode(code));
  }

  /**
   * Copies a file or directory from the host (relative to the session's `cwd`, never outside
   * it; symbolic links are skipped) to `dest` in the workspace.
   */
  importFile(src: string, dest: string): Promise<string> {
    return this.#state.serialize(async () => {
      const from = insideHost(this.#cwd, src, "importFile source");
      const to = insideWorkspace(this.workspace, dest, "importFile destination");
      const size = treeSize(from);
      const left = this.#diskLeft();
      if (size.bytes > left.bytes || size.files > left.files) {
        throw new ConfigError(
          `importFile: ${src} (${size.bytes} bytes, ${size.files} entries) does not fit in what is left of the workspace (${left.bytes} bytes, ${left.files} entries)`,
        );
      }
      mkdirSync(dirname(to), { recursive: true });
      insideWorkspace(this.workspace, dest, "importFile destination");
      cpSync(from, to, {
        recursive: true,
        filter: (path) => !lstatSync(path).isSymbolicLink(),
      });
      return `Imported ${dest}`;
    });
  }

  /** Copies a file from the workspace to `dest` on the host (relative to `cwd`, never outside). */
  exportFile(src: string, dest: string): Promise<string> {
    return this.#state.serialize(async () => {
      const from = insideWorkspace(this.workspace, src, "exportFile source");
      if (!lstatSync(from).isFile()) {
        throw new ConfigError(`exportFile: ${src} is not a regular file in the workspace`);
      }
      const to = insideHost(this.#cwd, dest, "exportFile destination", true);
      mkdirSync(dirname(to), { recursive: true });
      insideHost(this.#cwd, dest, "exportFile destination", true);
      copyFileSync(from, to);
      return `exported at ${dest}`;
    });
  }

  /** Removes a file or directory from the workspace (a link itself, never what it points to). */
  deleteFile(path: string): Promise<string> {
    return this.#state.serialize(async () => {
      const target = checkedPath(this.workspace, path, "deleteFile path", true);
      lstatSync(target);
      rmSync(target, { recursive: true });
      return `Deleted ${path}`;
    });
  }

  /** Forgets the program state; the workspace keeps its files (as in Capsule). */
  reset(): Promise<void> {
    return this.#state.reset();
  }

  /**
   * An independent copy: the state after every call made so far, and a copy of the workspace.
   * `options` override this session's (a `store` makes the copy durable).
   */
  async fork(options: SessionOptions = {}): Promise<Session> {
    const image = await this.#state.settled();
    const { store: _store, ...inherited } = this.#options;
    const copy = new Session(this.language, {
      ...inherited,
      ...options,
      [forkedImage]: image,
    } as SessionOptions);
    await this.#state.serialize(async () => {
      cpSync(this.workspace, copy.workspace, { recursive: true, verbatimSymlinks: true });
    });
    if (image !== null) await copy.#state.saveNow();
    return copy;
  }

  /** Ends the session: waits for calls in flight; removes the workspace unless it has a store. */
  async close(): Promise<void> {
    if (this.#state.closed) return;
    await this.#state.close();
    if (this.#temporary) rmSync(this.workspace, { recursive: true, force: true });
  }

  #diskLeft(): { bytes: number; files: number } {
    const used = treeSize(this.workspace);
    return {
      bytes: Math.max(0, (this.#options.diskBytes ?? DEFAULT_DISK_BYTES) - used.bytes),
      files: Math.max(0, (this.#options.diskFiles ?? DEFAULT_DISK_FILES) - used.files + 1),
    };
  }
}

// `await using session = new Session(...)` (Symbol.asyncDispose, where the platform has it).
const asyncDispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
if (asyncDispose !== undefined) {
  Object.defineProperty(Session.prototype, asyncDispose, {
    value(this: Session) {
      return this.close();
    },
  });
}

/** A store directory: `state.img`, replaced whole by a rename, never written through a link. */
class DirectoryStore implements SessionStore {
  readonly #file: string;
  readonly #directory: string;

  constructor(directory: string) {
    this.#directory = directory;
    this.#file = join(directory, STATE_FILE);
  }

  async load(): Promise<Uint8Array | null> {
    let stat: ReturnType<typeof lstatSync>;
    try {
      stat = lstatSync(this.#file);
    } catch {
      return null;
    }
    if (!stat.isFile()) {
      throw new ConfigError(`the session store's ${STATE_FILE} is not a regular file`);
    }
    return new Uint8Array(readFileSync(this.#file));
  }

  async save(encoded: Uint8Array | null): Promise<void> {
    if (encoded === null) {
      rmSync(this.#file, { force: true });
      return;
    }
    const temporary = join(this.#directory, `.${STATE_FILE}.${process.pid}.${crypto.randomUUID()}`);
    writeFileSync(temporary, encoded);
    renameSync(temporary, this.#file);
  }
}

function ensureDirectory(path: string): void {
  mkdirSync(path, { recursive: true });
  if (!lstatSync(path).isDirectory()) {
    throw new ConfigError(
      `the session store's ${WORKSPACE} is not a directory (a link is refused)`,
    );
  }
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/** The deepest existing ancestor of `path` (itself when it exists), with links resolved. */
function realAncestor(path: string): string {
  let current = path;
  for (;;) {
    try {
      return realpathSync(current);
    } catch {
      const parent = dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

/**
 * `path` (relative) inside the workspace: no absolute path, no `..` out of it, no link on the way
 * that leads out (a cell may have planted one), and a link as the last part is refused.
 */
function insideWorkspace(workspace: string, path: unknown, what: string): string {
  return checkedPath(workspace, path, what);
}

/** `path` relative to the host directory given (cwd), never outside it, nor through a link out. */
function insideHost(root: string, path: unknown, what: string, mayBeMissing = false): string {
  const checked = checkedPath(root, path, what);
  if (!mayBeMissing) statSync(checked);
  return checked;
}

function checkedPath(root: string, path: unknown, what: string, linkAllowed = false): string {
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    throw new ConfigError(`${what} must be a non-empty relative path, got ${describe(path)}`);
  }
  if (isAbsolute(path)) {
    throw new ConfigError(`${what} ${JSON.stringify(path)} must be relative, not absolute`);
  }
  const realRoot = realpathSync(root);
  const target = resolve(realRoot, path);
  if (!isInside(realRoot, target) || target === realRoot) {
    throw new ConfigError(`${what} ${JSON.stringify(path)} leads outside ${realRoot}`);
  }
  if (!isInside(realRoot, realAncestor(dirname(target)))) {
    throw new ConfigError(
      `${what} ${JSON.stringify(path)} passes through a link out of ${realRoot}`,
    );
  }
  let isLink = false;
  try {
    isLink = lstatSync(target).isSymbolicLink();
  } catch {
    // Missing: the caller's own stat reports it where it must exist.
  }
  if (isLink && !linkAllowed)
    throw new ConfigError(`${what} ${JSON.stringify(path)} is a symbolic link`);
  return target;
}

/** Bytes and entries under `path` (links are counted, not followed). */
function treeSize(path: string): { bytes: number; files: number } {
  const stat = lstatSync(path);
  if (!stat.isDirectory()) return { bytes: stat.isFile() ? stat.size : 0, files: 1 };
  let bytes = 0;
  let files = 1;
  for (const entry of readdirSync(path)) {
    const inner = treeSize(join(path, entry));
    bytes += inner.bytes;
    files += inner.files;
  }
  return { bytes, files };
}
