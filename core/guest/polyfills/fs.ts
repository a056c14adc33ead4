import type { FileStat, FileType } from "../../host.ts";
import type { ChunkInstaller } from "../chunk.ts";
import { FS_UNAVAILABLE } from "../fs-unavailable.ts";
import type { GuestBuffer } from "./buffer.ts";
import {
  type CodedError,
  invalidArgType,
  invalidArgValue,
  notAvailable,
  outOfRange,
} from "./node-errors.ts";

export type FsModule = Record<string, unknown> & { promises: Record<string, unknown> };

export interface FsExports {
  module: FsModule;
}

type Bytes = InstanceType<GuestBuffer>;
/** An encoding name, checked by `checkEncoding` before use. */
type Encoding = Parameters<Bytes["toString"]>[0];

interface HostError {
  code?: string;
  syscall?: string;
  path?: string;
  dest?: string;
  message?: string;
  /** A refusal by the task's grants rather than a plain failure. */
  denied?: boolean;
}

/** The mark tasks.ts reads: an uncaught refusal ends the task as permission_denied. */
const DENIED = Symbol.for("capsule.denied");

/** Node's negative errno numbers (as on Linux) and messages, by code. */
const ERRORS: Record<string, [number, string]> = {
  EPERM: [-1, "operation not permitted"],
  ENOENT: [-2, "no such file or directory"],
  EIO: [-5, "i/o error"],
  EBADF: [-9, "bad file descriptor"],
  EACCES: [-13, "permission denied"],
  EEXIST: [-17, "file already exists"],
  EXDEV: [-18, "cross-device link not permitted"],
  ENOTDIR: [-20, "not a directory"],
  EISDIR: [-21, "illegal operation on a directory"],
  EINVAL: [-22, "invalid argument"],
  EMFILE: [-24, "too many open files"],
  EFBIG: [-27, "file too large"],
  ENOSPC: [-28, "no space left on device"],
  EROFS: [-30, "read-only file system"],
  ENAMETOOLONG: [-36, "name too long"],
  ENOSYS: [-38, "function not implemented"],
  ENOTEMPTY: [-39, "directory not empty"],
  ELOOP: [-40, "too many symbolic links encountered"],
};

const S_IFMT = 0o170000;
const TYPE_BITS: Record<FileType, number> = {
  file: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
  other: 0,
};

const constants = Object.freeze({
  F_OK: 0,
  R_OK: 4,
  W_OK: 2,
  X_OK: 1,
  COPYFILE_EXCL: 1,
  COPYFILE_FICLONE: 2,
  COPYFILE_FICLONE_FORCE: 4,
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_CREAT: 0o100,
  O_EXCL: 0o200,
  O_NOCTTY: 0o400,
  O_TRUNC: 0o1000,
  O_APPEND: 0o2000,
  O_DIRECTORY: 0o200000,
  O_NOFOLLOW: 0o400000,
  O_SYNC: 0o4010000,
  O_DSYNC: 0o10000,
  S_IFMT,
  S_IFREG: 0o100000,
  S_IFDIR: 0o040000,
  S_IFCHR: 0o020000,
  S_IFBLK: 0o060000,
  S_IFIFO: 0o010000,
  S_IFLNK: 0o120000,
  S_IFSOCK: 0o140000,
});

const STRING_FLAGS = new Set(
  "r rs sr r+ rs+ sr+ w wx xw w+ wx+ xw+ a ax xa as sa a+ ax+ xa+ as+ sa+".split(" "),
);
/** writeFile flags the host takes directly; others go through open/write/close. */
const WRITE_FLAGS: Record<string, "w" | "a" | "wx"> = {
  w: "w",
  "w+": "w",
  wx: "wx",
  xw: "wx",
  "wx+": "wx",
  "xw+": "wx",
  a: "a",
  "a+": "a",
  as: "a",
  sa: "a",
  "as+": "a",
  "sa+": "a",
  // Exclusive append only ever writes a new file.
  ax: "wx",
  xa: "wx",
  "ax+": "wx",
  "xa+": "wx",
};
const READ_CHUNK = 65536;

/** Node APIs this sandbox lacks: they throw a clear error instead of "is not a function". */
const UNAVAILABLE_STREAMS = [
  "createReadStream",
  "createWriteStream",
  "watch",
  "watchFile",
  "unwatchFile",
];

/** Node's file-system API over the host's checked, synchronous `fsCall`. */
const install: ChunkInstaller<FsExports> = (ctx) => {
  const { fsCall } = ctx.host;
  const buffer = (): GuestBuffer => ctx.load("buffer").Buffer;
  const defer = (fn: () => void) => ctx.load("timers").queueMicrotask(fn);

  function fsError(error: HostError, fallbackSyscall: string, fallbackPath?: string): Error {
    const code = error.code ?? "EIO";
    const syscall = error.syscall ?? fallbackSyscall;
    const path = error.path ?? fallbackPath;
    const known = ERRORS[code];
    const where =
      path === undefined
        ? ""
        : ` '${path}'${error.dest === undefined ? "" : ` -> '${error.dest}'`}`;
    const message =
      error.message || `${code}: ${known?.[1] ?? "unknown error"}, ${syscall}${where}`;
    const result = new Error(message) as Error & Record<string, unknown>;
    result.errno = known?.[0] ?? -5;
    result.code = code;
    result.syscall = syscall;
    if (path !== undefined) result.path = path;
    if (error.dest !== undefined) result.dest = error.dest;
    if (error.denied === true) Object.defineProperty(result, DENIED, { value: true });
    return result;
  }

  function call(op: string, args: Record<string, unknown>, data?: ArrayBuffer): unknown {
    if (typeof fsCall !== "function") {
      throw fsError(
        { code: "ENOSYS", message: "ENOSYS: file access is not available on this host" },
        op,
      );
    }
    const reply = fsCall(op, JSON.stringify(args), data);
    if (typeof reply !== "string") return reply;
    const parsed = JSON.parse(reply) as { ok?: unknown; error?: HostError };
    if (parsed.error) {
      const path = (args.path ?? args.from) as string | undefined;
      throw fsError(parsed.error, op.toLowerCase(), path);
    }
    return parsed.ok;
  }

  // --- argument conversion -----------------------------------------------------------------

  function toPath(value: unknown, name = "path"): string {
    let path: string;
    if (typeof value === "string") {
      path = value;
    } else if (value instanceof Uint8Array) {
      path = buffer().from(value.buffer, value.byteOffset, value.byteLength).toString("utf8");
    } else if (isFileUrl(value)) {
      path = fileUrlPath(value);
    } else {
      throw invalidArgType(name, "of type string or an instance of Buffer or URL", value);
    }
    if (path.includes("\u0000")) {
      throw invalidArgValue(name, path, "must be a string, Uint8Array, or URL without null bytes");
    }
    return path;
  }

  function isFileUrl(value: unknown): value is { protocol: string; pathname: string } {
    return (
      value !== null &&
      typeof value === "object" &&
      typeof (value as { href?: unknown }).href === "string" &&
      typeof (value as { protocol?: unknown }).protocol === "string"
    );
  }

  function fileUrlPath(url: { protocol: string; pathname: string; hostname?: string }): string {
    if (url.protocol !== "file:") {
      throw Object.assign(new TypeError("The URL must be of scheme file"), {
        code: "ERR_INVALID_URL_SCHEME",
      });
    }
    if (url.hostname) {
      throw Object.assign(new TypeError(`File URL host must be "localhost" or empty on linux`), {
        code: "ERR_INVALID_FILE_URL_HOST",
      });
    }
    if (/%2f/i.test(url.pathname)) {
      throw Object.assign(new TypeError("File URL path must not include encoded / characters"), {
        code: "ERR_INVALID_FILE_URL_PATH",
      });
    }
    return decodeURIComponent(url.pathname);
  }

  function toFd(value: unknown): number {
    if (typeof value !== "number") throw invalidArgType("fd", "of type number", value);
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
      throw outOfRange("fd", ">= 0 && <= 2147483647", value);
    }
    return value;
  }

  function options<T extends object>(
    value: unknown,
    defaults: T,
  ): T & { encoding?: string | null } {
    if (value === undefined || value === null) return { ...defaults };
    if (typeof value === "string") return { ...defaults, encoding: checkEncoding(value) };
    if (typeof value !== "object") {
      throw invalidArgType("options", "one of type string or an instance of Object", value);
    }
    const merged = { ...defaults, ...value } as T & { encoding?: string | null };
    if (merged.encoding !== undefined && merged.encoding !== null) checkEncoding(merged.encoding);
    return merged;
  }

  function checkEncoding(encoding: unknown): string {
    if (encoding === "buffer") return encoding;
    if (typeof encoding !== "string" || !buffer().isEncoding(encoding)) {
      throw invalidArgValue("encoding", encoding, "is invalid encoding");
    }
    return encoding;
  }

  function toFlags(value: unknown, fallback: string): string {
    if (value === undefined || value === null) return fallback;
    if (typeof value === "string") {
      if (!STRING_FLAGS.has(value)) throw invalidArgValue("flags", value);
      return value;
    }
    if (typeof value === "number") return numericFlags(value);
    throw invalidArgType("flags", "of type string or number", value);
  }

  function numericFlags(flags: number): string {
    const access = flags & 3;
    const create = (flags & constants.O_CREAT) !== 0;
    const exclusive = (flags & constants.O_EXCL) !== 0 ? "x" : "";
    const plus = access === 2 ? "+" : "";
    if (flags & constants.O_APPEND && create) return `a${exclusive}${plus}`;
    if (flags & constants.O_TRUNC && create && access !== 0) return `w${exclusive}${plus}`;
    if (!create && !(flags & constants.O_TRUNC) && access !== 1) return access === 2 ? "r+" : "r";
    throw invalidArgValue("flags", flags, "has no equivalent string flag in this sandbox");
  }

  function toBytes(data: unknown, encoding: string | null | undefined, name = "data"): Uint8Array {
    if (typeof data === "string") {
      return buffer().from(
        data,
        (encoding && encoding !== "buffer" ? encoding : "utf8") as Encoding,
      );
    }
    if (ArrayBuffer.isView(data))
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    throw invalidArgType(
      name,
      "of type string or an instance of Buffer, TypedArray, or DataView",
      data,
    );
  }

  /** The bytes as an ArrayBuffer of exactly their length, as the bridge takes them. */
  function exactBuffer(bytes: Uint8Array): ArrayBuffer {
    const source = bytes.buffer as ArrayBuffer;
    if (bytes.byteOffset === 0 && bytes.byteLength === source.byteLength) return source;
    return source.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }

  function decode(bytes: ArrayBuffer, encoding: string | null | undefined): Bytes | string {
    const result = buffer().from(bytes);
    return encoding && encoding !== "buffer" ? result.toString(encoding as Encoding) : result;
  }

  // --- Stats and Dirent ----------------------------------------------------------------------

  class Stats {
    dev = 0;
    ino = 0;
    mode: number;
    nlink = 1;
    uid = 0;
    gid = 0;
    rdev = 0;
    size: number;
    blksize = 4096;
    blocks: number;
    atimeMs: number;
    mtimeMs: number;
    ctimeMs: number;
    birthtimeMs: number;
    atime: Date;
    mtime: Date;
    ctime: Date;
    birthtime: Date;

    constructor(stat: FileStat) {
      // A host that sends permission bits only gets the file-type bits added.
      this.mode = (stat.mode & S_IFMT) === 0 ? stat.mode | TYPE_BITS[stat.type] : stat.mode;
      this.size = stat.size;
      this.blocks = Math.ceil(stat.size / 512);
      this.atimeMs = stat.atimeMs;
      this.mtimeMs = stat.mtimeMs;
      this.ctimeMs = stat.ctimeMs;
      this.birthtimeMs = stat.birthtimeMs;
      this.atime = new Date(stat.atimeMs);
      this.mtime = new Date(stat.mtimeMs);
      this.ctime = new Date(stat.ctimeMs);
      this.birthtime = new Date(stat.birthtimeMs);
    }
    isFile(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFREG;
    }
    isDirectory(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFDIR;
    }
    isSymbolicLink(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFLNK;
    }
    isBlockDevice(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFBLK;
    }
    isCharacterDevice(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFCHR;
    }
    isFIFO(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFIFO;
    }
    isSocket(): boolean {
      return (this.mode & S_IFMT) === constants.S_IFSOCK;
    }
  }

  class Dirent {
    name: string | Bytes;
    parentPath: string;
    path: string;
    #type: FileType;

    constructor(name: string | Bytes, type: FileType, parentPath: string) {
      this.name = name;
      this.parentPath = parentPath;
      this.path = parentPath;
      this.#type = type;
    }
    isFile(): boolean {
      return this.#type === "file";
    }
    isDirectory(): boolean {
      return this.#type === "directory";
    }
    isSymbolicLink(): boolean {
      return this.#type === "symlink";
    }
    isBlockDevice(): boolean {
      return false;
    }
    isCharacterDevice(): boolean {
      return false;
    }
    isFIFO(): boolean {
      return false;
    }
    isSocket(): boolean {
      return false;
    }
  }

  const childPath = (dir: string, name: string) =>
    dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`;

  // --- the synchronous API -------------------------------------------------------------------

  function readAll(fd: number): Bytes {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const chunk = call("read", { fd, length: READ_CHUNK, position: null }) as ArrayBuffer;
      if (chunk.byteLength === 0) break;
      chunks.push(new Uint8Array(chunk));
    }
    return buffer().concat(chunks);
  }

  function writeAll(fd: number, bytes: Uint8Array): void {
    let offset = 0;
    do {
      const rest = bytes.subarray(offset);
      offset += call("write", { fd, position: null }, exactBuffer(rest)) as number;
    } while (offset < bytes.byteLength);
  }

  function readFileSync(file: unknown, rawOptions?: unknown): Bytes | string {
    const opts = options(rawOptions, { encoding: null as string | null, flag: "r" });
    const flag = toFlags(opts.flag, "r");
    if (typeof file === "number") {
      const all = readAll(toFd(file));
      return opts.encoding && opts.encoding !== "buffer"
        ? all.toString(opts.encoding as Encoding)
        : all;
    }
    const path = toPath(file);
    if (flag === "r") return decode(call("readFile", { path }) as ArrayBuffer, opts.encoding);
    const fd = openSync(path, flag);
    try {
      return readFileSync(fd, opts);
    } finally {
      closeSync(fd);
    }
  }

  function writeFileSync(
    file: unknown,
    data: unknown,
    rawOptions?: unknown,
    defaultFlag = "w",
  ): void {
    const opts = options(rawOptions, { encoding: "utf8" as string | null, flag: defaultFlag });
    const bytes = toBytes(data, opts.encoding);
    const flag = toFlags(opts.flag, defaultFlag);
    if (typeof file === "number") {
      writeAll(toFd(file), bytes);
      return;
    }
    const path = toPath(file);
    const hostFlag = WRITE_FLAGS[flag];
    if (hostFlag) {
      call("writeFile", { path, flag: hostFlag }, exactBuffer(bytes));
      return;
    }
    const fd = openSync(path, flag);
    try {
      writeAll(fd, bytes);
    } finally {
      closeSync(fd);
    }
  }

  function appendFileSync(file: unknown, data: unknown, rawOptions?: unknown): void {
    writeFileSync(file, data, rawOptions, "a");
  }

  function readdirSync(dir: unknown, rawOptions?: unknown): (string | Bytes | Dirent)[] {
    const opts = options(rawOptions, {
      encoding: "utf8" as string | null,
      withFileTypes: false,
      recursive: false,
    });
    const root = toPath(dir);
    const name = (text: string) => (opts.encoding === "buffer" ? buffer().from(text) : text);
    const results: (string | Bytes | Dirent)[] = [];
    // Breadth first, as Node's recursive readdir: every entry of a directory, then its children.
    const pending: [path: string, prefix: string][] = [[root, ""]];
    for (let next = pending.shift(); next; next = pending.shift()) {
      const [path, prefix] = next;
      const entries = call("readdir", { path }) as { name: string; type: FileType }[];
      for (const entry of entries) {
        if (opts.withFileTypes) results.push(new Dirent(name(entry.name), entry.type, path));
        else results.push(name(prefix + entry.name));
        if (opts.recursive && entry.type === "directory") {
          pending.push([childPath(path, entry.name), `${prefix}${entry.name}/`]);
        }
      }
    }
    return results;
  }

  function statWith(op: "stat" | "lstat", file: unknown, rawOptions: unknown): Stats | undefined {
    const opts = options(rawOptions, { throwIfNoEntry: true, bigint: false });
    if (opts.bigint)
      throw notAvailable(`fs.${op}(path, { bigint: true })`, "omit the bigint option");
    const path = toPath(file);
    try {
      return new Stats(call("stat", { path, follow: op === "stat" }) as FileStat);
    } catch (error) {
      const code = (error as CodedError).code;
      if (!opts.throwIfNoEntry && (code === "ENOENT" || code === "ENOTDIR")) return undefined;
      throw error;
    }
  }

  const statSync = (file: unknown, rawOptions?: unknown) => statWith("stat", file, rawOptions);
  const lstatSync = (file: unknown, rawOptions?: unknown) => statWith("lstat", file, rawOptions);

  function existsSync(file: unknown): boolean {
    try {
      return statWith("stat", file, undefined) !== undefined;
    } catch {
      return false;
    }
  }

  /**
   * Existence comes from the host; W_OK and X_OK are judged from the mode bits the host reports
   * (a read-only grant reports no write bits).
   */
  function accessSync(file: unknown, mode: unknown = constants.F_OK): void {
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 7) {
      throw outOfRange("mode", "an integer >= 0 && <= 7", mode);
    }
    const path = toPath(file);
    let stats: Stats | undefined;
    try {
      stats = statWith("stat", path, undefined);
    } catch (error) {
      if (isArgumentError(error)) throw error;
      const { code, [DENIED]: denied } = error as CodedError & { [DENIED]?: boolean };
      throw fsError({ code, denied }, "access", path);
    }
    const wants = (bit: number, modeBits: number) =>
      (mode & bit) !== 0 && ((stats?.mode ?? 0) & modeBits) === 0;
    if (
      wants(constants.W_OK, 0o222) ||
      wants(constants.X_OK, 0o111) ||
      wants(constants.R_OK, 0o444)
    ) {
      throw fsError({ code: "EACCES" }, "access", path);
    }
  }

  function mkdirSync(dir: unknown, rawOptions?: unknown): string | undefined {
    const opts =
      typeof rawOptions === "number"
        ? { recursive: false }
        : options(rawOptions, { recursive: false, mode: 0o777 });
    const path = toPath(dir);
    const firstCreated = opts.recursive ? firstMissing(path) : undefined;
    call("mkdir", { path, recursive: Boolean(opts.recursive) });
    return firstCreated;
  }

  /** For mkdir's recursive result: the shortest prefix of `path` (as written) that is missing. */
  function firstMissing(path: string): string | undefined {
    const prefixes: string[] = [];
    for (let i = 1; i <= path.length; i++) {
      if ((i === path.length || path[i] === "/") && path[i - 1] !== "/")
        prefixes.push(path.slice(0, i));
    }
    let missing: string | undefined;
    for (let i = prefixes.length - 1; i >= 0; i--) {
      const prefix = prefixes[i] as string;
      if (statWith("stat", prefix, { throwIfNoEntry: false }) !== undefined) break;
      missing = prefix;
    }
    return missing;
  }

  function rmSync(file: unknown, rawOptions?: unknown): void {
    const opts = options(rawOptions, { recursive: false, force: false });
    call("rm", {
      path: toPath(file),
      recursive: Boolean(opts.recursive),
      force: Boolean(opts.force),
    });
  }

  function rmdirSync(dir: unknown, rawOptions?: unknown): void {
    const opts = options(rawOptions, { recursive: false });
    const path = toPath(dir);
    if (opts.recursive) call("rm", { path, recursive: true, force: false });
    else call("rmdir", { path });
  }

  function unlinkSync(file: unknown): void {
    call("unlink", { path: toPath(file) });
  }

  function renameSync(from: unknown, to: unknown): void {
    call("rename", { from: toPath(from, "oldPath"), to: toPath(to, "newPath") });
  }

  function copyFileSync(from: unknown, to: unknown, mode: unknown = 0): void {
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 7) {
      throw outOfRange("mode", "an integer >= 0 && <= 7", mode);
    }
    call("copyFile", {
      from: toPath(from, "src"),
      to: toPath(to, "dest"),
      exclusive: (mode & constants.COPYFILE_EXCL) !== 0,
    });
  }

  function symlinkSync(target: unknown, file: unknown): void {
    call("symlink", { target: toPath(target, "target"), path: toPath(file) });
  }

  function readlinkSync(file: unknown, rawOptions?: unknown): string | Bytes {
    const opts = options(rawOptions, { encoding: "utf8" as string | null });
    const target = call("readlink", { path: toPath(file) }) as string;
    return opts.encoding === "buffer" ? buffer().from(target) : target;
  }

  function openSync(file: unknown, flags?: unknown, _mode?: unknown): number {
    return call("open", { path: toPath(file), flags: toFlags(flags, "r") }) as number;
  }

  function closeSync(fd: unknown): void {
    call("close", { fd: toFd(fd) });
  }

  function fstatSync(fd: unknown, rawOptions?: unknown): Stats {
    const opts = options(rawOptions, { bigint: false });
    if (opts.bigint) throw notAvailable("fs.fstat(fd, { bigint: true })", "omit the bigint option");
    return new Stats(call("fstat", { fd: toFd(fd) }) as FileStat);
  }

  function toPosition(value: unknown): number | null {
    if (typeof value === "bigint") return Number(value);
    if (typeof value === "number" && value >= 0) return value;
    if (value === undefined || value === null || value === -1) return null;
    throw invalidArgType("position", "of type number or bigint", value);
  }

  function readSync(
    fd: unknown,
    target: unknown,
    offsetOrOptions?: unknown,
    length?: unknown,
    position?: unknown,
  ): number {
    const handle = toFd(fd);
    if (!ArrayBuffer.isView(target)) {
      throw invalidArgType("buffer", "an instance of Buffer, TypedArray, or DataView", target);
    }
    let offset = offsetOrOptions;
    if (offsetOrOptions !== null && typeof offsetOrOptions === "object") {
      ({ offset, length, position } = offsetOrOptions as Record<string, unknown>);
    }
    const start = offset === undefined ? 0 : Number(offset);
    const count = length === undefined ? target.byteLength - start : Number(length);
    if (!Number.isInteger(start) || start < 0 || start > target.byteLength) {
      throw outOfRange("offset", `>= 0 && <= ${target.byteLength}`, offset);
    }
    if (!Number.isInteger(count) || count < 0 || start + count > target.byteLength) {
      throw outOfRange("length", `>= 0 && <= ${target.byteLength - start}`, length);
    }
    if (count === 0) return 0;
    const bytes = call("read", {
      fd: handle,
      length: count,
      position: toPosition(position),
    }) as ArrayBuffer;
    new Uint8Array(target.buffer, target.byteOffset + start, count).set(new Uint8Array(bytes));
    return bytes.byteLength;
  }

  function writeSync(
    fd: unknown,
    data: unknown,
    offsetOrPosition?: unknown,
    lengthOrEncoding?: unknown,
    position?: unknown,
  ): number {
    const handle = toFd(fd);
    let bytes: Uint8Array;
    let at: unknown;
    if (typeof data === "string") {
      const encoding =
        typeof lengthOrEncoding === "string" ? checkEncoding(lengthOrEncoding) : "utf8";
      bytes = toBytes(data, encoding, "buffer");
      at = offsetOrPosition;
    } else {
      const all = toBytes(data, null, "buffer");
      let offset = offsetOrPosition;
      let length = lengthOrEncoding;
      at = position;
      if (offsetOrPosition !== null && typeof offsetOrPosition === "object") {
        ({ offset, length, position: at } = offsetOrPosition as Record<string, unknown>);
      }
      const start = offset === undefined || offset === null ? 0 : Number(offset);
      const count =
        length === undefined || length === null ? all.byteLength - start : Number(length);
      if (!Number.isInteger(start) || start < 0 || start > all.byteLength) {
        throw outOfRange("offset", `>= 0 && <= ${all.byteLength}`, offset);
      }
      if (!Number.isInteger(count) || count < 0 || start + count > all.byteLength) {
        throw outOfRange("length", `>= 0 && <= ${all.byteLength - start}`, length);
      }
      bytes = all.subarray(start, start + count);
    }
    return call("write", { fd: handle, position: toPosition(at) }, exactBuffer(bytes)) as number;
  }

  // --- callbacks and promises ----------------------------------------------------------------

  /** Node throws argument errors synchronously; failures of the operation go to the callback. */
  const isArgumentError = (error: unknown) =>
    typeof (error as CodedError)?.code === "string" &&
    (error as CodedError).code.startsWith("ERR_");

  function callbackStyle(sync: (...args: never[]) => unknown, spread = false) {
    return (...args: unknown[]) => {
      const callback = args.pop();
      if (typeof callback !== "function") throw invalidArgType("cb", "of type function", callback);
      let results: unknown[];
      try {
        const value = (sync as (...a: unknown[]) => unknown)(...args);
        results = spread ? (value as unknown[]) : [value];
      } catch (error) {
        if (isArgumentError(error)) throw error;
        defer(() => callback(error));
        return;
      }
      defer(() => callback(null, ...results));
    };
  }

  function promiseStyle<Args extends unknown[], R>(sync: (...args: Args) => R) {
    return (...args: Args): Promise<R> => {
      try {
        return Promise.resolve(sync(...args));
      } catch (error) {
        return Promise.reject(error);
      }
    };
  }

  class FileHandle {
    #fd: number;
    constructor(fd: number) {
      this.#fd = fd;
    }
    get fd(): number {
      return this.#fd;
    }
    read(target?: unknown, offset?: unknown, length?: unknown, position?: unknown) {
      return promiseStyle(() => {
        let into = target;
        let rest: unknown[] = [offset, length, position];
        if (
          into !== undefined &&
          !ArrayBuffer.isView(into) &&
          typeof into === "object" &&
          into !== null
        ) {
          const { buffer: given, ...others } = into as Record<string, unknown>;
          into = given;
          rest = [others];
        }
        const bytes = (into ?? buffer().alloc(16384)) as Uint8Array;
        const bytesRead = (readSync as (...args: unknown[]) => number)(this.#fd, bytes, ...rest);
        return { bytesRead, buffer: bytes };
      })();
    }
    write(
      data: unknown,
      offsetOrPosition?: unknown,
      lengthOrEncoding?: unknown,
      position?: unknown,
    ) {
      return promiseStyle(() => {
        const bytesWritten = writeSync(
          this.#fd,
          data,
          offsetOrPosition,
          lengthOrEncoding,
          position,
        );
        return { bytesWritten, buffer: data };
      })();
    }
    readFile(rawOptions?: unknown) {
      return promiseStyle(readFileSync)(this.#fd, rawOptions);
    }
    writeFile(data: unknown, rawOptions?: unknown) {
      return promiseStyle(writeFileSync)(this.#fd, data, rawOptions);
    }
    appendFile(data: unknown, rawOptions?: unknown) {
      return promiseStyle(writeFileSync)(this.#fd, data, rawOptions);
    }
    stat(rawOptions?: unknown) {
      return promiseStyle(fstatSync)(this.#fd, rawOptions);
    }
    close() {
      return promiseStyle(() => {
        if (this.#fd === -1) return;
        closeSync(this.#fd);
        this.#fd = -1;
      })();
    }
  }
  const asyncDispose = (Symbol as { asyncDispose?: symbol }).asyncDispose;
  if (typeof asyncDispose === "symbol") {
    Object.defineProperty(FileHandle.prototype, asyncDispose, {
      value(this: FileHandle) {
        return this.close();
      },
      configurable: true,
      writable: true,
    });
  }

  const handleOrPath =
    <Rest extends unknown[], R>(sync: (file: unknown, ...rest: Rest) => R) =>
    (file: unknown, ...rest: Rest) =>
      sync(file instanceof FileHandle ? file.fd : file, ...rest);

  const promises: Record<string, unknown> = {
    readFile: promiseStyle(handleOrPath(readFileSync)),
    writeFile: promiseStyle(handleOrPath(writeFileSync)),
    appendFile: promiseStyle(handleOrPath(appendFileSync)),
    readdir: promiseStyle(readdirSync),
    stat: promiseStyle(statSync),
    lstat: promiseStyle(lstatSync),
    access: promiseStyle(accessSync),
    mkdir: promiseStyle(mkdirSync),
    rm: promiseStyle(rmSync),
    rmdir: promiseStyle(rmdirSync),
    unlink: promiseStyle(unlinkSync),
    rename: promiseStyle(renameSync),
    copyFile: promiseStyle(copyFileSync),
    symlink: promiseStyle(symlinkSync),
    readlink: promiseStyle(readlinkSync),
    open: promiseStyle(
      (file: unknown, flags?: unknown, mode?: unknown) =>
        new FileHandle(openSync(file, flags, mode)),
    ),
    constants,
  };

  const sync = {
    readFileSync,
    writeFileSync: (file: unknown, data: unknown, rawOptions?: unknown) =>
      writeFileSync(file, data, rawOptions),
    appendFileSync,
    readdirSync,
    statSync,
    lstatSync,
    existsSync,
    accessSync,
    mkdirSync,
    rmSync,
    rmdirSync,
    unlinkSync,
    renameSync,
    copyFileSync,
    symlinkSync,
    readlinkSync,
    openSync,
    readSync,
    writeSync,
    closeSync,
    fstatSync,
  };

  const module: FsModule = {
    ...sync,
    readFile: callbackStyle(readFileSync),
    writeFile: callbackStyle(sync.writeFileSync),
    appendFile: callbackStyle(appendFileSync),
    readdir: callbackStyle(readdirSync),
    stat: callbackStyle(statSync),
    lstat: callbackStyle(lstatSync),
    access: callbackStyle(accessSync),
    mkdir: callbackStyle(mkdirSync),
    rm: callbackStyle(rmSync),
    rmdir: callbackStyle(rmdirSync),
    unlink: callbackStyle(unlinkSync),
    rename: callbackStyle(renameSync),
    copyFile: callbackStyle(copyFileSync),
    symlink: callbackStyle(symlinkSync),
    readlink: callbackStyle(readlinkSync),
    open: callbackStyle(openSync),
    close: callbackStyle(closeSync),
    fstat: callbackStyle(fstatSync),
    read: callbackStyle((fd: unknown, target: unknown, ...rest: unknown[]) => {
      const bytesRead = (readSync as (...args: unknown[]) => number)(fd, target, ...rest);
      return [bytesRead, target];
    }, true),
    write: callbackStyle((fd: unknown, data: unknown, ...rest: unknown[]) => {
      return [(writeSync as (...args: unknown[]) => number)(fd, data, ...rest), data];
    }, true),
    exists(file: unknown, callback: unknown) {
      if (typeof callback !== "function") throw invalidArgType("cb", "of type function", callback);
      const found = existsSync(file);
      defer(() => callback(found));
    },
    promises,
    constants,
    Stats,
    Dirent,
    F_OK: constants.F_OK,
    R_OK: constants.R_OK,
    W_OK: constants.W_OK,
    X_OK: constants.X_OK,
  };
  const hint =
    "fs offers readFile/writeFile, readdir, stat, mkdir, rm, rename, copyFile, symlink and file descriptors";
  const stub = (name: string) => () => {
    throw notAvailable(`fs.${name}()`, hint);
  };
  for (const name of UNAVAILABLE_STREAMS) module[name] = stub(name);
  for (const name of FS_UNAVAILABLE) {
    module[name] = stub(name);
    module[`${name}Sync`] = stub(`${name}Sync`);
    promises[name] = stub(`promises.${name}`);
  }
  return { module };
};
export default install;
