import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// Python cells in a real Chromium: runCode({ language: "python" }), runPython and
// loadPythonSandbox from the built dist/browser, each cell a Python task in a sandbox Worker.
const root = fileURLToPath(new URL("..", import.meta.url));

let server: StaticServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  server = await serveStatic(root);
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(`${server.origin}/examples/browser/index.html`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** Runs `body` in the page with the built module as `capsule` (a string: no test transform). */
function inPage<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

interface Outcome {
  success: boolean;
  result: { output: string; stdout: string; value: unknown } | null;
  error: { error_type: string; message: string } | null;
  fuel: number;
}

/** One Python cell in the page: its envelope, reduced. */
function py(code: string, options: Record<string, unknown> = {}): Promise<Outcome> {
  return inPage<Outcome>(`
    const envelope = await capsule.runCode({ language: "python", code: ${JSON.stringify(code)}, ...${JSON.stringify(options)} });
    return { success: envelope.success, result: envelope.result, error: envelope.error, fuel: envelope.execution.fuel_consumed };
  `);
}

describe("Python cells in Chromium", { timeout: 180_000 }, () => {
  it("loads, then runPython returns the printed text followed by the last value", async () => {
    const text = await inPage<string>(`
      await capsule.loadPythonSandbox();
      await capsule.loadSandboxes();
      return capsule.runPython('print("Hello from Python!")\\nx = 5 + 3\\nx * 2');
    `);
    expect(text).toBe("Hello from Python!\n16");
  });

  it("gives the envelope, no value after a statement, and repr() where JSON cannot hold it", async () => {
    expect((await py('print("a")\n{"n": (1, 2)}')).result).toEqual({
      output: "a\n{'n': (1, 2)}",
      stdout: "a\n",
      value: { n: [1, 2] },
    });
    expect((await py('print("only")\nx = 1')).result).toEqual({
      output: "only",
      stdout: "only\n",
      value: null,
    });
    expect((await py("{2, 1}")).result?.value).toBe("{1, 2}");
  });

  it("words failures as the error type and message: syntax, exceptions, SystemExit", async () => {
    const syntax = await py("y = (\n");
    expect(syntax.error?.error_type).toBe("compile_error");
    expect(syntax.error?.message).toMatch(/^SyntaxError: .+\n {2}File "<cell>", line 1/);
    const thrown = await inPage<string>(`
      return capsule.runPython("1 / 0").then(() => "no error", (error) => error.message);
    `);
    expect(thrown).toMatch(/^task_error: ZeroDivisionError: division by zero\n/);
    const exited = await py(
      "def main(code): return 'forged'\n_run_cell = main\nraise SystemExit(0)",
    );
    expect(exited.success).toBe(false);
    expect(exited.error?.message).toMatch(/^SystemExit: 0/);
  });

  it("ends a busy loop with fuel_exhausted and a sleep at its timeout", async () => {
    const spent = await py("while True:\n    pass");
    expect(spent.error?.error_type).toBe("fuel_exhausted");
    expect(spent.fuel).toBe(100_000_000);
    const late = await py("import time\ntime.sleep(20)", { timeout: "1s" });
    expect(late.error?.error_type).toBe("timeout");
  });

  it("refuses the network unless allowedHosts names the host; nothing leaks to the next cell", async () => {
    const url = `${server.origin}/package.json`;
    const code = `import urllib.request\nsecret = 1\nurllib.request.urlopen(${JSON.stringify(url)}).status`;
    const refused = await py(code);
    expect(refused.error?.message).toMatch(/^PermissionError: /);
    const granted = await py(code, { allowedHosts: ["127.0.0.1"] });
    expect(granted.result?.value).toBe(200);
    const next = await py("secret");
    expect(next.error?.message).toMatch(/^NameError: name 'secret' is not defined/);
  });
});
