/**
 * The browser file system host: the Origin Private File System (OPFS) behind the synchronous
 * `FileSystemHost` the runtime calls. OPFS opens directories and files only asynchronously, so
 * before a task runs the worker loads the directories it was granted into memory, the task works
 * on that copy synchronously, and its changes are written back to OPFS (through sync access
 * handles) when the task ends, before its envelope is returned.
 */
import {
  createMemoryFileSystem,
  type DirectoryNode,
  type FileNode,
  MemoryTree,
  newDirectory,
  type TreeNode,
} from "../../core/files/memory-tree.ts";
import { FileSystemError, type FileSystemHost } from "../../core/host.ts";
import { isInside, splitPath } from "../../core/policy/paths.ts";

/** Largest total of file bytes loaded for one task; beyond it the task gets EFBIG. */
export const MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;

/** Granted directories of one app root, loaded into memory: hostPath ("/data") -> tree. */
export class OpfsSnapshot extends MemoryTree {
  /** Every node as loaded, by host path: what a flush compares against. */
  readonly #loaded = new Map<string, TreeNode>();
  /** Host paths of the granted directories that were loaded (and will be flushed). */
  readonly #granted = new Set<string>();

  /** Loads the directory `hostPath` ("/data", "/" for the whole root) if it exists in OPFS. */
  async load(appRoot: FileSystemDirectoryHandle, hostPath: string): Promise<void> {
    if ([...this.#granted].some((g) => isInside(hostPath, g))) return;
    this.#granted.add(hostPath);
    const segments = splitPath(hostPath);
    let handle = appRoot;
    let node = this.root;
    for (const name of segments) {
      try {
        handle = await handle.getDirectoryHandle(name);
      } catch {
        return;
      }
      let child = node.children.get(name);
      if (child?.kind !== "directory") {
        child = newDirectory();
        node.children.set(name, child);
      }
      node = child;
    }
    let budget = MAX_SNAPSHOT_BYTES;
    const walk = async (dir: FileSystemDirectoryHandle, into: DirectoryNode, path: string) => {
      this.#loaded.set(path || "/", into);
      // entries() is in every browser with OPFS; the DOM typings here predate it.
      const entries = (
        dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }
      ).entries();
      for await (const [name, entry] of entries) {
        const childPath = `${path}/${name}`;
        if (entry.kind === "directory") {
          const child = newDirectory();
          into.children.set(name, child);
          await walk(entry as FileSystemDirectoryHandle, child, childPath);
        } else {
          const file = await (entry as FileSystemFileHandle).getFile();
          budget -= file.size;
          if (budget < 0) {
            throw new FileSystemError(
              "EFBIG",
              "open",
              undefined,
              `the granted directories hold more than ${MAX_SNAPSHOT_BYTES} bytes`,
            );
          }
          const node: FileNode = {
            kind: "file",
            data: new Uint8Array(await file.arrayBuffer()),
            mtimeMs: file.lastModified,
            birthtimeMs: file.lastModified,
            dirty: false,
          };
          into.children.set(name, node);
          this.admit(node);
          this.#loaded.set(childPath, node);
        }
      }
    };
    await walk(handle, node, segments.length ? `/${segments.join("/")}` : "");
  }

  /** Writes what the task changed inside the granted directories back to OPFS. */
  async flush(appRoot: FileSystemDirectoryHandle): Promise<void> {
    for (const granted of this.#granted) {
      const node = this.lookUp(splitPath(granted));
      if (node?.kind !== "directory") continue;
      const handle = await directoryHandle(appRoot, splitPath(granted), true);
      await this.#flushDirectory(handle, node, granted === "/" ? "" : granted);
    }
  }

  async #flushDirectory(handle: FileSystemDirectoryHandle, node: DirectoryNode, path: string) {
    const before = this.#loaded.get(path || "/");
    if (before?.kind === "directory") {
      for (const [name, old] of before.children) {
        const now = node.children.get(name);
        if (now === undefined || now.kind !== old.kind) {
          await handle.removeEntry(name, { recursive: true }).catch(() => {});
        }
      }
    }
    for (const [name, child] of node.children) {
      const childPath = `${path}/${name}`;
      if (child.kind === "directory") {
        await this.#flushDirectory(
          await handle.getDirectoryHandle(name, { create: true }),
          child,
          childPath,
        );
      } else if (child.dirty || this.#loaded.get(childPath) !== child) {
        await writeThroughSyncHandle(
          await handle.getFileHandle(name, { create: true }),
          child.data,
        );
        child.dirty = false;
      }
    }
  }
}

/** A sync access handle is exclusive: another worker flushing the same file makes us wait. */
async function writeThroughSyncHandle(file: FileSystemFileHandle, data: Uint8Array) {
  for (let attempt = 0; ; attempt++) {
    try {
      const access = await (
        file as unknown as { createSyncAccessHandle(): Promise<SyncAccessHandle> }
      ).createSyncAccessHandle();
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
