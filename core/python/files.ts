/**
 * A task's granted directories inside the Python sandbox: each is mounted at the guest path a
 * JavaScript task sees ("./data" at /data, the working directory is /), as an emscripten file
 * system whose every operation is a request to the runtime. The runtime applies the same policy
 * as for JavaScript tasks (core/runtime/capabilities.ts): nothing of the host's disk is in the
 * sandbox, and a forged request gets what the policy gives it.
 */

import { fromBase64, toBase64 } from "../encoding/base64.ts";
import type { AttemptCapabilities } from "../runtime/attempt.ts";
import type { PythonReply, PythonRequest } from "./protocol.ts";

/** The parts of emscripten's FS this file uses. */
interface EmscriptenFS {
  mkdirTree(path: string): void;
  mount(type: object, options: object, mountpoint: string): void;
  createNode(parent: FSNode | null, name: string, mode: number, dev?: number): FSNode;
  isDir(mode: number): boolean;
  isFile(mode: number): boolean;
  chdir(path: string): void;
  ErrnoError: new (errno: number) => Error;
}

interface FSNode {
  name: string;
  parent: FSNode;
  mode: number;
  mount: { opts: { guestPath: string } };
  node_ops: object;
  stream_ops: object;
}

interface FSStream {
  node: FSNode;
  flags: number;
  position: number;
  handle?: number;
}

export interface PythonFiles {
  FS: EmscriptenFS;
  ERRNO_CODES: Record<string, number>;
}

/**
 * Top-level directories of the interpreter's own file system: a grant there would hide the
 * standard library or the devices, so the runtime refuses it with a config_error.
 */
export const PYTHON_RESERVED_DIRECTORIES = ["dev", "home", "lib", "proc", "tmp"] as const;

/** The policy's messages name options as JavaScript spells them; a Python task spells them so. */
export function pythonSpelling(message: string): string {
  return message
    .replaceAll("allowedFiles", "allowed_files")
    .replaceAll("allowedHosts", "allowed_hosts");
}

/** One file request of the guest, answered through the task's file policy. */
export function answerFileCall(
  request: Extract<PythonRequest, { op: "fs" }>,
  fsCall: AttemptCapabilities["fsCall"],
): PythonReply {
  const data = request.data === undefined ? undefined : fromBase64(request.data);
  const answer = fsCall(request.call, request.argsJson, data);
  if (typeof answer !== "string") return { bytes: toBase64(answer) };
  return { json: answer.startsWith('{"error"') ? pythonSpelling(answer) : answer };
}

const DIRECTORY_MODE = 0o40777;
const FILE_MODE = 0o100666;
const SYMLINK_MODE = 0o120777;

/** Node's file flags for emscripten's open flags (the ones Python's open() and os.open use). */
function nodeFlags(flags: number): string {
  const access = flags & 3;
  const append = (flags & 0o2000) !== 0;
  const create = (flags & 0o100) !== 0;
  const exclusive = (flags & 0o200) !== 0;
  const truncate = (flags & 0o1000) !== 0;
  if (access === 0) return "r";
  if (append) return access === 2 ? "a+" : "a";
  if (create && exclusive) return access === 2 ? "wx+" : "wx";
  if (truncate || create) return access === 2 ? (truncate ? "w+" : "r+") : truncate ? "w" : "r+";
  return "r+";
}

/** Mounts each granted guest directory and makes / the working directory. */
export function mountGrants(
  files: PythonFiles,
  grants: readonly string[],
  call: (request: PythonRequest) => PythonReply,
): void {
  const { FS, ERRNO_CODES } = files;
  /** Why the last file operation was refused, for the task's error message. */
  const fail = (reply: PythonReply): never => {
    let code = "EIO";
    if ("json" in reply) {
      const parsed = JSON.parse(reply.json) as { error?: { code?: string; message?: string } };
      code = parsed.error?.code ?? "EIO";
      lastFileError.message = parsed.error?.message ?? code;
    } else if ("error" in reply) {
      lastFileError.message = reply.error;
    }
    throw new FS.ErrnoError(ERRNO_CODES[code] ?? (ERRNO_CODES.EIO as number));
  };
  const request = (op: string, args: object, data?: Uint8Array): unknown => {
    const reply = call({
      op: "fs",
      call: op,
      argsJson: JSON.stringify(args),
      ...(data === undefined ? {} : { data: toBase64(data) }),
    });
    if ("bytes" in reply) return fromBase64(reply.bytes);
    if ("json" in reply) {
      const parsed = JSON.parse(reply.json) as { ok?: unknown; error?: unknown };
      if ("ok" in parsed) return parsed.ok;
    }
    return fail(reply);
  };
  const pathOf = (node: FSNode): string => {
    const parts: string[] = [];
    let current = node;
    while (current.parent !== current) {
      parts.push(current.name);
      current = current.parent;
    }
    const root = current.mount.opts.guestPath;
    return parts.length === 0 ? root : `${root}/${parts.reverse().join("/")}`;
  };
  const childPath = (parent: FSNode, name: string) => `${pathOf(parent)}/${name}`;
  interface Stat {
    type: string;
    size: number;
    mode: number;
    mtimeMs: number;
    atimeMs: number;
    ctimeMs: number;
  }
  const modeOf = (stat: Stat) =>
    (stat.type === "directory" ? 0o40000 : stat.type === "symlink" ? 0o120000 : 0o100000) |
    (stat.mode & 0o777);
  const createNode = (parent: FSNode | null, name: string, mode: number): FSNode => {
    const node = FS.createNode(parent, name, mode);
    node.node_ops = nodeOps;
    node.stream_ops = streamOps;
    return node;
  };
  const attributes = (node: FSNode, stat: Stat) => ({
    dev: 1,
    ino: (node as unknown as { id: number }).id,
    mode: modeOf(stat),
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size: stat.size,
    atime: new Date(stat.atimeMs),
    mtime: new Date(stat.mtimeMs),
    ctime: new Date(stat.ctimeMs),
    blksize: 4096,
    blocks: Math.ceil(stat.size / 4096),
  });
  const nodeOps = {
    getattr: (node: FSNode) =>
      attributes(node, request("stat", { path: pathOf(node), follow: false }) as Stat),
    setattr: (node: FSNode, attr: { size?: number }) => {
      // Only truncation reaches the host; modes and times stay the host's.
      if (attr.size === undefined) return;
      const path = pathOf(node);
      const kept =
        attr.size === 0 ? new Uint8Array(0) : (request("readFile", { path }) as Uint8Array);
      const resized = new Uint8Array(attr.size);
      resized.set(kept.subarray(0, attr.size));
      request("writeFile", { path, flag: "w" }, resized);
    },
    lookup: (parent: FSNode, name: string) => {
      const stat = request("stat", { path: childPath(parent, name), follow: false }) as Stat;
      // Every permission bit on the node, so the emscripten layer passes each operation on and
      // the runtime's policy answers it (EROFS with its reason, as for a JavaScript task); stat
      // still shows the real mode.
      return createNode(parent, name, (modeOf(stat) & ~0o777) | 0o777);
    },
    mknod: (parent: FSNode, name: string, mode: number) => {
      const path = childPath(parent, name);
      if (FS.isDir(mode)) request("mkdir", { path, recursive: false });
      else request("writeFile", { path, flag: "wx" }, new Uint8Array(0));
      return createNode(parent, name, FS.isDir(mode) ? DIRECTORY_MODE : FILE_MODE);
    },
    rename: (node: FSNode, newParent: FSNode, newName: string) => {
      request("rename", { from: pathOf(node), to: childPath(newParent, newName) });
      node.name = newName;
    },
    unlink: (parent: FSNode, name: string) => {
      request("unlink", { path: childPath(parent, name) });
    },
    rmdir: (parent: FSNode, name: string) => {
      request("rmdir", { path: childPath(parent, name) });
    },
    readdir: (node: FSNode) => [
      ".",
      "..",
      ...(request("readdir", { path: pathOf(node) }) as { name: string }[]).map(
        (entry) => entry.name,
      ),
    ],
    symlink: (parent: FSNode, name: string, target: string) => {
      request("symlink", { target, path: childPath(parent, name) });
      createNode(parent, name, SYMLINK_MODE);
    },
    readlink: (node: FSNode) => request("readlink", { path: pathOf(node) }) as string,
  };
  const streamOps = {
    open: (stream: FSStream) => {
      if (FS.isDir(stream.node.mode)) return;
      stream.handle = request("open", {
        path: pathOf(stream.node),
        flags: nodeFlags(stream.flags),
      }) as number;
    },
    close: (stream: FSStream) => {
      if (stream.handle !== undefined) request("close", { fd: stream.handle });
    },
    read: (
      stream: FSStream,
      buffer: Uint8Array,
      offset: number,
      length: number,
      position: number,
    ) => {
      const bytes = request("read", { fd: stream.handle, length, position }) as Uint8Array;
      buffer.set(bytes, offset);
      return bytes.length;
    },
    write: (
      stream: FSStream,
      buffer: Uint8Array,
      offset: number,
      length: number,
      position: number,
    ) => {
      // In pieces, so no one message to the runtime is larger than a piece (the Node host caps
      // each message's size before it reads it).
      let written = 0;
      do {
        const piece = Math.min(length - written, WRITE_PIECE_BYTES);
        const count = request(
          "write",
          { fd: stream.handle, position: position + written },
          buffer.slice(offset + written, offset + written + piece),
        ) as number;
        if (!(count > 0)) break;
        written += count;
      } while (written < length);
      return written;
    },
    llseek: (stream: FSStream, offset: number, whence: number) => {
      let position = offset;
      if (whence === 1) position += stream.position;
      else if (whence === 2 && FS.isFile(stream.node.mode)) {
        position += (request("fstat", { fd: stream.handle }) as Stat).size;
      }
      if (position < 0) throw new FS.ErrnoError(ERRNO_CODES.EINVAL as number);
      return position;
    },
  };
  const grantFileSystem = {
    mount: (mount: { opts: { guestPath: string } }) => {
      request("stat", { path: mount.opts.guestPath, follow: true });
      return createNode(null, "/", DIRECTORY_MODE);
    },
  };
  for (const guestPath of grants) {
    FS.mkdirTree(guestPath);
    FS.mount(grantFileSystem, { guestPath }, guestPath);
  }
  FS.chdir("/");
}

/** The largest piece of one write sent to the runtime. */
const WRITE_PIECE_BYTES = 1024 * 1024;

/** The policy's words for the last refused file operation; the runner adds them to the error. */
export const lastFileError = { message: "" };
