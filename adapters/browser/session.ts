/**
 * Sessions in a web page: `new Session("javascript" | "python", options?)`, as on Node. The state
 * is the sandbox's memory image (core/session/image.ts for JavaScript; for Python,
 * core/session/python-image.ts: the interpreter's memory, about 27 MB, taken in the sandbox's
 * Worker and handed to the page without a copy), kept in the page and restored into a fresh
 * sandbox for every call. The workspace is an OPFS directory,
 * `<opfsRoot>/.sessions/<id>/workspace`, which the guest sees at /workspace; importFile and
 * exportFile copy between it and the app's OPFS root. With `store`, the image is kept in
 * IndexedDB under that name (and the workspace under a directory named after it), so a page
 * that opens a Session with the same store after a reload continues where it ended.
 *
 * Bounds: the image is at most the call's `ram` (256 MB by default); the page holds one image
 * per session. Each call may write what a run may write (64 MiB, 10,000 entries by default).
 */
import { type CellEnvelope, cellFailure, cellOutput } from "../../core/agent/cell.ts";
import { ConfigError } from "../../core/errors.ts";
import { splitPath } from "../../core/policy/paths.ts";
import { describe } from "../../core/runtime/run-options.ts";
import { imageFacts } from "../../core/session/python-image.ts";
import {
  configureSessionImages,
  type SessionImage,
  SessionState,
  type SessionStore,
  sessionImages,
} from "../../core/session/session.ts";
import {
  type CodeOptions,
  DEFAULT_OPFS_ROOT,
  pythonImageKey,
  runJavaScriptCell,
  runPythonCell,
} from "./agent.ts";
import { appRootHandle, directoryHandle } from "./files.ts";

export interface SessionOptions extends CodeOptions {
  /** A name under which the session's state survives a reload (IndexedDB and OPFS). */
  store?: string;
}

// What the session images of this page may hold together: 512 MiB, or a quarter of the device's
// memory where the browser reports less; Session.imageBudget sets another.
configureSessionImages(
  "this page",
  2 ** 29,
  ((navigator as { deviceMemory?: number }).deviceMemory ?? 0) * 2 ** 30 || undefined,
);

const WORKSPACE = "workspace";
const forkedImage = Symbol("forked image");

export class Session {
  /** The bytes of session images this page holds and may hold (`totalBytes` may be set). */
  static readonly imageBudget = sessionImages;
  readonly id: string;
  readonly language: "javascript" | "python";
  /** The session's directory in OPFS; its `workspace` is what the guest sees at /workspace. */
  readonly opfsDirectory: string;
  readonly #options: SessionOptions;
  readonly #state: SessionState;
  readonly #appRoot: string;

  constructor(language: "javascript" | "python" = "javascript", options: SessionOptions = {}) {
    if (language !== "javascript" && language !== "python") {
      throw new ConfigError(
        `Session: language must be "javascript" or "python", got ${describe(language)}`,
      );
    }
    if (options === null || typeof options !== "object") {
      throw new ConfigError(`Session: options must be an object, got ${describe(options)}`);
    }
    const { store } = options;
    if (store !== undefined && (typeof store !== "string" || store === "")) {
      throw new ConfigError(`Session: store must be a non-empty name, got ${describe(store)}`);
    }
    this.language = language;
    this.#options = { ...options };
    this.#appRoot = options.opfsRoot ?? DEFAULT_OPFS_ROOT;
    this.id =
      store === undefined ? crypto.randomUUID().replaceAll("-", "") : `store-${hexName(store)}`;
    this.opfsDirectory = `${this.#appRoot}/.sessions/${this.id}`;
    const image = (options as { [forkedImage]?: SessionImage })[forkedImage] ?? null;
    this.#state = new SessionState(store === undefined ? null : indexedDbStore(store), image);
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
      return await this.#state.callWith(async (image) => {
        await this.#workspace(true);
        const { store: _store, ...options } = this.#options;
        // The worker restores the image and captures the next one; the page holds it between.
        let next: SessionImage | null = null;
        const envelope = await runJavaScriptCell({
          code,
          options: { ...options, opfsRoot: this.opfsDirectory },
          allowedFiles: [{ path: `./${WORKSPACE}`, mode: "rw" }],
          image,
          onImage: (captured) => {
            next = captured;
          },
        });
        return { envelope, image: next };
      });
    } catch (error) {
      return cellFailure(error, started);
    }
  }

  /**
   * A Python call (core/session/python-image.ts): the sandbox Worker restores the image before
   * the cell and hands the new one back after it; the image is kept only when the call succeeded.
   */
  async #runPython(code: string): Promise<CellEnvelope> {
    const key = await pythonImageKey();
    return this.#state.callWith(async (image) => {
      if (image !== null && image.engineKey !== key) {
        throw new ConfigError(
          "the session's saved state belongs to another build of the Python engine; reset() the session or use another store",
        );
      }
      await this.#workspace(true);
      const { store: _store, ...options } = this.#options;
      let next: SessionImage | null = null;
      const envelope = await runPythonCell(
        code,
        { ...options, opfsRoot: this.opfsDirectory },
        {
          image: image?.bytes ?? null,
          // Checked before it is kept: a sandbox may have sent anything.
          onImage: (bytes) => {
            const { memoryBytes } = imageFacts(bytes);
            next = { bytes, runtime: memoryBytes, context: 0, engineKey: key };
          },
          allowedFiles: [{ path: `./${WORKSPACE}`, mode: "rw" }],
        },
      );
      return { envelope, image: next };
    });
  }

  /** Runs a cell; returns the output and last value, throws an Error naming the error_type. */
  async run(code: string): Promise<string> {
    return cellOutput(await this.runCode(code));
  }

  /** Copies a file or directory from the app's OPFS root to `dest` in the workspace. */
  importFile(src: string, dest: string): Promise<string> {
    return this.#state.serialize(async () => {
      const from = await locate(await appRootHandle(this.#appRoot), src, "importFile source");
      const to = await locate(await this.#workspace(true), dest, "importFile destination", true);
      await copyEntry(from.directory, from.name, to.directory, to.name);
      return `Imported ${dest}`;
    });
  }

  /** Copies a file from the workspace to `dest` under the app's OPFS root. */
  exportFile(src: string, dest: string): Promise<string> {
    return this.#state.serialize(async () => {
      const from = await locate(await this.#workspace(true), src, "exportFile source");
      const to = await locate(
        await appRootHandle(this.#appRoot),
        dest,
        "exportFile destination",
        true,
      );
      const file = await (await from.directory.getFileHandle(from.name)).getFile();
      await writeBytes(to.directory, to.name, new Uint8Array(await file.arrayBuffer()));
      return `exported at ${dest}`;
    });
  }

  /** Removes a file or directory from the workspace. */
  deleteFile(path: string): Promise<string> {
    return this.#state.serialize(async () => {
      const target = await locate(await this.#workspace(true), path, "deleteFile path");
      await target.directory.removeEntry(target.name, { recursive: true });
      return `Deleted ${path}`;
    });
  }

  /** Forgets the program state; the workspace keeps its files (as in Capsule). */
  reset(): Promise<void> {
    return this.#state.reset();
  }

  /** An independent copy: the state after every call so far, and a copy of the workspace. */
  async fork(options: SessionOptions = {}): Promise<Session> {
    const image = await this.#state.settled();
    const { store: _store, ...inherited } = this.#options;
    const copy = new Session(this.language, {
      ...inherited,
      ...options,
      [forkedImage]: image,
    } as SessionOptions);
    await this.#state.serialize(async () => {
      const source = await this.#workspace(true);
      const target = await copy.#workspace(true);
      for await (const [name] of entries(source)) await copyEntry(source, name, target, name);
    });
    if (image !== null) await copy.#state.saveNow();
    return copy;
  }

  /** Ends the session; removes its OPFS directory unless it has a store. */
  async close(): Promise<void> {
    if (this.#state.closed) return;
    await this.#state.close();
    if (this.#options.store === undefined) {
      const sessions = await directoryHandle(
        await appRootHandle(this.#appRoot),
        [".sessions"],
        true,
      );
      await sessions.removeEntry(this.id, { recursive: true }).catch(() => {});
    }
  }

  async #workspace(create: boolean): Promise<FileSystemDirectoryHandle> {
    return directoryHandle(await appRootHandle(this.opfsDirectory), [WORKSPACE], create);
  }
}

const asyncDispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
if (asyncDispose !== undefined) {
  Object.defineProperty(Session.prototype, asyncDispose, {
    value(this: Session) {
      return this.close();
    },
  });
}

function hexName(name: string): string {
  return [...new TextEncoder().encode(name)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function locate(
  root: FileSystemDirectoryHandle,
  path: unknown,
  what: string,
  create = false,
): Promise<{ directory: FileSystemDirectoryHandle; name: string }> {
  const segments = typeof path === "string" ? splitPath(path) : [];
  if (
    typeof path !== "string" ||
    segments.length === 0 ||
    segments.includes("..") ||
    path.startsWith("/")
  ) {
    throw new ConfigError(
      `${what} ${describe(path)} must be a relative path inside its root, without ".."`,
    );
  }
  const name = segments.pop() as string;
  return { directory: await directoryHandle(root, segments, create), name };
}

async function* entries(
  directory: FileSystemDirectoryHandle,
): AsyncGenerator<[string, FileSystemHandle]> {
  const iterable = directory as unknown as AsyncIterable<[string, FileSystemHandle]>;
  for await (const entry of iterable) yield entry;
}

async function copyEntry(
  from: FileSystemDirectoryHandle,
  name: string,
  to: FileSystemDirectoryHandle,
  targetName: string,
): Promise<void> {
  let directory: FileSystemDirectoryHandle | null = null;
  try {
    directory = await from.getDirectoryHandle(name);
  } catch {
    directory = null;
  }
  if (directory === null) {
    const file = await (await from.getFileHandle(name)).getFile();
    await writeBytes(to, targetName, new Uint8Array(await file.arrayBuffer()));
    return;
  }
  const target = await to.getDirectoryHandle(targetName, { create: true });
  for await (const [inner] of entries(directory)) await copyEntry(directory, inner, target, inner);
}

async function writeBytes(directory: FileSystemDirectoryHandle, name: string, bytes: Uint8Array) {
  const handle = await directory.getFileHandle(name, { create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes as Uint8Array<ArrayBuffer>);
  await writable.close();
}

/** The image in IndexedDB (database "capsule-sessions", store "images", key = the name). */
function indexedDbStore(name: string): SessionStore {
  const open = () =>
    new Promise<IDBDatabase>((resolve, reject) => {
      const request = indexedDB.open("capsule-sessions", 1);
      request.onupgradeneeded = () => request.result.createObjectStore("images");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  const transact = async <T>(
    mode: IDBTransactionMode,
    work: (store: IDBObjectStore) => IDBRequest<T>,
  ) => {
    const db = await open();
    try {
      return await new Promise<T>((resolve, reject) => {
        const transaction = db.transaction("images", mode);
        const request = work(transaction.objectStore("images"));
        transaction.oncomplete = () => resolve(request.result);
        transaction.onerror = () => reject(transaction.error);
        transaction.onabort = () => reject(transaction.error);
      });
    } finally {
      db.close();
    }
  };
  return {
    async load() {
      const value = await transact("readonly", (store) => store.get(name));
      return value instanceof Uint8Array ? value : null;
    },
    async save(encoded) {
      await transact(
        "readwrite",
        (store) =>
          (encoded === null ? store.delete(name) : store.put(encoded, name)) as IDBRequest<unknown>,
      );
    },
  };
}
