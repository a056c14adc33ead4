// Python tasks on Node: real Pyodide on the fuel-metered engine, in real locked-down child
// processes. Each run starts interpreters (seconds each), so cases are grouped per task file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LifecycleEvent } from "../../../core/runtime/events.ts";
import { gatheredNaps, mostAtOnce } from "../../../core/testing/overlap.ts";
import { features, run, shutdown } from "../index.ts";
import { packageRoot } from "../paths.ts";
import { PYTHON_SANDBOXES_AT_ONCE, pythonIsolation } from "./runner.ts";

const TIMEOUT = 180_000;
let dir: string;
let server: Server;
let port: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "capsule-python-"));
  server = createServer((_request, response) => response.end("reached the host"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await shutdown();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const py = (code: string, extra: Record<string, unknown> = {}) =>
  run({ code, language: "py", cwd: dir, env: {}, ...extra });

describe("Python tasks on Node", () => {
  it(
    "runs Capsule's README hello from a .py file, through run() and the CLI",
    async () => {
      const envelope = await run({ file: "examples/hello.py", cwd: packageRoot });
      expect(envelope).toMatchObject({
        success: true,
        result: "Hello from Capsule!",
        execution: { task_name: "main", retries: 0 },
      });
      expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
      const printed = execFileSync(
        process.execPath,
        [join(packageRoot, "bin/capsule.mjs"), "run", "examples/hello.py"],
        { cwd: packageRoot, encoding: "utf8", timeout: TIMEOUT },
      );
      expect(JSON.parse(printed)).toMatchObject({ success: true, result: "Hello from Capsule!" });
    },
    TIMEOUT,
  );

  it(
    "passes args as positional strings, finds a plain main(), and names tasks by function",
    async () => {
      const declared = await py(
        `from capsule import task\n\n@task(name="main")\ndef main(a, b):\n    return {"joined": a + "|" + b, "types": [type(a).__name__, type(b).__name__]}\n`,
        { args: ["x", "ü"] },
      );
      expect(declared.result).toEqual({ joined: "x|ü", types: ["str", "str"] });
      const plain = await py(`def main(*args):\n    return len(args)\n`, { args: ["1", "2"] });
      expect(plain.result).toBe(2);
      const byFunction = await py(
        `from capsule import task\n\n@task()\ndef helper():\n    return "helper ran"\n`,
        { task: "helper" },
      );
      expect(byFunction).toMatchObject({ success: true, result: "helper ran" });
    },
    TIMEOUT,
  );

  it(
    "runs the first declared task when there is no main, and a ram below the floor is memory_exceeded",
    async () => {
      const first = await py(
        `from capsule import task\n\n@task(name="first", compute="LOW")\ndef first(a):\n    return "first:" + a\n\n@task(name="second")\ndef second():\n    return "second"\n`,
        { args: ["x"] },
      );
      expect(first).toMatchObject({ success: true, result: "first:x" });
      // Its own options hold: LOW fuel runs out.
      const spin = await py(
        `from capsule import task\n\n@task(name="spin", compute="LOW")\ndef spin():\n    while True:\n        pass\n`,
      );
      expect(spin.error?.error_type).toBe("fuel_exhausted");
      // A plain main() still comes before the first task, as in Capsule.
      const plain = await py(
        `from capsule import task\n\n@task(name="other")\ndef other():\n    return "other"\n\ndef main():\n    return "plain"\n`,
      );
      expect(plain.result).toBe("plain");
      const small = await py(
        `from capsule import task\n\n@task(name="main", ram="10MB")\ndef main():\n    return 1\n`,
      );
      expect(small.error?.error_type).toBe("memory_exceeded");
      expect(small.error?.message).toBe(
        'ram: "10MB" is below the engine\'s floor of 48 MB, so the task ran out of memory before it could start; use at least "48MB"',
      );
    },
    TIMEOUT,
  );

  it(
    "capsule.http sends get, post, put, delete, patch and head through allowed_hosts, with Capsule's Response",
    async () => {
      const echo = createServer((request, response) => {
        let body = "";
        request.on("data", (chunk) => {
          body += chunk;
        });
        request.on("end", () => {
          response.setHeader("x-echo", "yes");
          response.end(
            JSON.stringify({
              method: request.method,
              type: request.headers["content-type"] ?? null,
              auth: request.headers.authorization ?? null,
              body,
            }),
          );
        });
      });
      await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
      const base = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
      try {
        const envelope = await py(
          [
            "from capsule import task, http",
            "import capsule.http",
            "",
            '@task(name="main", allowed_hosts=["127.0.0.1"])',
            "def main(base):",
            "    got = http.get(base + '/g', headers={'Authorization': 'k'})",
            "    out = {'get': got.json(), 'status': got.status_code, 'ok': got.ok(), 'echo': got.headers.get('x-echo'), 'repr': repr(got)}",
            "    out['post'] = http.post(base, json_data={'a': 1}).json()",
            "    out['put'] = http.put(base, body='raw').json()",
            "    out['patch'] = capsule.http.patch(base, json_data=[1]).json()",
            "    out['delete'] = http.delete(base).json()['method']",
            "    h = http.head(base)",
            "    out['head'] = [h.status_code, h.text]",
            "    try:",
            "        http.get('http://example.com/')",
            "    except PermissionError as error:",
            "        out['denied'] = str(error)",
            "    return out",
          ].join("\n"),
          { args: [base] },
        );
        expect(envelope.error).toBeNull();
        const result = envelope.result as Record<string, unknown>;
        expect(result).toMatchObject({
          get: { method: "GET", type: null, auth: "k", body: "" },
          status: 200,
          ok: true,
          echo: "yes",
          repr: "<Response [200]>",
          post: { method: "POST", type: "application/json", body: '{"a": 1}' },
          put: { method: "PUT", type: null, body: "raw" },
          patch: { method: "PATCH", type: "application/json", body: "[1]" },
          delete: "DELETE",
          head: [200, ""],
        });
        expect(result.denied).toContain("example.com");
        expect(envelope.execution.host_requests.map((r) => r.method)).toEqual([
          "GET",
          "POST",
          "PUT",
          "PATCH",
          "DELETE",
          "HEAD",
          "GET",
        ]);
      } finally {
        await new Promise((resolve) => echo.close(resolve));
      }
    },
    TIMEOUT,
  );

  it(
    "reports a Python traceback for task_error, a SyntaxError as compile_error, bad options as config_error",
    async () => {
      const failed = await py(
        `from capsule import task\n\n@task(name="main")\ndef main():\n    return 1 / 0\n`,
      );
      expect(failed.error?.error_type).toBe("task_error");
      expect(failed.error?.message).toContain("Traceback (most recent call last):");
      expect(failed.error?.message).toContain('File "<task>.py", line 5, in main');
      expect(failed.error?.message).toContain("ZeroDivisionError: division by zero");
      const syntax = await py(`def main(:\n    pass\n`);
      expect(syntax.error?.error_type).toBe("compile_error");
      expect(syntax.error?.message).toContain("SyntaxError");
      const badRam = await py(
        `from capsule import task\n\n@task(name="main", ram="lots")\ndef main():\n    return 1\n`,
      );
      expect(badRam.error).toMatchObject({ error_type: "config_error" });
      expect(badRam.error?.message).toContain("lots");
      const files = await py(
        `from capsule import task\n\n@task(name="main", allowed_files=["data"])\ndef main():\n    return 1\n`,
      );
      expect(files.error).toMatchObject({ error_type: "config_error" });
      expect(files.error?.message).toContain('allowed_files entry "./data": no such directory');
      const missing = await py(`x = 1\n`);
      expect(missing.error?.error_type).toBe("config_error");
    },
    TIMEOUT,
  );

  it(
    "counts the same fuel for the same task in fresh processes, and stops at the budget",
    async () => {
      const fib = `from capsule import task\n\n@task(name="main")\ndef main():\n    def fib(n):\n        return n if n < 2 else fib(n - 1) + fib(n - 2)\n    return fib(18)\n`;
      const first = await py(fib);
      const second = await py(fib);
      expect(first.result).toBe(2584);
      expect(second.execution.fuel_consumed).toBe(first.execution.fuel_consumed);
      const spent = await py(
        `from capsule import task\n\n@task(name="main", compute="20000000")\ndef main():\n    while True:\n        pass\n`,
      );
      expect(spent.error?.error_type).toBe("fuel_exhausted");
      expect(spent.execution.fuel_consumed).toBe(20_000_000);
    },
    TIMEOUT,
  );

  it(
    "kills a task at its timeout and ends a memory bomb at its ram",
    async () => {
      const busy = await py(
        `from capsule import task\n\n@task(name="main", compute="HIGH", timeout="1s")\ndef main():\n    while True:\n        pass\n`,
      );
      expect(busy.error?.error_type).toBe("timeout");
      const bomb = await py(
        `from capsule import task\n\n@task(name="main", ram="128MB")\ndef main():\n    return len(bytearray(300 * 1024 * 1024))\n`,
      );
      expect(bomb.error?.error_type).toBe("memory_exceeded");
      expect(bomb.error?.message).toContain("MemoryError");
    },
    TIMEOUT,
  );

  it(
    "counts a timeout from the hand-over: waiting for a place and a process's start-up are not the task's time, `running` comes after them, and start-up has its own bound",
    async () => {
      // Every place is held by a task whose fetch this server answers only when told to.
      let answerAtOnce = true;
      const held: (() => void)[] = [];
      const holdServer = createServer((_request, response) => {
        if (answerAtOnce) response.end("released");
        else held.push(() => response.end("released"));
      });
      await new Promise<void>((resolve) => holdServer.listen(0, "127.0.0.1", resolve));
      const holdPort = (holdServer.address() as AddressInfo).port;
      const holding = `import urllib.request\nfrom capsule import task\n\n@task(name="main", allowed_hosts=["127.0.0.1"], timeout="120s")\ndef main():\n    return urllib.request.urlopen("http://127.0.0.1:${holdPort}/").read().decode()\n`;
      const quickly = `from capsule import task\n\n@task(name="main", timeout="2s")\ndef main():\n    return "in time"\n`;
      try {
        // Each file's tasks are read once, remembered by its text: below, only attempts wait.
        expect(await py(holding)).toMatchObject({ result: "released" });
        expect(await py(quickly)).toMatchObject({ result: "in time" });
        answerAtOnce = false;
        const holders = Array.from({ length: PYTHON_SANDBOXES_AT_ONCE }, () => py(holding));
        for (let waited = 0; held.length < PYTHON_SANDBOXES_AT_ONCE; waited += 50) {
          if (waited > 120_000) throw new Error(`only ${held.length} holders started`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const events: LifecycleEvent[] = [];
        const queued = py(quickly, { onEvent: (event: LifecycleEvent) => events.push(event) });
        // Longer than the 2 s timeout, counted from its attempt's start it would have expired.
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        for (const release of held) release();
        const [quick, ...released] = await Promise.all([queued, ...holders]);
        expect(released.map((envelope) => envelope.result)).toEqual(holders.map(() => "released"));
        expect(quick).toMatchObject({ success: true, result: "in time" });
        const at = (type: string) => events.find((event) => event.type === type)?.at ?? Number.NaN;
        expect(at("running") - at("created")).toBeGreaterThanOrEqual(3_000);
        expect(at("completed") - at("running")).toBeLessThan(2_000);
      } finally {
        answerAtOnce = true;
        for (const release of held) release();
        await new Promise((resolve) => holdServer.close(resolve));
      }
      const events: LifecycleEvent[] = [];
      const at = (type: string) => events.find((event) => event.type === type)?.at ?? Number.NaN;
      // A task that overruns is still held to its timeout from that moment.
      const busy = await py(
        `from capsule import task\n\n@task(name="main", compute="HIGH", timeout="500ms")\ndef main():\n    while True:\n        pass\n`,
        { onEvent: (event: LifecycleEvent) => events.push(event) },
      );
      expect(busy.error?.error_type).toBe("timeout");
      expect(at("timed_out") - at("running")).toBeGreaterThanOrEqual(495);
      expect(at("timed_out") - at("running")).toBeLessThan(2_500);
      // Start-up has its own bound: here too short for any process to load. (The file's tasks
      // are read first, in time, and remembered by its text.)
      const slow = `from capsule import task\n\n@task(name="main", max_retries=1)\ndef main():\n    return "started"\n`;
      expect(await py(slow)).toMatchObject({ success: true, result: "started" });
      await shutdown();
      events.length = 0;
      const unstarted = await py(slow, {
        limits: { pythonStartMs: 50 },
        onEvent: (event: LifecycleEvent) => events.push(event),
      });
      expect(unstarted.error).toEqual({
        error_type: "internal_error",
        message:
          "the Python sandbox did not start within 50 ms (limits.pythonStartMs); the machine may be overloaded",
      });
      expect(unstarted.execution).toMatchObject({ retries: 1, fuel_consumed: 0 });
      // Each attempt is reported, running then its end, in order.
      expect(events.map((event) => `${event.type}:${event.attempt}`)).toEqual([
        "created:0",
        "running:1",
        "retrying:1",
        "running:2",
        "failed:2",
      ]);
    },
    TIMEOUT,
  );

  it(
    "runs a sub-task in a new sandbox and returns its envelope as a dict; os.environ holds only the listed variables",
    async () => {
      const envelope = await py(
        `import os\nfrom capsule import task\n\n@task(name="double", compute="LOW")\ndef double(n):\n    return n * 2\n\n@task(name="main", env_variables=["API_KEY", "MISSING"])\ndef main():\n    sub = double(21)\n    return {"sub": [sub["success"], sub["result"], sub["execution"]["task_name"]], "env": dict(os.environ)}\n`,
        { env: { API_KEY: "k-123", HOME: "/root", SECRET: "never" } },
      );
      expect(envelope.result).toEqual({ sub: [true, 42, "double"], env: { API_KEY: "k-123" } });
    },
    TIMEOUT,
  );

  it(
    "runs at most PYTHON_SANDBOXES_AT_ONCE jobs at once; a task waiting for its sub-tasks gives its place to them",
    async () => {
      const count = PYTHON_SANDBOXES_AT_ONCE + 2;
      const envelope = await py(gatheredNaps(count, 2));
      expect(envelope.error).toBeNull();
      const naps = envelope.result as [number, number][];
      expect(naps).toHaveLength(count);
      const most = mostAtOnce(naps);
      expect(most).toBeLessThanOrEqual(PYTHON_SANDBOXES_AT_ONCE);
      expect(most).toBeGreaterThanOrEqual(2);
      // The two left over waited for a place: the naps span two rounds of 2 s at least.
      const span =
        Math.max(...naps.map(([, end]) => end)) - Math.min(...naps.map(([start]) => start));
      expect(span).toBeGreaterThanOrEqual(4);
    },
    TIMEOUT,
  );

  it(
    "holds no host authority: the JS realm, the file system, code from strings, other processes, the network",
    async () => {
      const isolation = pythonIsolation();
      expect(features.python).toBe("child-process");
      const envelope = await py(
        `import ctypes, gc, js\nfrom capsule import task\n\ndef attempt(f):\n    try:\n        return "allowed: " + str(f())[:40]\n    except BaseException as e:\n        return "refused: " + type(e).__name__\n\n@task(name="main")\ndef main():\n    fs = js.process.getBuiltinModule("fs")\n    cp = js.process.getBuiltinModule("child_process")\n    return {\n        "env": list(js.Object.keys(js.process.env)),\n        "read": attempt(lambda: fs.readFileSync("/etc/passwd", "utf8")),\n        "write": attempt(lambda: fs.writeFileSync("/tmp/capsule-escape", "x")),\n        "spawn": attempt(lambda: cp.execSync("id")),\n        "eval": attempt(lambda: js.eval("1 + 1")),\n        "open": attempt(lambda: open("/etc/passwd").read()),\n        "objects": len(gc.get_objects()) > 0,\n        "signal_host": attempt(lambda: js.process.kill(${process.pid}, 0)),\n    }\n`,
      );
      expect(envelope.error).toBeNull();
      const result = envelope.result as Record<string, unknown>;
      expect(result.env).toEqual([]);
      expect(result.read).toBe("refused: JsException");
      expect(result.write).toBe("refused: JsException");
      expect(result.spawn).toBe("refused: JsException");
      expect(result.eval).toBe("refused: JsException");
      expect(result.open).toBe("refused: FileNotFoundError");
      expect(result.objects).toBe(true);
      // Declared per machine: without namespaces a child could signal or connect (see SECURITY.md).
      if (isolation.namespaces) {
        expect(result.signal_host).toBe("refused: JsException");
      }
      // ctypes reaches the engine's own functions; the one that would run JavaScript from a
      // string is refused by the process, and the run ends as the task's failure.
      const scripted = await py(
        `import ctypes\nfrom capsule import task\n\n@task(name="main")\ndef main():\n    ctypes.CDLL(None).emscripten_run_script(b"globalThis.escaped = 1")\n    return "ran"\n`,
      );
      expect(scripted.error?.error_type).toBe("task_error");
      expect(scripted.error?.message).toContain("Code generation from strings disallowed");
    },
    TIMEOUT,
  );

  it(
    "finds nothing with authority behind pyodide_js, to_js, subclass walks, the builtin importer, sockets or gc",
    async () => {
      const envelope = await py(
        `import gc, importlib.machinery, socket, sys
from capsule import task

def attempt(f):
    try:
        return "allowed: " + str(f())[:60]
    except BaseException as e:
        return "refused: " + type(e).__name__

@task(name="main")
def main():
    import pyodide_js, pyodide.code, pyodide.ffi
    core_spec = importlib.machinery.BuiltinImporter.find_spec("_pyodide_core")
    made = pyodide.ffi.to_js({"a": 1})
    return {
        "pyodide_js_fs": attempt(lambda: pyodide_js._module.FS.readFile("/etc/passwd")),
        "pyodide_js_process": attempt(lambda: pyodide_js._module.process.getBuiltinModule("fs").readFileSync("/etc/passwd", "utf8")),
        "run_js": attempt(lambda: pyodide.code.run_js("process.getBuiltinModule('fs').readFileSync('/etc/passwd', 'utf8')")),
        "to_js_constructor": attempt(lambda: made.constructor.constructor("return process")()),
        "core_spec": core_spec is not None,
        "socket": attempt(lambda: socket.create_connection(("127.0.0.1", ${port}), timeout=1)),
        "gc_objects_reaching_files": sum(1 for o in gc.get_objects() if "JsProxy" in type(o).__name__ and attempt(lambda: o.process.getBuiltinModule("fs").readFileSync("/etc/passwd", "utf8")).startswith("allowed")),
    }
`,
      );
      expect(envelope.error).toBeNull();
      expect(envelope.result).toEqual({
        pyodide_js_fs: expect.stringMatching(/^refused: /),
        pyodide_js_process: expect.stringMatching(/^refused: /),
        run_js: "refused: JsException",
        to_js_constructor: "refused: JsException",
        core_spec: true,
        socket: expect.stringMatching(/^refused: /),
        gc_objects_reaching_files: 0,
      });
      // os.system, found through a walk from object.__subclasses__(), asks Node for a child
      // process; the permission model refuses, and the run ends as the task's failure.
      const walked = await py(
        `def main():\n    for cls in object.__subclasses__():\n        found = getattr(getattr(cls, "__init__", None), "__globals__", {}).get("system")\n        if found is not None:\n            return found("id")\n    return "no os.system found"\n`,
      );
      expect(walked.error?.error_type).toBe("task_error");
      expect(walked.error?.message).toContain("Access to this API has been restricted");
    },
    TIMEOUT,
  );

  it(
    "holds ram against code that reaches the wasm memory or allocates from the JS realm",
    async () => {
      const envelope = await py(
        `import js, pyodide_js
from capsule import task

@task(name="main", ram="64MB")
def main():
    out = []
    try:
        pyodide_js._module.memory.grow(2000)
        out.append("grew the wasm memory past ram")
    except BaseException as e:
        out.append("refused: " + type(e).__name__)
    try:
        vm = js.process.getBuiltinModule("vm")
        vm.runInNewContext("const kept = []; for (let i = 0; i < 40; i++) { const b = new ArrayBuffer(50e6); new Uint8Array(b).fill(1); kept.push(b) } kept.length")
        out.append("allocated 2 GB")
    except BaseException as e:
        out.append("refused: " + type(e).__name__)
    return out
`,
      );
      const isolation = pythonIsolation();
      if (envelope.success) {
        const [grow, allocate] = envelope.result as string[];
        expect(grow).toBe("refused: JsException");
        if (isolation.processMemoryCap) expect(allocate).toBe("refused: JsException");
      } else {
        // The process ran out of its cap outside the engine: it ended, and the task with it.
        expect(isolation.processMemoryCap).toBe(true);
        expect(envelope.error?.error_type).not.toBe("internal_error");
      }
    },
    TIMEOUT,
  );

  it(
    "bounds work outside the metered engine by CPU time, without a timeout",
    async () => {
      // JavaScript the guest runs in its own process is not metered; the runtime watches the
      // process's CPU time (from /proc) against what the task's fuel allows, and ends it.
      const envelope = await py(
        `import js
from capsule import task

@task(name="main", compute="LOW")
def main():
    js.process.getBuiltinModule("vm").runInNewContext("for (;;) {}")
`,
      );
      expect(envelope.error?.error_type).toBe("fuel_exhausted");
      expect(envelope.error?.message).toContain("more CPU time than its fuel allows");
    },
    TIMEOUT,
  );

  it(
    "cannot reach the network where the machine gives it no network; elsewhere the table says so",
    async () => {
      const envelope = await py(
        // Node's http, from the task's realm (its fetch does not load in the child at all).
        `import js
from pyodide.ffi import create_proxy
from capsule import task

def get(resolve, reject):
    def answered(response):
        body = []
        response.setEncoding("utf8")
        response.on("data", create_proxy(lambda text: body.append(text)))
        response.on("end", create_proxy(lambda *_: resolve("reached: " + "".join(body))))
    try:
        request = js.process.getBuiltinModule("http").get("http://127.0.0.1:${port}/", create_proxy(answered))
        request.on("error", create_proxy(lambda error: resolve("refused: " + str(error.code))))
    except BaseException as e:
        resolve("refused: " + type(e).__name__)

@task(name="main")
async def main():
    return await js.Promise.new(create_proxy(get))
`,
      );
      const isolation = pythonIsolation();
      if (isolation.namespaces || isolation.permissionModelRefusesNetwork) {
        expect(envelope.result).toMatch(/^refused: (ENETUNREACH|ECONNREFUSED|ERR_ACCESS_DENIED)$/);
      } else {
        // Declared, not hidden: before Node 25, nothing denies a process the network without
        // namespaces (permission-model.test.ts shows each way out, on each line).
        expect(envelope.result).toBe("reached: reached the host");
      }
    },
    TIMEOUT,
  );

  it(
    "ignores forged or malformed bridge messages and carries on",
    async () => {
      const envelope = await py(
        `import _capsule_host, capsule, js\nfrom capsule import task\n\n@task(name="main")\ndef main():\n    fs = js.process.getBuiltinModule("fs")\n    out = []\n    try:\n        _capsule_host.run_subtask("no_such_task", "not json")\n    except Exception as e:\n        out.append(type(e).__name__)\n    try:\n        capsule.fetch("https://example.com/")\n    except Exception as e:\n        out.append(type(e).__name__)\n    fs.writeSync(3, 'M{"type": "request", "request": {"op": "read_host_file", "path": "/etc/passwd"}}\\n')\n    fs.writeSync(3, 'M{"type": "call", "id": 1e300, "request": null}\\nMnot json\\n')\n    out.append("still running")\n    return out\n`,
      );
      expect(envelope.success).toBe(true);
      expect((envelope.result as string[]).at(-1)).toBe("still running");
      expect(envelope.result).toEqual(["JsException", "PermissionError", "still running"]);
    },
    TIMEOUT,
  );
});
