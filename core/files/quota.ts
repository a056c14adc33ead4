/**
 * The run's write quota: bytes written and entries (files, directories, links) created by all the
 * tasks of one run, every sub-task and attempt, on every host. Every guest file operation passes
 * through `meterWrites` before it reaches a host, so the check happens before anything is
 * written: a write that would cross the quota is refused whole with ENOSPC, as a full disk
 * refuses it, and nothing of it reaches the disk, OPFS or a Worker's file map.
 *
 * What counts (the same on every host, so a task meets the quota at the same call everywhere):
 * - bytes: every byte a write hands over (an overwrite counts again: bytes written, not growth),
 *   the zeros a write past the end fills in, and the bytes a copy duplicates;
 * - entries: each file, directory or symbolic link a call creates where none was.
 * Removing frees neither; renaming moves what exists and costs nothing.
 *
 * The counts live in a buffer the run's threads share (a SharedArrayBuffer where the host has
 * one), updated with compare-and-swap so that concurrent sub-tasks cannot both take the last
 * bytes.
 */
import { formatBytes } from "../config/units.ts";
import { type FileStat, FileSystemError, type FileSystemHost, type ResolvedPath } from "../host.ts";

/** The quota's two limits, as `run()`'s `limits` sets them. */
export interface WriteLimits {
  writeBytes: number;
  writeFiles: number;
}

const BYTES = 0;
const ENTRIES = 1;

/** A buffer for a run's counts: shared between threads where the host allows it. */
export function newWriteCounts(): ArrayBuffer | SharedArrayBuffer {
  return typeof SharedArrayBuffer === "function"
    ? new SharedArrayBuffer(2 * BigInt64Array.BYTES_PER_ELEMENT)
    : new ArrayBuffer(2 * BigInt64Array.BYTES_PER_ELEMENT);
}

export class WriteQuota {
  readonly limits: WriteLimits;
  readonly #counts: BigInt64Array;

  /** `counts`: the run's buffer (from `newWriteCounts`); a fresh one when left out. */
  constructor(limits: WriteLimits, counts: ArrayBufferLike = newWriteCounts()) {
    this.limits = { writeBytes: limits.writeBytes, writeFiles: limits.writeFiles };
    this.#counts = new BigInt64Array(counts, 0, 2);
  }

  /** The buffer to hand to the run's other threads. */
  get counts(): ArrayBufferLike {
    return this.#counts.buffer;
  }

  /**
   * Whether the counts are the run's own, shared with its other threads. When they are a copy
   * (a page without cross-origin isolation has no shared memory), the thread works on it and
   * settles with the run's owner (`settle`), which refuses what would cross the quota.
   */
  get shared(): boolean {
    return typeof SharedArrayBuffer === "function" && this.counts instanceof SharedArrayBuffer;
  }

  /** Takes a copy's counts from the owner's, after a settlement. */
  reset(bytes: number, entries: number): void {
    Atomics.store(this.#counts, BYTES, BigInt(bytes));
    Atomics.store(this.#counts, ENTRIES, BigInt(entries));
  }

  /**
   * On the owner's side: charges what a copy wrote since it last settled, all or nothing, and
   * answers with the run's counts now. `fits` is false when it would cross the quota.
   */
  settle(bytes: number, entries: number): { fits: boolean; bytes: number; entries: number } {
    let fits = true;
    try {
      this.charge(bytes, entries, "write", undefined);
    } catch {
      fits = false;
    }
    return { fits, bytes: this.bytesWritten, entries: this.entriesCreated };
  }

  get bytesWritten(): number {
    return Number(Atomics.load(this.#counts, BYTES));
  }

  get entriesCreated(): number {
    return Number(Atomics.load(this.#counts, ENTRIES));
  }

  /**
   * Takes `bytes` and `entries` from the quota, or throws ENOSPC naming the limit and takes
   * nothing. `syscall` and `path` are the guest's, for the error.
   */
  charge(bytes: number, entries: number, syscall: string, path: string | undefined): void {
    if (!take(this.#counts, ENTRIES, entries, this.limits.writeFiles)) {
      throw this.#full(
        `this run may create ${this.limits.writeFiles} files and directories in all (limits.writeFiles)`,
        syscall,
        path,
      );
    }
    if (!take(this.#counts, BYTES, bytes, this.limits.writeBytes)) {
      this.refund(0, entries);
      throw this.#full(
        `this run's write quota of ${formatBytes(this.limits.writeBytes)} is used up (${this.bytesWritten} bytes written, ${bytes} more asked; set limits.writeBytes)`,
        syscall,
        path,
      );
    }
  }

  /** Gives back what a call was charged but did not write (it failed before writing). */
  refund(bytes: number, entries: number): void {
    if (bytes > 0) Atomics.sub(this.#counts, BYTES, BigInt(bytes));
    if (entries > 0) Atomics.sub(this.#counts, ENTRIES, BigInt(entries));
  }

  /** Counts what was written past a check (a source that grew during a copy): never refused. */
  add(bytes: number, entries: number): void {
    if (bytes > 0) Atomics.add(this.#counts, BYTES, BigInt(bytes));
    if (entries > 0) Atomics.add(this.#counts, ENTRIES, BigInt(entries));
  }

  #full(detail: string, syscall: string, path: string | undefined): FileSystemError {
    return new FileSystemError("ENOSPC", syscall, path, `no space left on device: ${detail}`);
  }
}

function take(counts: BigInt64Array, index: number, amount: number, limit: number): boolean {
  if (amount <= 0) return true;
  const wanted = BigInt(amount);
  const most = BigInt(limit);
  for (;;) {
    const now = Atomics.load(counts, index);
    if (now + wanted > most) return false;
    if (Atomics.compareExchange(counts, index, now, now + wanted) === now) return true;
  }
}

/**
 * `files` with every write charged to `quota` first. Each charge is what the call is about to
 * write, learnt from the host before the call (a stat), and given back if the call fails.
 */
export function meterWrites(files: FileSystemHost, quota: WriteQuota): FileSystemHost {
  const exists = (path: ResolvedPath): boolean =>
    files.exists?.(path) ?? statOrNull(files, path) !== null;
  /** Charges, runs, and refunds when the call fails. */
  const charged = <T>(
    bytes: number,
    entries: number,
    syscall: string,
    path: string | undefined,
    call: () => T,
  ): T => {
    quota.charge(bytes, entries, syscall, path);
    try {
      return call();
    } catch (error) {
      quota.refund(bytes, entries);
      throw error;
    }
  };
  return {
    ...files,
    readFile: (path) => files.readFile(path),
    readdir: (path) => files.readdir(path),
    stat: (path, follow) => files.stat(path, follow),
    rm: (path, options) => files.rm(path, options),
    rmdir: (path) => files.rmdir(path),
    unlink: (path) => files.unlink(path),
    rename: (from, to) => files.rename(from, to),
    readlink: (path) => files.readlink(path),
    read: (handle, length, position) => files.read(handle, length, position),
    fstat: (handle) => files.fstat(handle),
    close: (handle) => files.close(handle),
    closeAll: () => files.closeAll(),
    writeFile(path, data, flag) {
      const entries = exists(path) ? 0 : 1;
      charged(data.byteLength, entries, "open", path.guestPath, () =>
        files.writeFile(path, data, flag),
      );
    },
    mkdir(path, recursive) {
      const entries = recursive ? missingDirectories(files, path) : exists(path) ? 0 : 1;
      charged(0, entries, "mkdir", path.guestPath, () => files.mkdir(path, recursive));
    },
    copyFile(from, to, exclusive) {
      const source = files.stat(from, true);
      const bytes = source.type === "file" ? source.size : 0;
      const entries = exists(to) ? 0 : 1;
      charged(bytes, entries, "copyfile", to.guestPath, () => files.copyFile(from, to, exclusive));
      // A source another thread grew during the copy: the extra bytes were written, so count them.
      const copied = statOrNull(files, to);
      if (copied !== null && copied.size > bytes) quota.add(copied.size - bytes, 0);
    },
    symlink(target, path) {
      charged(0, 1, "symlink", path.guestPath, () => files.symlink(target, path));
    },
    open(path, flags) {
      const creates = /[wax]/.test(flags) && !exists(path);
      return charged(0, creates ? 1 : 0, "open", path.guestPath, () => files.open(path, flags));
    },
    write(handle, data, position) {
      // A write past the end fills the gap with zeros: they are written too.
      const size = files.fstat(handle).size;
      const gap = position !== null && position > size ? position - size : 0;
      return charged(data.byteLength + gap, 0, "write", undefined, () =>
        files.write(handle, data, position),
      );
    },
  };
}

function statOrNull(files: FileSystemHost, path: ResolvedPath): FileStat | null {
  try {
    return files.stat(path, true);
  } catch {
    return null;
  }
}

/** How many directories `mkdir -p` would create: the missing tail of the path. */
function missingDirectories(files: FileSystemHost, path: ResolvedPath): number {
  const segments = path.relative === "" ? [] : path.relative.split("/");
  let missing = 0;
  for (let depth = segments.length; depth > 0; depth--) {
    const prefix = { ...path, relative: segments.slice(0, depth).join("/") };
    if (files.exists?.(prefix) ?? statOrNull(files, prefix) !== null) break;
    missing++;
  }
  return missing;
}
