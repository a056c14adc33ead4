import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PermissionDeniedError, TaskError } from "../errors.ts";
import { FileSystemError, type Grant } from "../host.ts";
import { splitPath } from "../policy/paths.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import { applyChanges, LoadedTree, type TreeEntry } from "./loaded-tree.ts";
import type { FileNode } from "./memory-tree.ts";
import { WriteQuota } from "./quota.ts";

const GRANTS: Grant[] = [
  { guestPath: "/out", hostPath: "/out", mode: "rw", source: "allowedFiles" },
  { guestPath: "/in", hostPath: "/in", mode: "ro", source: "allowedFiles" },
];
const GRANTED = ["/out", "/in"];
const bytes = (text: string) => new TextEncoder().encode(text);

/** What a tree holds, comparable: paths in order, files as text. */
function contents(tree: LoadedTree) {
  return tree
    .entries()
    .map((entry) =>
      entry.kind === "file"
        ? { path: entry.path, text: new TextDecoder().decode(entry.data) }
        : { path: entry.path },
    )
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

type Op =
  | { op: "write"; path: string; text: string }
  | { op: "remove"; path: string }
  | { op: "mkdir"; path: string };

/** What a file system does to the tree, without the policy: writes, removals, new directories. */
function perform(tree: LoadedTree, op: Op) {
  const segments = splitPath(op.path);
  if (op.op === "mkdir") {
    tree.ensureDirectory(segments);
    return;
  }
  const name = segments.pop() as string;
  const parent = op.op === "write" ? tree.ensureDirectory(segments) : tree.lookUp(segments);
  if (parent?.kind !== "directory") return;
  const existing = parent.children.get(name);
  if (op.op === "remove") {
    if (existing) {
      parent.children.delete(name);
      tree.release(existing);
    }
  } else if (existing?.kind === "file") {
    tree.replaceData(existing, bytes(op.text));
    existing.dirty = true;
  } else if (existing === undefined) {
    const node: FileNode = {
      kind: "file",
      data: bytes(op.text),
      mtimeMs: 1,
      birthtimeMs: 1,
      dirty: true,
    };
    tree.admit(node);
    parent.children.set(name, node);
  }
}

const outPath = fc
  .array(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 3 })
  .map((segments) => `/out/${segments.join("/")}`);
const ops = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant("write" as const), path: outPath, text: fc.string() }),
    fc.record({ op: fc.constant("remove" as const), path: outPath }),
    fc.record({ op: fc.constant("mkdir" as const), path: outPath }),
  ),
  { maxLength: 12 },
);

/** A starting tree: files and directories under both grants, as a page would copy them in. */
function seeded(setup: Op[]): TreeEntry[] {
  const tree = LoadedTree.fromEntries(GRANTED, []);
  for (const op of setup) perform(tree, op);
  perform(tree, { op: "write", path: "/in/input.txt", text: "read me" });
  return tree.entries();
}

describe("a loaded tree's changes", () => {
  it("carry a tree from what was loaded to what the task left, whatever it did", () => {
    fc.assert(
      fc.property(ops, ops, (setup, work) => {
        const entries = seeded(setup);
        const sandbox = LoadedTree.fromEntries(GRANTED, entries);
        for (const op of work) perform(sandbox, op);
        const host = LoadedTree.fromEntries(GRANTED, entries);
        applyChanges(host, structuredClone(sandbox.changes()), GRANTS);
        expect(contents(host)).toEqual(contents(sandbox));
        // Once saved, nothing is left to save.
        host.settle();
        expect(host.changes()).toEqual([]);
      }),
      { numRuns: fuzzRuns(300) },
    );
  });

  it("are none for a tree nobody touched, and name removals before what replaces them", () => {
    const tree = LoadedTree.fromEntries(GRANTED, [
      { kind: "directory", path: "/out/a" },
      { kind: "file", path: "/out/a/b", data: bytes("old"), mtimeMs: 1 },
    ]);
    expect(tree.changes()).toEqual([]);
    perform(tree, { op: "remove", path: "/out/a" });
    perform(tree, { op: "write", path: "/out/a", text: "now a file" });
    expect(tree.changes()).toEqual([
      { kind: "removed", path: "/out/a" },
      { kind: "file", path: "/out/a", data: bytes("now a file"), mtimeMs: 1 },
    ]);
  });
});

describe("a sandbox's report of changes", () => {
  const host = () =>
    LoadedTree.fromEntries(GRANTED, [
      { kind: "file", path: "/in/input.txt", data: bytes("read me"), mtimeMs: 1 },
    ]);
  const file = (path: string) => ({ kind: "file", path, data: bytes("x"), mtimeMs: 1 });

  it("is refused whole when one change reaches outside the writable grants", () => {
    for (const path of [
      "/in/input.txt",
      "/out",
      "/out/../in/input.txt",
      "/out//a",
      "/out/./a",
      "out/a",
      "/elsewhere",
      "/out/a\0b",
    ]) {
      const tree = host();
      const before = contents(tree);
      expect(() => applyChanges(tree, [file("/out/fine.txt"), file(path)], GRANTS), path).toThrow(
        PermissionDeniedError,
      );
      expect(contents(tree)).toEqual(before);
    }
  });

  it("refuses whatever else a sandbox could send, and never writes outside /out", () => {
    const change = fc.oneof(
      fc.anything(),
      fc.record({
        kind: fc.oneof(fc.constantFrom("file", "directory", "removed"), fc.anything()),
        path: fc.oneof(
          outPath,
          fc.string(),
          fc.constantFrom("/in/input.txt", "/", "/out/..", "/in"),
        ),
        data: fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.string(), fc.anything()),
        mtimeMs: fc.oneof(fc.double(), fc.anything()),
      }),
    );
    fc.assert(
      fc.property(fc.oneof(fc.array(change, { maxLength: 6 }), fc.anything()), (report) => {
        const tree = host();
        const before = contents(tree);
        try {
          applyChanges(tree, report, GRANTS);
        } catch (error) {
          expect(error instanceof PermissionDeniedError || error instanceof FileSystemError).toBe(
            true,
          );
          if (error instanceof PermissionDeniedError) expect(contents(tree)).toEqual(before);
          return;
        }
        const outside = contents(tree).filter((entry) => !entry.path.startsWith("/out/"));
        expect(outside).toEqual(before.filter((entry) => !entry.path.startsWith("/out/")));
      }),
      { numRuns: fuzzRuns(500) },
    );
  });

  it("is held to the tree's byte cap", () => {
    const tree = LoadedTree.fromEntries(GRANTED, [], { maxBytes: 4 });
    expect(() =>
      applyChanges(
        tree,
        [{ kind: "file", path: "/out/big", data: bytes("12345"), mtimeMs: 1 }],
        GRANTS,
      ),
    ).toThrow(/more than 4 bytes/);
  });
});

describe("a sandbox's report against the run's write quota", () => {
  const host = () => LoadedTree.fromEntries(GRANTED, []);
  const file = (path: string, text: string) => ({
    kind: "file",
    path,
    data: bytes(text),
    mtimeMs: 1,
  });

  it("is charged on this side, whatever the sandbox counted: bytes written and entries made", () => {
    const quota = new WriteQuota({ writeBytes: 10, writeFiles: 3 });
    const tree = host();
    applyChanges(
      tree,
      [{ kind: "directory", path: "/out/d" }, file("/out/d/a", "12345")],
      GRANTS,
      quota,
    );
    expect([quota.bytesWritten, quota.entriesCreated]).toEqual([5, 2]);
    // An overwrite charges its bytes again but makes no entry.
    applyChanges(tree, [file("/out/d/a", "1234")], GRANTS, quota);
    expect([quota.bytesWritten, quota.entriesCreated]).toEqual([9, 2]);
  });

  it("past the quota is a task_error and nothing of it is applied", () => {
    const quota = new WriteQuota({ writeBytes: 10, writeFiles: 100 });
    const tree = host();
    const before = contents(tree);
    expect(() =>
      applyChanges(tree, [file("/out/a", "123456"), file("/out/b", "123456")], GRANTS, quota),
    ).toThrow(TaskError);
    expect(contents(tree)).toEqual(before);
    expect(quota.bytesWritten).toBe(0);
    const entries = new WriteQuota({ writeBytes: 100, writeFiles: 1 });
    expect(() =>
      applyChanges(tree, [file("/out/a", "1"), file("/out/b", "2")], GRANTS, entries),
    ).toThrow(/ENOSPC.*limits\.writeFiles|writeFiles/);
    expect(contents(tree)).toEqual(before);
  });
});
