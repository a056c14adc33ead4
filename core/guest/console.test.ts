import { format } from "node:util";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { createSandbox, type GuestSandbox } from "./test-context.ts";

let s: GuestSandbox;
beforeEach(async () => {
  s = await createSandbox();
});
afterEach(() => s.dispose());

/** Each entry is guest/Node source for the argument list of one console.log call. */
const SAME_AS_NODE = [
  `"hello", "world", 42, -0, null, undefined, true`,
  `"%s is %d years and %i days, %f%%", "Ann", 42.5, "7.9", "1.5"`,
  `"%s %s", "only one"`,
  `"%O / %j", { c: new Map([[1, 2]]) }, { d: "e" }`,
  `"%s", { a: 1 }`,
  `"%s %s %s", [1, 2], 5n, Symbol("s")`,
  `"%d %i %f", 5n, 6n, "x"`,
  `"%c styled", "color: red"`,
  `"100%", "literal"`,
  `{ a: 1, s: "x", n: null, u: undefined, nested: { deep: { deeper: { deepest: 1 } } } }`,
  `[1, "two", [3, [4, [5, [6]]]]]`,
  `new Map([["k", { v: 1 }], [{ o: 1 }, [1]]]), new Set([1, "2", [3]])`,
  `new Map(), new Set(), [], {}, Object.create(null)`,
  `new Date(86400000), new Date(NaN), /x+/gi`,
  `new Uint8Array([1, 2, 3]), new Float64Array(2), new ArrayBuffer(3)`,
  `function named() {}, () => 1, class Foo {}, class Bar extends Map {}, async function af() {}, function* gen() {}`,
  `new (class Point { constructor() { this.x = 1; this.y = 2; } })()`,
  `{ "needs-quotes": 1, valid_id: 2, 3: "num", [Symbol("sym")]: 4 }`,
  `["it's", 'say "hi"', "both ' and \\"", "line\\nbreak\\ttab"]`,
  `Array.from({ length: 30 }, (_, i) => i)`,
  `Array.from({ length: 120 }, (_, i) => i % 7)`,
  `["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew"]`,
  `[1, , 3, , , 6]`,
  `{ get g() { return 1; }, set s(v) {}, get gs() { return 1; }, set gs(v) {} }`,
  `{ long: "x".repeat(60), other: "y".repeat(30) }`,
  `Object.assign(function withProps() {}, { a: 1 })`,
  `new Number(3), new String("str"), new Boolean(false)`,
  `{ a: { b: { c: {} } } }, { a: { b: { c: { d: 1 } } } }, [[[[]]]], [[[[1]]]]`,
];

describe("console formatting matches Node's util.format", () => {
  for (const args of SAME_AS_NODE) {
    test(args, () => {
      s.run(`console.log(${args})`);
      const expected = format(...new Function(`return [${args}]`)());
      expect(s.output("log")).toEqual([expected]);
    });
  }
});

describe("console", () => {
  test("%o inspects four levels deep (without Node's hidden properties)", () => {
    s.run(`console.log("%o", { a: { b: { c: { d: { e: 1 } } } } })`);
    expect(s.output()).toEqual(["{\n  a: {\n    b: { c: { d: { e: 1 } } }\n  }\n}"]);
  });

  test("cycles are marked with <ref *n> and [Circular *n]", () => {
    s.run(
      `const a = { name: "a" }; a.self = a; const b = { a, list: [a] }; b.back = b; console.log(a); console.log(b)`,
    );
    const a: Record<string, unknown> = { name: "a" };
    a.self = a;
    const b: Record<string, unknown> = { a, list: [a] };
    b.back = b;
    expect(s.output("log")).toEqual([format(a), format(b)]);
  });

  test("errors print with their stack, name, own properties and cause", () => {
    s.run(`function thrower() { return new TypeError("bad thing"); }
      const e = thrower(); e.code = "E_BAD";
      console.error(e);
      console.log({ nested: new RangeError("inner") });
      console.log(new Error("outer", { cause: new Error("root") }));
      console.log("%s", new Error("as %s"));`);
    const [error] = s.output("error");
    expect(error).toMatch(
      /^TypeError: bad thing\n {4}at thrower \(task\.js:1:\d+\)\n {4}at <eval> \(task\.js:2:\d+\) \{\n {2}code: 'E_BAD'\n\}$/,
    );
    const [nested, caused, placeholder] = s.output("log");
    expect(nested).toMatch(
      /^\{\n {2}nested: RangeError: inner\n {6}at <eval> \(task\.js:\d+:\d+\)\n\}$/,
    );
    expect(caused).toMatch(
      /^Error: outer\n {4}at .*\{\n {2}\[cause\]: Error: root\n {6}at .*\n\}$/s,
    );
    expect(placeholder).toMatch(/^Error: as %s\n {4}at /);
  });

  test("levels map to the host's log levels", () => {
    s.run(
      `console.log("l"); console.info("i"); console.warn("w"); console.error("e"); console.debug("d"); console.dirxml("x")`,
    );
    expect(s.logs).toEqual([
      { level: "log", text: "l" },
      { level: "info", text: "i" },
      { level: "warn", text: "w" },
      { level: "error", text: "e" },
      { level: "debug", text: "d" },
      { level: "log", text: "x" },
    ]);
  });

  test("methods work detached from the console object", () => {
    s.run(
      `const { log, warn } = console; log("detached"); warn("too"); [1, 2].forEach(console.log)`,
    );
    expect(s.output()).toEqual(["detached", "too", "1 0 [ 1, 2 ]", "2 1 [ 1, 2 ]"]);
  });

  test("trace, assert, dir, count, group and time", () => {
    s.run(`
      function where() { console.trace("here %d", 1); } where();
      console.assert(1 === 1, "never");
      console.assert(false, "failed %s", "check");
      console.assert(0);
      console.assert(false, { x: 1 });
      console.dir({ a: { b: { c: { d: 1 } } } }, { depth: 0 });
      console.dir({ a: { b: { c: { d: 1 } } } }, { depth: null });
      console.count(); console.count(); console.count("x"); console.countReset(); console.count(); console.countReset("nope");
      console.group("Group A"); console.log("inside\\nmultiline"); console.group(); console.info("deeper"); console.groupEnd(); console.groupEnd(); console.groupEnd(); console.log("outside");
      console.time("t"); console.time("t"); console.timeLog("t", "extra", 1); console.timeEnd("t"); console.timeEnd("t");
    `);
    const texts = s.logs.map((entry) => `${entry.level}|${entry.text}`);
    expect(texts[0]).toMatch(
      /^error\|Trace: here 1\n {4}at where \(task\.js:2:\d+\)\n {4}at <eval> /,
    );
    expect(texts.slice(1)).toEqual([
      "warn|Assertion failed: failed check",
      "warn|Assertion failed",
      "warn|Assertion failed { x: 1 }",
      "log|{ a: [Object] }",
      "log|{\n  a: { b: { c: { d: 1 } } }\n}",
      "log|default: 1",
      "log|default: 2",
      "log|x: 1",
      "log|default: 1",
      "warn|Count for 'nope' does not exist",
      "log|Group A",
      "log|  inside\n  multiline",
      "info|    deeper",
      "log|outside",
      "warn|Label 't' already exists for console.time()",
      expect.stringMatching(/^log\|t: \d+\.\d{3}ms extra 1$/),
      expect.stringMatching(/^log\|t: \d+\.\d{3}ms$/),
      "warn|No such label 't' for console.timeEnd()",
    ]);
  });

  test("table draws Node's box layout", () => {
    s.run(
      `console.table([{ a: 1, b: "x" }, { a: 2, c: true }]); console.table({ r1: 5, r2: { a: 6 } }); console.table([{ a: 1, b: 2 }], ["b"]); console.table("plain")`,
    );
    expect(s.output("log")).toEqual([
      [
        "┌─────────┬───┬─────┬──────┐",
        "│ (index) │ a │ b   │ c    │",
        "├─────────┼───┼─────┼──────┤",
        "│ 0       │ 1 │ 'x' │      │",
        "│ 1       │ 2 │     │ true │",
        "└─────────┴───┴─────┴──────┘",
      ].join("\n"),
      [
        "┌─────────┬───┬────────┐",
        "│ (index) │ a │ Values │",
        "├─────────┼───┼────────┤",
        "│ r1      │   │ 5      │",
        "│ r2      │ 6 │        │",
        "└─────────┴───┴────────┘",
      ].join("\n"),
      [
        "┌─────────┬───┐",
        "│ (index) │ b │",
        "├─────────┼───┤",
        "│ 0       │ 2 │",
        "└─────────┴───┘",
      ].join("\n"),
      "plain",
    ]);
  });

  test("plain strings and numbers never load the inspector", () => {
    s.run(`console.log("just", "text", 1, -0, true, null, undefined)`);
    expect(s.loadedChunks).toEqual(["console"]);
    expect(s.output()).toEqual(["just text 1 -0 true null undefined"]);
  });
});
