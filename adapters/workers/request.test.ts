// The Workers request parser against hostile bodies: every one is either a request or a 400
// (BadRequestError) that names the limit, never a stack overflow, and the work done on `files`
// grows with the body, not with its square.
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { RequestFileTree } from "./files.ts";
import { BadRequestError, parseRunRequest, REQUEST_FILE_LIMITS } from "./request.ts";

const MAX_BYTES = 16 * 1024 * 1024;

const refusal = (body: unknown): string => {
  try {
    parseRunRequest(body, MAX_BYTES);
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return (error as Error).message;
  }
  throw new Error("the request was accepted");
};

describe("limits on files", () => {
  it("refuses a path of 80,000 segments naming the depth limit", () => {
    const path = Array(80_000).fill("a").join("/");
    const message = refusal({ code: "", files: { [path]: "x" } });
    expect(message).toContain("path depth limit");
    expect(message).toContain(`over the limit of ${REQUEST_FILE_LIMITS.depth}`);
    expect(message.length).toBeLessThan(400);
  });

  it("refuses a path one segment past the depth limit, and takes one at it", () => {
    const at = Array(REQUEST_FILE_LIMITS.depth).fill("d").join("/");
    expect(parseRunRequest({ code: "", files: { [at]: "x" } }, MAX_BYTES).files.size).toBe(1);
    expect(refusal({ code: "", files: { [`${at}/d`]: "x" } })).toContain("path depth limit");
  });

  it("refuses more entries than the limit", () => {
    const files = Object.fromEntries(
      Array.from({ length: REQUEST_FILE_LIMITS.entries + 1 }, (_, i) => [`f${i}`, ""]),
    );
    expect(refusal({ code: "", files })).toContain(
      `over the limit of ${REQUEST_FILE_LIMITS.entries} files per request`,
    );
  });

  it("refuses a name over 255 bytes (counted in UTF-8) and a path over 4096 characters", () => {
    expect(refusal({ code: "", files: { [`data/${"é".repeat(128)}`]: "x" } })).toContain(
      "a name of 256 bytes, over the limit of 255 bytes per name",
    );
    expect(
      parseRunRequest({ code: "", files: { ["n".repeat(255)]: "" } }, MAX_BYTES).files.size,
    ).toBe(1);
    const long = Array(40).fill("x".repeat(120)).join("/");
    expect(refusal({ code: "", files: { [long]: "x" } })).toContain(
      "over the limit of 4096 per path",
    );
  });

  it("refuses a file that another entry runs through, in either order, without recursion", () => {
    const deep = Array(REQUEST_FILE_LIMITS.depth).fill("a").join("/");
    expect(refusal({ code: "", files: { a: "x", [deep]: "y" } })).toContain(
      `"a" is a file, so "a/a/a/a/a/a/a`,
    );
    expect(refusal({ code: "", files: { [deep]: "y", "a/a": "x" } })).toMatch(
      /^files: "a\/a" is a file, so "a\/a\/a/,
    );
  });

  it("refuses more path segments in all than the limit", () => {
    const { depth, segments } = REQUEST_FILE_LIMITS;
    const deepPath = (i: number) => `${i}/${"s/".repeat(depth - 2)}s`;
    const files: Record<string, string> = {};
    for (let i = 0; i <= segments / depth; i++) files[deepPath(i)] = "";
    expect(refusal({ code: "", files })).toContain(`more than ${segments} path segments in all`);
  });

  it("a body at every limit does work in proportion to its segments", () => {
    // As many 64-segment paths as the total allows: each segment is visited a bounded number of times.
    const { depth } = REQUEST_FILE_LIMITS;
    const count = Math.floor(REQUEST_FILE_LIMITS.segments / depth);
    const files: Record<string, string> = {};
    for (let i = 0; i < count; i++) files[`${i}/${"s/".repeat(depth - 2)}s`] = "";
    const segments = count * depth;
    const body = JSON.stringify({ code: "", files });
    new RequestFileTree(parseRunRequest(JSON.parse(body), MAX_BYTES).files, MAX_BYTES).changes();
    const gets = vi.spyOn(Map.prototype, "get");
    const joins = vi.spyOn(Array.prototype, "join");
    try {
      const request = parseRunRequest(JSON.parse(body), MAX_BYTES);
      expect(gets.mock.calls.length).toBeLessThanOrEqual(segments);
      // The quadratic check joined every parent path of every entry.
      expect(joins.mock.calls.length).toBe(0);
      expect(request.files.size).toBe(count);
    } finally {
      gets.mockRestore();
      joins.mockRestore();
    }
  });
});

describe("the files a response returns", () => {
  it("are listed from a tree nested 100,000 deep without exhausting the stack", () => {
    // A task can nest directories past any stack by renaming a deep chain into another.
    const files = new RequestFileTree(new Map([["data/keep.txt", new Uint8Array([1])]]), MAX_BYTES);
    const deep = files.tree.ensureDirectory(["data", ...Array(100_000).fill("d")]);
    const now = Date.now();
    const node = {
      kind: "file" as const,
      data: new Uint8Array([2]),
      mtimeMs: now,
      birthtimeMs: now,
      dirty: true,
    };
    expect(files.tree.admit(node)).toBe(true);
    deep?.children.set("f.txt", node);
    const changed = Object.keys(files.changes());
    expect(changed).toHaveLength(1);
    expect(changed[0]?.split("/")).toHaveLength(100_002);
    const data = files.tree.lookUp(["data"]);
    if (data === undefined) throw new Error("no data directory");
    expect(files.tree.bytes).toBe(2);
    files.tree.release(data);
    expect(files.tree.bytes).toBe(0);
  });
});

describe("values shown in messages", () => {
  it("describes a value nested a million deep without exhausting the stack", () => {
    let nested: unknown = "x";
    for (let i = 0; i < 1_000_000; i++) nested = [nested];
    expect(refusal({ code: "", args: nested })).toMatch(
      /^args: expected an array of strings, got \[\[\[/,
    );
    expect(refusal({ code: nested })).toContain("code: expected");
    expect(refusal({ code: "", files: { a: nested } })).toContain('files["a"]');
  });

  it("cuts long keys and values", () => {
    const key = "k".repeat(1_000_000);
    expect(refusal({ code: "", [key]: 1 }).length).toBeLessThan(300);
    expect(refusal({ code: "", env: { [key]: 1 } }).length).toBeLessThan(300);
  });
});

describe("any files object", () => {
  const segment = fc.constantFrom("a", "b", ".", "..", "", "é", "x\\y", "n".repeat(256));
  const path = fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join("/"));

  it("is a request whose paths agree with a model, or a BadRequestError", () => {
    fc.assert(
      fc.property(fc.dictionary(path, fc.string({ maxLength: 4 }), { maxKeys: 8 }), (files) => {
        const paths = Object.keys(files);
        const valid = paths.every((p) =>
          p
            .split("/")
            .every(
              (s) => s !== "" && s !== "." && s !== ".." && !s.includes("\\") && s.length <= 255,
            ),
        );
        const clash = paths.some((p) => paths.some((q) => q.startsWith(`${p}/`)));
        let accepted: boolean;
        try {
          const request = parseRunRequest({ code: "", files }, MAX_BYTES);
          expect([...request.files.keys()].sort()).toEqual(paths.sort());
          accepted = true;
        } catch (error) {
          expect(error).toBeInstanceOf(BadRequestError);
          accepted = false;
        }
        expect(accepted).toBe(valid && !clash);
      }),
      { numRuns: 500 },
    );
  });
});
