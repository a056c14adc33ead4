import { posix } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createSandbox, type GuestSandbox } from "./test-context.ts";

let s: GuestSandbox;
beforeAll(async () => {
  s = await createSandbox({ processInfo: () => JSON.stringify({ env: {}, cwd: "/project/sub" }) });
  s.run(`var path = __capsule.require("path");`);
});
afterAll(() => s.dispose());

/** Calls `path[method](...args)` in the guest. */
const guest = (method: string, ...args: unknown[]) =>
  s.run(`JSON.stringify(path.${method}(...${JSON.stringify(args)}))`);
const node = (value: unknown) => JSON.stringify(value);

const segment = fc.constantFrom(
  "a",
  "bb",
  ".",
  "..",
  "...",
  "",
  ".hidden",
  "file.txt",
  "archive.tar.gz",
  "c.",
  "é ü",
  "back\\slash",
  "x..y",
);
/** "/"-joined segments, sometimes absolute, sometimes with doubled or trailing slashes. */
const pathText = fc
  .tuple(fc.boolean(), fc.array(segment, { maxLength: 6 }), fc.constantFrom("", "/", "//"))
  .map(
    ([absolute, parts, tail]) =>
      `${absolute ? "/" : ""}${parts.join("/")}${parts.length ? tail : ""}`,
  );
const pathList = fc.array(pathText, { maxLength: 4 });

describe("path matches Node's path.posix on random paths", () => {
  const runs = { numRuns: 300 };

  test.each([
    "normalize",
    "dirname",
    "basename",
    "extname",
    "parse",
    "isAbsolute",
  ])("%s", (method) => {
    fc.assert(
      fc.property(pathText, (p) => {
        const expected = (posix as unknown as Record<string, (p: string) => unknown>)[method]?.(p);
        expect(guest(method, p), p).toBe(node(expected));
      }),
      runs,
    );
  });

  test("join", () => {
    fc.assert(
      fc.property(pathList, (paths) => {
        expect(guest("join", ...paths)).toBe(node(posix.join(...paths)));
      }),
      runs,
    );
  });

  test("resolve against the guest's working directory", () => {
    fc.assert(
      fc.property(pathList, (paths) => {
        expect(guest("resolve", ...paths)).toBe(node(posix.resolve("/project/sub", ...paths)));
      }),
      runs,
    );
  });

  test("relative", () => {
    fc.assert(
      fc.property(pathText, pathText, (from, to) => {
        const expected = posix.relative(
          posix.resolve("/project/sub", from),
          posix.resolve("/project/sub", to),
        );
        expect(guest("relative", from, to), `${from} -> ${to}`).toBe(node(expected));
      }),
      runs,
    );
  });

  test("basename with a suffix", () => {
    fc.assert(
      fc.property(
        pathText,
        fc.constantFrom("", ".txt", "txt", "a", ".gz", "/", "file.txt"),
        (p, suffix) => {
          expect(guest("basename", p, suffix), `${p} ${suffix}`).toBe(
            node(posix.basename(p, suffix)),
          );
        },
      ),
      runs,
    );
  });

  test("format inverts parse, and formats partial objects like Node", () => {
    fc.assert(
      fc.property(pathText, (p) => {
        expect(s.run(`path.format(path.parse(${JSON.stringify(p)}))`)).toBe(
          posix.format(posix.parse(p)),
        );
      }),
      runs,
    );
    const objects = [
      { root: "/", name: "f", ext: "txt" },
      { dir: "a/b", base: "c.js", name: "ignored" },
      { root: "/x/", base: "y" },
      { name: "n", ext: ".e" },
      {},
    ];
    for (const object of objects) expect(guest("format", object)).toBe(node(posix.format(object)));
  });
});

test("constants, posix alias and argument errors", () => {
  expect(
    s.run(`[path.sep, path.delimiter, path.posix === path, path.toNamespacedPath("a/b")]`),
  ).toEqual(["/", ":", true, "a/b"]);
  expect(
    s.run(
      `(() => { try { path.join("a", 1); } catch (e) { return [e.name, e.code, e.message]; } })()`,
    ),
  ).toEqual([
    "TypeError",
    "ERR_INVALID_ARG_TYPE",
    'The "path" argument must be of type string. Received type number (1)',
  ]);
});
