import { describe, expect, it } from "vitest";
import type { Grant, ResolvedPath } from "../host.ts";
import { createMemoryFileSystem, MemoryTree } from "./memory-tree.ts";

const rw: Grant = { guestPath: "/out", hostPath: "/out", mode: "rw", source: "allowedFiles" };
const ro: Grant = { guestPath: "/data", hostPath: "/data", mode: "ro", source: "allowedFiles" };
const at = (grant: Grant, relative: string): ResolvedPath => ({
  grant,
  relative,
  guestPath: `${grant.guestPath}/${relative}`,
});
const bytes = (n: number) => new Uint8Array(n).fill(7);

function setUp(maxBytes = 100) {
  const tree = new MemoryTree({ maxBytes });
  tree.ensureDirectory(["out"]);
  tree.ensureDirectory(["data"]);
  return { tree, fs: createMemoryFileSystem(tree) };
}

describe("MemoryTree byte cap", () => {
  it("refuses a write past the cap with EFBIG and leaves the file as it was", () => {
    const { tree, fs } = setUp();
    fs.writeFile(at(rw, "a"), bytes(60), "w");
    expect(() => fs.writeFile(at(rw, "a"), bytes(50), "a")).toThrow(/EFBIG/);
    expect(fs.readFile(at(rw, "a"))).toHaveLength(60);
    expect(tree.bytes).toBe(60);
  });

  it("counts what unlink, rm -r, truncation and a rename over a file give back", () => {
    const { tree, fs } = setUp();
    fs.writeFile(at(rw, "a"), bytes(40), "w");
    fs.writeFile(at(rw, "b"), bytes(30), "w");
    fs.rename(at(rw, "a"), at(rw, "b"));
    expect(tree.bytes).toBe(40);
    fs.mkdir(at(rw, "d/e"), true);
    fs.writeFile(at(rw, "d/e/f"), bytes(50), "w");
    fs.rm(at(rw, "d"), { recursive: true, force: false });
    expect(tree.bytes).toBe(40);
    fs.close(fs.open(at(rw, "b"), "w"));
    expect(tree.bytes).toBe(0);
    fs.writeFile(at(rw, "c"), bytes(100), "w");
    fs.unlink(at(rw, "c"));
    expect(tree.bytes).toBe(0);
  });

  it("grows a file written through a handle only within the cap", () => {
    const { tree, fs } = setUp();
    const fd = fs.open(at(rw, "log"), "a");
    expect(fs.write(fd, bytes(70), null)).toBe(70);
    expect(() => fs.write(fd, bytes(31), null)).toThrow(/EFBIG/);
    expect(fs.write(fd, bytes(30), null)).toBe(30);
    expect(tree.bytes).toBe(100);
  });
});

describe("createMemoryFileSystem", () => {
  it("refuses writes under a read-only grant with EROFS", () => {
    const { fs } = setUp();
    expect(() => fs.writeFile(at(ro, "x"), bytes(1), "w")).toThrow(/EROFS/);
    expect(() => fs.open(at(ro, "x"), "w")).toThrow(/EROFS/);
  });

  it("marks written files dirty and leaves admitted ones clean", () => {
    const { tree, fs } = setUp();
    const seeded = {
      kind: "file" as const,
      data: bytes(3),
      mtimeMs: 0,
      birthtimeMs: 0,
      dirty: false,
    };
    tree.ensureDirectory(["data"])?.children.set("in", seeded);
    expect(tree.admit(seeded)).toBe(true);
    fs.writeFile(at(rw, "new"), bytes(2), "w");
    const dirty = Object.fromEntries([...tree.files()].map(([path, node]) => [path, node.dirty]));
    expect(dirty).toEqual({ "/data/in": false, "/out/new": true });
  });

  it("says why when a task asks for a symbolic link", () => {
    const tree = new MemoryTree();
    tree.ensureDirectory(["out"]);
    const fs = createMemoryFileSystem(tree);
    expect(() => fs.symlink("/out/a", at(rw, "b"))).toThrow(
      "EINVAL: symbolic links are not available on this host, symlink '/out/b'",
    );
  });
});
