import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadSandboxes, runCode, runJavaScript } from "./agent.ts";
import { makeProject } from "./test/fixtures.ts";

const project = makeProject();
afterAll(() => project.cleanup());

const js = (code: string, options: Record<string, unknown> = {}) =>
  runCode({ language: "javascript", code, cwd: project.dir, ...options });

describe("runJavaScript", () => {
  it("returns the console output followed by the last value, as Capsule's adapter does", async () => {
    expect(
      await runJavaScript('console.log("Hello from JavaScript!")\nlet x = 5 + 3\nx * 2', {
        cwd: project.dir,
      }),
    ).toBe("Hello from JavaScript!\n16");
  });

  it("keeps the value after a trailing semicolon (the script's completion value)", async () => {
    expect(await runJavaScript('console.log("hi"); let x = 5 + 3; x * 2;')).toBe("hi\n16");
    expect(await runJavaScript("const y = 2;")).toBe("");
    expect(await runJavaScript("if (true) { 'yes' } else { 'no' }")).toBe("yes");
  });

  it("throws an Error naming the error type and message", async () => {
    await expect(runJavaScript('throw new Error("boom")')).rejects.toThrow(
      /^task_error: Error: boom/,
    );
    await expect(runJavaScript("while (true) {}")).rejects.toThrow(/^fuel_exhausted: /);
  });
});

describe("runCode", () => {
  it("gives the envelope with output, stdout and the value as JSON", async () => {
    const envelope = await js('console.log("a", 1); console.warn("w"); ({ n: [1, 2] })');
    expect(envelope.success).toBe(true);
    expect(envelope.result).toEqual({
      output: 'a 1\nw\n{"n":[1,2]}',
      stdout: "a 1\nw\n",
      value: { n: [1, 2] },
    });
    expect(envelope.execution.task_name).toBe("main");
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
  });

  it("accepts TypeScript, top-level await and imports of the sandbox's Node built-ins", async () => {
    const envelope = await js(
      [
        'import { join } from "node:path"; import * as path from "path";',
        "import fs, { existsSync } from 'node:fs'",
        "import type { Stats } from 'node:fs'",
        "interface P { x: number }",
        "const p: P = { x: await Promise.resolve(20) };",
        "[join('a', 'b'), path.sep, typeof fs.readFileSync, typeof existsSync, p.x + 1];",
      ].join("\n"),
    );
    expect(envelope.result?.value).toEqual(["a/b", "/", "function", "function", 21]);
  });

  it("awaits a promise left as the last value, and describes values that are not JSON", async () => {
    expect((await js("Promise.resolve(7)")).result?.value).toBe(7);
    expect((await js("10n")).result).toMatchObject({ output: "10", value: null });
    expect((await js("function f() {}; f")).result?.output).toBe("[Function: f]");
    expect((await js("undefined")).result).toEqual({ output: "", stdout: "", value: null });
  });

  it("refuses what a cell cannot import, with a compile_error saying what can", async () => {
    const envelope = await js('import _ from "lodash"');
    expect(envelope.error?.error_type).toBe("compile_error");
    expect(envelope.error?.message).toMatch(
      /"lodash" cannot be imported in a cell.*fs, fs\/promises, path/,
    );
  });

  it("applies the agent defaults: LOW fuel, 256MB, 30s, nothing granted", async () => {
    const spin = await js("for (;;) {}");
    expect(spin.error?.error_type).toBe("fuel_exhausted");
    expect(spin.execution.fuel_consumed).toBe(100_000_000);
    const files = await js('import fs from "node:fs"; fs.readdirSync(".")');
    expect(files.error?.message).toMatch(/EACCES/);
    const net = await js('await fetch("https://example.com/")');
    expect(net.error?.error_type).toBe("permission_denied");
    const env = await js("process.env.HOME", { env: { HOME: "/root" } });
    expect(env.result?.value).toBeNull();
  });

  it("takes the task options: compute, ram, timeout, files, env", async () => {
    mkdirSync(join(project.dir, "data"), { recursive: true });
    writeFileSync(join(project.dir, "data", "in.txt"), "from the host");
    const read = await js('import fs from "node:fs"; fs.readFileSync("data/in.txt", "utf8")', {
      allowedFiles: [{ path: "./data", mode: "ro" }],
    });
    expect(read.result?.value).toBe("from the host");
    const env = await js("process.env.TOKEN", { envVariables: ["TOKEN"], env: { TOKEN: "t" } });
    expect(env.result?.value).toBe("t");
    const slow = await js("await new Promise((r) => setTimeout(r, 10_000))", { timeout: "100ms" });
    expect(slow.error?.error_type).toBe("timeout");
    const big = await js('const a = []; for (;;) a.push("x".repeat(4096))', {
      ram: "16MB",
      compute: "HIGH",
    });
    expect(big.error?.error_type).toBe("memory_exceeded");
    const more = await js("let n = 0; for (let i = 0; i < 3e5; i++) n += i; n", {
      compute: "MEDIUM",
    });
    expect(more.result?.value).toBe(44999850000);
  });

  it("reports bad options and an unknown language as config_error, never as a result", async () => {
    expect((await js("1", { compute: "NOPE" })).error?.error_type).toBe("config_error");
    expect((await js("1", { bogus: true })).error?.message).toMatch(/unknown option "bogus"/);
    const ruby = await runCode({ language: "ruby" as "python", code: "1 + 1" });
    expect(ruby.success).toBe(false);
    expect(ruby.error?.error_type).toBe("config_error");
    expect(ruby.error?.message).toMatch(/language must be "javascript" or "python"/);
  });

  it("leaves nothing behind: a global set by one call is absent in the next", async () => {
    expect((await js("globalThis.leak = 1; var v = 2; leak + v")).result?.value).toBe(3);
    expect((await js("[typeof leak, typeof v]")).result?.value).toEqual(["undefined", "undefined"]);
  });

  it("warms the sandbox", async () => {
    await expect(loadSandboxes()).resolves.toBeUndefined();
  });
});
