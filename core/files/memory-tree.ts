/**
 * A file tree held in memory, and the synchronous `FileSystemHost` over it with Node's error
 * codes. Hosts without a synchronous disk use it: a page loads its OPFS directories into one and
 * writes the changes back; a Worker seeds one from the request and returns the changed files.
 */
import {
  type DirectoryEntry,
  type FileErrorCode,
  type FileStat,
  FileSystemError,
  type FileSystemHost,
  type ResolvedPath,
} from "../host.ts";
import { isInside, splitPath } from "../policy/paths.ts";

export interface FileNode {
  kind: "file";
  data: Uint8Array;
  mtimeMs: number;
  birthtimeMs: number;
  /** Written since it was loaded (or seeded): what a host saves or reports. */
  dirty: boolean;
}

export interface DirectoryNode {
  kind: "directory";
  children: Map<string, TreeNode>;
  mtimeMs: number;
  birthtimeMs: number;
}

export type TreeNode = FileNode | DirectoryNode;

export interface MemoryTreeOptions {
  /** Most bytes all files together may hold; a write past it fails with EFBIG. Default: no cap. */
  maxBytes?: number;
}

const MAX_OPEN_FILES = 256;

/** The tree: `/` is the host root that grants' host paths ("/data") are relative to. */
export class MemoryTree {
  readonly root: DirectoryNode = newDirectory();
  readonly maxBytes: number;
  #bytes = 0;

  constructor(options: MemoryTreeOptions = {}) {
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
  }

  /** Bytes all files hold now. */
  get bytes(): number {
    return this.#bytes;
  }

  lookUp(segments: readonly string[]): TreeNode | undefined {
    return lookUp(this.root, segments);
  }

  /** Whether `hostPath` is a directory in the tree. */
  isDirectory(hostPath: string): boolean {
    return this.lookUp(splitPath(hostPath))?.kind === "directory";
  }

  /**
   * The directory at `segments`, created with its parents where missing; undefined when a file
   * stands in the way.
   */
  ensureDirectory(segments: readonly string[]): DirectoryNode | undefined {
    let node: DirectoryNode = this.root;
    for (const name of segments) {
      let child = node.children.get(name);
      if (child === undefined) {
        child = newDirectory();
        node.children.set(name, child);
      }
      if (child.kind !== "directory") return undefined;
      node = child;
    }
    return node;
  }

  /** Gives `node` new contents, within the byte cap; false (nothing changed) past it. */
  replaceData(node: FileNode, data: Uint8Array): boolean {
    const grown = data.length - node.data.length;
    if (grown > 0 && this.#bytes + grown > this.maxBytes) return false;
    this.#bytes += grown;
    node.data = data;
    return true;
  }

  /** Counts a file added as it is (loaded or seeded), within the byte cap; false past it. */
  admit(node: FileNode): boolean {
    if (this.#bytes + node.data.length > this.maxBytes) return false;
    this.#bytes += node.data.length;
    return true;
  }

  /** Stops counting a node that left the tree, and everything under it. */
  release(node: TreeNode): void {
    for (const file of filesUnder(node)) this.#bytes -= file.data.length;
  }

  /**
   * Every file under the root, by path ("/data/in.txt"). Walked with a stack of its own: a task
   * can nest directories deeper than the host's call stack (renaming a deep chain into another).
   */
  *files(): Generator<[string, FileNode]> {
    // Entries pushed in reverse, so they come out in the order a recursive walk gives.
    const pending: [string, TreeNode][] = [["", this.root]];
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const [path, node] = next;
      if (node.kind === "file") {
        yield [path, node];
        continue;
      }
      const entries = [...node.children];
      for (let i = entries.length - 1; i >= 0; i--) {
        const [name, child] = entries[i] as [string, TreeNode];
        pending.push([`${path}/${name}`, child]);
      }
    }
  }
}

interface OpenFile {
  node: FileNode;
  path: ResolvedPath;
  readable: boolean;
  writable: boolean;
  append: boolean;
  position: number;
}

/** One attempt's view of the tree, with Node's error codes. */
export function createMemoryFileSystem(tree: MemoryTree): FileSystemHost {
  const handles = new Map<number, OpenFile>();
  let nextHandle = 3;

  const segmentsOf = (path: ResolvedPath) => [
    ...splitPath(path.grant.hostPath),
    ...splitPath(path.relative),
  ];
  const fail = (code: FileErrorCode, op: string) => {
    return (path: ResolvedPath) => new FileSystemError(code, op, path.guestPath);
  };
  const find = (path: ResolvedPath, op: string): TreeNode => {
    const node = tree.lookUp(segmentsOf(path));
    if (node === undefined) throw fail(parentIsFile(path) ? "ENOTDIR" : "ENOENT", op)(path);
    return node;
  };
  const parentIsFile = (path: ResolvedPath) => {
    const segments = segmentsOf(path);
    for (let i = 1; i < segments.length; i++) {
      if (tree.lookUp(segments.slice(0, i))?.kind === "file") return true;
    }
    return false;
  };
  const parentOf = (path: ResolvedPath, op: string): { dir: DirectoryNode; name: string } => {
    const segments = segmentsOf(path);
    const name = segments.pop();
    if (name === undefined) throw fail("EEXIST", op)(path);
    const dir = tree.lookUp(segments);
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
  const setData = (node: FileNode, data: Uint8Array, op: string, path: string | undefined) => {
    if (!tree.replaceData(node, data)) {
      throw new FileSystemError(
        "EFBIG",
        op,
        path,
        `the files would hold more than ${tree.maxBytes} bytes`,
      );
    }
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
  const remove = (dir: DirectoryNode, name: string) => {
    const node = dir.children.get(name);
    if (node === undefined) return;
    dir.children.delete(name);
    tree.release(node);
  };

  return {
    readFile(path) {
      const node = find(path, "open");
      if (node.kind !== "file") throw fail("EISDIR", "read")(path);
      return node.data.slice();
    },
    writeFile(path, data, flag) {
      mustWrite(path, "open");
      const existing = tree.lookUp(segmentsOf(path));
      if (existing?.kind === "directory") throw fail("EISDIR", "open")(path);
      if (existing && flag === "wx") throw fail("EEXIST", "open")(path);
      const node = existing ?? createFile(path, "open");
      setData(node, flag === "a" ? concat(node.data, data) : data.slice(), "open", path.guestPath);
    },
    readdir(path) {
      const node = find(path, "scandir");
      if (node.kind !== "directory") throw fail("ENOTDIR", "scandir")(path);
      return [...node.children].map(
        ([name, child]): DirectoryEntry => ({ name, type: child.kind }),
      );
    },
    stat(path, follow) {
      // No links here, so both are one; the name still says which call failed, as on disk.
      return statOf(find(path, follow ? "stat" : "lstat"));
    },
    mkdir(path, recursive) {
      mustWrite(path, "mkdir");
      if (recursive) {
        let node: TreeNode = tree.root;
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
      const node = tree.lookUp(segmentsOf(path));
      if (node === undefined) {
        if (options.force) return;
        throw fail("ENOENT", "rm")(path);
      }
      if (isGrantRoot(path)) throw fail("EACCES", "rm")(path);
      if (node.kind === "directory" && !options.recursive) throw fail("EISDIR", "rm")(path);
      const { dir, name } = parentOf(path, "rm");
      remove(dir, name);
    },
    rmdir(path) {
      mustWrite(path, "rmdir");
      const node = find(path, "rmdir");
      if (node.kind !== "directory") throw fail("ENOTDIR", "rmdir")(path);
      if (node.children.size > 0) throw fail("ENOTEMPTY", "rmdir")(path);
      if (isGrantRoot(path)) throw fail("EACCES", "rmdir")(path);
      const { dir, name } = parentOf(path, "rmdir");
      remove(dir, name);
    },
    unlink(path) {
      mustWrite(path, "unlink");
      const node = find(path, "unlink");
      if (node.kind === "directory") throw fail("EISDIR", "unlink")(path);
      const { dir, name } = parentOf(path, "unlink");
      remove(dir, name);
    },
    rename(from, to) {
      mustWrite(from, "rename");
      mustWrite(to, "rename");
      const node = find(from, "rename");
      if (isGrantRoot(from) || isGrantRoot(to)) throw fail("EACCES", "rename")(from);
      const target = tree.lookUp(segmentsOf(to));
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
      if (target !== undefined && target !== node) remove(destination.dir, destination.name);
      destination.dir.children.set(destination.name, node);
      if (node.kind === "file") node.dirty = true;
      else markDirty(node);
    },
    copyFile(from, to, exclusive) {
      mustWrite(to, "copyfile");
      const node = find(from, "copyfile");
      if (node.kind !== "file") throw fail("EISDIR", "copyfile")(from);
      const target = tree.lookUp(segmentsOf(to));
      if (target?.kind === "directory") throw fail("EISDIR", "copyfile")(to);
      if (target && exclusive) throw fail("EEXIST", "copyfile")(to);
      const copy = target ?? createFile(to, "copyfile");
      setData(copy, node.data.slice(), "copyfile", to.guestPath);
    },
    symlink(_target, path) {
      throw new FileSystemError(
        "EINVAL",
        "symlink",
        path.guestPath,
        // One wording on every host without links: what the task sees must not differ by host.
        "symbolic links are not available on this host",
      );
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
      let node = tree.lookUp(segmentsOf(path));
      if (node?.kind === "directory" && writable) throw fail("EISDIR", "open")(path);
      if (node && flags.includes("x")) throw fail("EEXIST", "open")(path);
      if (node === undefined) {
        if (flags.startsWith("r")) throw fail("ENOENT", "open")(path);
        node = createFile(path, "open");
      }
      if (node.kind !== "file") throw fail("EISDIR", "open")(path);
      if (flags.startsWith("w")) setData(node, new Uint8Array(0), "open", path.guestPath);
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
      let target = open.node.data;
      if (end > target.length) {
        target = new Uint8Array(end);
        target.set(open.node.data);
      }
      target.set(data, at);
      setData(open.node, target, "write", open.path.guestPath);
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
    // The write quota asks before every write: cheaper than a stat that throws when missing.
    exists: (path) => tree.lookUp(segmentsOf(path)) !== undefined,
  };
}

/** A moved directory's files all live at new paths now: they count as written. */
function markDirty(dir: DirectoryNode) {
  for (const file of filesUnder(dir)) file.dirty = true;
}

/** The files in and under `node` (itself, if a file), without recursion. */
function* filesUnder(node: TreeNode): Generator<FileNode> {
  const pending: TreeNode[] = [node];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.kind === "file") yield next;
    else for (const child of next.children.values()) pending.push(child);
  }
}

export function newDirectory(): DirectoryNode {
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

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
