// A Node app as a user makes one: an empty folder, `npm install <the packed tarball>`, then the CLI,
// `run()` from a plain .mjs file and from require(), and the app's own `tsc --strict`. Nothing of
// ours builds or runs at install time.
import { execFile } from "node:child_process";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope } from "../adapters/node/index.ts";
import { BUILD_FILES } from "../scripts/pack-manifest.mjs";
import { install, lockedVersion, makeProject, packProject, root } from "./support.ts";

const execFileAsync = promisify(execFile);

/** What an app writes to call the runtime: a JavaScript task and a Python one, from code. */
const APP = `import { run } from "capsule-portable/node";
const js = await run({
  code: 'import { task } from "@capsule-run/sdk"; export const main = task({ name: "main" }, (n: number) => n * 6);',
  args: ["7"],
});
const py = await run({
  language: "py",
  code: 'from capsule import task\\n@task(name="main")\\ndef main():\\n    return sum(range(10))\\n',
});
console.log(JSON.stringify({ js, py }));
`;

const REQUIRE_APP = `const { run } = require("capsule-portable/node");
run({ code: 'import { task } from "@capsule-run/sdk"; export const main = task({ name: "main" }, () => "required");' })
  .then((envelope) => console.log(JSON.stringify(envelope)));
`;

/** A consumer's own TypeScript, type-checked by its own tsc against the shipped declarations. */
const TYPED_APP = `import { type Envelope, features, run, shutdown } from "capsule-portable/node";
import type { RunOptions } from "capsule-portable/browser";
import type { CapsuleAppOptions } from "capsule-portable/workers";

const options: RunOptions = { code: "export {}" };
const app: CapsuleAppOptions = {};
const envelope: Envelope<number> = (await run({ file: "examples/hello.ts" })) as Envelope<number>;
console.log(envelope.execution.fuel_consumed, features.python, options, app);
await shutdown();
`;

/** `tsc --init`'s settings (TypeScript 5.9), plus the one line the README gives task authors. */
const TSCONFIG = {
  compilerOptions: {
    module: "nodenext",
    target: "esnext",
    types: ["node"],
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    noUncheckedSideEffectImports: true,
    moduleDetection: "force",
    skipLibCheck: true,
    noEmit: true,
    paths: { "@capsule-run/sdk": ["./node_modules/capsule-portable/dist/types/sdk.d.ts"] },
  },
};

let project: ReturnType<typeof makeProject>;
let packed: Awaited<ReturnType<typeof packProject>>;

async function inApp(command: string, args: string[], timeout = 120_000) {
  try {
    const { stdout, stderr } = await execFileAsync(command, args, { cwd: project.dir, timeout });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

const capsule = (...args: string[]) =>
  inApp(process.execPath, [join(project.dir, "node_modules/.bin/capsule"), ...args]);

async function runExample(file: string): Promise<Envelope> {
  const { stdout, stderr } = await capsule("run", file);
  expect(stdout, stderr).not.toBe("");
  return JSON.parse(stdout) as Envelope;
}

beforeAll(async () => {
  packed = await packProject();
  project = makeProject({
    "package.json": JSON.stringify({ name: "app", version: "1.0.0", type: "module" }),
    "app.mjs": APP,
    "require.cjs": REQUIRE_APP,
    "typed.ts": TYPED_APP,
    "tsconfig.json": JSON.stringify(TSCONFIG, null, 2),
  });
  cpSync(join(root, "examples"), join(project.dir, "examples"), {
    recursive: true,
    // Capsule's own examples bring their own dependencies (openai) and tsconfig.
    filter: (path) => !/\.test\.ts$|examples\/(output|workers|browser|capsule)\//.test(path),
  });
  await install(project.dir, [packed.tarball]);
  await install(
    project.dir,
    [`typescript@${lockedVersion("typescript")}`, `@types/node@${lockedVersion("@types/node")}`],
    true,
  );
}, 600_000);

afterAll(() => project?.remove());

describe("the packed tarball", () => {
  it("carries the build, the types and the browser folder, and no tests, benches or sources", () => {
    const files = packed.files;
    for (const needed of [...BUILD_FILES, "bin/capsule.mjs", "LICENSE", "README.md"]) {
      expect(files).toContain(needed);
    }
    const unwanted = files.filter(
      (file) =>
        /\.test\.ts$|^(bench|e2e|conformance|consumer|docs|playground|core|adapters|scripts|examples)\//.test(
          file,
        ) || /^dist\/(playground|workers-conformance|workers)\//.test(file),
    );
    expect(unwanted).toEqual([]);
    expect(files.filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"))).toEqual([
      "sdk/index.ts",
    ]);
  });

  it("is the size the README says", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const stated = /tarball is about (\d+) MB/.exec(readme);
    expect(stated, "README: 'tarball is about N MB'").not.toBeNull();
    // "About": within 0.6 MB, so a build a few kilobytes apart does not flip a rounding.
    expect(Math.abs(packed.bytes / 1e6 - Number(stated?.[1]))).toBeLessThan(0.6);
  });

  it("installs with no lifecycle scripts of ours and no .ts in its exports", () => {
    const installed = JSON.parse(
      readFileSync(join(project.dir, "node_modules/capsule-portable/package.json"), "utf8"),
    ) as { scripts?: unknown; exports: Record<string, unknown> };
    expect(installed.scripts).toBeUndefined();
    const targets = JSON.stringify(installed.exports).match(/"\.\/[^"]+"/g) ?? [];
    expect(targets.length).toBeGreaterThan(8);
    expect(targets.filter((target) => /\.ts"$/.test(target) && !/\.d\.ts"$/.test(target))).toEqual(
      [],
    );
  });
});

describe("the CLI, installed", () => {
  it("runs hello.ts and hello.py", async () => {
    expect(await runExample("examples/hello.ts")).toMatchObject({
      success: true,
      result: "Hello from Capsule!",
    });
    const python = await runExample("examples/hello.py");
    expect(python).toMatchObject({ success: true, result: "Hello from Capsule!" });
    expect(python.execution.fuel_consumed).toBeGreaterThan(0);
  }, 120_000);

  it("runs the examples that need no server: sub-tasks, limits and files, in both languages", async () => {
    for (const file of ["subtasks.ts", "subtasks.py"]) {
      const envelope = await runExample(`examples/${file}`);
      expect(envelope.error, file).toBeNull();
      expect(envelope.result, file).toHaveLength(3);
    }
    for (const file of ["limits.ts", "limits.py"]) {
      expect((await runExample(`examples/${file}`)).result, file).toEqual({
        spin: "fuel_exhausted",
        stuck: "timeout",
      });
    }
    for (const file of ["files.ts", "files.py"]) {
      const envelope = await runExample(`examples/${file}`);
      expect(envelope.error, file).toBeNull();
      expect(envelope.result, file).toMatchObject({ words: 9, written: 44 });
    }
  }, 300_000);

  it("prints its version and help, and names a bad file and a bad flag", async () => {
    expect((await capsule("--version")).stdout.trim()).toBe(
      (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version,
    );
    expect((await capsule("--help")).stdout).toContain("run [options] [file]");
    const missing = await capsule("run", "nowhere.ts");
    expect(missing.code).not.toBe(0);
    expect(missing.stdout + missing.stderr).toContain("nowhere.ts");
    const flag = await capsule("run", "--no-such-flag", "examples/hello.ts");
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("--no-such-flag");
  });
});

describe("the library, installed", () => {
  it("runs JavaScript and Python from a plain .mjs file, which then exits by itself", async () => {
    const { code, stdout, stderr } = await inApp(process.execPath, ["app.mjs"]);
    expect(code, stderr).toBe(0);
    const { js, py } = JSON.parse(stdout) as { js: Envelope; py: Envelope };
    expect(js).toMatchObject({ success: true, result: 42 });
    expect(py).toMatchObject({ success: true, result: 45 });
  }, 120_000);

  it("loads through require() from CommonJS", async () => {
    const { code, stdout, stderr } = await inApp(process.execPath, ["require.cjs"]);
    expect(code, stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ success: true, result: "required" });
  });

  it("says why when require() of ES modules is turned off", async () => {
    const { code, stderr } = await inApp(process.execPath, [
      "--no-experimental-require-module",
      "require.cjs",
    ]);
    expect(code).not.toBe(0);
    expect(stderr).toContain('await import("capsule-portable/node")');
  });
});

describe("the types, installed", () => {
  it("pass the app's tsc --strict, task files included through the SDK's paths entry", async () => {
    const { code, stdout } = await inApp(process.execPath, [
      join(project.dir, "node_modules/typescript/bin/tsc"),
      "-p",
      ".",
    ]);
    expect(stdout).toBe("");
    expect(code).toBe(0);
  });

  it("are real: a wrong option type fails the same check", async () => {
    writeFileSync(
      join(project.dir, "wrong.ts"),
      'import { run } from "capsule-portable/node";\nawait run({ file: 42 });\n',
    );
    try {
      const { code, stdout } = await inApp(process.execPath, [
        join(project.dir, "node_modules/typescript/bin/tsc"),
        "-p",
        ".",
      ]);
      expect(code).not.toBe(0);
      expect(stdout).toContain("wrong.ts");
    } finally {
      rmSync(join(project.dir, "wrong.ts"), { force: true });
    }
  });
});

/** A host program written for Capsule's runner, unchanged. */
const CAPSULE_HOST = `import { run } from "@capsule-run/sdk/runner";
const result = await run({ file: "hello.ts", args: ["runner"] });
console.log(JSON.stringify(result));
`;

/** A task file written for Capsule, type-checked through the package root with no paths line. */
const CAPSULE_TASK = `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main", compute: "LOW" }, (who: string): string => "hello " + who);
`;

describe("installed under Capsule's name (npm install @capsule-run/sdk@npm:capsule-portable)", () => {
  let aliased: ReturnType<typeof makeProject>;
  beforeAll(async () => {
    aliased = makeProject({
      "package.json": JSON.stringify({ name: "capsule-host", version: "1.0.0", type: "module" }),
      "host.mjs": CAPSULE_HOST,
      "hello.ts": CAPSULE_TASK,
      "tsconfig.json": JSON.stringify({
        compilerOptions: { ...TSCONFIG.compilerOptions, paths: undefined },
        files: ["hello.ts"],
      }),
    });
    // The registry alias needs the published package; a tarball installs under a name the same way.
    await install(aliased.dir, [`@capsule-run/sdk@file:${packed.tarball}`]);
    await install(
      aliased.dir,
      [`typescript@${lockedVersion("typescript")}`, `@types/node@${lockedVersion("@types/node")}`],
      true,
    );
  }, 600_000);
  afterAll(() => aliased?.remove());

  it("runs a host program that imports @capsule-run/sdk/runner", async () => {
    const { stdout, stderr } = await execFileAsync(process.execPath, ["host.mjs"], {
      cwd: aliased.dir,
      timeout: 120_000,
    });
    expect(JSON.parse(stdout), stderr).toMatchObject({ success: true, result: "hello runner" });
  }, 120_000);

  it("type-checks a task file's import of @capsule-run/sdk with no paths entry", async () => {
    const { stdout } = await execFileAsync(
      process.execPath,
      [join(aliased.dir, "node_modules/typescript/bin/tsc"), "-p", "."],
      { cwd: aliased.dir, timeout: 120_000 },
    ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "tsc failed" }));
    expect(stdout).toBe("");
  }, 120_000);
});

/** A task Capsule's `capsule build --export` would take: a sub-task and a file read. */
const COMPONENT_TASK = `import { task } from "@capsule-run/sdk";
import fs from "node:fs";
export const double = task({ name: "double", compute: "LOW" }, (n: number) => n * 2);
export const main = task({ name: "main", allowedFiles: ["data"] }, async (n: string) => {
  const sub = await double(Number(n));
  return { doubled: sub.result, text: fs.readFileSync("data/in.txt", "utf8") };
});
`;

describe("components from the installed package, with its optional peers installed", () => {
  let app: ReturnType<typeof makeProject>;
  const bin = () => join(app.dir, "node_modules/.bin/capsule");
  beforeAll(async () => {
    app = makeProject({
      "package.json": JSON.stringify({ name: "component-app", version: "1.0.0", type: "module" }),
      "agent.ts": COMPONENT_TASK,
      "data/in.txt": "inside",
    });
    await install(app.dir, [
      packed.tarball,
      ...[
        "@bytecodealliance/componentize-js",
        "@bytecodealliance/jco-transpile",
        "@bytecodealliance/preview2-shim",
        "binaryen",
      ].map((name) => `${name}@${lockedVersion(name)}`),
    ]);
  }, 600_000);
  afterAll(() => app?.remove());

  it("builds a component with capsule build --export and runs it with capsule exec, no source tree needed", async () => {
    const built = await execFileAsync(process.execPath, [bin(), "build", "agent.ts", "--export"], {
      cwd: app.dir,
      timeout: 300_000,
    });
    expect(built.stdout + built.stderr).toContain("agent.wasm");
    const { stdout } = await execFileAsync(
      process.execPath,
      [bin(), "exec", "agent.wasm", "21", "--allow-file", "data"],
      { cwd: app.dir, timeout: 300_000 },
    ).catch((error: { stdout?: string; stderr?: string }) => ({
      stdout: `${error.stdout ?? ""}${error.stderr ?? ""}`,
    }));
    expect(JSON.parse(stdout)).toMatchObject({
      success: true,
      result: { doubled: 42, text: "inside" },
    });
  }, 600_000);
});
