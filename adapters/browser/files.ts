/**
 * The browser file system host: the Origin Private File System (OPFS) behind the synchronous
 * `FileSystemHost` the runtime calls. OPFS opens directories and files only asynchronously, so
 * before a task runs the directories it was granted are loaded into memory, the task works on
 * that copy synchronously, and its changes are written back to OPFS when the task ends, before
 * its envelope is returned. JavaScript tasks do this in a pool Worker; Python tasks on the page,
 * which copies the granted files into the sandbox and checks what comes back (python/files.ts).
 */

import { ConfigError } from "../../core/errors.ts";
import { LoadedTree, type TreeChange } from "../../core/files/loaded-tree.ts";
import {
  createMemoryFileSystem,
  type DirectoryNode,
  type FileNode,
  newDirectory,
} from "../../core/files/memory-tree.ts";
import { FileSystemError, type FileSystemHost } from "../../core/host.ts";
import { splitPath } from "../../core/policy/paths.ts";
import { JOURNAL_DIRECTORY } from "./journal-protocol.ts";

/** Writes a write-back keeps in flight at once. */
const WRITE_BACK_CONCURRENCY = 16;

/** Largest total of file bytes loaded for one task; beyond it the task gets EFBIG. */
export const MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;

/** Granted directories of one app root, loaded into memory; `/data` is `<app root>/data`. */
export class OpfsSnapshot extends LoadedTree {
  constructor() {
    super({ maxBytes: MAX_SNAPSHOT_BYTES });
  }

  /** Loads the directory `hostPath` ("/data", "/" for the whole root) if it exists in OPFS. */
  async load(appRoot: FileSystemDirectoryHandle, hostPath: string): Promise<void> {
    const segments = splitPath(hostPath);
    let handle: FileSystemDirectoryHandle;
    try {
      handle = await directoryHandle(appRoot, segments, false);
    } catch {
      return;
    }
    const node = this.grantDirectory(hostPath);
    if (node === undefined) return;
    const walk = async (dir: FileSystemDirectoryHandle, into: DirectoryNode, path: string) => {
      // entries() is in every browser with OPFS; the DOM typings here predate it.
      const entries = (
        dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }
      ).entries();
      for await (const [name, entry] of entries) {
        const childPath = `${path}/${name}`;
        if (entry.kind === "directory") {
          const child = newDirectory();
          into.children.set(name, child);
          this.markLoaded(childPath, child);
          await walk(entry as FileSystemDirectoryHandle, child, childPath);
        } else {
          let file: File;
          let data: Uint8Array;
          try {
            file = await (entry as FileSystemFileHandle).getFile();
            data = new Uint8Array(await file.arrayBuffer());
          } catch (error) {
            // Gone since it was listed: another task's write-back replaced it (a writable stream
            // commits through a swap file the listing can show) or removed it. Not part of this
            // snapshot, as it would not be a moment later.
            if ((error as DOMException)?.name === "NotFoundError") continue;
            throw error;
          }
          const node: FileNode = {
            kind: "file",
            data,
            mtimeMs: file.lastModified,
            birthtimeMs: file.lastModified,
            dirty: false,
          };
          if (!this.admit(node)) {
            throw new FileSystemError(
              "EFBIG",
              "open",
              undefined,
              `the granted directories hold more than ${MAX_SNAPSHOT_BYTES} bytes`,
            );
          }
          into.children.set(name, node);
          this.markLoaded(childPath, node);
        }
      }
    };
    await walk(handle, node, segments.length ? `/${segments.join("/")}` : "");
  }

  /**
   * Writes what the task changed inside the granted directories back to OPFS, by `deadline`
   * (performance.now() time; null: no bound but the quota's). Each file is replaced whole (a
   * writable stream commits on close, so a stop halfway leaves its old contents); a change that
   * would start after the deadline is not made. Throws a `WriteBackError` saying how far it got.
   */
  async flush(appRoot: FileSystemDirectoryHandle, deadline: number | null = null): Promise<void> {
    const changes = this.changes();
    const directories = new Map<string, Promise<FileSystemDirectoryHandle>>();
    const directory = (segments: readonly string[]): Promise<FileSystemDirectoryHandle> => {
      const key = segments.join("/");
      let handle = directories.get(key);
      if (handle === undefined) {
        handle =
          segments.length === 0
            ? Promise.resolve(appRoot)
            : directory(segments.slice(0, -1)).then((parent) =>
                parent.getDirectoryHandle(segments.at(-1) as string, { create: true }),
              );
        directories.set(key, handle);
      }
      return handle;
    };
    let saved = 0;
    let failure: unknown;
    const apply = async (change: TreeChange) => {
      const segments = splitPath(change.path);
      const name = segments.pop() as string;
      const parent = await directory(segments);
      if (change.kind === "removed") {
        for (const key of directories.keys()) {
          if (key === change.path.slice(1) || key.startsWith(`${change.path.slice(1)}/`)) {
            directories.delete(key);
          }
        }
        await parent.removeEntry(name, { recursive: true }).catch(() => {});
      } else if (change.kind === "directory") {
        await directory([...segments, name]);
      } else {
        const fresh = !this.wasLoaded(change.path);
        const file = await parent.getFileHandle(name, { create: true });
        try {
          // A new empty file is whole once created.
          if (change.data.byteLength > 0 || !fresh) await writeFileHandle(file, change.data);
        } catch (error) {
          // A new file that could not be written is not left behind empty.
          if (fresh) await parent.removeEntry(name).catch(() => {});
          throw error;
        }
      }
      saved++;
    };
    // Removals first, one at a time; then up to WRITE_BACK_CONCURRENCY writes at once (OPFS
    // spends ~2 ms creating a file, mostly waiting), parents made before their children.
    const removals = changes.filter((change) => change.kind === "removed");
    const writes = changes.filter((change) => change.kind !== "removed");
    const overdue = () => deadline !== null && performance.now() > deadline;
    for (const change of removals) {
      if (overdue() || failure !== undefined) break;
      await apply(change).catch((error: unknown) => {
        failure = error;
      });
    }
    let next = 0;
    const lane = async () => {
      while (next < writes.length && !overdue() && failure === undefined) {
        const change = writes[next++] as TreeChange;
        await apply(change).catch((error: unknown) => {
          failure ??= error;
        });
      }
    };
    await Promise.all(Array.from({ length: WRITE_BACK_CONCURRENCY }, lane));
    if (failure !== undefined) {
      const full = (failure as Error | null)?.name === "QuotaExceededError";
      throw new WriteBackError(full ? "full" : "failed", saved, changes.length, failure);
    }
    if (saved < changes.length) throw new WriteBackError("timeout", saved, changes.length);
    this.settle();
  }
}

/** A write-back that stopped: why, and how many of the task's changes it had saved. */
export class WriteBackError extends Error {
  override name = "WriteBackError";
  constructor(
    readonly reason: "timeout" | "full" | "failed",
    readonly saved: number,
    readonly total: number,
    readonly error?: unknown,
  ) {
    const progress = `${saved} of ${total} changes were saved, each file whole (its new contents or its old)`;
    super(
      reason === "timeout"
        ? `the task's timeout ran out while its files were saved to OPFS: ${progress}`
        : reason === "full"
          ? `ENOSPC: the origin's storage quota ran out while the task's files were saved to OPFS: ${progress}`
          : `the task's files could not be saved to OPFS (${String(error)}): ${progress}`,
    );
  }
}

/**
 * Replaces a file's contents whole: a writable stream writes to a copy that takes the file's
 * place only when closed, so a task, worker or storage quota that ends the write halfway leaves
 * the old contents. It is exclusive: another realm writing the same file makes us wait.
 */
async function writeFileHandle(file: FileSystemFileHandle, data: Uint8Array) {
  for (let attempt = 0; ; attempt++) {
    try {
      const stream = await file.createWritable({ keepExistingData: false });
      try {
        await stream.write(data as Uint8Array<ArrayBuffer>);
      } catch (error) {
        await stream.abort().catch(() => {});
        throw error;
      }
      await stream.close();
      return;
    } catch (error) {
      if (attempt >= 20 || (error as Error).name !== "NoModificationAllowedError") throw error;
      await new Promise((resolve) => setTimeout(resolve, 10 * (attempt + 1)));
    }
  }
}

export async function directoryHandle(
  appRoot: FileSystemDirectoryHandle,
  segments: readonly string[],
  create: boolean,
): Promise<FileSystemDirectoryHandle> {
  let handle = appRoot;
  for (const name of segments) handle = await handle.getDirectoryHandle(name, { create });
  return handle;
}

/** The app's root directory in OPFS: one per app, named by the `opfsRoot` option. */
export async function appRootHandle(name: string): Promise<FileSystemDirectoryHandle> {
  checkAppRoot(name);
  const storage = await navigator.storage.getDirectory();
  return directoryHandle(storage, splitPath(name), true);
}

/**
 * Refuses an app root that is, or lies in, the run journal's directory (journal-protocol.ts): no
 * grant of any task may reach the journal's files.
 */
export function checkAppRoot(name: string): void {
  const first = splitPath(name)[0];
  if (first !== undefined && first.toLowerCase() === JOURNAL_DIRECTORY) {
    throw new ConfigError(
      `opfsRoot ${JSON.stringify(name)} lies in ${JSON.stringify(JOURNAL_DIRECTORY)}, the run journal's directory, which no task may reach; choose another directory`,
    );
  }
}

/** One attempt's view of the snapshot, with Node's error codes. */
export function createBrowserFileSystem(snapshot: OpfsSnapshot): FileSystemHost {
  return createMemoryFileSystem(snapshot);
}
