import type { AllowedFile, FileMode } from "../config/options.ts";
import { formatValue } from "../config/units.ts";
import { ConfigError } from "../errors.ts";
import { namesRuntimeState, RUNTIME_STATE_RULE } from "./runtime-state.ts";

/**
 * A directory the guest may use. The guest sees one POSIX namespace whose root "/" stands for the
 * project root: allowedFiles "./data" appears at "/data", and only granted directories exist.
 */
export interface Grant {
  /** Absolute, normalised guest path: "/data", "/project/data", or "/" for the whole root. */
  guestPath: string;
  /** Where it lives on the host; the host adapter resolves it and checks symlinks under it. */
  hostPath: string;
  mode: FileMode;
  source: "allowedFiles" | "mount";
}

export type GuestAccess = "read" | "write";

/** A refusal in the guest's own terms: an errno code it can branch on, and a reason to show. */
export interface PolicyDenial {
  denied: "EACCES" | "ENOENT" | "EINVAL" | "EROFS" | "ENAMETOOLONG";
  reason: string;
}

export interface ResolvedGuestPath {
  grant: Grant;
  /**
   * The path below the grant's directory, segments joined by "/": "" for the directory itself,
   * never absolute, never containing "." or ".." segments, empty segments or a backslash.
   */
  relative: string;
}

export function isPolicyDenial(value: unknown): value is PolicyDenial {
  return typeof value === "object" && value !== null && "denied" in value;
}

/**
 * Finds the grant that holds a guest path. A relative path ("./data/x.txt", "data/x.txt") is
 * resolved against the guest's working directory `cwd` (the runtime uses "/", the project
 * root). "." and ".." are resolved lexically in the guest namespace, where "/.." is "/" as in
 * POSIX: "/data/../etc" is "/etc", outside a "/data" grant. The most specific (longest) grant
 * wins. Writing through a read-only grant is EROFS, as on a read-only mount.
 */
export function resolveGuestPath(
  guestPath: string,
  cwd: string,
  grants: readonly Grant[],
  access: GuestAccess = "read",
): ResolvedGuestPath | PolicyDenial {
  const segments = guestSegments(guestPath, cwd);
  if (isPolicyDenial(segments)) return segments;
  if (namesRuntimeState(segments)) {
    return { denied: "EACCES", reason: `${formatValue(guestPath)}: ${RUNTIME_STATE_RULE}` };
  }
  let best: { grant: Grant; depth: number } | undefined;
  for (const grant of grants) {
    const grantSegments = absoluteSegments(grant.guestPath, "grant guestPath");
    if (!startsWithSegments(segments, grantSegments)) continue;
    if (best === undefined || grantSegments.length > best.depth) {
      best = { grant, depth: grantSegments.length };
    }
  }
  const shown = formatValue(guestPath);
  if (best === undefined) {
    const normalized = `/${segments.join("/")}`;
    const listed = grants.map((grant) => `${grant.guestPath} (${grant.mode})`).join(", ");
    return {
      denied: "EACCES",
      reason:
        grants.length === 0
          ? `${shown} is not accessible: this task has no file access (grant it with allowedFiles or a mount)`
          : `${shown} (${normalized}) is outside every allowed directory: ${listed}`,
    };
  }
  if (access === "write" && best.grant.mode === "ro") {
    return {
      denied: "EROFS",
      reason: `${shown} is in ${best.grant.guestPath}, which is read-only`,
    };
  }
  return { grant: best.grant, relative: segments.slice(best.depth).join("/") };
}

/**
 * The names directly under a guest directory that no grant covers but that lead to one: with a
 * grant at "/data/raw", listing "/" gives ["data"] and "/data" gives ["raw"]. Null when the path
 * leads to no grant (or is invalid); a path inside a grant is the host's to list.
 */
export function virtualDirectoryEntries(
  guestPath: string,
  cwd: string,
  grants: readonly Grant[],
): string[] | null {
  const segments = guestSegments(guestPath, cwd);
  if (isPolicyDenial(segments)) return null;
  const names = new Set<string>();
  for (const grant of grants) {
    const grantSegments = absoluteSegments(grant.guestPath, "grant guestPath");
    if (grantSegments.length <= segments.length) continue;
    if (!startsWithSegments(grantSegments, segments)) continue;
    const next = grantSegments[segments.length];
    if (next !== undefined) names.add(next);
  }
  return names.size === 0 ? null : [...names].sort();
}

/**
 * Validates allowedFiles entries (already shape-checked by parseTaskOptions) and turns them into
 * grants: relative to the project root, no absolute path, no ".." leaving the root, "/" as the
 * separator. That each is an existing directory is for the host adapter to check. Two entries
 * for one directory with different modes are refused; nested entries are fine (the inner one
 * wins inside it).
 */
export function grantsFromAllowedFiles(
  entries: readonly AllowedFile[],
  projectRoot: string,
  option = "allowedFiles",
): Grant[] {
  if (typeof projectRoot !== "string" || projectRoot === "") {
    throw new TypeError(
      `grantsFromAllowedFiles: project root ${formatValue(projectRoot)} is empty`,
    );
  }
  const grants: Grant[] = [];
  const entryByGuestPath = new Map<string, { entry: AllowedFile; where: string }>();
  entries.forEach((entry, index) => {
    const where = `${option}[${index}]`;
    const segments = projectRelativeSegments(entry.path, where);
    if (namesRuntimeState(segments)) {
      throw new ConfigError(`${where}: ${formatValue(entry.path)}: ${RUNTIME_STATE_RULE}`);
    }
    const guestPath = `/${segments.join("/")}`;
    const earlier = entryByGuestPath.get(guestPath);
    if (earlier !== undefined) {
      if (earlier.entry.mode === entry.mode) return;
      throw new ConfigError(
        `${where}: ${formatValue(entry.path)} (${entry.mode}) names the same directory as ${earlier.where} ${formatValue(earlier.entry.path)} (${earlier.entry.mode}); give it once, with one mode`,
      );
    }
    entryByGuestPath.set(guestPath, { entry, where });
    grants.push({
      guestPath,
      hostPath: joinHostPath(projectRoot, segments),
      mode: entry.mode,
      source: "allowedFiles",
    });
  });
  return grants;
}

/**
 * The grants a task gets: its allowedFiles plus the mounts. A mount adds access but never changes
 * a path allowedFiles already covers, so a mount at or inside an allowedFiles directory is left
 * out (there allowedFiles decides both the directory and the mode); a mount above one still
 * applies around it, because the longer grant wins. Two different mounts at one guest path are
 * refused.
 */
export function mergeGrants(allowedFiles: readonly Grant[], mounts: readonly Grant[]): Grant[] {
  const allowedSegments = allowedFiles.map((grant) =>
    absoluteSegments(grant.guestPath, "allowedFiles guestPath"),
  );
  const kept: Grant[] = [];
  for (const mount of mounts) {
    const segments = absoluteSegments(mount.guestPath, "mount guestPath");
    if (allowedSegments.some((covering) => startsWithSegments(segments, covering))) continue;
    const guestPath = `/${segments.join("/")}`;
    const same = kept.find((other) => other.guestPath === guestPath);
    if (same !== undefined) {
      if (same.hostPath === mount.hostPath && same.mode === mount.mode) continue;
      throw new ConfigError(
        `mounts: ${formatValue(same.hostPath)} (${same.mode}) and ${formatValue(mount.hostPath)} (${mount.mode}) are both mounted at ${guestPath}; give each its own guest path`,
      );
    }
    kept.push({ ...mount, guestPath });
  }
  return [...allowedFiles, ...kept];
}

/**
 * The segments of an absolute guest path: "." and empty segments dropped, ".." resolved
 * lexically ("/.." is "/"). Throws for a path that is not absolute; `what` names it.
 */
export function absoluteSegments(path: string, what: string): string[] {
  if (typeof path !== "string" || !path.startsWith("/") || /[\0\\]/.test(path)) {
    throw new TypeError(
      `${what}: ${formatValue(path)} is not an absolute guest path like "/data" (no NUL, no "\\")`,
    );
  }
  return resolveSegments([], path);
}

function guestSegments(path: string, cwd: string): string[] | PolicyDenial {
  if (typeof path !== "string") {
    return { denied: "EINVAL", reason: `${formatValue(path)} is not a path` };
  }
  if (path === "") return { denied: "ENOENT", reason: "the path is empty" };
  if (path.includes("\0")) {
    return { denied: "EINVAL", reason: `${formatValue(path)} contains a NUL byte` };
  }
  // A host on Windows would read "\" as a separator and "..\" as a way out of the grant.
  if (path.includes("\\")) {
    return {
      denied: "EINVAL",
      reason: `${formatValue(path)} contains "\\"; guest paths use "/" as the separator`,
    };
  }
  // A lone UTF-16 surrogate has no UTF-8 form: a disk would store U+FFFD in its place and OPFS
  // does the same, so two names would become one file. Refused on every host.
  if (LONE_SURROGATE.test(path)) {
    return {
      denied: "EINVAL",
      reason: `${formatValue(path)} contains a lone UTF-16 surrogate, which no file name can hold`,
    };
  }
  // Linux's limits, on every host: a name the disk would refuse fails the same way in OPFS and in
  // a request's files.
  if (path.length > MAX_PATH_CHARS) {
    return {
      denied: "ENAMETOOLONG",
      reason: `the path is longer than ${MAX_PATH_CHARS} characters`,
    };
  }
  const base = path.startsWith("/") ? [] : absoluteSegments(cwd, "guest working directory");
  const segments = resolveSegments(base, path);
  const long = segments.find((segment) => utf8Length(segment) > MAX_NAME_BYTES);
  if (long !== undefined) {
    return {
      denied: "ENAMETOOLONG",
      reason: `a name in the path is longer than ${MAX_NAME_BYTES} bytes`,
    };
  }
  return segments;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const MAX_PATH_CHARS = 4096;
const MAX_NAME_BYTES = 255;
const encoder = new TextEncoder();

function utf8Length(text: string): number {
  // A UTF-16 unit takes at most 3 bytes of UTF-8: only longer names need counting.
  return text.length * 3 <= MAX_NAME_BYTES ? text.length : encoder.encode(text).length;
}

function resolveSegments(base: string[], path: string): string[] {
  const segments = [...base];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  return segments;
}

function startsWithSegments(path: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((segment, i) => path[i] === segment);
}

function projectRelativeSegments(path: string, where: string): string[] {
  const shown = formatValue(path);
  const hint = 'use a directory relative to the project root, like "./data"';
  if (path.includes("\0")) throw new ConfigError(`${where}: ${shown} contains a NUL byte; ${hint}`);
  if (path.includes("\\")) {
    throw new ConfigError(
      `${where}: ${shown} contains "\\"; write paths with "/" (like "./data/raw")`,
    );
  }
  if (path.startsWith("/") || /^[a-z]:/i.test(path) || path.startsWith("~")) {
    throw new ConfigError(
      `${where}: ${shown} is an absolute path; allowed files are relative to the project root, like "./data" (a host directory elsewhere can be mounted instead)`,
    );
  }
  const segments: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment !== "..") {
      segments.push(segment);
    } else if (segments.pop() === undefined) {
      throw new ConfigError(`${where}: ${shown} leads out of the project root; ${hint}`);
    }
  }
  return segments;
}

function joinHostPath(root: string, segments: readonly string[]): string {
  if (segments.length === 0) return root;
  const trimmed = root.length > 1 ? root.replace(/[\\/]+$/, "") : root;
  const separator = trimmed.endsWith("/") || trimmed.endsWith("\\") ? "" : "/";
  return `${trimmed}${separator}${segments.join("/")}`;
}

/** The names in a "/"-separated path, without empty and "." segments. */
export function splitPath(path: string): string[] {
  return path.split("/").filter((s) => s !== "" && s !== ".");
}

/** Whether the normalized path `inner` is `outer` or lies below it. */
export function isInside(inner: string, outer: string): boolean {
  const a = splitPath(inner);
  const b = splitPath(outer);
  return b.length <= a.length && b.every((s, i) => a[i] === s);
}
