/**
 * The browser file system host: the Origin Private File System (OPFS) behind the synchronous
 * `FileSystemHost` the runtime calls. OPFS opens directories and files only asynchronously, so
 * before a task runs the directories it was granted are loaded into memory, the task works on
 * that copy synchronously, and its changes are written back to OPFS when the task ends, before
 * its envelope is returned. JavaScript tasks do this in a pool Worker; Python tasks on the page,
 * which copies the granted files into the sandbox and checks what comes back (python/files.ts).
 */
import { LoadedTree } from "../../core/files/loaded-tree.ts";
import {
  createMemoryFileSystem,
  type DirectoryNode,
  type FileNode,
  newDirectory,
} from "../../core/files/memory-tree.ts";
import { FileSystemError, type FileSystemHost } from "../../core/host.ts";
import { splitPath } from "../../core/policy/paths.ts";

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
          const file = await (entry as FileSystemFileHandle).getFile();
          const node: FileNode = {
            kind: "file",
            data: new Uint8Array(await file.arrayBuffer()),
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

  /** Writes what the task changed inside the granted directories back to OPFS. */
  async flush(appRoot: FileSystemDirectoryHandle): Promise<void> {
    for (const change of this.changes()) {
      const segments = splitPath(change.path);
      const name = segments.pop() as string;
      const parent = await directoryHandle(appRoot, segments, true);
      if (change.kind === "removed") {
        await parent.removeEntry(name, { recursive: true }).catch(() => {});
      } else if (change.kind === "directory") {
        await parent.getDirectoryHandle(name, { create: true });
      } else {
        await writeFileHandle(await parent.getFileHandle(name, { create: true }), change.data);
      }
    }
    this.settle();
  }
}

/**
 * Writes a file's new contents: through a sync access handle in a Worker, through a writable
 * stream on the page (which has no sync handles). Both are exclusive: another realm writing the
 * same file makes us wait.
 */
async function writeFileHandle(file: FileSystemFileHandle, data: Uint8Array) {
  const handle = file as unknown as { createSyncAccessHandle?(): Promise<SyncAccessHandle> };
  for (let attempt = 0; ; attempt++) {
    try {
      if (typeof handle.createSyncAccessHandle !== "function") {
        const stream = await file.createWritable();
        await stream.write(data as Uint8Array<ArrayBuffer>);
        await stream.close();
        return;
      }
      const access = await handle.createSyncAccessHandle();
      try {
        access.truncate(0);
        access.write(data, { at: 0 });
        access.flush();
      } finally {
        access.close();
      }
      return;
    } catch (error) {
      if (attempt >= 20 || (error as Error).name !== "NoModificationAllowedError") throw error;
      await new Promise((resolve) => setTimeout(resolve, 10 * (attempt + 1)));
    }
  }
}

interface SyncAccessHandle {
  truncate(size: number): void;
  write(data: Uint8Array, options: { at: number }): number;
  flush(): void;
  close(): void;
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
  const storage = await navigator.storage.getDirectory();
  return directoryHandle(storage, splitPath(name), true);
}

/** One attempt's view of the snapshot, with Node's error codes. */
export function createBrowserFileSystem(snapshot: OpfsSnapshot): FileSystemHost {
  return createMemoryFileSystem(snapshot);
}
