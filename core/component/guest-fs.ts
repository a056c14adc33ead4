/**
 * `node:fs` inside a component made by `capsule build --export`: the synchronous calls a task
 * uses most, answered by the component's WASI filesystem imports (whatever the host preopened:
 * the task's granted directories and mounts). Paths are absolute guest paths or relative to "/".
 */

interface Descriptor {
  openAt(
    pathFlags: { symlinkFollow: boolean },
    path: string,
    openFlags: Record<string, boolean>,
    flags: Record<string, boolean>,
  ): Descriptor;
  read(length: bigint, offset: bigint): [Uint8Array, boolean];
  write(buffer: Uint8Array, offset: bigint): bigint;
  stat(): { size: bigint; type: string };
  statAt(pathFlags: { symlinkFollow: boolean }, path: string): { size: bigint; type: string };
}

type Preopens = { getDirectories(): [Descriptor, string][] };

function preopens(): [Descriptor, string][] {
  const api = (globalThis as Record<string, unknown>)["wasi:filesystem/preopens"] as
    | Preopens
    | undefined;
  return api?.getDirectories() ?? [];
}

function fsError(code: string, syscall: string, path: string, detail?: unknown): Error {
  const error = new Error(
    `${code}: ${syscall} '${path}'${detail === undefined ? "" : ` (${String((detail as { payload?: unknown }).payload ?? detail)})`}`,
  ) as Error & { code: string };
  error.code = code;
  return error;
}

/** The preopened directory holding `path`, and the path relative to it. */
function locate(path: string, syscall: string): [Descriptor, string] {
  const absolute = path.startsWith("/") ? path : `/${path}`;
  let best: [Descriptor, string] | null = null;
  let bestLength = -1;
  for (const [descriptor, guest] of preopens()) {
    const root = guest.endsWith("/") ? guest : `${guest}/`;
    if (
      (absolute === guest || absolute.startsWith(root) || guest === "/") &&
      guest.length > bestLength
    ) {
      best = [descriptor, absolute.slice(guest === "/" ? 1 : root.length)];
      bestLength = guest.length;
    }
  }
  if (best === null) throw fsError("EACCES", syscall, path, "not inside a granted directory");
  return [best[0], best[1] === "" ? "." : best[1]];
}

/** Node's error code for a WASI filesystem error. */
function codeOf(error: unknown): string {
  const payload = (error as { payload?: string }).payload;
  return payload === "no-entry"
    ? "ENOENT"
    : payload === "access" || payload === "not-permitted"
      ? "EACCES"
      : payload === "read-only"
        ? "EROFS"
        : payload === "insufficient-space"
          ? "ENOSPC"
          : "EIO";
}

function open(
  path: string,
  syscall: string,
  openFlags: Record<string, boolean>,
  flags: Record<string, boolean>,
): Descriptor {
  const [dir, relative] = locate(path, syscall);
  try {
    return dir.openAt({ symlinkFollow: true }, relative, openFlags, flags);
  } catch (error) {
    const code = codeOf(error);
    throw fsError(code, syscall, path, error);
  }
}

export function readFileSync(
  path: string,
  options?: string | { encoding?: string },
): string | Uint8Array {
  const file = open(String(path), "open", {}, { read: true });
  const chunks: Uint8Array[] = [];
  let offset = 0n;
  for (;;) {
    const [chunk, end] = file.read(65536n, offset);
    chunks.push(chunk);
    offset += BigInt(chunk.byteLength);
    if (end || chunk.byteLength === 0) break;
  }
  const bytes = new Uint8Array(Number(offset));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  const encoding = typeof options === "string" ? options : options?.encoding;
  return encoding ? new TextDecoder().decode(bytes) : bytes;
}

export function writeFileSync(path: string, data: string | Uint8Array): void {
  const file = open(String(path), "open", { create: true, truncate: true }, { write: true });
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let offset = 0;
  while (offset < bytes.byteLength) {
    try {
      offset += Number(file.write(bytes.subarray(offset), BigInt(offset)));
    } catch (error) {
      throw fsError(codeOf(error), "write", String(path), error);
    }
  }
}

export function existsSync(path: string): boolean {
  try {
    const [dir, relative] = locate(String(path), "stat");
    dir.statAt({ symlinkFollow: true }, relative);
    return true;
  } catch {
    return false;
  }
}

export default { readFileSync, writeFileSync, existsSync };
