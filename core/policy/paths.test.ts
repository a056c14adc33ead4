import { posix } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AllowedFile } from "../config/options.ts";
import { configError } from "../testing/config-error.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import {
  type Grant,
  grantsFromAllowedFiles,
  isInside,
  isPolicyDenial,
  mergeGrants,
  resolveGuestPath,
  virtualDirectoryEntries,
} from "./paths.ts";

const grant = (guestPath: string, mode: "ro" | "rw" = "rw", source: Grant["source"] = "mount") => ({
  guestPath,
  hostPath: `/host${guestPath === "/" ? "" : guestPath}`,
  mode,
  source,
});

const data = grant("/data", "rw", "allowedFiles");
const logs = grant("/logs", "ro", "allowedFiles");
const rawInData = grant("/data/raw", "ro", "allowedFiles");
const nested = grant("/project/data");
const grants = [data, logs, rawInData, nested];

describe("resolveGuestPath", () => {
  it.each([
    ["/data", "/", data, ""],
    ["/data/", "/", data, ""],
    ["/data/x.txt", "/", data, "x.txt"],
    ["/data//a/./b/../c.txt", "/", data, "a/c.txt"],
    ["/data/raw/../x", "/", data, "x"],
    ["/data/raw", "/", rawInData, ""],
    ["/data/raw/2024/a.csv", "/", rawInData, "2024/a.csv"],
    ["/data/rawer", "/", data, "rawer"],
    ["/../data/x", "/", data, "x"],
    ["/logs/../data/x", "/", data, "x"],
    ["./data/x.txt", "/", data, "x.txt"],
    ["data/x.txt", "/", data, "x.txt"],
    ["x.txt", "/data", data, "x.txt"],
    ["../logs/a", "/data", logs, "a"],
    ["..", "/data/raw", data, ""],
    ["/project/data/f", "/", nested, "f"],
    ["/data/..../x", "/", data, "..../x"],
    ["/data/...", "/", data, "..."],
  ])("%j from %j is in %j as %j", (path, cwd, expectedGrant, relative) => {
    expect(resolveGuestPath(path, cwd, grants)).toEqual({ grant: expectedGrant, relative });
  });

  it.each([
    [
      "/data/../etc/passwd",
      "EACCES",
      '"/data/../etc/passwd" (/etc/passwd) is outside every allowed directory: /data (rw), /logs (ro), /data/raw (ro), /project/data (rw)',
    ],
    ["/", "EACCES", "is outside every allowed directory"],
    ["/project", "EACCES", "is outside every allowed directory"],
    ["/dat", "EACCES", "is outside every allowed directory"],
    ["../../etc", "EACCES", "(/etc) is outside"],
    ["", "ENOENT", "the path is empty"],
    ["/data/a\0b", "EINVAL", "contains a NUL byte"],
    ["/data/..\\..\\etc", "EINVAL", 'guest paths use "/" as the separator'],
  ])("refuses %j with %s", (path, code, reason) => {
    const result = resolveGuestPath(path, "/", grants);
    expect(result).toMatchObject({ denied: code });
    expect(isPolicyDenial(result) && result.reason).toContain(reason);
  });

  it("refuses writes through a read-only grant, reads pass", () => {
    expect(resolveGuestPath("/logs/app.log", "/", grants, "write")).toEqual({
      denied: "EROFS",
      reason: '"/logs/app.log" is in /logs, which is read-only',
    });
    expect(resolveGuestPath("/data/raw/a", "/", grants, "write")).toMatchObject({
      denied: "EROFS",
    });
    expect(resolveGuestPath("/logs/app.log", "/", grants, "read")).toEqual({
      grant: logs,
      relative: "app.log",
    });
    expect(resolveGuestPath("/data/out.txt", "/", grants, "write")).toEqual({
      grant: data,
      relative: "out.txt",
    });
  });

  it("says when a task has no file access at all", () => {
    expect(resolveGuestPath("/data/x", "/", [])).toEqual({
      denied: "EACCES",
      reason:
        '"/data/x" is not accessible: this task has no file access (grant it with allowedFiles or a mount)',
    });
  });

  it("treats a bad working directory as a programming error", () => {
    expect(() => resolveGuestPath("x", "data", grants)).toThrow(TypeError);
  });

  const segment = fc.oneof(
    fc.constantFrom("..", ".", "", "data", "raw", "logs", "project", "...", "a b", "%2e%2e"),
    fc.string({ unit: fc.constantFrom("a", ".", "/", "-"), maxLength: 6 }),
  );
  const guestPath = fc
    .tuple(fc.boolean(), fc.array(segment, { maxLength: 8 }))
    .map(([absolute, segments]) => `${absolute ? "/" : ""}${segments.join("/")}`);
  const cwd = fc.constantFrom("/", "/data", "/data/raw", "/logs/x/..", "/project");

  it("never returns a relative path that escapes or is absolute, and stays inside its grant", () => {
    fc.assert(
      fc.property(guestPath, cwd, (path, workingDirectory) => {
        const result = resolveGuestPath(path, workingDirectory, grants);
        if (isPolicyDenial(result)) return;
        const { grant: found, relative } = result;
        expect(relative.startsWith("/")).toBe(false);
        if (relative !== "") {
          for (const part of relative.split("/")) {
            expect(["", ".", ".."]).not.toContain(part);
          }
        }
        // The grant is the longest one holding the normalised path.
        const full = found.guestPath === "/" ? `/${relative}` : `${found.guestPath}/${relative}`;
        const holders = grants.filter(
          (g) => full.replace(/\/$/, "") === g.guestPath || full.startsWith(`${g.guestPath}/`),
        );
        const longest = Math.max(...holders.map((g) => g.guestPath.length));
        expect(found.guestPath.length).toBe(longest);
      }),
      { numRuns: fuzzRuns(1000) },
    );
  });

  it("never lets a path with .. reach a grant it does not lexically name", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("..", "x", "."), { maxLength: 6 }), (segments) => {
        const result = resolveGuestPath(`/data/${segments.join("/")}`, "/", [data]);
        const stack: string[] = ["data"];
        for (const part of segments) {
          if (part === "..") stack.pop();
          else if (part !== ".") stack.push(part);
        }
        expect(isPolicyDenial(result)).toBe(stack[0] !== "data");
      }),
      { numRuns: fuzzRuns(100) },
    );
  });
});

describe("resolveGuestPath on any path text", () => {
  /** Any code unit, with the ones that mean something to paths made common. */
  const pathUnit = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom("a", "b", ".", "/", "..", "./", "../") },
    fc.constantFrom("\\", "\0", "%2e", "%2f", "\u2025", "\uff0e", "\u2215", " ", "~", ":"),
    fc.integer({ min: 0, max: 0x10ffff }).map((codePoint) => String.fromCodePoint(codePoint)),
    fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)),
  );
  const anyPath = fc.oneof(
    fc.string({ unit: pathUnit, maxLength: 16 }),
    fc
      .array(fc.oneof(fc.constantFrom("..", ".", "", "data", "raw"), fc.string({ unit: pathUnit })))
      .map((segments) => segments.join("/")),
  );
  /** A grant's directory: names with no NUL or "\\" (those never reach a grant), Unicode allowed. */
  const name = fc.oneof(
    fc.constantFrom("data", "raw", "logs", "..."),
    fc
      .string({ unit: pathUnit, minLength: 1, maxLength: 4 })
      .filter((text) => !/[\0\\/]/.test(text) && text !== "." && text !== ".."),
  );
  const directory = fc.array(name, { maxLength: 3 }).map((names) => `/${names.join("/")}`);
  const grantsArbitrary = fc.uniqueArray(
    fc.record({
      guestPath: directory,
      hostPath: fc.constantFrom("/srv/a", "/srv/b/", "C:\\proj"),
      mode: fc.constantFrom("ro" as const, "rw" as const),
      source: fc.constantFrom("allowedFiles" as const, "mount" as const),
    }),
    { selector: (g) => g.guestPath, maxLength: 4 },
  );
  /** A working directory: absolute, maybe with "." and ".." that resolve lexically. */
  const workingDirectory = fc
    .array(fc.oneof(name, fc.constantFrom(".", "..", "")), { maxLength: 4 })
    .map((names) => `/${names.join("/")}`);

  const isUnder = (path: string, directoryPath: string) =>
    directoryPath === "/" || path === directoryPath || path.startsWith(`${directoryPath}/`);

  it("a resolved path is always inside its grant's directory, on the guest and on the host", () => {
    fc.assert(
      fc.property(
        anyPath,
        workingDirectory,
        grantsArbitrary,
        fc.constantFrom("read" as const, "write" as const),
        (path, cwd, grants, access) => {
          const result = resolveGuestPath(path, cwd, grants, access);
          if (path === "" || path.includes("\0") || path.includes("\\")) {
            expect(isPolicyDenial(result)).toBe(true);
            return;
          }
          // A lone surrogate cannot be a file name anywhere (see "names no store can hold").
          if (new TextDecoder().decode(new TextEncoder().encode(path)) !== path) {
            expect(result).toMatchObject({ denied: "EINVAL" });
            return;
          }
          // POSIX resolution is the judge of where a path leads; ".." at "/" stays at "/".
          const target = posix.resolve(cwd, path);
          const holders = grants.filter((g) => isUnder(target, g.guestPath));
          const longest = holders.sort((a, b) => b.guestPath.length - a.guestPath.length)[0];
          if (isPolicyDenial(result)) {
            if (longest === undefined) expect(result.denied).toBe("EACCES");
            else expect([result.denied, access, longest.mode]).toEqual(["EROFS", "write", "ro"]);
            return;
          }
          const { grant, relative } = result;
          expect(grant).toBe(longest);
          expect(posix.join(grant.guestPath, relative)).toBe(target);
          expect(relative.startsWith("/")).toBe(false);
          if (relative !== "") {
            for (const part of relative.split("/")) expect(["", ".", ".."]).not.toContain(part);
          }
          expect(relative).not.toMatch(/[\0\\]/);
          // On the host, the path joined under the grant's directory stays under it.
          const hostRoot = posix.normalize(grant.hostPath.replaceAll("\\", "/"));
          const onHost = posix.join(hostRoot, relative);
          expect(posix.relative(hostRoot, onHost).split("/")).not.toContain("..");
          if (access === "write") expect(grant.mode).toBe("rw");
        },
      ),
      { numRuns: fuzzRuns(1000) },
    );
  });
});

describe("virtualDirectoryEntries", () => {
  it("lists the directories that lead to grants", () => {
    expect(virtualDirectoryEntries("/", "/", grants)).toEqual(["data", "logs", "project"]);
    expect(virtualDirectoryEntries("/project", "/", grants)).toEqual(["data"]);
    expect(virtualDirectoryEntries("/data", "/", grants)).toEqual(["raw"]);
    expect(virtualDirectoryEntries("/etc", "/", grants)).toBeNull();
    expect(virtualDirectoryEntries("/project/data", "/", grants)).toBeNull();
  });
});

describe("grantsFromAllowedFiles", () => {
  const entry = (path: string, mode: "ro" | "rw" = "rw"): AllowedFile => ({ path, mode });

  it("maps project-relative directories to the same place under the guest root", () => {
    expect(
      grantsFromAllowedFiles(
        [entry("./data"), entry("logs/", "ro"), entry("a/./b/../c"), entry(".")],
        "/home/me/proj/",
      ),
    ).toEqual([
      { guestPath: "/data", hostPath: "/home/me/proj/data", mode: "rw", source: "allowedFiles" },
      { guestPath: "/logs", hostPath: "/home/me/proj/logs", mode: "ro", source: "allowedFiles" },
      { guestPath: "/a/c", hostPath: "/home/me/proj/a/c", mode: "rw", source: "allowedFiles" },
      { guestPath: "/", hostPath: "/home/me/proj/", mode: "rw", source: "allowedFiles" },
    ]);
    expect(grantsFromAllowedFiles([entry("data")], "/")[0]?.hostPath).toBe("/data");
    expect(grantsFromAllowedFiles([entry("data")], "C:\\proj")[0]?.hostPath).toBe("C:\\proj/data");
  });

  it("keeps one grant for a directory given twice with one mode", () => {
    expect(grantsFromAllowedFiles([entry("./data"), entry("data/")], "/p")).toHaveLength(1);
  });

  it.each([
    ["/etc", 'allowed_files[0]: "/etc" is an absolute path'],
    ["C:/data", "is an absolute path"],
    ["~/data", "is an absolute path"],
    ["..", 'allowed_files[0]: ".." leads out of the project root'],
    ["./data/../../x", "leads out of the project root"],
    ["a/../../b", "leads out of the project root"],
    ["data\\raw", 'contains "\\"; write paths with "/"'],
    ["da\0ta", "contains a NUL byte"],
  ])("refuses %j", (path, message) => {
    expect(
      configError(() => grantsFromAllowedFiles([entry(path)], "/p", "allowed_files")).message,
    ).toContain(message);
  });

  it("refuses one directory given twice with two modes", () => {
    expect(
      configError(() => grantsFromAllowedFiles([entry("./data", "ro"), entry("data/")], "/p"))
        .message,
    ).toBe(
      'allowedFiles[1]: "data/" (rw) names the same directory as allowedFiles[0] "./data" (ro); give it once, with one mode',
    );
  });
});

describe("mergeGrants", () => {
  it("leaves out a mount at or inside an allowedFiles directory", () => {
    const readOnlyData = grant("/data", "ro", "allowedFiles");
    const merged = mergeGrants(
      [readOnlyData],
      [grant("/data", "rw"), grant("/data/sub", "rw"), grant("/models", "ro")],
    );
    expect(merged).toEqual([readOnlyData, grant("/models", "ro")]);
    expect(resolveGuestPath("/data/sub/x", "/", merged, "write")).toMatchObject({
      denied: "EROFS",
    });
  });

  it("keeps a mount above an allowedFiles directory, which still decides inside it", () => {
    const readOnlyData = grant("/data", "ro", "allowedFiles");
    const root = grant("/", "rw");
    const merged = mergeGrants([readOnlyData], [root]);
    expect(resolveGuestPath("/other/x", "/", merged, "write")).toEqual({
      grant: root,
      relative: "other/x",
    });
    expect(resolveGuestPath("/data/x", "/", merged, "write")).toMatchObject({ denied: "EROFS" });
  });

  it("drops a repeated mount and refuses two different mounts at one guest path", () => {
    expect(mergeGrants([], [grant("/m"), grant("/m")])).toEqual([grant("/m")]);
    expect(
      configError(() => mergeGrants([], [grant("/m"), { ...grant("/m"), hostPath: "/elsewhere" }]))
        .message,
    ).toBe(
      'mounts: "/host/m" (rw) and "/elsewhere" (rw) are both mounted at /m; give each its own guest path',
    );
  });

  it("never changes what a path covered by allowedFiles resolves to", () => {
    const dir = fc
      .array(fc.constantFrom("a", "b", "c"), { maxLength: 3 })
      .map((segments) => `/${segments.join("/")}`);
    const grantOf = (source: Grant["source"]) =>
      fc.record({
        guestPath: dir,
        hostPath: fc.constantFrom("/h1", "/h2"),
        mode: fc.constantFrom("ro" as const, "rw" as const),
        source: fc.constant(source),
      });
    fc.assert(
      fc.property(
        fc.uniqueArray(grantOf("allowedFiles"), { selector: (g) => g.guestPath, maxLength: 3 }),
        fc.uniqueArray(grantOf("mount"), { selector: (g) => g.guestPath, maxLength: 3 }),
        dir,
        fc.constantFrom("read" as const, "write" as const),
        (allowed, mounts, path, access) => {
          const before = resolveGuestPath(path, "/", allowed, access);
          const after = resolveGuestPath(path, "/", mergeGrants(allowed, mounts), access);
          const covered = !isPolicyDenial(before) || before.denied === "EROFS";
          if (covered) expect(after).toEqual(before);
        },
      ),
      { numRuns: fuzzRuns(100) },
    );
  });
});

describe("isInside", () => {
  const name = fc.stringMatching(/^[a-z.]{1,4}$/).filter((n) => n !== "." && n !== "..");
  const path = fc.array(name, { maxLength: 4 }).map((names) => `/${names.join("/")}`);

  it("holds for a path and everything below it, and for nothing beside it", () => {
    fc.assert(
      fc.property(path, fc.array(name, { maxLength: 3 }), name, (root, below, sibling) => {
        const inner = [root, ...below].join("/").replace(/\/+/g, "/");
        expect(isInside(inner, root)).toBe(true);
        // A name that merely starts like the root's last name is not inside it.
        const beside = `${root === "/" ? "" : root}x${sibling}`;
        expect(isInside(beside, root)).toBe(root === "/");
      }),
      { numRuns: fuzzRuns(100) },
    );
    expect(isInside("/data", "/")).toBe(true);
    expect(isInside("/database", "/data")).toBe(false);
    expect(isInside("/data", "/data/raw")).toBe(false);
  });
});

describe("names no store can hold", () => {
  it.each([
    ["/data/\uD800", "a lone high surrogate"],
    ["/data/x\uDC00y", "a lone low surrogate"],
    ["/data/\uDC00\uD800", "a pair in the wrong order"],
    ["/data/dir\uDBFF/file", "a lone surrogate in a directory name"],
  ])("%j (%s) is EINVAL, for reading and writing alike", (path) => {
    for (const access of ["read", "write"] as const) {
      const denial = resolveGuestPath(path, "/", grants, access);
      expect(denial).toMatchObject({ denied: "EINVAL" });
      expect((denial as { reason: string }).reason).toMatch(/lone UTF-16 surrogate/);
    }
  });

  it("keeps well-formed pairs and U+FFFD apart: two names, two files", () => {
    expect(resolveGuestPath("/data/\uD83D\uDE00", "/", grants, "write")).toEqual({
      grant: data,
      relative: "\uD83D\uDE00",
    });
    expect(resolveGuestPath("/data/\uFFFD", "/", grants, "write")).toEqual({
      grant: data,
      relative: "\uFFFD",
    });
  });
});
