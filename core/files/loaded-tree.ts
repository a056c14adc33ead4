/**
 * A memory tree that remembers what it was loaded with, so that a host which copies granted
 * directories in (a page's OPFS, a Python sandbox in a page) can tell what a task changed: the
 * copy is worked on synchronously, and only the differences go back. Changes that arrive from a
 * sandbox are the guest's word: `applyChanges` checks every one against the writable grants
 * before it touches anything.
 */
import { PermissionDeniedError, TaskError } from "../errors.ts";
import { FileSystemError, type Grant } from "../host.ts";
import { isInside, splitPath } from "../policy/paths.ts";
import {
  type DirectoryNode,
  type FileNode,
  MemoryTree,
  type MemoryTreeOptions,
  newDirectory,
  type TreeNode,
} from "./memory-tree.ts";
import type { WriteQuota } from "./quota.ts";

/** A file or directory as it crosses between realms, by host path ("/data/in.txt"). */
export type TreeEntry =
  | { kind: "directory"; path: string }
  | { kind: "file"; path: string; data: Uint8Array; mtimeMs: number };

/** One difference from what was loaded; removals come first, parents before their children. */
export type TreeChange = TreeEntry | { kind: "removed"; path: string };

/** Most changes one report may carry; a tree this busy is a forged report. */
const MAX_CHANGES = 100_000;

export class LoadedTree extends MemoryTree {
  /** Every node as loaded, by host path: what `changes()` compares against. */
  readonly #loaded = new Map<string, TreeNode>();
  /** Host paths of the granted directories that were loaded. */
  readonly #granted = new Set<string>();

  constructor(options: MemoryTreeOptions = {}) {
    super(options);
  }

  /** A tree holding `entries` under `granted` host paths, as another realm loaded them. */
  static fromEntries(
    granted: readonly string[],
    entries: readonly TreeEntry[],
    options: MemoryTreeOptions = {},
  ): LoadedTree {
    const tree = new LoadedTree(options);
    for (const path of granted) tree.grantDirectory(path);
    for (const entry of entries) {
      const segments = splitPath(entry.path);
      if (entry.kind === "directory") {
        const node = tree.ensureDirectory(segments);
        if (node === undefined) throw new TypeError(`${entry.path}: a file stands in the way`);
        tree.markLoaded(entry.path, node);
        continue;
      }
      const name = segments.pop();
      const parent = tree.ensureDirectory(segments);
      if (name === undefined || parent === undefined || parent.children.has(name)) {
        throw new TypeError(`${entry.path}: clashes with another entry`);
      }
      const node = loadedFile(entry.data, entry.mtimeMs);
      if (!tree.admit(node)) throw tooBig(tree.maxBytes);
      parent.children.set(name, node);
      tree.markLoaded(entry.path, node);
    }
    return tree;
  }

  /** Host paths of the granted directories, in the order they were loaded. */
  get granted(): string[] {
    return [...this.#granted];
  }

  /**
   * Starts loading the granted directory `hostPath`: its node, created with its parents.
   * Undefined when a granted directory already holds it (it is loaded with that one), or when a
   * file stands in its way.
   */
  grantDirectory(hostPath: string): DirectoryNode | undefined {
    if ([...this.#granted].some((granted) => isInside(hostPath, granted))) return undefined;
    this.#granted.add(hostPath);
    const node = this.ensureDirectory(splitPath(hostPath));
    if (node !== undefined) this.markLoaded(hostPath, node);
    return node;
  }

  /** Records `node` as loaded at `hostPath`. */
  markLoaded(hostPath: string, node: TreeNode): void {
    this.#loaded.set(hostPath, node);
  }

  /** Whether `hostPath` held something when loaded (or last settled). */
  wasLoaded(hostPath: string): boolean {
    return this.#loaded.has(hostPath);
  }

  /** Everything under the granted directories, for another realm's `fromEntries`. */
  entries(): TreeEntry[] {
    const entries: TreeEntry[] = [];
    for (const granted of this.#granted) {
      const node = this.lookUp(splitPath(granted));
      if (node?.kind === "directory") walk(node, prefix(granted), entries);
    }
    return entries;
  }

  /** What differs from what was loaded, under the granted directories. */
  changes(): TreeChange[] {
    const removed: TreeChange[] = [];
    const paths = [...this.#loaded.keys()].sort();
    for (const path of paths) {
      if (this.#granted.has(path)) continue;
      if (removed.some((change) => isInside(path, change.path))) continue;
      const before = this.#loaded.get(path) as TreeNode;
      const now = this.lookUp(splitPath(path));
      if (now === undefined || now.kind !== before.kind) removed.push({ kind: "removed", path });
    }
    const written: TreeChange[] = [];
    const visit = (dir: DirectoryNode, path: string) => {
      for (const [name, child] of dir.children) {
        const childPath = `${path}/${name}`;
        const fresh = this.#loaded.get(childPath) !== child;
        if (child.kind === "directory") {
          if (fresh) written.push({ kind: "directory", path: childPath });
          visit(child, childPath);
        } else if (fresh || child.dirty) {
          written.push({ kind: "file", path: childPath, data: child.data, mtimeMs: child.mtimeMs });
        }
      }
    };
    for (const granted of this.#granted) {
      const node = this.lookUp(splitPath(granted));
      if (node?.kind === "directory") visit(node, prefix(granted));
    }
    return [...removed, ...written];
  }

  /** After the changes were saved: what is here now is what counts as loaded. */
  settle(): void {
    this.#loaded.clear();
    for (const granted of this.#granted) {
      const node = this.lookUp(splitPath(granted));
      if (node === undefined) continue;
      this.#loaded.set(granted, node);
      if (node.kind === "directory") this.#settle(node, prefix(granted));
    }
  }

  #settle(dir: DirectoryNode, path: string) {
    for (const [name, child] of dir.children) {
      const childPath = `${path}/${name}`;
      this.#loaded.set(childPath, child);
      if (child.kind === "file") child.dirty = false;
      else this.#settle(child, childPath);
    }
  }
}

/**
 * Applies changes a sandbox reported to `tree`, after checking all of them: each must be a
 * well-formed change strictly inside a writable grant, within the tree's byte cap and the run's
 * write quota. A report that fails any check changes nothing and is refused with the first bad
 * path named. The quota is charged here, on this side, whatever the sandbox counted itself:
 * each file written (its whole contents) and each file or directory that was not there.
 */
export function applyChanges(
  tree: MemoryTree,
  report: unknown,
  grants: readonly Grant[],
  quota?: WriteQuota,
): void {
  const changes = checkChanges(report, grants);
  if (quota !== undefined) chargeChanges(tree, changes, quota);
  for (const change of changes) {
    const segments = splitPath(change.path);
    const name = segments.pop() as string;
    const parent = tree.ensureDirectory(segments);
    if (parent === undefined) throw refused(change.path, "a file stands where its directory is");
    const existing = parent.children.get(name);
    if (change.kind === "removed") {
      if (existing !== undefined) {
        parent.children.delete(name);
        tree.release(existing);
      }
    } else if (change.kind === "directory") {
      if (existing?.kind === "file") throw refused(change.path, "a file stands there");
      if (existing === undefined) parent.children.set(name, newDirectory());
    } else if (existing?.kind === "directory") {
      throw refused(change.path, "a directory stands there");
    } else if (existing === undefined) {
      const node = loadedFile(change.data, change.mtimeMs);
      node.dirty = true;
      if (!tree.admit(node)) throw tooBig(tree.maxBytes);
      parent.children.set(name, node);
    } else {
      if (!tree.replaceData(existing, change.data)) throw tooBig(tree.maxBytes);
      existing.dirty = true;
      existing.mtimeMs = change.mtimeMs;
    }
  }
}

/** Charges a report's writes to the run's quota before any of it is applied: all or nothing. */
function chargeChanges(tree: MemoryTree, changes: readonly TreeChange[], quota: WriteQuota): void {
  let bytes = 0;
  let entries = 0;
  let first: string | undefined;
  for (const change of changes) {
    if (change.kind === "removed") continue;
    if (change.kind === "file") bytes += change.data.byteLength;
    if (tree.lookUp(splitPath(change.path)) === undefined) entries++;
    first ??= change.path;
  }
  try {
    quota.charge(bytes, entries, "write", first);
  } catch (error) {
    // The task wrote past the run's quota: its failure, not the runtime's.
    throw new TaskError(`${(error as Error).message}; nothing was saved`);
  }
}

/** The report as changes, or the refusal that names what was wrong with it. */
function checkChanges(report: unknown, grants: readonly Grant[]): TreeChange[] {
  if (!Array.isArray(report) || report.length > MAX_CHANGES) {
    throw new PermissionDeniedError(
      "the sandbox's report of changed files was malformed; nothing was saved",
    );
  }
  const writable = grants.filter((grant) => grant.mode === "rw").map((grant) => grant.hostPath);
  return report.map((value: unknown): TreeChange => {
    const change = (typeof value === "object" && value !== null ? value : {}) as Record<
      string,
      unknown
    >;
    const path = change.path;
    if (typeof path !== "string" || !isCanonical(path)) {
      throw refused(String(path), "not a canonical absolute path");
    }
    if (!writable.some((root) => path !== root && isInside(path, root))) {
      throw refused(path, "outside the task's writable allowed files");
    }
    if (change.kind === "removed" || change.kind === "directory")
      return { kind: change.kind, path };
    if (change.kind === "file" && change.data instanceof Uint8Array) {
      const mtimeMs = typeof change.mtimeMs === "number" && Number.isFinite(change.mtimeMs);
      return {
        kind: "file",
        path,
        data: change.data,
        mtimeMs: mtimeMs ? (change.mtimeMs as number) : Date.now(),
      };
    }
    throw refused(path, "not a file, a directory or a removal");
  });
}

function isCanonical(path: string): boolean {
  if (!path.startsWith("/") || path.includes("\0")) return false;
  return path
    .slice(1)
    .split("/")
    .every((segment) => segment !== "" && segment !== "." && segment !== "..");
}

function refused(path: string, why: string): PermissionDeniedError {
  return new PermissionDeniedError(
    `the sandbox reported a change to ${JSON.stringify(path)}: ${why}; nothing was saved`,
  );
}

function tooBig(maxBytes: number): FileSystemError {
  return new FileSystemError(
    "EFBIG",
    "open",
    undefined,
    `the granted directories would hold more than ${maxBytes} bytes`,
  );
}

function loadedFile(data: Uint8Array, mtimeMs: number): FileNode {
  return { kind: "file", data, mtimeMs, birthtimeMs: mtimeMs, dirty: false };
}

function prefix(hostPath: string): string {
  return hostPath === "/" ? "" : hostPath;
}

function walk(dir: DirectoryNode, path: string, into: TreeEntry[]) {
  for (const [name, child] of dir.children) {
    const childPath = `${path}/${name}`;
    if (child.kind === "directory") {
      into.push({ kind: "directory", path: childPath });
      walk(child, childPath, into);
    } else {
      into.push({ kind: "file", path: childPath, data: child.data, mtimeMs: child.mtimeMs });
    }
  }
}
