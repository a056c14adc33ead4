import { describe, expect, it } from "vitest";
import { FileSystemError, type Grant, type ResolvedPath } from "../host.ts";
import { createMemoryFileSystem, MemoryTree } from "./memory-tree.ts";
import { meterWrites, newWriteCounts, WriteQuota } from "./quota.ts";

const grant: Grant = { guestPath: "/data", hostPath: "/data", mode: "rw", source: "allowedFiles" };
const at = (relative: string): ResolvedPath => ({
  grant,
  relative,
  guestPath: `/data/${relative}`,
});
const bytes = (text: string) => new TextEncoder().encode(text);

function metered(limits: { writeBytes: number; writeFiles: number }) {
  const tree = new MemoryTree();
  tree.ensureDirectory(["data"]);
  const quota = new WriteQuota(limits);
  return { tree, quota, files: meterWrites(createMemoryFileSystem(tree), quota) };
}

function enospc(run: () => unknown): FileSystemError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(FileSystemError);
    expect((error as FileSystemError).code).toBe("ENOSPC");
    return error as FileSystemError;
  }
  throw new Error("expected ENOSPC");
}

describe("the write quota", () => {
  it("refuses a write that would cross it whole, and names the limit", () => {
    const { files, quota } = metered({ writeBytes: 10, writeFiles: 10 });
    files.writeFile(at("a"), bytes("12345678"), "w");
    const error = enospc(() => files.writeFile(at("a"), bytes("123"), "a"));
    expect(error.message).toMatch(/write quota of 10B is used up .*limits\.writeBytes/);
    expect(new TextDecoder().decode(files.readFile(at("a")))).toBe("12345678");
    expect([quota.bytesWritten, quota.entriesCreated]).toEqual([8, 1]);
  });

  it("gives back what a failed call was charged", () => {
    const { files, quota } = metered({ writeBytes: 100, writeFiles: 100 });
    expect(() => files.writeFile(at("missing/a"), bytes("123"), "w")).toThrow(FileSystemError);
    expect([quota.bytesWritten, quota.entriesCreated]).toEqual([0, 0]);
  });

  it("counts entries: files, each directory mkdir -p makes, none for one that exists", () => {
    const { files, quota } = metered({ writeBytes: 100, writeFiles: 4 });
    files.mkdir(at("a/b/c"), true);
    expect(quota.entriesCreated).toBe(3);
    files.mkdir(at("a/b/c"), true);
    files.writeFile(at("a/f"), bytes(""), "w");
    files.writeFile(at("a/f"), bytes(""), "w");
    expect(quota.entriesCreated).toBe(4);
    enospc(() => files.open(at("a/g"), "w"));
    enospc(() => files.mkdir(at("a/b/c/d"), false));
  });

  it("charges copies their bytes, writes past the end their gap, and renames nothing", () => {
    const { files, quota } = metered({ writeBytes: 1000, writeFiles: 10 });
    files.writeFile(at("src"), bytes("x".repeat(300)), "w");
    files.copyFile(at("src"), at("copy"), false);
    expect(quota.bytesWritten).toBe(600);
    files.rename(at("copy"), at("moved"));
    expect(quota.bytesWritten).toBe(600);
    const fd = files.open(at("sparse"), "w");
    enospc(() => files.write(fd, bytes("y"), 500));
    files.write(fd, bytes("y"), 300);
    expect(quota.bytesWritten).toBe(901);
  });

  it("is one count for every thread that shares the run's buffer", () => {
    const counts = newWriteCounts();
    const one = new WriteQuota({ writeBytes: 10, writeFiles: 10 }, counts);
    const other = new WriteQuota({ writeBytes: 10, writeFiles: 10 }, counts);
    one.charge(6, 1, "open", "/data/a");
    expect(() => other.charge(6, 1, "open", "/data/b")).toThrow(/ENOSPC/);
    other.charge(4, 1, "open", "/data/b");
    expect([one.bytesWritten, one.entriesCreated]).toEqual([10, 2]);
  });

  it("settles a copy's writes with the owner, all or nothing", () => {
    const owner = new WriteQuota({ writeBytes: 10, writeFiles: 10 });
    expect(owner.settle(6, 1)).toEqual({ fits: true, bytes: 6, entries: 1 });
    expect(owner.settle(6, 1)).toEqual({ fits: false, bytes: 6, entries: 1 });
  });
});
