import type { TaskLimits } from "../config/options.ts";
import { isHostStackOverflow } from "../engine/sandbox.ts";
import { ConfigError, PermissionDeniedError } from "../errors.ts";
import { meterWrites, WriteQuota } from "../files/quota.ts";
import {
  type EnvironmentHost,
  type FetchRequest,
  type FileStat,
  FileSystemError,
  type FileSystemHost,
  type Grant,
  type NetworkHost,
  type ResolvedPath,
} from "../host.ts";
import { HeldBytes } from "../network/held-bytes.ts";
import {
  grantsFromAllowedFiles,
  isPolicyDenial,
  mergeGrants,
  type PolicyDenial,
  resolveGuestPath,
  virtualDirectoryEntries,
} from "../policy/paths.ts";
import type { AttemptCapabilities } from "./attempt.ts";
import type { HostRequest } from "./envelope.ts";
import { DEFAULT_SETTINGS } from "./settings.ts";

/** The guest's working directory: "/" stands for the project root. */
export const GUEST_CWD = "/";

/** What an adapter offers the runtime; the runtime binds it to one task's options. */
export interface CapabilityProvider {
  /** Absolute host path that `allowedFiles` entries are relative to (the run's cwd). */
  projectRoot: string;
  /** Mounts from the caller (`--mount`, `mounts`), already parsed; they pass on to sub-tasks. */
  mounts: readonly Grant[];
  /**
   * Throws a ConfigError when a granted directory does not exist or is not a directory; returns
   * its canonical host path (symlinks resolved), which the grant then uses.
   */
  checkDirectory(grant: Grant): string;
  /** A fresh file system for one attempt, or null on hosts without files. */
  fileSystem(): FileSystemHost | null;
  /** A network for one attempt under these rules, or null on hosts without network. */
  network(
    allowedHosts: readonly string[],
    record: (request: HostRequest) => void,
  ): NetworkHost | null;
  env: EnvironmentHost;
}

/** A task's grants, checked once per run of the task (a bad entry is a config_error). */
export function taskGrants(limits: TaskLimits, provider: CapabilityProvider): Grant[] {
  const allowed = grantsFromAllowedFiles(limits.allowedFiles, provider.projectRoot);
  const grants = mergeGrants(allowed, provider.mounts).map((grant) => ({
    ...grant,
    hostPath: provider.checkDirectory(grant),
  }));
  refuseReadOnlyInsideWritable(grants);
  return grants;
}

/**
 * A read-only directory inside a writable grant cannot be enforced: through the outer grant the
 * task could rename it away or link into it. Refused up front instead of half-kept.
 */
function refuseReadOnlyInsideWritable(grants: readonly Grant[]): void {
  const inside = (inner: string, outer: string) =>
    inner !== outer && inner.startsWith(outer.endsWith("/") ? outer : `${outer}/`);
  for (const inner of grants) {
    if (inner.mode !== "ro") continue;
    for (const outer of grants) {
      if (outer.mode === "rw" && inside(inner.hostPath, outer.hostPath)) {
        throw new ConfigError(
          `the read-only ${describeGrant(inner)} lies inside the writable ${describeGrant(outer)}; a read-only directory cannot be protected inside a writable one: make the outer one read-only or grant them side by side`,
        );
      }
    }
  }
}

function describeGrant(grant: Grant): string {
  return grant.source === "mount"
    ? `mount at ${grant.guestPath}`
    : `allowedFiles entry ".${grant.guestPath}"`;
}

/**
 * Binds the provider to one attempt of a task: policy first, then the adapter's real I/O. `quota`
 * is the run's write quota, shared by all its tasks (a fresh default one when left out).
 */
export function bindCapabilities(
  limits: TaskLimits,
  grants: readonly Grant[],
  provider: CapabilityProvider,
  record: (request: HostRequest) => void,
  quota: WriteQuota = defaultQuota(),
): AttemptCapabilities {
  const files = grants.length > 0 ? provider.fileSystem() : null;
  const network =
    limits.allowedHosts.length > 0 ? provider.network(limits.allowedHosts, record) : null;
  // What the host buffers for the attempt's requests counts against its ram.
  const heldBytes = new HeldBytes(limits.ramBytes);
  const env: Record<string, string> = {};
  for (const name of limits.envVariables) {
    const value = provider.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const processInfo = JSON.stringify({ env, cwd: GUEST_CWD });
  return {
    fsCall: bindFileOperations(files, grants, quota),
    fetch: async (requestJson, body, signal) => {
      const request = { ...parseFetchRequest(requestJson, body), heldBytes };
      if (network === null) {
        const reason = `network access denied: ${hostOf(request.url)} is not in allowedHosts (the task allows no hosts)`;
        record({ method: request.method, url: request.url, status: null, reason, duration_ms: 0 });
        throw new PermissionDeniedError(reason);
      }
      const response = await network.fetch(request, signal);
      const meta = JSON.stringify({
        status: response.status,
        statusText: response.statusText,
        url: response.url,
        redirected: response.redirected,
        headers: response.headers,
      });
      return { meta, body: response.body };
    },
    processInfo: () => processInfo,
    close: () => files?.closeAll(),
  };
}

/**
 * The file half of `bindCapabilities`: the policy over `files`. Also for a realm that answers
 * file calls from its own copy of the granted files (a Python sandbox in a page), whose changes
 * the runtime checks again when they come back (core/files/loaded-tree.ts).
 */
export function bindFileOperations(
  files: FileSystemHost | null,
  grants: readonly Grant[],
  quota: WriteQuota = defaultQuota(),
): AttemptCapabilities["fsCall"] {
  const metered = files === null ? null : meterWrites(files, quota);
  return (op, argsJson, data) => runFileOperation(metered, grants, op, argsJson, data);
}

function defaultQuota(): WriteQuota {
  return new WriteQuota(DEFAULT_SETTINGS);
}

function hostOf(url: string): string {
  try {
    return JSON.stringify(new URL(url).hostname);
  } catch {
    return JSON.stringify(url);
  }
}

function parseFetchRequest(requestJson: string, body: Uint8Array | undefined): FetchRequest {
  const parsed = JSON.parse(requestJson) as Partial<FetchRequest>;
  return {
    method: typeof parsed.method === "string" ? parsed.method : "GET",
    url: String(parsed.url),
    headers: Array.isArray(parsed.headers) ? parsed.headers : [],
    body: body ?? null,
    redirect:
      parsed.redirect === "error" || parsed.redirect === "manual" ? parsed.redirect : "follow",
  };
}

interface FileArgs {
  path?: string;
  from?: string;
  to?: string;
  target?: string;
  flag?: "w" | "a" | "wx";
  follow?: boolean;
  recursive?: boolean;
  force?: boolean;
  exclusive?: boolean;
  flags?: string;
  fd?: number;
  length?: number;
  position?: number | null;
}

const WRITE_OPS = new Set(["writeFile", "mkdir", "rm", "rmdir", "unlink", "symlink"]);

/** One guest file operation: policy, then the host, with failures as Node-shaped error JSON. */
function runFileOperation(
  files: FileSystemHost | null,
  grants: readonly Grant[],
  op: string,
  argsJson: string,
  data: Uint8Array | undefined,
): string | Uint8Array {
  let syscall = NODE_SYSCALLS[op] ?? op;
  try {
    const args = JSON.parse(argsJson) as FileArgs;
    if (op === "stat" && args.follow === false) syscall = "lstat";
    const access = WRITE_OPS.has(op) ? "write" : "read";
    const at = (path: string | undefined, mode: "read" | "write" = access, creates = false) => {
      const written = requirePath(path, syscall);
      const physical =
        files !== null && /(^|\/)\.\.(\/|$)/.test(written)
          ? physicalPath(written, files, grants)
          : written;
      // Errors show the path as the task wrote it.
      const resolved = {
        ...resolveOrDeny(physical, grants, mode, syscall, files),
        guestPath: written,
      };
      // mkdir("file/") is EEXIST, as the host already answers.
      if (files !== null && op !== "mkdir" && namesDirectory(resolved.guestPath)) {
        requireDirectory(files, resolved, syscall, creates);
      }
      return resolved;
    };
    const host = (): FileSystemHost => {
      if (files === null)
        throw new FileSystemError(
          "EACCES",
          op,
          args.path,
          "permission denied (the task has no allowedFiles)",
        );
      return files;
    };
    switch (op) {
      case "readFile":
        return host().readFile(at(args.path));
      case "writeFile":
        host().writeFile(at(args.path, "write", true), data ?? new Uint8Array(0), args.flag ?? "w");
        return ok(null);
      case "readdir": {
        const virtual = virtualDirectory(args.path, grants);
        if (virtual !== null) return ok(virtual.map((name) => ({ name, type: "directory" })));
        // In name order on every host: disks list in their own order, memory trees in creation
        // order, and a task that sorts or scans the list would spend different fuel on each.
        return ok(host().readdir(at(args.path)).sort(byName));
      }
      case "stat": {
        if (virtualDirectory(args.path, grants) !== null) return ok(VIRTUAL_DIRECTORY_STAT);
        const target = at(args.path);
        // "link/" names what the link points to, even for lstat (as on Linux).
        const follow = args.follow !== false || namesDirectory(target.guestPath);
        const stat = wholeMilliseconds(host().stat(target, follow));
        // What the task may do, not what the host allows: no write bits under a read-only grant.
        return ok(target.grant.mode === "ro" ? { ...stat, mode: stat.mode & ~0o222 } : stat);
      }
      case "mkdir":
        host().mkdir(at(args.path), args.recursive === true);
        return ok(null);
      case "rm":
        host().rm(notGrantRoot(at(args.path), op), {
          recursive: args.recursive === true,
          force: args.force === true,
        });
        return ok(null);
      case "rmdir":
        host().rmdir(notGrantRoot(at(args.path), op));
        return ok(null);
      case "unlink":
        host().unlink(at(args.path));
        return ok(null);
      case "rename": {
        const from = notGrantRoot(at(args.from, "write"), op);
        const to = notGrantRoot(at(args.to, "write"), op);
        // rename("file", "name/") is ENOTDIR, whether or not name exists.
        if (namesDirectory(to.guestPath) && host().stat(from, false).type !== "directory") {
          throw new FileSystemError("ENOTDIR", "rename", to.guestPath);
        }
        host().rename(from, to);
        return ok(null);
      }
      case "copyFile":
        host().copyFile(at(args.from, "read"), at(args.to, "write", true), args.exclusive === true);
        return ok(null);
      case "symlink":
        host().symlink(requirePath(args.target, op), at(args.path, "write", true));
        return ok(null);
      case "readlink":
        return ok(host().readlink(at(args.path)));
      case "open": {
        const flags = args.flags ?? "r";
        const writing = /[wa+]/.test(flags);
        return ok(
          host().open(at(args.path, writing ? "write" : "read", /[wax]/.test(flags)), flags),
        );
      }
      case "read":
        return host().read(
          requireNumber(args.fd, op),
          requireNumber(args.length, op),
          args.position ?? null,
        );
      case "write":
        return ok(
          host().write(
            requireNumber(args.fd, op),
            data ?? new Uint8Array(0),
            args.position ?? null,
          ),
        );
      case "fstat":
        return ok(wholeMilliseconds(host().fstat(requireNumber(args.fd, op))));
      case "close":
        host().close(requireNumber(args.fd, op));
        return ok(null);
      default:
        throw new FileSystemError(
          "EINVAL",
          op,
          undefined,
          `unknown file operation ${JSON.stringify(op)}`,
        );
    }
  } catch (error) {
    return failure(error, syscall);
  }
}

/**
 * A guest path with each ".." applied to where the path has really led, as the kernel does:
 * "link/.." is the parent of the link's target, not the directory holding the link. Only hosts
 * with symbolic links (Node) can differ from the lexical answer. The result is a plain guest
 * path, checked against the grants like any other; a part that cannot be read is left as
 * written, and the call then fails on it as it would.
 */
function physicalPath(path: string, files: FileSystemHost, grants: readonly Grant[]): string {
  let hops = 0;
  const real = (segments: readonly string[]): string[] => {
    const done: string[] = [];
    for (const segment of segments) {
      done.push(segment);
      const at = resolveGuestPath(`/${done.join("/")}`, GUEST_CWD, grants, "read");
      if (isPolicyDenial(at)) continue;
      const where = { ...at, guestPath: `/${done.join("/")}` };
      let text: string;
      try {
        if (files.stat(where, false).type !== "symlink") continue;
        text = files.readlink(where);
      } catch {
        continue;
      }
      if (++hops > MAX_LINK_HOPS) return done;
      const target = text.startsWith("/") ? [] : done.slice(0, -1);
      done.splice(0, done.length, ...real(applyDots(target, text)));
    }
    return done;
  };
  /** Applies link text to a directory: ".." after a link goes to the link target's parent. */
  const applyDots = (base: readonly string[], text: string): string[] => {
    let segments = [...base];
    for (const segment of text.split("/")) {
      if (segment === "" || segment === ".") continue;
      if (segment === "..") {
        segments = real(segments);
        segments.pop();
      } else {
        segments.push(segment);
      }
    }
    return segments;
  };
  const base = path.startsWith("/") ? [] : GUEST_CWD.split("/").filter((s) => s !== "");
  const trailing = path.endsWith("/") ? "/" : "";
  const resolved = `/${applyDots(base, path).join("/")}${trailing}`;
  // Without a link on the way the lexical answer is the same: keep the path as written.
  return hops === 0 ? path : resolved;
}

const MAX_LINK_HOPS = 40;

/** Whether a guest path ends in "/" (or "/."): on Linux such a path must name a directory. */
function namesDirectory(guestPath: string): boolean {
  return guestPath.endsWith("/") || guestPath.endsWith("/.");
}

/**
 * Node's answers for "name/" (Linux's): a call that may create a file (open with O_CREAT) is
 * EISDIR; symlink is ENOENT; anything else on an existing non-directory is ENOTDIR.
 */
function requireDirectory(
  files: FileSystemHost,
  path: ResolvedPath,
  syscall: string,
  creates: boolean,
): void {
  if (path.relative === "") return;
  if (creates) {
    throw new FileSystemError(syscall === "symlink" ? "ENOENT" : "EISDIR", syscall, path.guestPath);
  }
  let type: string;
  try {
    type = files.stat(path, true).type;
  } catch {
    return;
  }
  if (type !== "directory") throw new FileSystemError("ENOTDIR", syscall, path.guestPath);
}

/** Node's names for the system call behind each operation, as its errors show them. */
const NODE_SYSCALLS: Readonly<Record<string, string>> = {
  readFile: "open",
  writeFile: "open",
  readdir: "scandir",
  copyFile: "copyfile",
};

/**
 * The entries of a guest directory that lies above the grants (like "/" with a grant at "/data"),
 * or null when the path is inside a grant (the host lists it) or leads to none.
 */
function virtualDirectory(path: string | undefined, grants: readonly Grant[]): string[] | null {
  if (typeof path !== "string") return null;
  if (!isPolicyDenial(resolveGuestPath(path, GUEST_CWD, grants, "read"))) return null;
  return virtualDirectoryEntries(path, GUEST_CWD, grants);
}

const VIRTUAL_DIRECTORY_STAT: FileStat = {
  type: "directory",
  size: 0,
  mode: 0o40555,
  mtimeMs: 0,
  atimeMs: 0,
  ctimeMs: 0,
  birthtimeMs: 0,
};

function resolveOrDeny(
  path: string | undefined,
  grants: readonly Grant[],
  access: "read" | "write",
  syscall: string,
  files: FileSystemHost | null,
): ResolvedPath {
  const guestPath = requirePath(path, syscall);
  if (files === null && grants.length === 0) {
    throw denied("EACCES", syscall, guestPath, "the task has no allowedFiles");
  }
  const resolved = resolveGuestPath(guestPath, GUEST_CWD, grants, access);
  if (isPolicyDenial(resolved)) throw denied(resolved.denied, syscall, guestPath, resolved.reason);
  return { ...resolved, guestPath };
}

/** A refusal by policy: marked, so an uncaught one ends the task as permission_denied. */
function denied(
  code: PolicyDenial["denied"],
  syscall: string,
  path: string,
  reason: string,
): FileSystemError {
  const error = new FileSystemError(code, syscall, path);
  (error as FileSystemError & { reason?: string }).reason = reason;
  return error;
}

function requirePath(path: string | undefined, syscall: string): string {
  if (typeof path !== "string") {
    throw new FileSystemError("EINVAL", syscall, undefined, "the path must be a string");
  }
  return path;
}

function requireNumber(value: number | undefined, syscall: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new FileSystemError(
      "EINVAL",
      syscall,
      undefined,
      `invalid argument ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function ok(value: unknown): string {
  return JSON.stringify({ ok: value });
}

function failure(error: unknown, syscall: string): string {
  if (error instanceof FileSystemError) {
    const reason = (error as FileSystemError & { reason?: string }).reason;
    return JSON.stringify({
      error: {
        code: error.code,
        syscall: error.syscall,
        path: error.path,
        message: reason === undefined ? error.message : `${error.message} (${reason})`,
        denied: reason !== undefined || error.code === "EACCES" || error.code === "EROFS",
      },
    });
  }
  // Not a file error: the guest recursed until the host's stack ran out; the bridge ends the task.
  if (isHostStackOverflow(error)) throw error;
  // Anything else is a host-side fault: say so without details that could carry host paths.
  return JSON.stringify({
    error: { code: "EIO", syscall, message: `EIO: i/o error, ${syscall}`, denied: false },
  });
}

/**
 * A granted directory itself cannot be removed or renamed, on any host: the grant would point at
 * nothing, or at whatever the task put there next.
 */
function notGrantRoot(path: ResolvedPath, syscall: string): ResolvedPath {
  if (path.relative !== "") return path;
  if (path.grant.mode !== "rw") {
    throw new FileSystemError(
      "EROFS",
      syscall,
      path.guestPath,
      `${path.grant.guestPath} is read-only`,
    );
  }
  throw new FileSystemError(
    "EACCES",
    syscall,
    path.guestPath,
    "an allowed directory itself cannot be moved or removed",
  );
}

/**
 * Disks keep times to the microsecond, memory trees to the millisecond; whole milliseconds on
 * every host, so the reply a task parses (and the fuel it spends on it) is alike everywhere.
 */
function wholeMilliseconds(stat: FileStat): FileStat {
  return {
    ...stat,
    atimeMs: Math.floor(stat.atimeMs),
    mtimeMs: Math.floor(stat.mtimeMs),
    ctimeMs: Math.floor(stat.ctimeMs),
    birthtimeMs: Math.floor(stat.birthtimeMs),
  };
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
