// Python cells on Node: runCode({ language: "python" }), runPython and loadPythonSandbox, each cell
// a Python task in its own child process (core/agent/python-cell.ts).
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPythonSandbox, loadSandboxes, runCode, runPython } from "./agent.ts";
import { shutdown } from "./index.ts";
import { makeProject } from "./test/fixtures.ts";

const project = makeProject();
let requests = 0;
const server = createServer((_request, response) => {
  requests += 1;
  response.end("pong");
});
let origin = "";

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await shutdown();
  project.cleanup();
});

const py = (code: string, options: Record<string, unknown> = {}) =>
  runCode({ language: "python", code, cwd: project.dir, ...options });

describe("Python cells on Node", { timeout: 120_000 }, () => {
  it("warms the sandboxes of both languages", async () => {
    await expect(loadPythonSandbox()).resolves.toBeUndefined();
    await expect(loadSandboxes()).resolves.toBeUndefined();
  });

  it("runPython returns the printed text followed by the last value, as Capsule's adapter does", async () => {
    expect(await runPython('print("Hello from Python!")\nx = 5 + 3\nx * 2')).toBe(
      "Hello from Python!\n16",
    );
  });

  it("runCode gives the envelope with output, stdout and the value as JSON", async () => {
    const envelope = await py('print("a", 1)\nprint("b", end="")\n{"n": (1, 2), "ok": True}');
    expect(envelope.success).toBe(true);
    expect(envelope.result).toEqual({
      output: "a 1\nb\n{'n': (1, 2), 'ok': True}",
      stdout: "a 1\nb",
      value: { n: [1, 2], ok: true },
    });
    expect(envelope.execution.task_name).toBe("main");
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
  });

  it("gives no value when the last statement is not an expression", async () => {
    const assigned = await py('print("only this")\nx = 1');
    expect(assigned.result).toEqual({ output: "only this", stdout: "only this\n", value: null });
    const loop = await py("for i in range(3):\n    i");
    expect(loop.result).toEqual({ output: "", stdout: "", value: null });
    expect(await runPython("")).toBe("");
  });

  it("gives repr() for a value JSON cannot hold, and awaits at the top level", async () => {
    const set = await py("{3, 1, 2}");
    expect(set.result).toMatchObject({ output: "{1, 2, 3}", value: "{1, 2, 3}" });
    const awaited = await py("import asyncio\nawait asyncio.sleep(0)\nb'\\x00' + bytes([1])");
    expect(awaited.result?.value).toBe("b'\\x00\\x01'");
    expect((await py("float('nan')")).result?.value).toBe("nan");
  });

  it("reports a syntax error as a compile_error saying what and where", async () => {
    const envelope = await py("x = 1\ny = (\n");
    expect(envelope.success).toBe(false);
    expect(envelope.error?.error_type).toBe("compile_error");
    expect(envelope.error?.message).toMatch(/^SyntaxError: .+\n {2}File "<cell>", line 2/);
    await expect(runPython("return 5")).rejects.toThrow(
      /^compile_error: SyntaxError: 'return' outside function/,
    );
  });

  it("throws an Error naming the exception type and message, then the cell's traceback", async () => {
    const failed = runPython("def f(n):\n    return n / 0\nf(1)");
    await expect(failed).rejects.toThrow(/^task_error: ZeroDivisionError: division by zero\n/);
    const message = (await failed.catch((error: Error) => error.message)) as string;
    expect(message).toContain('File "<cell>", line 3, in <module>\n    f(1)');
    expect(message).toContain('File "<cell>", line 2, in f\n    return n / 0');
    const envelope = await py("class Bad(Exception): pass\nraise Bad('no')");
    expect(envelope.error).toEqual(
      expect.objectContaining({
        error_type: "task_error",
        message: expect.stringMatching(/^Bad: no\n/),
      }),
    );
  });

  it("ends a busy loop with fuel_exhausted at LOW fuel, and runs it longer when given more", async () => {
    const spent = await py("while True:\n    pass");
    expect(spent.error?.error_type).toBe("fuel_exhausted");
    expect(spent.execution.fuel_consumed).toBe(100_000_000);
    await expect(runPython("while True: pass", { cwd: project.dir })).rejects.toThrow(
      /^fuel_exhausted: /,
    );
    const more = await py("sum(range(300_000))", { compute: "MEDIUM" });
    expect(more.result?.value).toBe(44999850000);
  });

  it("ends a cell at its timeout", async () => {
    const started = performance.now();
    const envelope = await py("import time\ntime.sleep(20)\n'late'", { timeout: "1s" });
    expect(envelope.error?.error_type).toBe("timeout");
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  it("refuses the network unless allowedHosts names the host", async () => {
    const code = `import urllib.request\nurllib.request.urlopen(${JSON.stringify(origin)}).read().decode()`;
    const before = requests;
    const refused = await py(code);
    expect(refused.error?.error_type).toBe("task_error");
    expect(refused.error?.message).toMatch(/^PermissionError: /);
    expect(requests).toBe(before);
    const granted = await py(code, { allowedHosts: ["127.0.0.1"] });
    expect(granted.result?.value).toBe("pong");
    expect(requests).toBe(before + 1);
  });

  it("passes envVariables through: only the names given are visible", async () => {
    const env = { CELL_NAME: "kept", CELL_OTHER: "hidden" };
    const code = "import os\n[os.environ.get('CELL_NAME'), os.environ.get('CELL_OTHER')]";
    expect((await py(code, { env })).result?.value).toEqual([null, null]);
    expect((await py(code, { env, envVariables: ["CELL_NAME"] })).result?.value).toEqual([
      "kept",
      null,
    ]);
  });

  it("leaves nothing behind: names and module changes of one call are absent in the next", async () => {
    const first = await py("import json\njson.leak = 1\nsecret = 41\nsecret + json.leak");
    expect(first.result?.value).toBe(42);
    const second = await py("import json\nhasattr(json, 'leak')");
    expect(second.result?.value).toBe(false);
    const third = await py("secret");
    expect(third.error?.error_type).toBe("task_error");
    expect(third.error?.message).toMatch(/^NameError: name 'secret' is not defined/);
  });

  it("cannot break out of the runner: its names redefined or SystemExit raised are a failure, not a result", async () => {
    const redefined = await py(
      [
        "def main(code): return {'stdout': '', 'display': 'forged', 'value': 'forged'}",
        "_run_cell = main",
        "CellError = None",
        "_fail = None",
        "import capsule",
        "raise SystemExit(0)",
      ].join("\n"),
    );
    expect(redefined.success).toBe(false);
    expect(redefined.error?.error_type).toBe("task_error");
    expect(redefined.error?.message).toMatch(/^SystemExit: 0\n/);
    await expect(runPython("import sys\nsys.exit()")).rejects.toThrow(/^task_error: SystemExit/);
    await expect(runPython("raise KeyboardInterrupt")).rejects.toThrow(
      /^task_error: KeyboardInterrupt/,
    );
    const ended = await py("import os\nos._exit(0)");
    expect(ended.success).toBe(false);
    expect(ended.error?.error_type).toBe("task_error");
  });

  it("streams print output to onLog and refuses unknown options as config_error", async () => {
    const lines: string[] = [];
    const envelope = await py('print("one")\nprint("two")\n3', {
      onLog: (_level: string, text: string) => lines.push(text),
    });
    expect(envelope.result?.output).toBe("one\ntwo\n3");
    expect(lines).toEqual(["one", "two"]);
    expect((await py("1", { bogus: true })).error?.message).toMatch(/unknown option "bogus"/);
    expect((await py("1", { compute: "NOPE" })).error?.error_type).toBe("config_error");
    const notCode = await runCode({ language: "python", code: 42 as unknown as string });
    expect(notCode.error?.error_type).toBe("config_error");
  });
});
