/**
 * A hostile task author against the compile step and its cache: what esbuild reads on a task's
 * behalf, and whether anything a task writes can ever run as another task's code.
 */
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { CompileError } from "../../core/errors.ts";
import {
  type CompileOptions,
  clearCompileCache,
  compileCode,
  compileFile,
  compileStats,
} from "./compile.ts";
import { run, shutdown } from "./index.ts";
import { sdkEntry } from "./paths.ts";
import { runCapsule } from "./test/fixtures.ts";

const root = mkdtempSync(path.join(tmpdir(), "capsule-compile-attacks-"));
const SECRET = "s3cret-outside-the-project";
const outside = path.join(root, "outside");
mkdirSync(outside);
writeFileSync(path.join(outside, "secret.txt"), SECRET);
writeFileSync(path.join(outside, "secret.ts"), `export default "${SECRET}";\n`);
writeFileSync(path.join(outside, "secret.json"), JSON.stringify({ SECRET }));

afterAll(async () => {
  await shutdown();
  rmSync(root, { recursive: true, force: true });
});

let project: string;
let options: CompileOptions;
let count = 0;

beforeEach(() => {
  project = path.join(root, `project-${count++}`);
  mkdirSync(project);
  options = {
    sdkEntry,
    cacheDir: path.join(project, ".capsule", "cache"),
    cacheKeyFile: path.join(root, "keys", "cache-key"),
  };
  write(".env", `TOKEN=${SECRET}\n`);
  write(".git/config", `[remote] url = ${SECRET}\n`);
  write(".git/hooks/evil.js", `export default "${SECRET}";\n`);
  write("data/config.json", JSON.stringify({ SECRET }));
  write("notes.txt", SECRET);
  write("helper.ts", 'export const helper = "helper";\n');
  symlinkSync(outside, path.join(project, "link"));
  symlinkSync(path.join(outside, "secret.ts"), path.join(project, "leak.ts"));
  write(
    "node_modules/tiny/package.json",
    JSON.stringify({ name: "tiny", main: "index.js", version: "1.0.0" }),
  );
  write("node_modules/tiny/index.js", 'export const tiny = "tiny";\n');
  write("node_modules/tiny/data.json", '{"shipped":true}\n');
  write("node_modules/tiny/.hidden.js", `export default "${SECRET}";\n`);
  write(
    "node_modules/escape/package.json",
    JSON.stringify({ name: "escape", main: "../../../outside/secret.ts" }),
  );
});

function write(relative: string, content: string): string {
  const file = path.join(project, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  return file;
}

async function refusal(compile: () => Promise<unknown>): Promise<string> {
  const outcome = await compile().then(
    (bundle) => bundle,
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(CompileError);
  const message = (outcome as CompileError).message;
  expect(message).not.toContain(SECRET);
  return message;
}

/** A task file whose only import is `line`. */
function importing(line: string, file = "main.ts"): Promise<string> {
  // Used, since esbuild drops a TypeScript import that nothing uses (it may be a type).
  write(file, `${line}\nexport const main = () => typeof x;\n`);
  return refusal(() => compileFile(file, project, options));
}

describe("what a task file may import", () => {
  it.each([
    ['import x from "/etc/passwd" with { type: "text" };', "/etc/passwd", "import attributes"],
    ['import x from "/proc/self/environ" with { type: "text" };', "/proc/self/environ", ""],
    ['import x from "/proc/self/environ";', "/proc/self/environ", "absolute path"],
    ['import x from "file:///etc/passwd";', "file:///etc/passwd", "URL"],
    ['import x from "data:text/javascript,export default 1";', "data:text/javascript", "URL"],
    ['import x from "./.env" with { type: "text" };', "./.env", "import attributes"],
    ['import "./.env";', "./.env", "dot-file"],
    ['import x from "./.git/config";', "./.git/config", '".git"'],
    ['import x from "./.git/hooks/evil.js";', "./.git/hooks/evil.js", '".git"'],
    ['import x from "./.capsule/cache/entry.js";', "./.capsule/cache/entry.js", '".capsule"'],
    ['import x from "./data/config.json";', "./data/config.json", '".json" files'],
    ['import x from "./notes.txt";', "./notes.txt", '".txt" files'],
    ['import x from "./helper.ts" with { type: "text" };', "./helper.ts", "import attributes"],
    ['import x from "./helper.ts" with { type: "bytes" };', "./helper.ts", "import attributes"],
    ['import x from "./data/config.json" with { type: "json" };', "./data/config.json", ""],
    ['import x from "./link/secret.ts";', "./link/secret.ts", "no source module"],
    ['import x from "./leak.ts";', "./leak.ts", "no source module"],
    ['import x from "../outside/secret.ts";', "../outside/secret.ts", "outside the project"],
    ['import x from "./link/secret.txt";', "./link/secret.txt", '".txt" files'],
    ['import x from "tiny/../../.env";', "tiny/../../.env", '".."'],
    ['import x from "tiny/.hidden.js";', "tiny/.hidden.js", "dot-file"],
    ['import x from "fs/../../../etc/passwd";', "fs/../../../etc/passwd", '".."'],
    ['import x from "escape";', "escape", "no source module"],
    ['import x from "tiny/data.json" with { type: "text" };', "tiny/data.json", "attributes"],
    ['const x = await import("../outside/secret.ts");', "../outside/secret.ts", "outside"],
    ['const x = await import("/etc/passwd");', "/etc/passwd", "absolute path"],
  ])("refuses %s naming the import and the rule", async (line, named, rule) => {
    const message = await importing(line);
    expect(message).toContain(`"${named}`);
    expect(message).toContain(rule);
    expect(message).toMatch(/task file imports only the project's own source modules/);
  });

  it("refuses a project module that is a hard link to a file elsewhere", async () => {
    linkSync(path.join(outside, "secret.ts"), path.join(project, "linked.ts"));
    const message = await importing('import x from "./linked.ts";');
    expect(message).toContain('"./linked.ts" cannot be imported: no source module');
  });

  it("refuses the same imports through require() in CommonJS", async () => {
    for (const specifier of ["/etc/passwd", "./.env", "./notes.txt", "../outside/secret.ts"]) {
      write("main.cjs", `module.exports = require(${JSON.stringify(specifier)});\n`);
      clearCompileCache();
      const message = await refusal(() => compileFile("main.cjs", project, options));
      expect(message).toContain(`"${specifier}" cannot be imported`);
    }
  });

  it("refuses an import by a computed path with one message, whatever the directories hold", async () => {
    write("data/a.txt", SECRET);
    write("mods/one.ts", "export default 1;\n");
    mkdirSync(path.join(project, "empty"));
    // NAME stands for a substitution: `./data/${name}`.
    const patterns = [
      "import(`./data/NAME.txt`)",
      "import(`./data/NAME`)",
      "import(`./mods/NAME.ts`)",
      "import(`./empty/NAME.ts`)",
      "import(`./missing/NAME.ts`)",
      "import(`../outside/NAME`)",
      "import(`../../../../../../etc/NAME`)",
      "import(`./.git/NAME`)",
      "require('./data/' + name)",
      "import(/* a */ (`./data/NAME`))",
    ].map((pattern) => pattern.replace("NAME", ["$", "{name}"].join("")));
    const messages = new Set<string>();
    for (const pattern of patterns) {
      for (const alsoBroken of [false, true]) {
        const lines = [
          alsoBroken ? 'import "/etc/passwd";' : "",
          `export const main = async (name: string) => ${pattern};`,
        ];
        write("main.ts", lines.join("\n"));
        clearCompileCache();
        messages.add(await refusal(() => compileFile("main.ts", project, options)));
      }
      const code = `export const main = async (name: string) => ${pattern};`;
      messages.add(await refusal(() => compileCode(code, "ts", project, options)));
    }
    expect([...messages]).toEqual([
      expect.stringMatching(/^a task cannot import by a computed path/),
    ]);
  });

  it("leaves an asset URL as a string: nothing is read for it", async () => {
    write("main.ts", 'export const main = () => new URL("./notes.txt", import.meta.url).href;\n');
    const bundle = await compileFile("main.ts", project, options);
    expect(bundle.code).not.toContain(SECRET);
    expect(bundle.code).toContain("./notes.txt");
  });

  it("reads no source map a module's comment names, in the project, a package or the entry", async () => {
    // A valid map outside the project: its `sources` would name frames in the envelope's stacks.
    writeFileSync(
      path.join(outside, "evil.map"),
      JSON.stringify({
        version: 3,
        sources: [`${SECRET}.ts`],
        sourcesContent: [SECRET],
        mappings: "AAAA;AACA;AACA",
      }),
    );
    const linked = `//# sourceMappingURL=${path.join(outside, "evil.map")}\n`;
    write("lib/boom.ts", `export const boom = () => { throw new Error("x"); };\n${linked}`);
    write(
      "node_modules/tiny/index.js",
      `export const tiny = "tiny";\n/*@ sourceMappingURL=../../../outside/evil.map */\n`,
    );
    write(
      "main.ts",
      `import { boom } from "./lib/boom.ts";\nimport { tiny } from "tiny";\nexport const main = () => [tiny, boom()];\n${linked}`,
    );
    const bundle = await compileFile("main.ts", project, options);
    expect(bundle.sourceMap).not.toContain(SECRET);
    expect(bundle.code).not.toContain(SECRET);
    // An inline map is the module's own text: it stays.
    const inline = Buffer.from(
      JSON.stringify({ version: 3, sources: ["inline-own.ts"], mappings: "AAAA" }),
    ).toString("base64");
    write(
      "own.ts",
      `export const own = 1;\n//# sourceMappingURL=data:application/json;base64,${inline}\n`,
    );
    write("main2.ts", 'import { own } from "./own.ts";\nexport const main = () => own;\n');
    expect((await compileFile("main2.ts", project, options)).sourceMap).toContain("inline-own.ts");
  });

  it("still compiles a dynamic import of a literal module, or of a name only known at run time", async () => {
    write(
      "main.ts",
      'export const main = async (name: string) => [await import("./helper.ts"), import(name)];\n',
    );
    await expect(compileFile("main.ts", project, options)).resolves.toBeDefined();
  });

  it("gives the same message whether or not the refused file exists", async () => {
    const message = async (specifier: string) => {
      clearCompileCache();
      return importing(`import x from ${JSON.stringify(specifier)};`);
    };
    // The same import before and after its target is removed.
    const removable: [specifier: string, target: string][] = [
      ["./.env", path.join(project, ".env")],
      ["./.git/config", path.join(project, ".git", "config")],
      ["./notes.txt", path.join(project, "notes.txt")],
      ["./data/config.json", path.join(project, "data", "config.json")],
      ["./leak.ts", path.join(project, "leak.ts")],
      ["escape", path.join(project, "node_modules", "escape")],
      ["tiny/.hidden.js", path.join(project, "node_modules", "tiny", ".hidden.js")],
    ];
    for (const [specifier, target] of removable) {
      const present = await message(specifier);
      rmSync(target, { recursive: true });
      expect(await message(specifier)).toBe(present);
    }
    // Outside the project, through a symlink, and host files that stay: a missing sibling.
    writeFileSync(path.join(outside, "secret.mjs"), "export default 1;\n");
    const pairs: [existing: string, missing: string][] = [
      ["/etc/passwd", "/etc/no-such-file-here"],
      ["/proc/self/environ", "/proc/self/no-such"],
      ["./link/secret.ts", "./link/missing.ts"],
      ["./link/secret.mjs", "./link/gone.mjs"],
      ["../outside/secret.ts", "../outside/missing.ts"],
      ["file:///etc/passwd", "file:///etc/nothing"],
    ];
    for (const [existing, missing] of pairs) {
      const present = (await message(existing)).replaceAll(existing, "<import>");
      expect((await message(missing)).replaceAll(missing, "<import>")).toBe(present);
    }
  });

  it("still bundles the project's modules and installed packages, and a package's own JSON", async () => {
    write("node_modules/tiny/reader.js", 'import data from "./data.json";\nexport { data };\n');
    write(
      "main.ts",
      [
        'import { helper } from "./helper.ts";',
        'import { tiny } from "tiny";',
        'import { data } from "tiny/reader.js";',
        "export const value = [helper, tiny, data.shipped];",
      ].join("\n"),
    );
    const bundle = await compileFile("main.ts", project, options);
    const module = await import(`data:text/javascript,${encodeURIComponent(bundle.code)}`);
    expect(module.value).toEqual(["helper", "tiny", true]);
  });

  it("reads the entry the caller names wherever it is, but its imports follow the rules", async () => {
    write(".tasks/entry.ts", 'import "./sibling.ts";\nexport const main = () => 1;\n');
    write(".tasks/sibling.ts", "export {};\n");
    const message = await refusal(() => compileFile(".tasks/entry.ts", project, options));
    expect(message).toContain('"./sibling.ts" cannot be imported: ".tasks" is a dot-file');
  });
});

describe("what a task given as code may import", () => {
  it.each([
    "./helper.ts",
    "tiny",
    "/etc/passwd",
    "../outside/secret.ts",
    "./.env",
    "file:///etc/passwd",
  ])("refuses %s: code reaches nothing on disk", async (specifier) => {
    const message = await refusal(() =>
      compileCode(
        `import x from ${JSON.stringify(specifier)};\nexport const y = x;\n`,
        "ts",
        project,
        options,
      ),
    );
    expect(message).toContain(`"${specifier}" cannot be imported`);
    expect(message).toContain("a task given as code reaches nothing on disk");
  });

  it("imports the SDK and the sandbox's Node built-ins", async () => {
    const bundle = await compileCode(
      'import { task } from "@capsule-run/sdk";\nimport path from "node:path";\nexport const main = task({ name: "main" }, () => path.join("a", "b"));\n',
      "ts",
      project,
      options,
    );
    expect(bundle.code).toContain("@capsule-run/sdk");
  });

  it("is a compile_error through run({ code })", async () => {
    const envelope = await run({
      code: 'import x from "/etc/passwd" with { type: "text" };\nexport const main = () => x;\n',
      cwd: project,
    });
    expect(envelope.error?.error_type).toBe("compile_error");
    expect(envelope.error?.message).toContain('"/etc/passwd" cannot be imported');
  });
});

const taskReturning = (value: string, options = '{ name: "main" }') =>
  `import { task } from "@capsule-run/sdk";\nexport const main = task(${options}, () => ${JSON.stringify(value)});\n`;

describe("the compile cache", () => {
  /** Runs a task file in the project; its bundle is compiled (or taken from the cache) here. */
  async function runFile(file: string, extra: Record<string, unknown> = {}) {
    return run({ file, cwd: project, env: {}, ...extra });
  }

  it("runs a task's own code when another task's entry was copied over its cache file", async () => {
    write("b.ts", taskReturning("real b"));
    write("evil.ts", taskReturning("planted"));
    const cacheDir = path.join(project, ".capsule", "cache");
    clearCompileCache();
    const first = await runFile("b.ts");
    expect(first.result, JSON.stringify(first.error)).toBe("real b");
    const [bEntry] = readdirSync(cacheDir);
    expect((await runFile("evil.ts")).result).toBe("planted");
    const evilEntry = readdirSync(cacheDir).find((name) => name !== bEntry);
    if (bEntry === undefined || evilEntry === undefined) throw new Error("no cache entries");
    // What a task with a write grant over the cache could do: move a genuine entry.
    copyFileSync(path.join(cacheDir, evilEntry), path.join(cacheDir, bEntry));
    clearCompileCache();
    expect((await runFile("b.ts")).result).toBe("real b");
    expect(compileStats()).toMatchObject({ builds: 1, diskHits: 0 });

    // ...or write one of its own: unsigned, in the old format, or with a made-up MAC.
    const signed = JSON.parse(readFileSync(path.join(cacheDir, evilEntry), "utf8"));
    const body = JSON.parse(signed.body);
    const forgeries = [
      JSON.stringify(body),
      JSON.stringify({ ...body, format: 4 }),
      JSON.stringify({ mac: "0".repeat(64), body: signed.body }),
      JSON.stringify({ mac: signed.mac, body: signed.body.replace("planted", "forged!") }),
    ];
    for (const forgery of forgeries) {
      writeFileSync(path.join(cacheDir, bEntry), forgery);
      clearCompileCache();
      expect((await runFile("b.ts")).result).toBe("real b");
      expect(compileStats().diskHits).toBe(0);
    }
    // A genuine entry is still used.
    clearCompileCache();
    expect((await runFile("b.ts")).result).toBe("real b");
    expect(compileStats()).toMatchObject({ builds: 0, diskHits: 1 });
  });

  it("keeps .capsule out of a task's view and reach under a writable grant of the project", async () => {
    write("b.ts", taskReturning("real b"));
    expect((await runFile("b.ts")).result).toBe("real b");
    write(
      "a.ts",
      `import { task } from "@capsule-run/sdk";
import fs from "node:fs";
export const main = task({ name: "main", allowedFiles: ["."] }, () => {
  const attempt = (what: string, act: () => unknown) => {
    try { act(); return what + ": done"; } catch (error) { return what + ": " + (error as { code?: string }).code; }
  };
  return [
    String(fs.readdirSync("/").includes(".capsule")),
    attempt("list", () => fs.readdirSync("/.capsule/cache")),
    attempt("write", () => fs.writeFileSync("/.capsule/cache/planted.json", "{}")),
    attempt("create", () => fs.mkdirSync("/sub/.capsule", { recursive: true })),
    attempt("dotdot", () => fs.readdirSync("/data/../.capsule")),
    attempt("rename", () => fs.renameSync("/b.ts", "/.capsule/cache/x.json")),
    attempt("symlink", () => fs.symlinkSync(".capsule", "/door")),
    attempt("through", () => fs.readdirSync("/door/cache")),
    attempt("write-through", () => fs.writeFileSync("/door/cache/planted.json", "{}")),
    attempt("dangling", () => fs.symlinkSync("sub2/.capsule", "/door2")),
    attempt("create-through", () => fs.mkdirSync("/door2", { recursive: true })),
  ];
});
`,
    );
    write("data/x.txt", "x");
    const envelope = await runFile("a.ts");
    expect(envelope.error, JSON.stringify(envelope.error)).toBeNull();
    expect(envelope.result).toEqual([
      "false",
      "list: EACCES",
      "write: EACCES",
      "create: EACCES",
      "dotdot: EACCES",
      "rename: EACCES",
      "symlink: done",
      "through: EACCES",
      "write-through: EACCES",
      "dangling: done",
      "create-through: EACCES",
    ]);
    expect(existsSync(path.join(project, ".capsule", "cache", "planted.json"))).toBe(false);
    expect(existsSync(path.join(project, "sub"))).toBe(false);
    expect(existsSync(path.join(project, "sub2"))).toBe(false);
  });

  it.each([
    [{ allowedFiles: '[".capsule"]' }, "allowedFiles[0]", '".capsule"'],
    [{ allowedFiles: '["./data/../.capsule/cache"]' }, "allowedFiles[0]", '".capsule"'],
    [{ mounts: ["./.capsule::/cache:rw"] }, "mounts[0]", '".capsule"'],
    [{ mounts: ["./.capsule/cache:ro"] }, "mounts[0]", '".capsule"'],
    [{ mounts: ["./data::/.capsule"] }, "mounts[0]", '".capsule"'],
    [{ mounts: ["./door::/door:rw"] }, "mount", '".capsule"'],
    [{ mounts: ["./store::/store:rw"], cacheDir: "store/cache" }, "mount", "compile cache"],
    [{ mounts: ["./store/cache::/c:rw"], cacheDir: "store/cache" }, "mount", "compile cache"],
  ])("refuses a grant over the runtime's own state: %j", async (given, where, named) => {
    mkdirSync(path.join(project, ".capsule", "cache"), { recursive: true });
    mkdirSync(path.join(project, "data"), { recursive: true });
    mkdirSync(path.join(project, "store", "cache"), { recursive: true });
    symlinkSync(".capsule", path.join(project, "door"));
    const { allowedFiles, ...runOptions } = given as { allowedFiles?: string };
    const taskOptions =
      allowedFiles === undefined
        ? '{ name: "main" }'
        : `{ name: "main", allowedFiles: ${allowedFiles} }`;
    write("t.ts", taskReturning("ran", taskOptions));
    const envelope = await runFile("t.ts", runOptions);
    expect(envelope.error?.error_type).toBe("config_error");
    expect(envelope.error?.message).toContain(where);
    expect(envelope.error?.message).toContain(named);
  });
});

describe("capsule run", () => {
  it("refuses a host file import and keeps .capsule out of reach, end to end", async () => {
    write(
      "steal.ts",
      taskReturning("unused").replace(
        'import { task } from "@capsule-run/sdk";',
        'import { task } from "@capsule-run/sdk";\nimport x from "/proc/self/environ" with { type: "text" };\nconsole.log(x);',
      ),
    );
    const stolen = await runCapsule(["run", "steal.ts"], { cwd: project });
    expect(stolen.code).toBe(1);
    const envelope = JSON.parse(stolen.stdout);
    expect(envelope.error.error_type).toBe("compile_error");
    expect(envelope.error.message).toContain('"/proc/self/environ" cannot be imported');

    write(
      "plant.ts",
      `import { task } from "@capsule-run/sdk";
import fs from "node:fs";
export const main = task({ name: "main", allowedFiles: ["."] }, () => {
  try { fs.writeFileSync("/.capsule/cache/planted.json", "{}"); return "wrote"; }
  catch (error) { return (error as { code: string }).code; }
});
`,
    );
    const planted = await runCapsule(["run", "plant.ts"], { cwd: project });
    expect(JSON.parse(planted.stdout).result).toBe("EACCES");
    expect(existsSync(path.join(project, ".capsule", "cache", "planted.json"))).toBe(false);

    const mounted = await runCapsule(["run", "plant.ts", "--mount", "./.capsule::/c:rw"], {
      cwd: project,
    });
    expect(mounted.code).not.toBe(0);
    expect(mounted.stderr).toContain('".capsule" holds the runtime\'s own state');
  });
});
