import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import { CompileError } from "../errors.ts";
import { runTreeInProcess } from "../runtime/run-in-process.ts";
import { DEFAULT_SETTINGS } from "../runtime/settings.ts";
import { compileTaskModule, MAX_SOURCE_CHARS } from "./task-module.ts";

const loadSucrase = () => import("sucrase");
const compile = (source: string, language: "ts" | "js" = "ts") =>
  compileTaskModule(source, language, { sourceName: "<task>.ts", loadSucrase });

async function failure(source: string, language: "ts" | "js" = "ts"): Promise<string> {
  const error = await compile(source, language).catch((thrown: unknown) => thrown);
  expect(error).toBeInstanceOf(CompileError);
  return (error as CompileError).message;
}

describe("compileTaskModule", () => {
  it("strips types, keeps imports for the sandbox's loader, and keeps every line in place", async () => {
    const source = [
      'import { task, type TaskOptions } from "@capsule-run/sdk";',
      "interface Args { who: string }",
      "const options: TaskOptions = { name: 'main' };",
      "enum Level { Low, High }",
      'export const main = task(options, (who: string): string => "hi " + who + Level.High);',
    ].join("\n");
    const bundle = await compile(source);
    expect(bundle.code).toContain('from "@capsule-run/sdk"');
    expect(bundle.code).not.toContain("interface");
    expect(bundle.code.split("\n")).toHaveLength(5);
    expect(bundle.code.split("\n")[4]).toMatch(/^export const main = task\(options, \(who\) =>/);
    expect(bundle.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(bundle.sourceMap ?? "{}").sources).toEqual(["<task>.ts"]);
  });

  it("uses JavaScript as written and never loads the transformer for it", async () => {
    const source = "export const main = 1;\n";
    const bundle = await compileTaskModule(source, "js", {
      sourceName: "<task>.js",
      loadSucrase: () => {
        throw new Error("the transformer was loaded for JavaScript");
      },
    });
    expect(bundle).toMatchObject({ code: source, sourceName: "<task>.js" });
  });

  it("gives the same program for the same source, every time", async () => {
    const source = readFileSync(new URL("../../examples/hello.ts", import.meta.url), "utf8");
    const [a, b] = await Promise.all([compile(source), compile(source)]);
    expect(a.code).toBe(b.code);
    expect(a.hash).toBe(b.hash);
  });

  it("reports a syntax error at its line and column", async () => {
    expect(await failure("const ok = 1;\nconst x: = 2;")).toBe("<task>.ts:2:10: Unexpected token");
  });

  it("refuses an unknown language, a non-string and an oversize source, naming them", async () => {
    await expect(
      compileTaskModule("", "py" as "ts", { sourceName: "x", loadSucrase }),
    ).rejects.toThrow('language: "py" is not supported; use "ts" or "js"');
    expect(await failure(42 as unknown as string)).toBe(
      "code: expected a string of ts source, got number",
    );
    expect(await failure("x".repeat(MAX_SOURCE_CHARS + 1), "js")).toMatch(
      /^code: 4194305 characters, over the 4194304-character limit/,
    );
  });
});

describe("the sandbox's module loader", () => {
  const runModule = async (source: string) =>
    runTreeInProcess({
      engine: loadEngine(),
      bundle: await compile(source),
      taskName: "main",
      argsJson: "[]",
      settings: DEFAULT_SETTINGS,
    });

  it("resolves the SDK and the Node built-ins, with and without node:", async () => {
    const envelope = await runModule(
      [
        'import { task } from "capsule-portable/sdk";',
        'import { join } from "node:path";',
        'import path from "path";',
        'import { Buffer } from "buffer";',
        'export const main = task({ name: "main" }, () => [join("a", "b"), path.sep, Buffer.from("hi").toString("hex")]);',
      ].join("\n"),
    );
    expect(envelope.error).toBe(null);
    expect(envelope.result).toEqual(["a/b", "/", "6869"]);
  });

  it("refuses any other import before the task's code runs, as a compile_error", async () => {
    for (const [specifier, expected] of [
      [
        "./helper.ts",
        /^"\.\/helper\.ts" cannot be imported: a task given as one file cannot import other files; a task file can import "@capsule-run\/sdk" and the Node built-ins fs, /,
      ],
      ["node:child_process", /^"node:child_process" is not available inside the sandbox;/],
      ["lodash", /^"lodash" cannot be imported inside the sandbox;/],
    ] as const) {
      const envelope = await runModule(
        `import { task } from "@capsule-run/sdk";\nimport "${specifier}";\nglobalThis.ran = true;\nexport const main = task({ name: "main" }, () => 1);`,
      );
      expect(envelope.error?.error_type).toBe("compile_error");
      expect(envelope.error?.message).toMatch(expected);
    }
  });

  it("maps error positions to the task's own lines", async () => {
    const envelope = await runModule(
      'import { task } from "@capsule-run/sdk";\ntype T = string;\n\nexport const main = task({ name: "main" }, (): T => {\n  throw new Error("here");\n});',
    );
    expect(envelope.error?.message).toContain("<task>.ts:5:");
  });
});
