/**
 * What every adapter (Node, browser, Workers) provides to the runtime: real I/O behind the
 * capability checks. The runtime resolves and checks each request against the task's grants
 * (core/policy) first; an adapter then performs it and re-checks what only it can see (symlinks
 * on disk, the address a name resolves to). Nothing here is reachable from the sandbox except
 * through the guest bridge.
 */

import type { HeldBytes } from "./network/held-bytes.ts";
import type { Grant } from "./policy/paths.ts";

export type { Grant };

/** A guest path after policy resolution: inside exactly one grant, never escaping it. */
export interface ResolvedPath {
  grant: Grant;
  /** Relative to the grant's root, "/"-separated, no "." or ".." segments; "" is the root. */
  relative: string;
  /** The guest path as the task wrote it, normalised: the only path an error may show. */
  guestPath: string;
}

/** Error codes the guest sees on `err.code`, as Node reports them. */
export type FileErrorCode =
  | "ENOENT"
  | "EACCES"
  | "EROFS"
  | "EISDIR"
  | "ENOTDIR"
  | "EEXIST"
  | "ENOTEMPTY"
  | "EBADF"
  | "EINVAL"
  | "EMFILE"
  | "EFBIG"
  | "ENAMETOOLONG"
  | "ENOSPC"
  | "EIO";

/** A file-system failure; `message` names guest paths only, never host paths. */
export class FileSystemError extends Error {
  override name = "FileSystemError";
  readonly code: FileErrorCode;
  readonly syscall: string;
  readonly path: string | undefined;

  constructor(code: FileErrorCode, syscall: string, path: string | undefined, detail?: string) {
    super(
      `${code}: ${detail ?? describeCode(code)}, ${syscall}${path === undefined ? "" : ` '${path}'`}`,
    );
    this.code = code;
    this.syscall = syscall;
    this.path = path;
  }
}

function describeCode(code: FileErrorCode): string {
  switch (code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
      return "permission denied";
    case "EROFS":
      return "read-only file system";
    case "EISDIR":
      return "illegal operation on a directory";
    case "ENOTDIR":
      return "not a directory";
    case "EEXIST":
      return "file already exists";
    case "ENOTEMPTY":
      return "directory not empty";
    case "EBADF":
      return "bad file descriptor";
    case "EINVAL":
      return "invalid argument";
    case "ENAMETOOLONG":
      return "name too long";
    case "EMFILE":
      return "too many open files";
    case "EFBIG":
      return "file too large";
    case "ENOSPC":
      return "no space left on device";
    case "EIO":
      return "i/o error";
  }
}

export type FileType = "file" | "directory" | "symlink" | "other";

export interface FileStat {
  type: FileType;
  size: number;
  mode: number;
  mtimeMs: number;
  atimeMs: number;
  ctimeMs: number;
  birthtimeMs: number;
}

export interface DirectoryEntry {
  name: string;
  type: FileType;
}

/**
 * Synchronous file operations on policy-resolved paths. Each call must re-check on the host what
 * the policy cannot see: that the real path (after symlinks, existing or created by the guest, and
 * a swap between check and use) stays inside `grant.hostPath`, that writes only go through "rw"
 * grants, and that a hard-linked file is not written through.
 */
export interface FileSystemHost {
  readFile(path: ResolvedPath): Uint8Array;
  /** `flag`: "w" (truncate/create), "a" (append/create), "wx" (create, fail if it exists). */
  writeFile(path: ResolvedPath, data: Uint8Array, flag: "w" | "a" | "wx"): void;
  readdir(path: ResolvedPath): DirectoryEntry[];
  /** `follow: false` is lstat. */
  stat(path: ResolvedPath, follow: boolean): FileStat;
  mkdir(path: ResolvedPath, recursive: boolean): void;
  rm(path: ResolvedPath, options: { recursive: boolean; force: boolean }): void;
  rmdir(path: ResolvedPath): void;
  unlink(path: ResolvedPath): void;
  rename(from: ResolvedPath, to: ResolvedPath): void;
  copyFile(from: ResolvedPath, to: ResolvedPath, exclusive: boolean): void;
  /** Creates a symlink at `path` whose target text is `target` (a guest path, kept as written). */
  symlink(target: string, path: ResolvedPath): void;
  readlink(path: ResolvedPath): string;
  /** Opens a handle; `flags` as Node's string flags ("r", "r+", "w", "w+", "a", "a+", "wx"...). */
  open(path: ResolvedPath, flags: string): number;
  /** Reads up to `length` bytes at `position` (null: the handle's current position). */
  read(handle: number, length: number, position: number | null): Uint8Array;
  write(handle: number, data: Uint8Array, position: number | null): number;
  fstat(handle: number): FileStat;
  close(handle: number): void;
  /** Closes every handle the attempt left open. */
  closeAll(): void;
  /** Whether something is at `path` (links followed); where missing, callers use `stat`. */
  exists?(path: ResolvedPath): boolean;
}

export interface FetchRequest {
  method: string;
  url: string;
  headers: [string, string][];
  body: Uint8Array | null;
  redirect: "follow" | "error" | "manual";
  /** The attempt's count of bytes held for its requests, bounded by its ram; none: unbounded. */
  heldBytes?: HeldBytes;
}

export interface FetchResponse {
  status: number;
  statusText: string;
  url: string;
  redirected: boolean;
  headers: [string, string][];
  body: Uint8Array;
}

export interface NetworkHost {
  /**
   * Performs one request under the task's host policy: every redirect hop re-checked, the
   * resolved address checked where the host can see it, size and time limits applied. Rejects
   * with a `PermissionDeniedError` (core/errors.ts) for a refused destination.
   */
  fetch(request: FetchRequest, signal: AbortSignal): Promise<FetchResponse>;
}

export interface EnvironmentHost {
  /** The value of one host environment variable, or undefined. */
  get(name: string): string | undefined;
}

/**
 * An environment of exactly the values given: where a host has no process environment (a page, a
 * Worker), the caller passes the variables a task's `envVariables` may read.
 */
export function environmentOf(
  values: Readonly<Record<string, string | undefined>>,
): EnvironmentHost {
  return { get: (name) => (Object.hasOwn(values, name) ? values[name] : undefined) };
}

/** What an adapter can do, as data: the conformance suite checks it against behaviour. */
export interface HostCapabilities {
  files: boolean;
  network: boolean;
  env: boolean;
  /** Whether the adapter can see the address a host name resolves to. */
  resolvedAddressCheck: boolean;
}
