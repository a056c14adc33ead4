/**
 * The browser file system host: the Origin Private File System (OPFS) behind the synchronous
 * `FileSystemHost` the runtime calls. OPFS opens directories and files only asynchronously, so
 * before a task runs the worker loads the directories it was granted into memory, the task works
 * on that copy synchronously, and its changes are written back to OPFS (through sync access
 * handles) when the task ends, before its envelope is returned.
 */
import {
  type DirectoryEntry,
  type FileStat,
  FileSystemError,
  type FileSystemHost,
  type ResolvedPath,
} from "../../core/host.ts";

interface FileNode {
  kind: "file";
  data: Uint8Array;
  mtimeMs: number;
  birthtimeMs: number;
  /** Written since it was loaded: flushed back to OPFS. */
  dirty: boolean;
}

interface DirectoryNode {
  kind: "directory";
  children: Map<string, TreeNode>;
  mtimeMs: number;
  birthtimeMs: number;
}

type TreeNode = FileNode | DirectoryNode;

/** Largest total of file bytes loaded for one task; beyond it the task gets EFBIG. */
export const MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;
const MAX_OPEN_FILES = 256;

/** Granted directories of one app root, loaded into memory: hostPath ("/data") -> tree. */
export class OpfsSnapshot {
  readonly root: DirectoryNode = newDirectory();
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
          this.#loaded.set(childPath, node);
        }
      }
    };
    await walk(handle, node, segments.length ? `/${segments.join("/")}` : "");
  }

  /** Whether `hostPath` is a directory in the snapshot. */
  isDirectory(hostPath: string): boolean {
    return lookUp(this.root, splitPath(hostPath))?.kind === "directory";
  }

  /** Writes what the task changed inside the granted directories back to OPFS. */
  async flush(appRoot: FileSystemDirectoryHandle): Promise<void> {
    for (const granted of this.#granted) {
      const node = lookUp(this.root, splitPath(granted));
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

interface OpenFile {
  node: FileNode;
  path: ResolvedPath;
  readable: boolean;
  writable: boolean;
  append: boolean;
  position: number;
}

/** One attempt's view of the snapshot, with Node's error codes. */
export function createBrowserFileSystem(snapshot: OpfsSnapshot): FileSystemHost {
  const handles = new Map<number, OpenFile>();
  let nextHandle = 3;

  const segmentsOf = (path: ResolvedPath) => [
    ...splitPath(path.grant.hostPath),
    ...splitPath(path.relative),
  ];
  const fail = (code: ConstructorParameters<typeof FileSystemError>[0], op: string) => {
    return (path: ResolvedPath) => new FileSystemError(code, op, path.guestPath);
  };
  const find = (path: ResolvedPath, op: string): TreeNode => {
    const node = lookUp(snapshot.root, segmentsOf(path));
    if (node === undefined) throw fail(parentIsFile(path) ? "ENOTDIR" : "ENOENT", op)(path);
    return node;
  };
  const parentIsFile = (path: ResolvedPath) => {
    const segments = segmentsOf(path);
    for (let i = 1; i < segments.length; i++) {
      if (lookUp(snapshot.root, segments.slice(0, i))?.kind === "file") return true;
    }
    return false;
  };
  const parentOf = (path: ResolvedPath, op: string): { dir: DirectoryNode; name: string } => {
    const segments = segmentsOf(path);
    const name = segments.pop();
    if (name === undefined) throw fail("EEXIST", op)(path);
    const dir = lookUp(snapshot.root, segments);
    if (dir === undefined) throw fail("ENOENT", op)(path);
    if (dir.kind !== "directory") throw fail("ENOTDIR", op)(path);
    return { dir, name };
  };
  const mustWrite = (path: ResolvedPath, op: string) => {
    if (path.grant.mode !== "rw") throw fail("EROFS", op)(path);
  };
  const isGrantRoot = (path: ResolvedPath) => path.relative === "";
  const statOf = (node: TreeNode): FileStat => ({
    type: node.kind,
    size: node.kind === "file" ? node.data.length : 4096,
    mode: node.kind === "file" ? 0o100644 : 0o40755,
    mtimeMs: node.mtimeMs,
    atimeMs: node.mtimeMs,
    ctimeMs: node.mtimeMs,
    birthtimeMs: node.birthtimeMs,
  });
  const handleOf = (fd: number, op: string): OpenFile => {
    const open = handles.get(fd);
    if (open === undefined) throw new FileSystemError("EBADF", op, undefined);
    return open;
  };
  const touch = (node: FileNode) => {
    node.dirty = true;
    node.mtimeMs = Date.now();
  };
  const createFile = (path: ResolvedPath, op: string): FileNode => {
    const { dir, name } = parentOf(path, op);
    const now = Date.now();
    const node: FileNode = {
      kind: "file",
      data: new Uint8Array(0),
      mtimeMs: now,
      birthtimeMs: now,
      dirty: true,
    };
    dir.children.set(name, node);
    dir.mtimeMs = now;
    return node;
  };

  return {
    readFile(path) {
      const node = find(path, "open");
      if (node.kind !== "file") throw fail("EISDIR", "read")(path);
      return node.data.slice();
    },
    writeFile(path, data, flag) {
      mustWrite(path, "open");
      const existing = lookUp(snapshot.root, segmentsOf(path));
      if (existing?.kind === "directory") throw fail("EISDIR", "open")(path);
      if (existing && flag === "wx") throw fail("EEXIST", "open")(path);
      const node = existing ?? createFile(path, "open");
      node.data = flag === "a" ? concat(node.data, data) : data.slice();
      touch(node);
    },
    readdir(path) {
      const node = find(path, "scandir");
      if (node.kind !== "directory") throw fail("ENOTDIR", "scandir")(path);
      return [...node.children].map(
        ([name, child]): DirectoryEntry => ({ name, type: child.kind }),
      );
    },
    stat(path) {
      return statOf(find(path, "stat"));
    },
    mkdir(path, recursive) {
      mustWrite(path, "mkdir");
      if (recursive) {
        let node: TreeNode = snapshot.root;
        for (const name of segmentsOf(path)) {
          if (node.kind !== "directory") throw fail("ENOTDIR", "mkdir")(path);
          let child: TreeNode | undefined = node.children.get(name);
          if (child === undefined) {
            child = newDirectory();
            node.children.set(name, child);
          }
          node = child;
        }
        if (node.kind !== "directory") throw fail("EEXIST", "mkdir")(path);
        return;
      }
      const { dir, name } = parentOf(path, "mkdir");
      if (dir.children.has(name)) throw fail("EEXIST", "mkdir")(path);
      dir.children.set(name, newDirectory());
    },
    rm(path, options) {
      mustWrite(path, "rm");
      const node = lookUp(snapshot.root, segmentsOf(path));
      if (node === undefined) {
        if (options.force) return;
        throw fail("ENOENT", "rm")(path);
      }
      if (isGrantRoot(path)) throw fail("EACCES", "rm")(path);
      if (node.kind === "directory" && !options.recursive) throw fail("EISDIR", "rm")(path);
      const { dir, name } = parentOf(path, "rm");
      dir.children.delete(name);
    },
    rmdir(path) {
      mustWrite(path, "rmdir");
      const node = find(path, "rmdir");
      if (node.kind !== "directory") throw fail("ENOTDIR", "rmdir")(path);
      if (node.children.size > 0) throw fail("ENOTEMPTY", "rmdir")(path);
      if (isGrantRoot(path)) throw fail("EACCES", "rmdir")(path);
      const { dir, name } = parentOf(path, "rmdir");
      dir.children.delete(name);
    },
    unlink(path) {
      mustWrite(path, "unlink");
      const node = find(path, "unlink");
      if (node.kind === "directory") throw fail("EISDIR", "unlink")(path);
      const { dir, name } = parentOf(path, "unlink");
      dir.children.delete(name);
    },
    rename(from, to) {
      mustWrite(from, "rename");
      mustWrite(to, "rename");
      const node = find(from, "rename");
      if (isGrantRoot(from) || isGrantRoot(to)) throw fail("EACCES", "rename")(from);
      const target = lookUp(snapshot.root, segmentsOf(to));
      if (target?.kind === "directory" && node.kind === "file") throw fail("EISDIR", "rename")(to);
      if (target?.kind === "file" && node.kind === "directory") throw fail("ENOTDIR", "rename")(to);
      if (target?.kind === "directory" && target.children.size > 0 && target !== node) {
        throw fail("ENOTEMPTY", "rename")(to);
      }
      if (
        node.kind === "directory" &&
        isInside(segmentsOf(to).join("/"), segmentsOf(from).join("/")) &&
        target !== node
      ) {
        throw fail("EINVAL", "rename")(to);
      }
      const source = parentOf(from, "rename");
      const destination = parentOf(to, "rename");
      source.dir.children.delete(source.name);
      destination.dir.children.set(destination.name, node);
      if (node.kind === "file") node.dirty = true;
      else markDirty(node);
    },
    copyFile(from, to, exclusive) {
      mustWrite(to, "copyfile");
      const node = find(from, "copyfile");
      if (node.kind !== "file") throw fail("EISDIR", "copyfile")(from);
      const target = lookUp(snapshot.root, segmentsOf(to));
      if (target?.kind === "directory") throw fail("EISDIR", "copyfile")(to);
      if (target && exclusive) throw fail("EEXIST", "copyfile")(to);
      const copy = target ?? createFile(to, "copyfile");
      copy.data = node.data.slice();
      touch(copy);
    },
    symlink(_target, path) {
      throw new FileSystemError("EINVAL", "symlink", path.guestPath, "OPFS has no symbolic links");
    },
    readlink(path) {
      find(path, "readlink");
      throw fail("EINVAL", "readlink")(path);
    },
    open(path, flags) {
      if (handles.size >= MAX_OPEN_FILES) throw fail("EMFILE", "open")(path);
      const writable = /[wa+]/.test(flags);
      const readable = flags.startsWith("r") || flags.includes("+");
      if (writable) mustWrite(path, "open");
      let node = lookUp(snapshot.root, segmentsOf(path));
      if (node?.kind === "directory" && writable) throw fail("EISDIR", "open")(path);
      if (node && flags.includes("x")) throw fail("EEXIST", "open")(path);
      if (node === undefined) {
        if (flags.startsWith("r")) throw fail("ENOENT", "open")(path);
        node = createFile(path, "open");
      }
      if (node.kind !== "file") throw fail("EISDIR", "open")(path);
      if (flags.startsWith("w")) {
        node.data = new Uint8Array(0);
        touch(node);
      }
      const fd = nextHandle++;
      handles.set(fd, {
        node,
        path,
        readable,
        writable,
        append: flags.startsWith("a"),
        position: 0,
      });
      return fd;
    },
    read(fd, length, position) {
      const open = handleOf(fd, "read");
      if (!open.readable) throw new FileSystemError("EBADF", "read", undefined);
      const at = position ?? open.position;
      const chunk = open.node.data.slice(at, at + length);
      if (position === null) open.position += chunk.length;
      return chunk;
    },
    write(fd, data, position) {
      const open = handleOf(fd, "write");
      if (!open.writable) throw new FileSystemError("EBADF", "write", undefined);
      const at = open.append ? open.node.data.length : (position ?? open.position);
      const end = at + data.length;
      if (end > open.node.data.length) {
        const grown = new Uint8Array(end);
        grown.set(open.node.data);
        open.node.data = grown;
      }
      open.node.data.set(data, at);
      touch(open.node);
      if (position === null) open.position = end;
      return data.length;
    },
    fstat(fd) {
      return statOf(handleOf(fd, "fstat").node);
    },
    close(fd) {
      handleOf(fd, "close");
      handles.delete(fd);
    },
    closeAll() {
      handles.clear();
    },
  };
}

/** A moved directory's files all live at new paths now: write them all. */
function markDirty(dir: DirectoryNode) {
  for (const child of dir.children.values()) {
    if (child.kind === "file") child.dirty = true;
    else markDirty(child);
  }
}

function newDirectory(): DirectoryNode {
  const now = Date.now();
  return { kind: "directory", children: new Map(), mtimeMs: now, birthtimeMs: now };
}

function lookUp(root: DirectoryNode, segments: readonly string[]): TreeNode | undefined {
  let node: TreeNode = root;
  for (const name of segments) {
    if (node.kind !== "directory") return undefined;
    const child: TreeNode | undefined = node.children.get(name);
    if (child === undefined) return undefined;
    node = child;
  }
  return node;
}

export function splitPath(path: string): string[] {
  return path.split("/").filter((s) => s !== "" && s !== ".");
}

function isInside(inner: string, outer: string): boolean {
  const a = splitPath(inner);
  const b = splitPath(outer);
  return b.length <= a.length && b.every((s, i) => a[i] === s);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
