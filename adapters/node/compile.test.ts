import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { CompileError } from "../../core/errors.ts";
import { createSandbox } from "../../core/guest/test-context.ts";
import {
  type CompiledBundle,
  type CompileOptions,
  clearCompileCache,
  compileCode,
  compileFile,
  compileStats,
} from "./compile.ts";

const root = mkdtempSync(path.join(tmpdir(), "capsule-compile-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let project: string;
let options: CompileOptions;
let projectCount = 0;

/** Each test gets its own project directory (and so its own cache keys). */
beforeEach(() => {
  project = path.join(root, `project-${projectCount++}`);
  mkdirSync(project, { recursive: true });
  const sdkEntry = write(
    "sdk/index.ts",
    "export function task(options: object, run: Function) { return run; }\n",
  );
  options = { sdkEntry, cacheDir: path.join(project, ".cache") };
});

function write(relative: string, content: string): string {
  const file = path.join(project, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  return file;
}

/** Loads a bundle as a real ES module, proving it runs without the files it came from. */
async function load(bundle: CompiledBundle): Promise<Record<string, unknown>> {
  return import(`data:text/javascript,${encodeURIComponent(bundle.code)}`);
}

async function compileFailure(run: () => Promise<unknown>): Promise<string> {
  const error = await run().then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(CompileError);
  return (error as CompileError).message;
}

describe("compileFile", () => {
  it("bundles a TypeScript entry with its relative imports and the SDK alias", async () => {
    write("lib/greet.ts", 'export const greet = (who: string): string => "hello " + who;\n');
    write("lib/index.ts", 'export { greet } from "./greet.ts";\n');
    write(
      "main.ts",
      [
        'import { task } from "@capsule-run/sdk";',
        'import { greet } from "./lib";',
        "interface Args { who: string }",
        'export const main = task({ name: "main" }, (args: Args) => greet(args.who));',
      ].join("\n"),
    );
    const bundle = await compileFile("main.ts", project, options);
    expect(bundle.cached).toBe(false);
    expect(bundle.code).not.toContain("interface");
    expect(bundle.code).not.toMatch(/^import /m);
    const module = await load(bundle);
    expect((module.main as (args: { who: string }) => string)({ who: "sandbox" })).toBe(
      "hello sandbox",
    );
  });

  it("bundles .js, .mjs, .mts and .cjs entries", async () => {
    write("helper.js", "export const two = () => 2;\n");
    write("a.js", 'import { two } from "./helper.js";\nexport const value = two() + 1;\n');
    write(
      "b.mjs",
      'import { task } from "capsule-portable/sdk";\nimport { two } from "./helper.js";\nexport const value = task({}, () => two() * 2)();\n',
    );
    write("c.mts", "export const value: number = 5;\n");
    write("d.cjs", "module.exports = { value: 6 };\n");
    const values = [];
    for (const entry of ["a.js", "b.mjs", "c.mts"]) {
      const module = await load(await compileFile(entry, project, options));
      values.push(module.value);
    }
    const commonJs = await load(await compileFile("d.cjs", project, options));
    expect(values).toEqual([3, 4, 5]);
    expect(commonJs.default).toEqual({ value: 6 });
  });

  it("bundles an npm package from the task's node_modules, preferring its module build", async () => {
    write(
      "node_modules/tiny-pad/package.json",
      JSON.stringify({
        name: "tiny-pad",
        version: "1.0.0",
        main: "index.cjs",
        module: "index.mjs",
      }),
    );
    write("node_modules/tiny-pad/index.mjs", 'export const pad = (s) => "[" + s + "]esm";\n');
    write("node_modules/tiny-pad/index.cjs", 'exports.pad = (s) => "[" + s + "]cjs";\n');
    // A package may share a Node built-in's bare name; an installed one is bundled.
    write(
      "node_modules/events/package.json",
      JSON.stringify({ name: "events", main: "events.js" }),
    );
    write("node_modules/events/events.js", "module.exports = class EventEmitter {};\n");
    write(
      "tasks/main.ts",
      'import { pad } from "tiny-pad";\nimport EventEmitter from "events";\nexport const value = pad("x") + typeof EventEmitter;\n',
    );
    const module = await load(await compileFile("tasks/main.ts", project, options));
    expect(module.value).toBe("[x]esmfunction");
  });

  it("reports a syntax error as file:line:column relative to cwd", async () => {
    write("tasks/broken.ts", "const ok = 1;\n\nconst bad = (1 + ;\n");
    const message = await compileFailure(() => compileFile("tasks/broken.ts", project, options));
    expect(message).toMatch(/^tasks\/broken\.ts:3:\d+: Unexpected ";"$/);
  });

  it("refuses a task file that is not UTF-8, naming the line, the byte and its offset", async () => {
    const head = Buffer.from('export const main = () => "', "utf8");
    const cases: [bytes: number[], offset: number][] = [
      [[0xff], 0], // never a UTF-8 byte
      [[0x80], 0], // a continuation byte with no lead
      [[0xc0, 0xaf], 0], // an overlong "/"
      [[0xed, 0xa0, 0x80], 0], // a UTF-16 surrogate
      [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
      [[0xe2, 0x82, 0xac, 0xe2, 0x82], 3], // "€", then a "€" cut short
    ];
    for (const [bytes, offset] of cases) {
      const file = path.join(project, "task.ts");
      writeFileSync(file, Buffer.concat([Buffer.from("// line 1\n"), head, Buffer.from(bytes)]));
      clearCompileCache();
      const at = 10 + head.length + offset;
      await expect(compileFile("task.ts", project, options)).rejects.toThrow(
        `task.ts:2: byte 0x${(bytes[offset] as number).toString(16)} at offset ${at} is not UTF-8`,
      );
    }
    write("task.ts", 'export const main = () => "€ 😀 ok";\n');
    clearCompileCache();
    await expect(compileFile("task.ts", project, options)).resolves.toBeDefined();
  });

  it("reports an unresolved import where it is written", async () => {
    write("main.ts", 'import { x } from "./missing";\nexport const y = x;\n');
    expect(await compileFailure(() => compileFile("main.ts", project, options))).toMatch(
      /^main\.ts:1:19: "\.\/missing" cannot be imported: no source module or installed package of that name/,
    );
  });

  it("refuses the Node built-ins the sandbox lacks with a message of its own", async () => {
    write(
      "main.ts",
      [
        'import http from "http";',
        'import { spawn } from "node:child_process";',
        'import os from "os";',
        "export const all = [http, spawn, os];",
      ].join("\n"),
    );
    const message = await compileFailure(() => compileFile("main.ts", project, options));
    const provided =
      '(the Node built-in modules a task can import: fs, fs/promises, path, path/posix, process, buffer, also as "node:...")';
    expect(message.split("\n")).toEqual([
      `main.ts:1:18: "http" is not available inside the sandbox ${provided}`,
      `main.ts:2:23: "node:child_process" is not available inside the sandbox ${provided}`,
      `main.ts:3:16: "os" is not available inside the sandbox ${provided}`,
    ]);
  });

  it("caps the number of errors it lists", async () => {
    const imports = Array.from({ length: 14 }, (_, i) => `import * as m${i} from "./gone${i}";`);
    write(
      "main.ts",
      `${imports.join("\n")}\nexport const all = [${imports.map((_, i) => `m${i}`).join(", ")}];\n`,
    );
    const lines = (await compileFailure(() => compileFile("main.ts", project, options))).split(
      "\n",
    );
    expect(lines).toHaveLength(11);
    expect(lines[0]).toMatch(/^main\.ts:1:21: "\.\/gone0" cannot be imported/);
    expect(lines[10]).toBe("... and 4 more errors");
  });

  it.each([
    ["nope.ts", "nope.ts: file not found"],
    ["tasks", "tasks: is a directory; pass a task file ending in .ts, .mts, .cts, .js, .mjs, .cjs"],
    ["task.py", '"task.py"'],
    [
      "data.json",
      'data.json: ".json" files cannot be run; a task file ends in .ts, .mts, .cts, .js, .mjs, .cjs',
    ],
    ["Makefile", "Makefile: a file without an extension cannot be run"],
  ])("refuses %s", async (entry, expected) => {
    mkdirSync(path.join(project, "tasks"), { recursive: true });
    write("task.py", "print(1)\n");
    write("data.json", "{}\n");
    write("Makefile", "all:\n");
    expect(await compileFailure(() => compileFile(entry, project, options))).toContain(
      expected === '"task.py"' ? 'task.py: ".py" files cannot be run' : expected,
    );
  });
});

describe("compileCode", () => {
  it("compiles TypeScript and JavaScript source strings", async () => {
    const ts = await compileCode(
      "const triple = (n: number) => n * 3;\nexport const value: number = triple(3);\n",
      "ts",
      project,
      options,
    );
    const js = await compileCode("export const value = 10;\n", "js", project, options);
    expect((await load(ts)).value).toBe(9);
    expect((await load(js)).value).toBe(10);
  });

  it("points at the line of a syntax error in the string", async () => {
    expect(
      await compileFailure(() => compileCode("let a = 1;\nlet b = ;\n", "ts", project, options)),
    ).toBe('<task>.ts:2:9: Unexpected ";"');
  });

  it("refuses an unknown language", async () => {
    expect(await compileFailure(() => compileCode("1", "py" as "ts", project, options))).toBe(
      'language: "py" is not supported; use "ts" or "js"',
    );
  });

  it("caches by content", async () => {
    const source = `export const stamp = ${Date.now()};\n`;
    const first = await compileCode(source, "js", project, options);
    const second = await compileCode(source, "js", project, options);
    expect([first.cached, second.cached]).toEqual([false, true]);
    expect((await compileCode(`${source} `, "js", project, options)).cached).toBe(false);
  });
});

describe("cache", () => {
  it("returns the same bundle without running esbuild again, from memory then from disk", async () => {
    write("dep.ts", "export const dep = 1;\n");
    write("main.ts", 'import { dep } from "./dep.ts";\nexport const value = dep;\n');
    const first = await compileFile("main.ts", project, options);
    const builds = compileStats().builds;

    const fromMemory = await compileFile("main.ts", project, options);
    expect(fromMemory).toEqual({ ...first, cached: true });
    expect(compileStats().builds).toBe(builds);

    clearCompileCache();
    const fromDisk = await compileFile("main.ts", project, options);
    expect(fromDisk).toEqual({ ...first, cached: true });
    expect(compileStats()).toEqual({ builds: 0, memoryHits: 0, diskHits: 1 });
    expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("answers a memory hit in well under a millisecond", async () => {
    write("main.ts", "export const value = 1;\n");
    await compileFile("main.ts", project, options);
    const rounds = 2000;
    const started = performance.now();
    for (let i = 0; i < rounds; i++) await compileFile("main.ts", project, options);
    const perHit = (performance.now() - started) / rounds;
    expect(perHit).toBeLessThan(0.5);
  });

  it("compiles again when an imported file changes, in memory and on disk", async () => {
    write("dep.ts", "export const dep = 1;\n");
    write("main.ts", 'import { dep } from "./dep.ts";\nexport const value = dep;\n');
    expect((await load(await compileFile("main.ts", project, options))).value).toBe(1);

    write("dep.ts", "export const dep = 22;\n");
    const changed = await compileFile("main.ts", project, options);
    expect(changed.cached).toBe(false);
    expect((await load(changed)).value).toBe(22);

    write("dep.ts", "export const dep = 333;\n");
    clearCompileCache();
    const fromDisk = await compileFile("main.ts", project, options);
    expect(fromDisk.cached).toBe(false);
    expect((await load(fromDisk)).value).toBe(333);
  });

  it("notices a change that keeps the file's size and mtime", async () => {
    const dep = write("dep.ts", "export const dep = 1;\n");
    write("main.ts", 'import { dep } from "./dep.ts";\nexport const value = dep;\n');
    await compileFile("main.ts", project, options);
    const { atime, mtime } = statSync(dep);
    write("dep.ts", "export const dep = 7;\n");
    utimesSync(dep, atime, mtime);
    const changed = await compileFile("main.ts", project, options);
    expect(changed.cached).toBe(false);
    expect((await load(changed)).value).toBe(7);
  });

  it("compiles again when the SDK changes", async () => {
    write("one.ts", "export const one = 1;\n");
    write(
      "main.ts",
      'import { task } from "@capsule-run/sdk";\nimport { one } from "./one.ts";\nexport const value = task({}, () => one)();\n',
    );
    await compileFile("main.ts", project, options);
    write(
      "sdk/index.ts",
      "export function task(options: object, run: Function) { return () => 2; }\n",
    );
    const changed = await compileFile("main.ts", project, options);
    expect(changed.cached).toBe(false);
    expect((await load(changed)).value).toBe(2);
  });

  it("writes whole entries only, and survives a corrupt one", async () => {
    write("main.ts", "export const value = 5;\n");
    await compileFile("main.ts", project, options);
    const cacheDir = options.cacheDir ?? "";
    const entries = readdirSync(cacheDir);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatch(/^[0-9a-f]{64}\.json$/);

    writeFileSync(path.join(cacheDir, entries[0] ?? ""), '{"format":1,"code":"exp');
    clearCompileCache();
    const rebuilt = await compileFile("main.ts", project, options);
    expect(rebuilt.cached).toBe(false);
    expect((await load(rebuilt)).value).toBe(5);
  });

  it("shares one build between concurrent compiles of the same file", async () => {
    write("main.ts", "export const value = 1;\n");
    const before = compileStats().builds;
    const bundles = await Promise.all(
      Array.from({ length: 5 }, () => compileFile("main.ts", project, options)),
    );
    expect(compileStats().builds - before).toBe(1);
    expect(new Set(bundles.map((bundle) => bundle.hash)).size).toBe(1);
  });

  it("still compiles when the cache directory cannot be written, warning once", async () => {
    write("main.ts", "export const value = 8;\n");
    const blocker = write("not-a-dir", "a file where the cache directory would go\n");
    const warnings: string[] = [];
    const unwritable = {
      ...options,
      cacheDir: path.join(blocker, "cache"),
      onWarning: (message: string) => warnings.push(message),
    };
    const bundle = await compileFile("main.ts", project, unwritable);
    expect((await load(bundle)).value).toBe(8);
    write("other.ts", "export const value = 9;\n");
    await compileFile("other.ts", project, unwritable);
    expect(warnings).toEqual([
      `compile cache at ${path.join(blocker, "cache")} cannot be written (ENOTDIR); compiling without it`,
    ]);
    expect((await compileFile("main.ts", project, unwritable)).cached).toBe(true);
  });

  it("defaults the cache directory to <cwd>/.capsule/cache", async () => {
    write("main.ts", "export const value = 1;\n");
    await compileFile("main.ts", project, { sdkEntry: options.sdkEntry });
    expect(readdirSync(path.join(project, ".capsule", "cache"))).toHaveLength(1);
  });
});

/** Evaluates a bundle as a module in a real guest sandbox and returns its `result` export. */
async function runInGuest(bundle: CompiledBundle): Promise<unknown> {
  const sandbox = await createSandbox({
    processInfo: () => JSON.stringify({ env: { TOKEN: "t" }, cwd: "/project" }),
  });
  try {
    const { vm } = sandbox;
    const evaluated = vm.unwrapResult(vm.evalCode(bundle.code, "task.js", { type: "module" }));
    vm.runtime.executePendingJobs();
    const state = vm.getPromiseState(evaluated);
    if (state.type !== "fulfilled") throw new Error(`module evaluation is ${state.type}`);
    const result = vm.getProp(state.value, "result");
    const value = vm.dump(result);
    result.dispose();
    if (!state.notAPromise) state.value.dispose();
    evaluated.dispose();
    return { value, chunks: sandbox.loadedChunks };
  } finally {
    sandbox.dispose();
  }
}

describe("Node built-ins the sandbox provides", () => {
  it("binds default, namespace and named imports, with or without node:", async () => {
    write(
      "main.ts",
      [
        'import fs from "fs";',
        'import * as fsNamespace from "node:fs";',
        'import { readFile, constants } from "node:fs/promises";',
        'import fsPromises from "fs/promises";',
        'import path, { join } from "path";',
        'import * as posix from "node:path/posix";',
        'import process, { env, cwd } from "node:process";',
        'import { Buffer } from "buffer";',
        'import { Buffer as B2 } from "node:buffer";',
        "export const result = [",
        "  typeof fs.readFileSync, fsNamespace.readFileSync === fs.readFileSync,",
        "  fsNamespace.default === fs, readFile === fs.promises.readFile, fsPromises === fs.promises,",
        "  constants.R_OK, join('a', '..', 'b'), path.basename('/x/y.ts', '.ts'), posix.sep,",
        "  process.argv, env.TOKEN, cwd(), Buffer.from('hi').toString('hex'), B2 === Buffer,",
        "  globalThis.Buffer === Buffer, globalThis.process === process,",
        "];",
      ].join("\n"),
    );
    expect(await runInGuest(await compileFile("main.ts", project, options))).toEqual({
      value: [
        "function",
        true,
        true,
        true,
        true,
        4,
        "b",
        "y",
        "/",
        ["capsule", "task"],
        "t",
        "/project",
        "6869",
        true,
        true,
        true,
      ],
      chunks: expect.arrayContaining(["fs", "path", "process", "buffer"]),
    });
  });

  it("serves require() from a CommonJS package, ahead of an npm package of the same name", async () => {
    write("node_modules/buffer/package.json", JSON.stringify({ name: "buffer", main: "index.js" }));
    write("node_modules/buffer/index.js", "exports.Buffer = 'from npm';\n");
    write(
      "node_modules/reads-files/index.js",
      [
        'const fs = require("fs");',
        'const { join } = require("node:path");',
        'const { Buffer } = require("buffer");',
        "module.exports = { kind: typeof fs.readFileSync, joined: join('a', 'b'), buffer: typeof Buffer.from };",
      ].join("\n"),
    );
    write("main.ts", 'import info from "reads-files";\nexport const result = info;\n');
    const bundle = await compileFile("main.ts", project, options);
    expect(await runInGuest(bundle)).toMatchObject({
      value: { kind: "function", joined: "a/b", buffer: "function" },
    });
    expect(bundle.code).not.toContain("from npm");
  });

  it("caches bundles that import them", async () => {
    write("main.ts", 'import { join } from "node:path";\nexport const result = join("a", "b");\n');
    await compileFile("main.ts", project, options);
    clearCompileCache();
    const again = await compileFile("main.ts", project, options);
    expect(again.cached).toBe(true);
    expect(compileStats().diskHits).toBe(1);
  });

  it("a name the module lacks is a compile error at its import", async () => {
    write("main.ts", 'import { spawnSync } from "fs";\nexport const result = spawnSync;\n');
    expect(await compileFailure(() => compileFile("main.ts", project, options))).toMatch(
      /^main\.ts:1:10: No matching export in "capsule-node:fs" for import "spawnSync"$/,
    );
  });
});
