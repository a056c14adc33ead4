import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  rmdirSync,
  type Stats,
  statSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { posix } from "node:path";
import {
  type DirectoryEntry,
  type FileErrorCode,
  type FileStat,
  FileSystemError,
  type FileSystemHost,
  type FileType,
  type Grant,
  type ResolvedPath,
} from "../../core/host.ts";
import { isInside } from "../../core/policy/paths.ts";
import {
  namesRuntimeState,
  RUNTIME_STATE_DIR,
  RUNTIME_STATE_RULE,
} from "../../core/policy/runtime-state.ts";

/**
 * The Node file system behind the guest's `fs`. The policy has already placed each path inside
 * one grant; this file checks what only the host can see, on every call:
 *
 * - Resolution: symlinks are resolved here, one component at a time, each target re-rooted at the
 *   grant's real directory; a target that leaves it is EACCES, and so is a loop.
 * - Use: the resolved path is then walked again from an fd of the grant root, one directory at a
 *   time with O_NOFOLLOW, and every syscall acts through `/proc/self/fd/<dir>/<name>` (an openat()
 *   Node lacks). A component swapped for a symlink after resolution fails instead of being
 *   followed. Opened files are checked once more through `/proc/self/fd/<fd>`.
 * - Hard links: a regular file with more than one link may be another name for a file outside the
 *   grant, so it is neither read nor written (stat, rename and unlink of it are allowed).
 * - Only regular files and directories are opened; FIFOs and devices are EACCES (and opened with
 *   O_NONBLOCK so that a FIFO cannot hang the check).
 *
 * Without `/proc/self/fd` (not Linux) the same checks run on real path strings, which leaves a
 * short window between a check and its use.
 */

export interface NodeFileSystemOptions {
  /** Open handles allowed at once per instance; default 64. */
  maxOpenFiles?: number;
  /** Largest file readFile returns or a write may produce; default 256 MiB. */
  maxFileBytes?: number;
}

const DEFAULT_MAX_OPEN_FILES = 64;
const DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024;
const MAX_SYMLINK_HOPS = 40;
const COPY_CHUNK_BYTES = 64 * 1024;

const O_RDONLY = constants.O_RDONLY;
const O_WRONLY = constants.O_WRONLY;
const O_RDWR = constants.O_RDWR;
const O_CREAT = constants.O_CREAT;
const O_EXCL = constants.O_EXCL;
const O_APPEND = constants.O_APPEND;
const O_DIRECTORY = constants.O_DIRECTORY ?? 0;
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
const DIRECTORY_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW;

export function createNodeFileSystem(options: NodeFileSystemOptions = {}): FileSystemHost {
  const maxOpenFiles = options.maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  if (!Number.isInteger(maxOpenFiles) || maxOpenFiles < 1) {
    throw new RangeError(`maxOpenFiles must be an integer >= 1, got ${String(maxOpenFiles)}`);
  }
  if (!Number.isInteger(maxFileBytes) || maxFileBytes < 0) {
    throw new RangeError(`maxFileBytes must be an integer >= 0, got ${String(maxFileBytes)}`);
  }
  return new NodeFileSystem(maxOpenFiles, maxFileBytes);
}

/** The grant root as first seen by this instance: later calls must find the same directory. */
interface GrantRoot {
  real: string;
  dev: bigint;
  ino: bigint;
}

/** An open, verified directory, and its real path (used where /proc/self/fd is missing). */
interface Anchor {
  fd: number;
  hostPath: string;
}

/** Where a resolved path lives: its real parent directory (segments below the root), its name. */
interface Location {
  root: GrantRoot;
  parent: string[];
  /** null: the grant root itself. */
  name: string | null;
  exists: boolean;
}

interface Handle {
  fd: number;
  guestPath: string;
  readable: boolean;
  writable: boolean;
  append: boolean;
  position: number;
}

interface OpenMode {
  read: boolean;
  write: boolean;
  create: boolean;
  exclusive: boolean;
  truncate: boolean;
  append: boolean;
}

const READ_ONLY: OpenMode = {
  read: true,
  write: false,
  create: false,
  exclusive: false,
  truncate: false,
  append: false,
};

let procFdSupport: boolean | undefined;

/** Whether `/proc/self/fd/<dirfd>/<name>` can stand in for openat() here. */
function hasProcFds(): boolean {
  if (procFdSupport === undefined) {
    procFdSupport = false;
    if (process.platform === "linux") {
      try {
        const fd = openSync("/", DIRECTORY_FLAGS);
        try {
          procFdSupport = readlinkSync(`/proc/self/fd/${fd}`) === "/";
        } finally {
          closeSync(fd);
        }
      } catch {
        procFdSupport = false;
      }
    }
  }
  return procFdSupport;
}

function deny(
  code: FileErrorCode,
  syscall: string,
  path: string | undefined,
  detail?: string,
): never {
  throw new FileSystemError(code, syscall, path, detail);
}

const PASSED_THROUGH: ReadonlySet<string> = new Set<FileErrorCode>([
  "ENOENT",
  "ENAMETOOLONG",
  "EACCES",
  "EROFS",
  "EISDIR",
  "ENOTDIR",
  "EEXIST",
  "ENOTEMPTY",
  "EBADF",
  "EINVAL",
  "EMFILE",
  "EFBIG",
]);

/** A Node error in guest terms: same code where the guest knows it, never the host path. */
function toGuestError(error: unknown, syscall: string, path: string | undefined): FileSystemError {
  if (error instanceof FileSystemError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    if (PASSED_THROUGH.has(code)) return new FileSystemError(code as FileErrorCode, syscall, path);
    switch (code) {
      case "EPERM":
      case "EBUSY":
      case "ETXTBSY":
        return new FileSystemError("EACCES", syscall, path);
      case "ELOOP":
        return new FileSystemError("EACCES", syscall, path, "symbolic link refused");
      case "ENFILE":
        return new FileSystemError("EMFILE", syscall, path);
      case "ENOSPC":
      case "EDQUOT":
        return new FileSystemError("ENOSPC", syscall, path);
      case "EXDEV":
        return new FileSystemError("EIO", syscall, path, "cannot move across file systems");
    }
  }
  return new FileSystemError("EIO", syscall, path);
}

/** What Stats and Dirent share. */
interface TypedEntry {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

function fileTypeOf(stats: TypedEntry): FileType {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "directory";
  if (stats.isSymbolicLink()) return "symlink";
  return "other";
}

function toFileStat(stats: Stats): FileStat {
  return {
    type: fileTypeOf(stats),
    size: stats.size,
    mode: stats.mode,
    mtimeMs: stats.mtimeMs,
    atimeMs: stats.atimeMs,
    ctimeMs: stats.ctimeMs,
    birthtimeMs: stats.birthtimeMs,
  };
}

/** Node's string flags ("r", "a+", "wx", ...) as what they allow. */
function parseOpenFlags(flags: string): OpenMode | undefined {
  const plus = flags.includes("+");
  const exclusive = flags.includes("x");
  const base = flags.replace(/[+xs]/g, "");
  if (base.length !== 1 || !/^[rwa]$/.test(base) || !/^(?:[rwa][sx]?|[sx][rwa])\+?$/.test(flags)) {
    return undefined;
  }
  if (exclusive && base === "r") return undefined;
  return {
    read: base === "r" || plus,
    write: base !== "r" || plus,
    create: base !== "r",
    exclusive,
    truncate: base === "w",
    append: base === "a",
  };
}

/** The segments of a policy-resolved `relative`; anything the policy should never produce is EACCES. */
function relativeSegments(path: ResolvedPath, syscall: string): string[] {
  if (path.relative === "") return [];
  const segments = path.relative.split("/");
  for (const segment of segments) {
    if (segment === "" || segment === "." || segment === ".." || segment.includes("\0")) {
      deny("EACCES", syscall, path.guestPath, "path escapes the allowed directory");
    }
  }
  return segments;
}

/** Applies relative link text to a directory lexically; null when it climbs above the root. */
function applyRelative(base: readonly string[], text: string): string[] | null {
  const result = [...base];
  for (const segment of text.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (result.length === 0) return null;
      result.pop();
    } else {
      result.push(segment);
    }
  }
  return result;
}

/** Segments below `root` of an absolute path inside it, or null. */
function segmentsBelow(absolute: string, root: string): string[] | null {
  const normal = posix.resolve(absolute);
  if (normal === root) return [];
  if (!isInside(normal, root)) return null;
  return normal
    .slice(root.length)
    .split("/")
    .filter((segment) => segment !== "");
}

function joinGuest(grantGuestPath: string, segments: readonly string[]): string {
  if (segments.length === 0) return grantGuestPath;
  return `${grantGuestPath === "/" ? "" : grantGuestPath}/${segments.join("/")}`;
}

class NodeFileSystem implements FileSystemHost {
  private readonly roots = new Map<string, GrantRoot>();
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 3;
  private readonly procFds = hasProcFds();

  constructor(
    private readonly maxOpenFiles: number,
    private readonly maxFileBytes: number,
  ) {}

  readFile(path: ResolvedPath): Uint8Array {
    return this.guard("open", path.guestPath, () => {
      const { fd, stats } = this.openFile(path, "open", READ_ONLY, true, true);
      try {
        // Node's readFile fails on a directory at the read, not the open.
        if (stats.isDirectory()) deny("EISDIR", "read", path.guestPath);
        if (stats.size > this.maxFileBytes) this.tooBig("read", path.guestPath);
        return this.readAll(fd, stats.size, path.guestPath);
      } finally {
        closeSync(fd);
      }
    });
  }

  writeFile(path: ResolvedPath, data: Uint8Array, flag: "w" | "a" | "wx"): void {
    this.guard("open", path.guestPath, () => {
      this.requireWritable(path, "open");
      if (data.byteLength > this.maxFileBytes) this.tooBig("write", path.guestPath);
      const mode = parseOpenFlags(flag);
      if (mode === undefined) deny("EINVAL", "open", path.guestPath, `unknown flag ${flag}`);
      const { fd, stats } = this.openFile(path, "open", mode, !mode.exclusive, false);
      try {
        if (mode.append && stats.size + data.byteLength > this.maxFileBytes) {
          this.tooBig("write", path.guestPath);
        }
        let offset = 0;
        let position = mode.append ? stats.size : 0;
        while (offset < data.byteLength) {
          const written = writeSync(
            fd,
            data,
            offset,
            data.byteLength - offset,
            mode.append ? null : position,
          );
          offset += written;
          position += written;
        }
      } finally {
        closeSync(fd);
      }
    });
  }

  readdir(path: ResolvedPath): DirectoryEntry[] {
    return this.guard("scandir", path.guestPath, () => {
      const { root, segments } = this.resolveExisting(path, "scandir", true);
      const anchor = this.openDirectory(root, segments, "scandir", path.guestPath);
      try {
        return readdirSync(this.selfRef(anchor), { withFileTypes: true })
          .filter((entry) => entry.name !== RUNTIME_STATE_DIR)
          .map((entry) => ({ name: entry.name, type: fileTypeOf(entry) }));
      } finally {
        closeSync(anchor.fd);
      }
    });
  }

  stat(path: ResolvedPath, follow: boolean): FileStat {
    const syscall = follow ? "stat" : "lstat";
    return this.guard(syscall, path.guestPath, () => {
      const location = this.locate(path, syscall, follow, false);
      return this.inParent(location, syscall, path.guestPath, (anchor, name) => {
        if (name === null) return toFileStat(fstatSync(anchor.fd));
        const stats = lstatSync(this.childRef(anchor, name));
        if (follow && stats.isSymbolicLink()) {
          deny("EACCES", syscall, path.guestPath, "symbolic link changed during the call");
        }
        return toFileStat(stats);
      });
    });
  }

  mkdir(path: ResolvedPath, recursive: boolean): void {
    this.guard("mkdir", path.guestPath, () => {
      this.requireWritable(path, "mkdir");
      if (recursive) {
        this.mkdirRecursive(path);
        return;
      }
      const location = this.locate(path, "mkdir", false, true);
      if (location.exists) deny("EEXIST", "mkdir", path.guestPath);
      this.inParent(location, "mkdir", path.guestPath, (anchor, name) => {
        mkdirSync(this.childRef(anchor, name as string), 0o777);
      });
    });
  }

  rm(path: ResolvedPath, options: { recursive: boolean; force: boolean }): void {
    this.guard("rm", path.guestPath, () => {
      this.requireWritable(path, "rm");
      let location: Location;
      try {
        location = this.locate(path, "rm", false, false);
      } catch (error) {
        if (options.force && (error as { code?: unknown }).code === "ENOENT") return;
        throw error;
      }
      this.refuseRoot(location, "rm", path.guestPath);
      this.inParent(location, "rm", path.guestPath, (anchor, name) => {
        const target = this.childRef(anchor, name as string);
        let stats: Stats;
        try {
          stats = lstatSync(target);
        } catch (error) {
          if (options.force && (error as { code?: unknown }).code === "ENOENT") return;
          throw error;
        }
        if (!stats.isDirectory()) {
          unlinkSync(target);
        } else if (!options.recursive) {
          deny("EISDIR", "rm", path.guestPath, "is a directory (use recursive)");
        } else {
          this.removeTree(anchor, name as string);
        }
      });
    });
  }

  rmdir(path: ResolvedPath): void {
    this.guard("rmdir", path.guestPath, () => {
      this.requireWritable(path, "rmdir");
      const location = this.locate(path, "rmdir", false, false);
      this.refuseRoot(location, "rmdir", path.guestPath);
      this.inParent(location, "rmdir", path.guestPath, (anchor, name) => {
        rmdirSync(this.childRef(anchor, name as string));
      });
    });
  }

  unlink(path: ResolvedPath): void {
    this.guard("unlink", path.guestPath, () => {
      this.requireWritable(path, "unlink");
      const location = this.locate(path, "unlink", false, false);
      if (location.name === null) deny("EISDIR", "unlink", path.guestPath);
      this.inParent(location, "unlink", path.guestPath, (anchor, name) => {
        unlinkSync(this.childRef(anchor, name as string));
      });
    });
  }

  rename(from: ResolvedPath, to: ResolvedPath): void {
    this.guard("rename", from.guestPath, () => {
      this.requireWritable(from, "rename");
      this.requireWritable(to, "rename");
      const source = this.locate(from, "rename", false, false);
      this.refuseRoot(source, "rename", from.guestPath);
      const target = this.guard("rename", to.guestPath, () => {
        const location = this.locate(to, "rename", false, true);
        this.refuseRoot(location, "rename", to.guestPath);
        return location;
      });
      let crossDevice = false;
      this.inParent(source, "rename", from.guestPath, (sourceDir, sourceName) => {
        this.inParent(target, "rename", to.guestPath, (targetDir, targetName) => {
          try {
            renameSync(
              this.childRef(sourceDir, sourceName as string),
              this.childRef(targetDir, targetName as string),
            );
          } catch (error) {
            if ((error as { code?: unknown }).code !== "EXDEV") throw error;
            crossDevice = true;
          }
        });
      });
      if (crossDevice) this.moveAcrossDevices(from, to);
    });
  }

  copyFile(from: ResolvedPath, to: ResolvedPath, exclusive: boolean): void {
    this.guard("copyfile", from.guestPath, () => {
      this.requireWritable(to, "copyfile");
      this.copyContents(from, to, exclusive);
    });
  }

  symlink(target: string, path: ResolvedPath): void {
    this.guard("symlink", path.guestPath, () => {
      this.requireWritable(path, "symlink");
      const text = this.linkText(target, path);
      const location = this.locate(path, "symlink", false, true);
      if (location.exists) deny("EEXIST", "symlink", path.guestPath);
      this.inParent(location, "symlink", path.guestPath, (anchor, name) => {
        symlinkSync(text, this.childRef(anchor, name as string));
      });
    });
  }

  readlink(path: ResolvedPath): string {
    return this.guard("readlink", path.guestPath, () => {
      const location = this.locate(path, "readlink", false, false);
      if (location.name === null) deny("EINVAL", "readlink", path.guestPath);
      const text = this.inParent(location, "readlink", path.guestPath, (anchor, name) =>
        readlinkSync(this.childRef(anchor, name as string)),
      );
      if (text.startsWith("/")) {
        // A host-made absolute link: shown as the guest path it stands for, or not at all.
        const below =
          segmentsBelow(text, location.root.real) ??
          segmentsBelow(text, posix.resolve(path.grant.hostPath));
        if (below === null) deny("EACCES", "readlink", path.guestPath, "link points outside");
        return joinGuest(path.grant.guestPath, below);
      }
      if (applyRelative(location.parent, text) === null) {
        deny("EACCES", "readlink", path.guestPath, "link points outside");
      }
      return text;
    });
  }

  open(path: ResolvedPath, flags: string): number {
    return this.guard("open", path.guestPath, () => {
      const mode = parseOpenFlags(flags);
      if (mode === undefined) {
        deny("EINVAL", "open", path.guestPath, `unknown flags ${JSON.stringify(flags)}`);
      }
      if (mode.write) this.requireWritable(path, "open");
      if (this.handles.size >= this.maxOpenFiles) {
        deny("EMFILE", "open", path.guestPath, `more than ${this.maxOpenFiles} open files`);
      }
      const { fd } = this.openFile(path, "open", mode, !mode.exclusive, !mode.write);
      const id = this.nextHandle++;
      this.handles.set(id, {
        fd,
        guestPath: path.guestPath,
        readable: mode.read,
        writable: mode.write,
        append: mode.append,
        position: 0,
      });
      return id;
    });
  }

  read(handle: number, length: number, position: number | null): Uint8Array {
    const open = this.handle(handle, "read");
    return this.guard("read", open.guestPath, () => {
      if (!open.readable) deny("EBADF", "read", open.guestPath, "handle not open for reading");
      this.checkCount(length, "read", open.guestPath, "length");
      if (position !== null) this.checkCount(position, "read", open.guestPath, "position");
      const buffer = new Uint8Array(Math.min(length, this.maxFileBytes));
      const count = readSync(open.fd, buffer, 0, buffer.byteLength, position ?? open.position);
      if (position === null) open.position += count;
      return buffer.subarray(0, count);
    });
  }

  write(handle: number, data: Uint8Array, position: number | null): number {
    const open = this.handle(handle, "write");
    return this.guard("write", open.guestPath, () => {
      if (!open.writable) deny("EBADF", "write", open.guestPath, "handle not open for writing");
      if (position !== null) this.checkCount(position, "write", open.guestPath, "position");
      const start = open.append ? fstatSync(open.fd).size : (position ?? open.position);
      if (start + data.byteLength > this.maxFileBytes) this.tooBig("write", open.guestPath);
      const count = writeSync(open.fd, data, 0, data.byteLength, open.append ? null : start);
      if (position === null || open.append) open.position = start + count;
      return count;
    });
  }

  fstat(handle: number): FileStat {
    const open = this.handle(handle, "fstat");
    return this.guard("fstat", open.guestPath, () => toFileStat(fstatSync(open.fd)));
  }

  close(handle: number): void {
    const open = this.handle(handle, "close");
    this.handles.delete(handle);
    this.guard("close", open.guestPath, () => closeSync(open.fd));
  }

  /** Resolution only (no directory walk by fd): what the write quota asks before a write. */
  exists(path: ResolvedPath): boolean {
    try {
      return this.resolve(path, "stat", true).missing.length === 0;
    } catch {
      return false;
    }
  }

  closeAll(): void {
    for (const open of this.handles.values()) {
      try {
        closeSync(open.fd);
      } catch {
        // Already closed by the OS; nothing left to release.
      }
    }
    this.handles.clear();
  }

  // --- resolution -------------------------------------------------------------------------

  private guard<T>(syscall: string, guestPath: string | undefined, run: () => T): T {
    try {
      return run();
    } catch (error) {
      throw toGuestError(error, syscall, guestPath);
    }
  }

  private requireWritable(path: ResolvedPath, syscall: string): void {
    if (path.grant.mode !== "rw") {
      deny("EROFS", syscall, path.guestPath, `${path.grant.guestPath} is read-only`);
    }
  }

  private refuseRoot(location: Location, syscall: string, guestPath: string): void {
    if (location.name === null) {
      deny("EACCES", syscall, guestPath, "an allowed directory itself cannot be moved or removed");
    }
  }

  private tooBig(syscall: string, guestPath: string): never {
    deny("EFBIG", syscall, guestPath, `file larger than the ${this.maxFileBytes}-byte limit`);
  }

  private checkCount(value: number, syscall: string, guestPath: string, what: string): void {
    if (!Number.isSafeInteger(value) || value < 0) {
      deny("EINVAL", syscall, guestPath, `${what} must be a non-negative integer`);
    }
  }

  private handle(id: number, syscall: string): Handle {
    const open = this.handles.get(id);
    if (open === undefined) deny("EBADF", syscall, undefined, `no open handle ${String(id)}`);
    return open;
  }

  /** The grant root, pinned by identity at first use: a root replaced later is refused. */
  private grantRoot(grant: Grant, syscall: string, guestPath: string): GrantRoot {
    let root = this.roots.get(grant.hostPath);
    if (root === undefined) {
      const real = realpathSync.native(grant.hostPath);
      const stats = statSync(real, { bigint: true });
      if (!stats.isDirectory()) deny("ENOTDIR", syscall, guestPath);
      root = { real, dev: stats.dev, ino: stats.ino };
      this.roots.set(grant.hostPath, root);
    }
    return root;
  }

  /**
   * Resolves every symlink on the way, re-rooting each target at the grant root; the last
   * segment's link is followed only with `followLast`. Returns the real existing segments and
   * the trailing segments that do not exist.
   */
  private resolve(
    path: ResolvedPath,
    syscall: string,
    followLast: boolean,
  ): { root: GrantRoot; segments: string[]; missing: string[] } {
    const root = this.grantRoot(path.grant, syscall, path.guestPath);
    const done: string[] = [];
    const pending = relativeSegments(path, syscall);
    let hops = 0;
    while (pending.length > 0) {
      const segment = pending.shift() as string;
      const last = pending.length === 0;
      let stats: Stats;
      try {
        stats = lstatSync(posix.join(root.real, ...done, segment));
      } catch (error) {
        if ((error as { code?: unknown }).code === "ENOENT") {
          // A symlink's target, unlike the guest path, is not checked by the policy.
          if (namesRuntimeState([segment, ...pending]))
            deny("EACCES", syscall, path.guestPath, RUNTIME_STATE_RULE);
          return { root, segments: done, missing: [segment, ...pending] };
        }
        throw error;
      }
      if (stats.isSymbolicLink() && (followLast || !last)) {
        hops += 1;
        if (hops > MAX_SYMLINK_HOPS) {
          deny("EACCES", syscall, path.guestPath, "too many levels of symbolic links");
        }
        const text = this.readLinkText(posix.join(root.real, ...done, segment), syscall, path);
        const target = text.startsWith("/")
          ? (segmentsBelow(text, root.real) ??
            segmentsBelow(text, posix.resolve(path.grant.hostPath)))
          : applyRelative(done, text);
        if (target === null || text.includes("\0")) {
          deny(
            "EACCES",
            syscall,
            path.guestPath,
            "symbolic link points outside the allowed directory",
          );
        }
        done.length = 0;
        pending.unshift(...target);
        continue;
      }
      if (!last && !stats.isDirectory()) deny("ENOTDIR", syscall, path.guestPath);
      if (segment === RUNTIME_STATE_DIR)
        deny("EACCES", syscall, path.guestPath, RUNTIME_STATE_RULE);
      done.push(segment);
    }
    return { root, segments: done, missing: [] };
  }

  private readLinkText(hostPath: string, syscall: string, path: ResolvedPath): string {
    try {
      return readlinkSync(hostPath);
    } catch (error) {
      // No longer a link: something swapped it between lstat and readlink.
      if ((error as { code?: unknown }).code === "EINVAL") {
        deny("EACCES", syscall, path.guestPath, "path changed during the call");
      }
      throw error;
    }
  }

  private resolveExisting(
    path: ResolvedPath,
    syscall: string,
    followLast: boolean,
  ): { root: GrantRoot; segments: string[] } {
    const resolved = this.resolve(path, syscall, followLast);
    if (resolved.missing.length > 0) deny("ENOENT", syscall, path.guestPath);
    return resolved;
  }

  /** The real parent and name of a path; `mayBeMissing` allows a missing last segment only. */
  private locate(
    path: ResolvedPath,
    syscall: string,
    followLast: boolean,
    mayBeMissing: boolean,
  ): Location {
    const { root, segments, missing } = this.resolve(path, syscall, followLast);
    if (missing.length > 1 || (missing.length === 1 && !mayBeMissing)) {
      deny("ENOENT", syscall, path.guestPath);
    }
    if (missing.length === 1) {
      return { root, parent: segments, name: missing[0] as string, exists: false };
    }
    if (segments.length === 0) return { root, parent: [], name: null, exists: true };
    return { root, parent: segments.slice(0, -1), name: segments.at(-1) as string, exists: true };
  }

  // --- use --------------------------------------------------------------------------------

  private selfRef(anchor: Anchor): string {
    return this.procFds ? `/proc/self/fd/${anchor.fd}` : anchor.hostPath;
  }

  private childRef(anchor: Anchor, name: string): string {
    return `${this.selfRef(anchor)}/${name}`;
  }

  /** Opens the root by fd and walks `segments` without following any symlink. */
  private openDirectory(
    root: GrantRoot,
    segments: readonly string[],
    syscall: string,
    guestPath: string,
  ): Anchor {
    let rootFd: number;
    try {
      rootFd = openSync(root.real, DIRECTORY_FLAGS);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (code === "ENOTDIR" || code === "ELOOP") {
        deny("EACCES", syscall, guestPath, "the allowed directory was replaced");
      }
      throw error;
    }
    let anchor: Anchor = { fd: rootFd, hostPath: root.real };
    try {
      const stats = fstatSync(anchor.fd, { bigint: true });
      if (stats.dev !== root.dev || stats.ino !== root.ino) {
        deny("EACCES", syscall, guestPath, "the allowed directory was replaced");
      }
      for (const segment of segments) {
        const next: Anchor = {
          fd: openSync(this.childRef(anchor, segment), DIRECTORY_FLAGS),
          hostPath: `${anchor.hostPath}/${segment}`,
        };
        closeSync(anchor.fd);
        anchor = next;
      }
      this.verifyInside(anchor, root, syscall, guestPath);
      return anchor;
    } catch (error) {
      closeSync(anchor.fd);
      throw error;
    }
  }

  /** Checks where an open fd really is; catches a directory moved out mid-walk. */
  private verifyInside(anchor: Anchor, root: GrantRoot, syscall: string, guestPath: string): void {
    if (!this.procFds) return;
    if (!isInside(readlinkSync(`/proc/self/fd/${anchor.fd}`), root.real)) {
      deny("EACCES", syscall, guestPath, "path left the allowed directory");
    }
  }

  private inParent<T>(
    location: Location,
    syscall: string,
    guestPath: string,
    use: (anchor: Anchor, name: string | null) => T,
  ): T {
    const segments = location.name === null ? [] : location.parent;
    const anchor = this.openDirectory(location.root, segments, syscall, guestPath);
    try {
      return use(anchor, location.name);
    } finally {
      closeSync(anchor.fd);
    }
  }

  /**
   * Opens a regular file (or, with `allowDirectory`, a directory) without following a symlink at
   * any step, refusing hard-linked files; truncation waits until those checks pass.
   */
  private openFile(
    path: ResolvedPath,
    syscall: string,
    mode: OpenMode,
    followLast: boolean,
    allowDirectory: boolean,
  ): { fd: number; stats: Stats } {
    const location = this.locate(path, syscall, followLast, mode.create);
    const access = mode.read && mode.write ? O_RDWR : mode.write ? O_WRONLY : O_RDONLY;
    const flags =
      access |
      O_NOFOLLOW |
      O_NONBLOCK |
      (mode.create ? O_CREAT : 0) |
      (mode.exclusive ? O_EXCL : 0) |
      (mode.append ? O_APPEND : 0);
    if (location.name === null) {
      if (mode.exclusive) deny("EEXIST", syscall, path.guestPath);
      if (mode.write || !allowDirectory) deny("EISDIR", syscall, path.guestPath);
      const anchor = this.openDirectory(location.root, [], syscall, path.guestPath);
      return { fd: anchor.fd, stats: fstatSync(anchor.fd) };
    }
    return this.inParent(location, syscall, path.guestPath, (anchor, name) => {
      if (name === null) throw new Error("unreachable: the root is opened above");
      const fd = openSync(this.childRef(anchor, name), flags, 0o666);
      try {
        const stats = fstatSync(fd);
        this.verifyInside({ fd, hostPath: "" }, location.root, syscall, path.guestPath);
        if (stats.isDirectory()) {
          if (mode.write || !allowDirectory) deny("EISDIR", syscall, path.guestPath);
        } else if (!stats.isFile()) {
          deny("EACCES", syscall, path.guestPath, "not a regular file");
        } else if (stats.nlink > 1) {
          deny("EACCES", syscall, path.guestPath, "file has other hard links");
        }
        if (mode.truncate && stats.size > 0) {
          ftruncateSync(fd, 0);
          return { fd, stats: fstatSync(fd) };
        }
        return { fd, stats };
      } catch (error) {
        closeSync(fd);
        throw error;
      }
    });
  }

  /** Reads to the end; sized by fstat so small files cost no big buffer, yet growth is seen. */
  private readAll(fd: number, expectedSize: number, guestPath: string): Uint8Array {
    let buffer = new Uint8Array(Math.min(expectedSize, this.maxFileBytes) + 1);
    let total = 0;
    for (;;) {
      if (total === buffer.byteLength) {
        const grown = new Uint8Array(Math.min(buffer.byteLength * 2, this.maxFileBytes + 1));
        grown.set(buffer);
        buffer = grown;
      }
      const count = readSync(fd, buffer, total, buffer.byteLength - total, total);
      if (count === 0) break;
      total += count;
      // The file may have grown after the size check.
      if (total > this.maxFileBytes) this.tooBig("read", guestPath);
    }
    return buffer.subarray(0, total);
  }

  private mkdirRecursive(path: ResolvedPath): void {
    const { root, segments, missing } = this.resolve(path, "mkdir", true);
    if (missing.length === 0) {
      const location = this.locate(path, "mkdir", true, false);
      this.inParent(location, "mkdir", path.guestPath, (anchor, name) => {
        const stats = name === null ? fstatSync(anchor.fd) : lstatSync(this.childRef(anchor, name));
        if (!stats.isDirectory()) deny("EEXIST", "mkdir", path.guestPath);
      });
      return;
    }
    let anchor = this.openDirectory(root, segments, "mkdir", path.guestPath);
    try {
      for (const segment of missing) {
        try {
          mkdirSync(this.childRef(anchor, segment), 0o777);
        } catch (error) {
          if ((error as { code?: unknown }).code !== "EEXIST") throw error;
        }
        const next: Anchor = {
          fd: openSync(this.childRef(anchor, segment), DIRECTORY_FLAGS),
          hostPath: `${anchor.hostPath}/${segment}`,
        };
        closeSync(anchor.fd);
        anchor = next;
      }
    } finally {
      closeSync(anchor.fd);
    }
  }

  /** Removes a directory tree below an open parent, never following a symlink. */
  private removeTree(parent: Anchor, name: string): void {
    const directory: Anchor = {
      fd: openSync(this.childRef(parent, name), DIRECTORY_FLAGS),
      hostPath: `${parent.hostPath}/${name}`,
    };
    try {
      for (const entry of readdirSync(this.selfRef(directory), { withFileTypes: true })) {
        if (entry.isDirectory()) {
          this.removeTree(directory, entry.name);
        } else {
          unlinkSync(this.childRef(directory, entry.name));
        }
      }
    } finally {
      closeSync(directory.fd);
    }
    rmdirSync(this.childRef(parent, name));
  }

  private copyContents(from: ResolvedPath, to: ResolvedPath, exclusive: boolean): void {
    const source = this.openFile(from, "copyfile", READ_ONLY, true, false);
    try {
      if (source.stats.size > this.maxFileBytes) this.tooBig("copyfile", from.guestPath);
      const targetMode: OpenMode = {
        read: false,
        write: true,
        create: true,
        exclusive,
        truncate: false,
        append: false,
      };
      const target = this.guard("copyfile", to.guestPath, () =>
        this.openFile(to, "copyfile", targetMode, !exclusive, false),
      );
      try {
        // Copying a file onto itself leaves it as it is (as libuv does).
        if (source.stats.dev === target.stats.dev && source.stats.ino === target.stats.ino) return;
        ftruncateSync(target.fd, 0);
        const chunk = new Uint8Array(Math.min(COPY_CHUNK_BYTES, source.stats.size + 1));
        let position = 0;
        for (;;) {
          const count = readSync(source.fd, chunk, 0, chunk.byteLength, position);
          if (count === 0) break;
          if (position + count > this.maxFileBytes) this.tooBig("copyfile", to.guestPath);
          let offset = 0;
          while (offset < count) {
            offset += writeSync(target.fd, chunk, offset, count - offset, position + offset);
          }
          position += count;
        }
        fchmodSync(target.fd, source.stats.mode & 0o777);
      } finally {
        closeSync(target.fd);
      }
    } finally {
      closeSync(source.fd);
    }
  }

  /** rename between file systems: regular files are copied then removed; others are refused. */
  private moveAcrossDevices(from: ResolvedPath, to: ResolvedPath): void {
    const stats = this.stat(from, false);
    if (stats.type !== "file") {
      deny("EIO", "rename", from.guestPath, "only files can move across file systems");
    }
    this.copyContents(from, to, false);
    this.unlink(from);
  }

  /**
   * The text stored for a guest symlink: relative to the link's directory, and refused if it
   * would leave the grant. An absolute guest target inside the grant is rewritten relative.
   */
  private linkText(target: string, path: ResolvedPath): string {
    if (target === "") deny("ENOENT", "symlink", path.guestPath, "empty link target");
    if (target.includes("\0")) deny("EINVAL", "symlink", path.guestPath, "link target has NUL");
    const linkDirectory = relativeSegments(path, "symlink").slice(0, -1);
    if (!target.startsWith("/")) {
      if (applyRelative(linkDirectory, target) === null) {
        deny(
          "EACCES",
          "symlink",
          path.guestPath,
          `link target ${target} leaves the allowed directory`,
        );
      }
      return target;
    }
    const grantSegments = path.grant.guestPath.split("/").filter((segment) => segment !== "");
    const targetSegments = applyRelative([], target);
    const inside =
      targetSegments !== null &&
      grantSegments.every((segment, index) => targetSegments[index] === segment);
    if (!inside) {
      deny(
        "EACCES",
        "symlink",
        path.guestPath,
        `link target ${target} is outside ${path.grant.guestPath}`,
      );
    }
    const below = targetSegments.slice(grantSegments.length);
    let common = 0;
    while (
      common < linkDirectory.length &&
      common < below.length &&
      linkDirectory[common] === below[common]
    ) {
      common += 1;
    }
    const up = linkDirectory.slice(common).map(() => "..");
    const text = [...up, ...below.slice(common)].join("/");
    return text === "" ? "." : text;
  }
}
