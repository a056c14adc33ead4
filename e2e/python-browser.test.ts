// Python tasks in a real Chromium: Pyodide on the metered engine in a Worker inside an
// opaque-origin iframe that may fetch nothing (adapters/browser/python/). Every attempt loads an
// interpreter (seconds each), so the cases share one page and group their tasks per file: a
// file's tasks are read once, then each run takes one fresh sandbox.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run as runOnNode, shutdown as shutdownNode } from "../adapters/node/index.ts";
import type { Envelope } from "../core/runtime/envelope.ts";
import { gatheredNaps, mostAtOnce } from "../core/testing/overlap.ts";
import {
  CAPSULE_README_PYTHON,
  FILES_EXAMPLE_OUTPUT,
  FILES_PY_RESULT,
} from "../core/testing/python-examples.ts";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const TIMEOUT = 240_000;
const SECRET = "page-secret-7f3a9c";

let server: StaticServer;
/** A server only a task that lists it may reach, through the page: it records every path asked for. */
let bait: Server;
let baitOrigin: string;
/** The path no sandbox may reach by any route. */
let baitUrl: string;
const baitPaths: string[] = [];
let browser: Browser;
let page: Page;
const timings: Record<string, number> = {};

beforeAll(async () => {
  server = await serveStatic(root);
  bait = createServer((request, response) => {
    baitPaths.push(request.url ?? "");
    response.writeHead(200, { "access-control-allow-origin": "*" }).end("reached the host");
  });
  await new Promise<void>((resolve) => bait.listen(0, "127.0.0.1", resolve));
  baitOrigin = `http://127.0.0.1:${(bait.address() as AddressInfo).port}`;
  baitUrl = `${baitOrigin}/secret`;
  browser = await launchChromium();
  page = await browser.newPage();
  await page.context().addCookies([{ name: "capsule_secret", value: SECRET, url: server.origin }]);
  await page.goto(`${server.origin}/examples/browser/index.html`);
  // What the page holds that a task must never see: a variable, its storage, a channel (and a cookie).
  await page.evaluate((secret) => {
    const scope = window as unknown as Record<string, unknown>;
    scope.capsuleSecret = secret;
    localStorage.setItem("capsule-secret", secret);
    const heard: unknown[] = [];
    scope.capsuleHeard = heard;
    new BroadcastChannel("capsule").onmessage = (event) => heard.push(event.data);
  }, SECRET);
});

afterAll(async () => {
  if (Object.keys(timings).length > 0) console.info("Python in Chromium (ms):", timings);
  await browser?.close();
  await server?.close();
  await new Promise((resolve) => bait?.close(resolve));
  await shutdownNode();
});

/** Runs `body` in `tab` with the built module as `capsule` (a string: the runner must not transform it). */
function withCapsule<T>(body: string, tab: Page = page): Promise<T> {
  return tab.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

function runPy(code: string, options: Record<string, unknown> = {}): Promise<Envelope> {
  return withCapsule(
    `return capsule.run(${JSON.stringify({ code, language: "py", ...options })});`,
  );
}

/** Writes each file (path in the app's OPFS root: text) from the page, as a task will see it. */
function seedOpfs(files: Record<string, string>): Promise<void> {
  return withCapsule(`
    for (const [path, text] of Object.entries(${JSON.stringify(files)})) await capsule.writeFile(path, text);`);
}

/** Runs `task` of `code` on Node in a temporary project holding `files`. */
async function runOnNodeWithFiles(code: string, task: string, files: Record<string, string>) {
  const project = mkdtempSync(join(tmpdir(), "capsule-py-files-"));
  try {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(project, path)), { recursive: true });
      writeFileSync(join(project, path), text);
    }
    return await runOnNode({ code, language: "py", task, cwd: project, env: {} });
  } finally {
    rmSync(project, { recursive: true, force: true });
  }
}

async function timed<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    timings[name] = Math.round(performance.now() - started);
  }
}

const hello = readFileSync(join(root, "examples/hello.py"), "utf8");

const tasks = `import asyncio
from capsule import task


@task(name="join")
def join(a, b):
    return {"joined": a + "|" + b, "types": [type(a).__name__, type(b).__name__]}


@task(name="fails")
def fails():
    return 1 / 0


@task(name="fib")
def fib_task():
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)
    return fib(18)


@task(name="spin", compute="20000000")
def spin():
    while True:
        pass


@task(name="busy", compute="HIGH", timeout="1500ms")
def busy():
    while True:
        pass


@task(name="quick", timeout="1s")
def quick():
    return "in time"


@task(name="forever", compute="HIGH")
def forever():
    while True:
        pass


@task(name="hog", ram="128MB")
def hog():
    data = bytearray(300 * 1024 * 1024)
    return len(data)


@task(name="square", compute="LOW")
async def square(n):
    return n * n


@task(name="gather", timeout="60s")
async def gather():
    first, second = await asyncio.gather(square(3), square(4))
    return [first, second]


@task(name="double", compute="LOW")
def double(n):
    return 2 * n


@task(name="blocking_call")
def blocking_call():
    return double(2)


@task(name="env", env_variables=["API_KEY"])
def env():
    import os
    return {"key": os.environ.get("API_KEY"), "other": os.environ.get("OTHER")}


@task(name="fetch_allowed", allowed_hosts=["127.0.0.1"], timeout="30s")
async def fetch_allowed(url):
    import capsule
    reply = await capsule.fetch_async(url)
    return {"status": reply["status"], "body": reply["body"].decode()}


@task(name="fetch_urllib", allowed_hosts=["127.0.0.1"], timeout="30s")
def fetch_urllib(url):
    import time
    import urllib.request
    started = time.monotonic()
    time.sleep(0.5)
    with urllib.request.urlopen(url) as response:
        return {"status": response.status, "body": response.read().decode(), "slept": time.monotonic() - started >= 0.5}


@task(name="fetch_denied", timeout="30s")
async def fetch_denied(url):
    import capsule
    try:
        await capsule.fetch_async(url)
        return "reached"
    except PermissionError as error:
        return "refused: " + str(error)


@task(name="files", allowed_files=[{"path": "./py-data", "mode": "read-only"}, "./py-out"])
def files():
    import os
    import pathlib
    with open("py-data/in.txt") as file:
        text = file.read()
    pathlib.Path("py-out/sub").mkdir(parents=True, exist_ok=True)
    pathlib.Path("py-out/sub/upper.txt").write_text(text.upper())
    with open("/py-out/log.txt", "a") as log:
        log.write("appended\\n")
    os.remove("py-out/old.txt")
    refused = {}
    try:
        with open("py-data/in.txt", "w") as file:
            file.write("overwritten?")
    except OSError as error:
        refused["read-only"] = str(error)
    for path in ["/etc/passwd", "py-data/../package.json"]:
        try:
            open(path).read()
        except OSError as error:
            refused[path] = type(error).__name__
    return {"text": text, "listing": sorted(os.listdir("py-out")), "refused": refused}


@task(name="write_then_fail", allowed_files=["./py-out"])
def write_then_fail():
    with open("py-out/partial.txt", "w") as file:
        file.write("kept")
    raise RuntimeError("after writing")


@task(name="read_back", allowed_files=["./py-out"])
def read_back():
    with open("py-out/partial.txt") as file:
        return file.read()


@task(name="files_missing", allowed_files=["./nowhere"])
def files_missing():
    return "ran"
`;

describe("Python tasks in Chromium", () => {
  it(
    "runs Capsule's hello with the same envelope as on Node, from the build's snapshot",
    async () => {
      const first = await timed("firstRun", () => runPy(hello));
      const readiness = await timed("aheadReady", () =>
        withCapsule<{ loadMs: number; fromSnapshot: boolean }>("return capsule.preparePython();"),
      );
      const second = await timed("warmRun", () => runPy(hello));
      const onNode = await runOnNode({ code: hello, language: "py", cwd: root, env: {} });
      for (const envelope of [first, second]) {
        expect(envelope).toMatchObject({
          success: true,
          result: "Hello from Capsule!",
          error: null,
          execution: { task_name: "main", retries: 0, host_requests: [] },
        });
        expect(Object.keys(envelope)).toEqual(Object.keys(onNode));
        expect(Object.keys(envelope.execution).sort()).toEqual(
          Object.keys(onNode.execution).sort(),
        );
        expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
        expect(envelope.execution.ram_used).toBeGreaterThanOrEqual(30 * 1024 * 1024);
      }
      expect(onNode.result).toBe(first.result);
      expect(readiness.fromSnapshot).toBe(true);
      timings.workerLoad = readiness.loadMs;
    },
    TIMEOUT,
  );

  it(
    "starts a sandbox from scratch when the page has no snapshot",
    async () => {
      const context = await browser.newContext();
      const fresh = await context.newPage();
      try {
        await fresh.route("**/pyodide-snapshot.bin", (route) => route.fulfill({ status: 404 }));
        await fresh.goto(`${server.origin}/examples/browser/index.html`);
        const readiness = await timed("scratchReady", () =>
          withCapsule<{ loadMs: number; fromSnapshot: boolean }>(
            "return capsule.preparePython();",
            fresh,
          ),
        );
        expect(readiness.fromSnapshot).toBe(false);
        timings.scratchWorkerLoad = readiness.loadMs;
        const envelope = await withCapsule<Envelope>(
          `return capsule.run(${JSON.stringify({ code: hello, language: "py" })});`,
          fresh,
        );
        expect(envelope).toMatchObject({ success: true, result: "Hello from Capsule!" });
      } finally {
        await context.close();
      }
    },
    TIMEOUT,
  );

  it(
    "passes args as strings, finds a plain main(), and reports tracebacks and syntax errors",
    async () => {
      const joined = await runPy(tasks, { task: "join", args: ["x", "ü"] });
      expect(joined.result).toEqual({ joined: "x|ü", types: ["str", "str"] });
      const plain = await runPy("def main(*args):\n    return len(args)\n", { args: ["1", "2"] });
      expect(plain).toMatchObject({ success: true, result: 2 });
      const failed = await runPy(tasks, { task: "fails" });
      expect(failed.error?.error_type).toBe("task_error");
      expect(failed.error?.message).toContain("Traceback (most recent call last):");
      expect(failed.error?.message).toContain('File "<task>.py", line 12, in fails');
      expect(failed.error?.message).toContain("ZeroDivisionError: division by zero");
      const syntax = await runPy("def main(:\n    pass\n");
      expect(syntax.error?.error_type).toBe("compile_error");
      expect(syntax.error?.message).toContain("SyntaxError");
    },
    TIMEOUT,
  );

  it(
    "counts the same fuel in fresh sandboxes and stops a task at its exact budget",
    async () => {
      const first = await runPy(tasks, { task: "fib" });
      const second = await runPy(tasks, { task: "fib" });
      expect(first.result).toBe(2584);
      expect(second.execution.fuel_consumed).toBe(first.execution.fuel_consumed);
      const spent = await runPy(tasks, { task: "spin" });
      expect(spent.error?.error_type).toBe("fuel_exhausted");
      expect(spent.error?.message).toContain("budget of 20000000 fuel");
      expect(spent.execution.fuel_consumed).toBe(20_000_000);
    },
    TIMEOUT,
  );

  it(
    "terminates a busy loop at its timeout, and an aborted run, while the page keeps responding",
    async () => {
      const busy = await runPy(tasks, { task: "busy" });
      expect(busy.error).toEqual({ error_type: "timeout", message: "timed out after 1500 ms" });
      expect(await page.evaluate(() => 6 * 7)).toBe(42);
      // Aborted once it runs: the sandbox ahead is loaded first, so the abort lands in the loop.
      const aborted = await withCapsule<Envelope>(`
        await capsule.preparePython();
        const controller = new AbortController();
        // Aborted once it runs, however long the start takes on a loaded machine.
        return capsule.run({
          ...${JSON.stringify({ code: tasks, language: "py", task: "forever" })},
          signal: controller.signal,
          onEvent: (event) => { if (event.type === "running") setTimeout(() => controller.abort(), 500); },
        });`);
      expect(aborted.error?.error_type).toBe("timeout");
      expect(aborted.error?.message).toContain("cancelled by its caller");
    },
    TIMEOUT,
  );

  it(
    "counts a timeout from the hand-over: a fresh Pyodide's start-up is not the task's time, and has its own bound",
    async () => {
      // The file's tasks are read once (remembered by its text); then no sandbox is loaded ahead.
      expect(await runPy(tasks, { task: "quick" })).toMatchObject({ result: "in time" });
      const timed = await withCapsule<{
        envelope: Envelope;
        busy: Envelope;
        gaps: Record<string, number>;
      }>(`
        capsule.shutdown();
        await new Promise((resolve) => setTimeout(resolve, 0));
        const at = {};
        const events = (event) => { at[event.type] ??= event.at; };
        const quick = await capsule.run({
          ...${JSON.stringify({ code: tasks, language: "py", task: "quick" })},
          onEvent: events,
        });
        const gaps = { start: at.running - at.created, quick: at.completed - at.running };
        for (const key of Object.keys(at)) delete at[key];
        const envelope = await capsule.run({
          ...${JSON.stringify({ code: tasks, language: "py", task: "busy" })},
          onEvent: events,
        });
        gaps.busy = at.timed_out - at.running;
        return { envelope: quick, busy: envelope, gaps };`);
      expect(timed.envelope).toMatchObject({ success: true, result: "in time" });
      // Loading Pyodide (3.5 s p50 here) took longer than the 1 s timeout, which did not count it.
      expect(timed.gaps.start).toBeGreaterThan(1_000);
      expect(timed.gaps.quick).toBeLessThan(1_000);
      // "busy" (1500 ms) is held to its timeout from its own hand-over.
      expect(timed.busy.error).toEqual({
        error_type: "timeout",
        message: "timed out after 1500 ms",
      });
      expect(timed.gaps.busy).toBeGreaterThanOrEqual(1_495);
      expect(timed.gaps.busy).toBeLessThan(4_000);
      // Start-up has its own bound: here too short for any Pyodide to load.
      const unstarted = await withCapsule<{ envelope: Envelope; events: string[] }>(`
        capsule.shutdown();
        await new Promise((resolve) => setTimeout(resolve, 0));
        const events = [];
        const envelope = await capsule.run({
          ...${JSON.stringify({ code: tasks, language: "py", task: "quick", limits: { pythonStartMs: 50 } })},
          onEvent: (event) => events.push(event.type + ":" + event.attempt),
        });
        return { envelope, events };`);
      expect(unstarted.envelope.error).toEqual({
        error_type: "internal_error",
        message:
          "the Python sandbox did not start within 50 ms (limits.pythonStartMs); the machine may be overloaded",
      });
      expect(unstarted.envelope.execution.fuel_consumed).toBe(0);
      expect(unstarted.events).toEqual(["created:0", "running:1", "failed:1"]);
    },
    TIMEOUT,
  );

  it(
    "ends a task over its ram with memory_exceeded",
    async () => {
      const hog = await runPy(tasks, { task: "hog" });
      expect(hog.error?.error_type).toBe("memory_exceeded");
      expect(hog.error?.message).toContain("MemoryError");
    },
    TIMEOUT,
  );

  it(
    "runs sub-tasks from an async def task at the same time, each in its own sandbox, a few at once",
    async () => {
      const gathered = await runPy(tasks, { task: "gather" });
      expect(gathered).toMatchObject({
        success: true,
        result: [
          { success: true, result: 9, execution: { task_name: "square" } },
          { success: true, result: 16, execution: { task_name: "square" } },
        ],
      });
      // At most PYTHON_SANDBOXES_AT_ONCE run at once; the gathering task gives its place up.
      const atOnce = Math.max(4, await page.evaluate(() => navigator.hardwareConcurrency));
      const naps = await runPy(gatheredNaps(atOnce + 2, 1));
      expect(naps.error).toBeNull();
      const intervals = naps.result as [number, number][];
      expect(intervals).toHaveLength(atOnce + 2);
      expect(mostAtOnce(intervals)).toBeLessThanOrEqual(atOnce);
      expect(mostAtOnce(intervals)).toBeGreaterThanOrEqual(2);
      // No shared memory in a page: a plain def waits for its sub-task by switching stacks.
      const blocking = await runPy(tasks, { task: "blocking_call" });
      expect(blocking.error).toBeNull();
      expect(blocking.result).toMatchObject({ success: true, result: 4 });
    },
    TIMEOUT,
  );
});

/**
 * Each task reaches the sandbox's JavaScript by another route, then runs the same probe there:
 * everything a page could reach (network, storage, its own origin, a channel, code from strings)
 * must be refused, and nothing of the page's may be visible.
 */
const boundary = String.raw`import json
from capsule import task

async def _attempt(out, name, work):
    try:
        out[name] = "reached: " + str(await work())[:80]
    except BaseException as error:
        out[name] = "refused: " + type(error).__name__ + ": " + str(error)[:200]


def _settled(js, start):
    """A JavaScript promise that start(resolve, reject) settles."""
    from pyodide.ffi import create_once_callable
    return js.Promise.new(create_once_callable(start))


async def _probe(js, url, page_url):
    """Everything a page could reach, tried from the sandbox's JavaScript through the js module
    (scripts of the task's own are refused: no importScripts, no Worker, no code from strings)."""
    from pyodide.ffi import create_proxy, to_js
    out = {"origin": str(js.location.origin)}
    for name in ["document", "parent", "localStorage"]:
        out[name] = "undefined" if getattr(js, name, None) is None else "object"
    out["secret"] = "undefined" if not hasattr(js, "capsuleSecret") else "object"

    async def fetch(target):
        return await (await js.fetch(target)).text()

    def xhr(target):
        async def work():
            request = js.XMLHttpRequest.new()
            request.open("GET", target, False)
            request.send()
            return request.responseText
        return work

    async def websocket():
        def start(resolve, reject):
            socket = js.WebSocket.new(url.replace("http", "ws"))
            socket.onopen = create_proxy(lambda event: resolve("open"))
            socket.onerror = create_proxy(lambda event: reject(js.Error.new("no connection")))
        return await _settled(js, start)

    async def indexed_db():
        def start(resolve, reject):
            opening = js.indexedDB.open("probe")
            opening.onsuccess = create_proxy(lambda event: resolve("opened"))
            opening.onerror = create_proxy(lambda event: reject(opening.error))
        return await _settled(js, start)

    async def call(work):
        return work()

    async def nested_worker():
        options = to_js({"type": "text/javascript"}, dict_converter=js.Object.fromEntries)
        blob = js.Blob.new(to_js(["fetch(" + json.dumps(url) + ")"]), options)
        return js.Worker.new(js.URL.createObjectURL(blob))

    await _attempt(out, "fetch", lambda: fetch(url))
    await _attempt(out, "pageFetch", lambda: fetch(page_url))
    await _attempt(out, "xhr", xhr(url))
    await _attempt(out, "pageXhr", xhr(page_url))
    await _attempt(out, "websocket", websocket)
    await _attempt(out, "importScripts", lambda: call(lambda: js.importScripts(url)))
    await _attempt(out, "indexedDB", indexed_db)
    await _attempt(out, "caches", lambda: js.caches.open("probe"))
    await _attempt(out, "opfs", lambda: js.navigator.storage.getDirectory())
    await _attempt(out, "eval", lambda: call(lambda: js.eval("1 + 1")))
    await _attempt(out, "Function", lambda: call(lambda: js.Function.new("return 1")()))
    await _attempt(out, "nestedWorker", nested_worker)
    js.BroadcastChannel.new("capsule").postMessage("heard from the sandbox")
    return out


@task(name="via_js", compute="HIGH", timeout="30s")
async def via_js(url, page_url):
    import js
    return await _probe(js, url, page_url)


@task(name="via_pyodide_js", compute="HIGH", timeout="30s")
async def via_pyodide_js(url, page_url):
    import pyodide_js
    await pyodide_js.loadPackage("micropip")
    try:
        import micropip  # noqa: F401
        loaded = "reached"
    except ImportError as error:
        loaded = "refused: " + type(error).__name__
    return {"loadPackage": loaded, "probe": await _probe(__import__("js"), url, page_url)}


@task(name="via_to_js", compute="HIGH", timeout="30s")
def via_to_js(url, page_url):
    from pyodide.ffi import to_js
    try:
        return {"Function": "reached: " + str(to_js({}).constructor.constructor("return globalThis")())}
    except Exception as error:
        return {"Function": "refused: " + str(error)[:200]}


@task(name="via_subclasses", compute="HIGH", timeout="30s")
async def via_subclasses(url, page_url):
    for cls in object.__subclasses__():
        scope = getattr(getattr(cls, "__init__", None), "__globals__", None)
        if isinstance(scope, dict) and "__builtins__" in scope:
            builtins = scope["__builtins__"]
            importer = builtins["__import__"] if isinstance(builtins, dict) else builtins.__import__
            return {"route": cls.__name__, "probe": await _probe(importer("js"), url, page_url)}
    return {"route": None}


@task(name="via_find_spec", compute="HIGH", timeout="30s")
async def via_find_spec(url, page_url):
    import importlib.util
    from importlib.machinery import BuiltinImporter
    spec = BuiltinImporter.find_spec("_pyodide_core")
    core = importlib.util.module_from_spec(spec)
    return {"found": "create_proxy" in dir(core), "probe": await _probe(__import__("js"), url, page_url)}


@task(name="via_gc", compute="HIGH", timeout="30s")
async def via_gc(url, page_url):
    import gc
    import types
    modules = {o.__name__: o for o in gc.get_objects() if isinstance(o, types.ModuleType)}
    js = modules.get("js") or __import__("js")
    return {"objects": len(gc.get_objects()), "probe": await _probe(js, url, page_url)}


@task(name="via_ctypes", compute="HIGH", timeout="30s")
def via_ctypes(url, page_url):
    import ctypes
    script = "self.__capsuleRan = [self.capsuleSecret, fetch(" + json.dumps(url) + ")]"
    ctypes.CDLL(None).emscripten_run_script(script.encode())
    return "ran"


@task(name="via_files", compute="HIGH", timeout="30s")
def via_files(url, page_url):
    import os
    report = {"root": sorted(os.listdir("/"))}
    for path in ["/etc/passwd", "/etc/hosts", "/proc/self/environ"]:
        try:
            with open(path) as file:
                report[path] = "reached: " + file.read()[:50]
        except OSError as error:
            report[path] = "refused: " + type(error).__name__
    return report


@task(name="via_socket", compute="HIGH", timeout="30s")
def via_socket(url, page_url):
    import socket
    from urllib.parse import urlparse
    target = urlparse(url)
    try:
        connection = socket.create_connection((target.hostname, target.port), timeout=3)
        connection.sendall(b"GET /secret HTTP/1.0\r\n\r\n")
        return {"socket": "reached: " + connection.recv(100).decode()}
    except OSError as error:
        return {"socket": "refused: " + type(error).__name__}


def _refused(work):
    try:
        return "reached: " + str(work())[:80]
    except BaseException as error:
        return "refused: " + type(error).__name__ + ": " + str(error)[:160]


def _options(js, value):
    from pyodide.ffi import to_js
    return to_js(value, dict_converter=js.Object.fromEntries)


@task(name="forged_changes", compute="HIGH", timeout="30s", allowed_files=[{"path": "./py-data", "mode": "read-only"}, "./py-out"])
def forged_changes(path):
    """The Worker's report of changed files is built after the task returns, from a sorted list
    of the paths it loaded: a sort of the task's own adds a path, whose removal the sealed report
    then carries."""
    import js
    from pyodide.ffi import create_proxy
    with open("py-out/written.txt", "w") as file:
        file.write("written")
    sort = js.Array.prototype.sort

    def hooked(this, *args):
        result = sort.apply(this, js.Array.of(*args))
        if any(isinstance(item, str) and item.startswith("/py-") for item in this):
            js.Array.prototype.sort = sort
            this.push(path)
        return result

    js.Array.prototype.sort = create_proxy(hooked, capture_this=True)
    return "returned"


@task(name="forged", compute="HIGH", timeout="30s")
def forged(url, page_url):
    """Every way this realm could talk to the page's port itself, or bend what goes through it."""
    import js
    from pyodide.ffi import create_proxy
    done = _options(js, {"type": "done", "outcomeJson": json.dumps({"ok": True, "value_json": "1"}), "ramUsed": 0, "fuelConsumed": 0})
    getter = _options(js, {"get": create_proxy(lambda: None)})
    return {
        "postMessage": _refused(lambda: setattr(js.MessagePort.prototype, "postMessage", create_proxy(lambda *args: None))),
        "defineProperty": _refused(lambda: js.Object.defineProperty(js.MessagePort.prototype, "postMessage", getter)),
        "messageData": _refused(lambda: js.Object.defineProperty(js.MessageEvent.prototype, "data", getter)),
        "eventTarget": _refused(lambda: setattr(js.EventTarget.prototype, "addEventListener", create_proxy(lambda *args: None))),
        "promiseThen": _refused(lambda: setattr(js.Promise.prototype, "then", create_proxy(lambda *args: None))),
        "toFrame": _refused(lambda: js.postMessage(done)),
    }
`;

/** A probe report: every attempt refused, nothing of the page's seen. */
function expectNothingReached(report: Record<string, string>) {
  expect(report).toMatchObject({
    origin: "null",
    document: "undefined",
    parent: "undefined",
    localStorage: "undefined",
    secret: "undefined",
  });
  const attempts = Object.entries(report).filter(
    ([key]) => !["origin", "document", "parent", "localStorage", "secret"].includes(key),
  );
  expect(attempts.length).toBe(12);
  for (const [name, outcome] of attempts)
    expect(`${name} ${outcome}`).toContain(`${name} refused:`);
  expect(JSON.stringify(report)).not.toContain(SECRET);
}

describe("what a Python task in a page may reach", () => {
  it(
    "its env_variables, and its allowed_hosts through the page's fetch",
    async () => {
      const env = await runPy(tasks, { task: "env", env: { API_KEY: "k-1", OTHER: "o-2" } });
      expect(env.result).toEqual({ key: "k-1", other: null });
      const allowed = await runPy(tasks, {
        task: "fetch_allowed",
        args: [`${baitOrigin}/allowed`],
      });
      expect(allowed.result).toEqual({ status: 200, body: "reached the host" });
      expect(allowed.execution.host_requests).toMatchObject([
        { method: "GET", url: `${baitOrigin}/allowed`, status: 200 },
      ]);
      // From a plain def too: urllib and time.sleep wait on the page by switching stacks.
      const urllib = await runPy(tasks, { task: "fetch_urllib", args: [`${baitOrigin}/urllib`] });
      expect(urllib.result).toEqual({ status: 200, body: "reached the host", slept: true });
      const denied = await runPy(tasks, { task: "fetch_denied", args: [`${baitOrigin}/denied`] });
      expect(denied.result).toMatch(/^refused: network access denied: .*not in allowed_hosts/);
      expect(baitPaths).not.toContain("/denied");
    },
    TIMEOUT,
  );

  it(
    "its allowed_files in OPFS, under the same policy as on Node, saved when the attempt ends",
    async () => {
      await seedOpfs({
        "py-data/in.txt": "hello files",
        "py-out/old.txt": "old",
        "py-out/log.txt": "first\n",
      });
      const envelope = await runPy(tasks, { task: "files" });
      expect(envelope.error).toBeNull();
      expect(envelope.result).toEqual({
        text: "hello files",
        listing: ["log.txt", "sub"],
        refused: {
          "read-only": "[Errno 69] Read-only file system: 'py-data/in.txt'",
          "/etc/passwd": "FileNotFoundError",
          "py-data/../package.json": "FileNotFoundError",
        },
      });
      const after = await withCapsule<Record<string, string>>(`
        const text = async (path) => new TextDecoder().decode(await capsule.readFile(path)).trim();
        const gone = await capsule.readFile("py-out/old.txt").then(() => "still there", (error) => error.name);
        return { upper: await text("py-out/sub/upper.txt"), log: await text("py-out/log.txt"), input: await text("py-data/in.txt"), gone };`);
      expect(after).toEqual({
        upper: "HELLO FILES",
        log: "first\nappended",
        input: "hello files",
        gone: "NotFoundError",
      });
      // On Node the same task gets the same answers from the same policy.
      const onNode = await runOnNodeWithFiles(tasks, "files", {
        "py-data/in.txt": "hello files",
        "py-out/old.txt": "old",
        "py-out/log.txt": "first\n",
      });
      expect(onNode.result).toEqual(envelope.result);

      // A failing task's writes stay, as they would on a disk; the next attempt reads them.
      const failed = await runPy(tasks, { task: "write_then_fail" });
      expect(failed.error?.message).toContain("RuntimeError: after writing");
      expect((await runPy(tasks, { task: "read_back" })).result).toBe("kept");

      const missing = await runPy(tasks, { task: "files_missing" });
      expect(missing.error?.error_type).toBe("config_error");
      expect(missing.error?.message).toContain(
        'allowed_files entry "./nowhere": no such directory in the OPFS root "capsule"',
      );
      expect(missing.execution.fuel_consumed).toBe(0);
    },
    TIMEOUT,
  );
});

describe("examples/*.py and Capsule's README task file, unchanged, in a page", () => {
  const example = (name: string) => readFileSync(join(root, "examples", name), "utf8");

  it(
    "hello.py, subtasks.py (gathered) and limits.py (fuel and timeout) as on Node",
    async () => {
      expect((await runPy(example("hello.py"))).result).toBe("Hello from Capsule!");
      const gathered = await runPy(example("subtasks.py"));
      expect(gathered.error).toBeNull();
      expect(gathered.result).toEqual([
        { processed: 5, status: "complete" },
        { processed: 2, status: "complete" },
        { processed: 3, status: "complete" },
      ]);
      const limits = await runPy(example("limits.py"));
      expect(limits.result).toEqual({ spin: "fuel_exhausted", stuck: "timeout" });
    },
    TIMEOUT,
  );

  it(
    "files.py in OPFS and fetch.py through the page, with plain def tasks calling sub-tasks",
    async () => {
      await seedOpfs({
        "examples/data/input.txt": example("data/input.txt"),
        "examples/output/placeholder.txt": "",
      });
      const files = await runPy(example("files.py"));
      expect(files.error).toBeNull();
      expect(files.result).toEqual(FILES_PY_RESULT);
      const written = await withCapsule<string>(
        `return new TextDecoder().decode(await capsule.readFile("examples/output/result.txt"));`,
      );
      expect(written).toBe(FILES_EXAMPLE_OUTPUT);

      const fetched = await runPy(example("fetch.py"), { args: [`${baitOrigin}/example`] });
      expect(fetched.error).toBeNull();
      expect(fetched.result).toMatchObject({ status: 200, bytes: "reached the host".length });
      expect((fetched.result as { denied: string }).denied).toContain("evil.test");
      expect(fetched.execution.host_requests.map((request) => request.status)).toEqual([200, null]);

      const readme = await runPy(CAPSULE_README_PYTHON);
      expect(readme.error).toBeNull();
      expect(readme.result).toMatchObject({
        success: true,
        result: { processed: 5, status: "complete" },
        execution: { task_name: "analyze_data", retries: 0 },
      });
    },
    TIMEOUT,
  );
});

describe("the Python sandbox in Chromium holds nothing of the page's", () => {
  const probe = (task: string) =>
    runPy(boundary, { task, args: [baitUrl, `${server.origin}/package.json`] });

  it(
    "whichever way a task reaches JavaScript: js, pyodide_js, subclass walks, _pyodide_core, gc",
    async () => {
      const viaJs = await probe("via_js");
      expect(viaJs.success).toBe(true);
      expectNothingReached(viaJs.result as Record<string, string>);
      // No script of the task's own runs: the routes a blob: Worker policy leaves are gone.
      const report = viaJs.result as Record<string, string>;
      expect(report.importScripts).toBe("refused: AttributeError: importScripts");
      expect(report.nestedWorker).toBe("refused: AttributeError: Worker");
      expect((viaJs.result as Record<string, string>).eval).toContain("unsafe-eval");

      for (const route of ["via_pyodide_js", "via_subclasses", "via_find_spec", "via_gc"]) {
        const envelope = await probe(route);
        expect(envelope.success, JSON.stringify(envelope.error)).toBe(true);
        const { probe: report, ...rest } = envelope.result as {
          probe: Record<string, string>;
          [key: string]: unknown;
        };
        expectNothingReached(report);
        if (route === "via_pyodide_js")
          expect(rest.loadPackage).toBe("refused: ModuleNotFoundError");
        if (route === "via_find_spec") expect(rest.found).toBe(true);
        if (route === "via_subclasses") expect(rest.route).toEqual(expect.any(String));
      }
    },
    TIMEOUT,
  );

  it(
    "refuses code from strings (to_js's Function, ctypes into emscripten_run_script)",
    async () => {
      const toJs = await probe("via_to_js");
      expect((toJs.result as { Function: string }).Function).toMatch(/^refused: .*unsafe-eval/);
      const ctypes = await probe("via_ctypes");
      expect(ctypes.error?.error_type).toBe("task_error");
      expect(ctypes.error?.message).toContain("the task broke its interpreter: EvalError");
    },
    TIMEOUT,
  );

  it(
    "has no host files and no sockets",
    async () => {
      const files = await probe("via_files");
      expect(files.result).toEqual({
        root: ["dev", "home", "lib", "proc", "tmp"],
        "/etc/passwd": "refused: FileNotFoundError",
        "/etc/hosts": "refused: FileNotFoundError",
        "/proc/self/environ": "refused: FileNotFoundError",
      });
      const socket = await probe("via_socket");
      expect((socket.result as { socket: string }).socket).toMatch(/^refused: /);
    },
    TIMEOUT,
  );

  it(
    "saves nothing of a forged report of changed files that reaches outside the writable grants",
    async () => {
      await seedOpfs({ "py-data/in.txt": "hello files", "py-out/kept.txt": "kept" });
      for (const path of ["/py-data/absent.txt", "/elsewhere.txt", "/tmp/x"]) {
        const envelope = await runPy(boundary, { task: "forged_changes", args: [path] });
        expect(envelope.error?.error_type, `${path}: ${envelope.error?.message}`).toBe(
          "permission_denied",
        );
        expect(envelope.error?.message).toContain(
          `the sandbox reported a change to ${JSON.stringify(path)}`,
        );
        expect(envelope.error?.message).toContain("nothing was saved");
      }
      const after = await withCapsule<string[]>(`
        const read = (path) => capsule.readFile(path).then((bytes) => new TextDecoder().decode(bytes), (error) => error.name);
        return Promise.all(["py-data/in.txt", "py-out/written.txt", "elsewhere.txt"].map(read));`);
      expect(after).toEqual(["hello files", "NotFoundError", "NotFoundError"]);
    },
    TIMEOUT,
  );

  it(
    "refuses forged bridge messages, and the page is unharmed",
    async () => {
      const forged = await probe("forged");
      expect(forged.success, JSON.stringify(forged.error)).toBe(true);
      const frozen = (name: string) =>
        expect.stringMatching(new RegExp(`^refused: JsException: TypeError: .*${name}`));
      expect(forged.result).toEqual({
        postMessage: frozen("postMessage"),
        defineProperty: frozen("postMessage"),
        messageData: frozen("data"),
        eventTarget: frozen("addEventListener"),
        promiseThen: frozen("then"),
        // The frame hears only the page: what the Worker posts to it is dropped.
        toFrame: "reached: None",
      });
      const state = await page.evaluate(() => ({
        title: document.title,
        secret: (window as unknown as { capsuleSecret: string }).capsuleSecret,
        stored: localStorage.getItem("capsule-secret"),
        cookie: document.cookie,
        heard: (window as unknown as { capsuleHeard: unknown[] }).capsuleHeard,
      }));
      expect(state).toEqual({
        title: "capsule-portable in a page",
        secret: SECRET,
        stored: SECRET,
        cookie: `capsule_secret=${SECRET}`,
        heard: [],
      });
      expect(baitPaths.filter((path) => path === "/secret")).toEqual([]);
      // The page still runs tasks.
      expect((await runPy(hello)).result).toBe("Hello from Capsule!");
    },
    TIMEOUT,
  );
});

/**
 * The sandbox's Worker is the guest's own realm: what it could post, tamper with or hold must
 * decide nothing on the page, and every task ends by the page's own clock.
 */
const hostile = String.raw`import asyncio
import json
from capsule import task


def _refused(work):
    try:
        return "reached: " + str(work())[:80]
    except BaseException as error:
        return "refused: " + type(error).__name__ + ": " + str(error)[:160]


def _options(js, value):
    from pyodide.ffi import to_js
    return to_js(value, dict_converter=js.Object.fromEntries)


@task(name="forge_done", compute="LOW")
def forge_done():
    """Posts a finished job with no fuel spent, by every route the realm has, then spins."""
    import js
    from pyodide.ffi import create_proxy
    done = _options(js, {"type": "done", "outcomeJson": json.dumps({"ok": True, "value_json": "\"forged\""}), "ramUsed": 0, "fuelConsumed": 0})
    original = js.MessagePort.prototype.postMessage
    sent = []

    def send(this, *args):
        # Whatever the Worker's script sends through the prototype, a forged end follows it.
        original.apply(this, js.Array.of(*args))
        if not sent:
            sent.append(True)
            original.call(this, done)

    report = {
        "prototype": _refused(lambda: setattr(js.MessagePort.prototype, "postMessage", create_proxy(send, capture_this=True))),
        "toFrame": _refused(lambda: js.postMessage(done)),
    }
    print(json.dumps(report))
    while True:
        pass


@task(name="tamper_meter", compute="LOW")
def tamper_meter():
    """Points what reads the fuel counter elsewhere, then spins."""
    import js
    from pyodide.ffi import create_proxy
    zero = create_proxy(lambda *args: 0)
    report = {
        "globalValue": _refused(lambda: js.Object.defineProperty(js.WebAssembly.Global.prototype, "value", _options(js, {"get": zero}))),
        "Number": _refused(lambda: setattr(js, "Number", zero)),
        "BigInt": _refused(lambda: setattr(js, "BigInt", zero)),
        "memoryBuffer": _refused(lambda: js.Object.defineProperty(js.WebAssembly.Memory.prototype, "buffer", _options(js, {"get": zero}))),
    }
    print(json.dumps(report))
    while True:
        pass


@task(name="bad_outcome")
def bad_outcome(kind):
    """Rewrites the runner's reply to the runtime: an outcome whose value is not what it must be."""
    import json as json_module
    real = json_module.dumps

    def dumps(value, **options):
        if isinstance(value, dict) and value.get("ok") is True and "value_json" in value:
            json_module.dumps = real
            return real({"missing": {"ok": True}, "number": {"ok": True, "value_json": 5}, "text": {"ok": True, "value_json": "{not json"}}[kind])
        return real(value, **options)

    json_module.dumps = dumps
    return "a value"


# A wrapper's shape (type, import e.f, export f) with a code section after it.
WITH_CODE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 2, 7, 1, 1, 101, 1, 102, 0, 0, 7, 5, 1, 1, 102, 0, 0, 10, 9, 1, 7, 0, 3, 64, 12, 0, 11, 11]


@task(name="code_routes", compute="HIGH", timeout="30s")
async def code_routes():
    """Every way to run JavaScript or WebAssembly of the task's own, outside the metered engine."""
    import js
    from pyodide.ffi import to_js
    empty_module = to_js(bytes([0, 97, 115, 109, 1, 0, 0, 0]))
    script = js.URL.createObjectURL(js.Blob.new(to_js(["self.__capsuleRan = 1"]), _options(js, {"type": "text/javascript"})))
    chain = []
    holder = js.self
    for _ in range(8):
        try:
            for name in ["importScripts", "Worker"]:
                if js.Object.getOwnPropertyDescriptor(holder, name) is not None:
                    chain.append(name)
            holder = js.Object.getPrototypeOf(holder)
        except Exception:
            break  # past the end of the chain
    report = {
        "importScripts": _refused(lambda: js.importScripts(script)),
        "scopeImportScripts": _refused(lambda: js.WorkerGlobalScope.prototype.importScripts),
        "Worker": _refused(lambda: js.Worker.new(script)),
        "compile": _refused(lambda: js.WebAssembly.compile(empty_module)),
        "instantiate": _refused(lambda: js.WebAssembly.instantiate(empty_module)),
        "Module": _refused(lambda: js.WebAssembly.Module.new(empty_module)),
        "moduleWithCode": _refused(lambda: js.WebAssembly.Module.new(to_js(bytes(WITH_CODE)))),
        "nativeModule": _refused(lambda: js.WebAssembly.Module.prototype.constructor.new(empty_module)),
        "instance": _refused(lambda: js.WebAssembly.Instance.new(js.Object.new())),
        "validate": _refused(lambda: js.WebAssembly.validate(empty_module)),
        "addWasm": _refused(lambda: setattr(js.WebAssembly, "Module", js.Object)),
        "eval": _refused(lambda: js.eval("1")),
        "Function": _refused(lambda: js.Function.new("return 1")),
        "left on the chain": chain,
    }
    js.setTimeout("self.__capsuleRan = 2", 0)
    await asyncio.sleep(0.2)
    report["ran"] = getattr(js, "__capsuleRan", None)
    return report


@task(name="never_settles", compute="LOW")
async def never_settles():
    await asyncio.get_running_loop().create_future()


@task(name="js_memory", compute="LOW")
async def js_memory():
    """Holds buffers of the sandbox's JavaScript, outside its ram, and never ends on its own."""
    import js
    held = [js.ArrayBuffer.new(64 * 1024 * 1024) for _ in range(8)]
    print("holding", sum(buffer.byteLength for buffer in held))
    await asyncio.get_running_loop().create_future()


@task(name="sleeps", compute="LOW")
async def sleeps(seconds):
    await asyncio.sleep(float(seconds))
    return "slept"


@task(name="sleeps_with_timeout", compute="LOW", timeout="30s")
async def sleeps_with_timeout(seconds):
    await asyncio.sleep(float(seconds))
    return "slept"


@task(name="quick", compute="LOW")
def quick():
    return "ran"
`;

/** Runs `hostile`'s `task` with the page's wall-clock bound for untimed tasks set to `boundMs`. */
function runHostile(task: string, args: string[] = [], boundMs?: number): Promise<Envelope> {
  return runPy(hostile, {
    task,
    args,
    ...(boundMs === undefined ? {} : { limits: { pythonTimeoutMs: boundMs } }),
  });
}

const DEFAULT_BOUND_NOTE =
  "a Python task in a page that sets no timeout gets limits.pythonTimeoutMs";

describe("a Python task's own realm decides nothing on the page", () => {
  it(
    "a forged end of the job with no fuel spent does not end a busy loop: its budget does",
    async () => {
      const logs = await withCapsule<{ envelope: Envelope; lines: string[] }>(`
        const lines = [];
        const envelope = await capsule.run({ code: ${JSON.stringify(hostile)}, language: "py", task: "forge_done", onLog: (level, text) => lines.push(text) });
        return { envelope, lines };`);
      expect(logs.envelope.success).toBe(false);
      expect(logs.envelope.error?.error_type).toBe("fuel_exhausted");
      expect(logs.envelope.execution.fuel_consumed).toBe(100_000_000);
      const report = JSON.parse(logs.lines[0] ?? "{}") as Record<string, string>;
      expect(report.prototype).toMatch(/^refused: JsException: TypeError: .*postMessage/);
      expect(report.toFrame).toBe("reached: None");
    },
    TIMEOUT,
  );

  it(
    "what reads the fuel counter cannot be pointed elsewhere: the budget still ends the task",
    async () => {
      const logs = await withCapsule<{ envelope: Envelope; lines: string[] }>(`
        const lines = [];
        const envelope = await capsule.run({ code: ${JSON.stringify(hostile)}, language: "py", task: "tamper_meter", onLog: (level, text) => lines.push(text) });
        return { envelope, lines };`);
      expect(logs.envelope.error?.error_type).toBe("fuel_exhausted");
      expect(logs.envelope.execution.fuel_consumed).toBe(100_000_000);
      const report = JSON.parse(logs.lines[0] ?? "{}") as Record<string, string>;
      for (const [name, outcome] of Object.entries(report))
        expect(`${name} ${outcome}`).toMatch(
          new RegExp(`^${name} refused: JsException: TypeError`),
        );
    },
    TIMEOUT,
  );

  it(
    "an outcome of the wrong shape is the task's error, not the runtime's",
    async () => {
      for (const kind of ["missing", "number", "text"]) {
        const envelope = await runHostile("bad_outcome", [kind]);
        expect(envelope.error, kind).toEqual({
          error_type: "task_error",
          message: "the task's reply to the runtime was malformed",
        });
        expect(envelope.success).toBe(false);
      }
    },
    TIMEOUT,
  );

  it(
    "runs no JavaScript or WebAssembly of its own: importScripts, Worker, wasm compiles, eval",
    async () => {
      const envelope = await runHostile("code_routes");
      expect(envelope.error).toBeNull();
      const report = envelope.result as Record<string, unknown>;
      expect(report).toMatchObject({
        importScripts: "refused: AttributeError: importScripts",
        scopeImportScripts: "refused: AttributeError: importScripts",
        Worker: "refused: AttributeError: Worker",
        compile: "refused: AttributeError: compile",
        instantiate: "refused: AttributeError: instantiate",
        Module: expect.stringMatching(/^refused: JsException: TypeError: this sandbox compiles no/),
        moduleWithCode: expect.stringMatching(/^refused: JsException: TypeError: this sandbox/),
        nativeModule: expect.stringMatching(/^refused: JsException: TypeError: this sandbox/),
        instance: expect.stringMatching(/^refused: JsException: TypeError: this sandbox/),
        validate: "reached: True",
        addWasm: expect.stringMatching(
          /^refused: JsException: TypeError: Cannot assign to read only property 'Module'/,
        ),
        eval: expect.stringContaining("unsafe-eval"),
        Function: expect.stringContaining("unsafe-eval"),
        "left on the chain": [],
        ran: null,
      });
    },
    TIMEOUT,
  );

  it(
    "ends a task that sets no timeout at the page's bound, and one that sets its own at that",
    async () => {
      const bounded = await runHostile("sleeps", ["3600"], 1500);
      expect(bounded.error).toEqual({
        error_type: "timeout",
        message: `timed out after 1500 ms (${DEFAULT_BOUND_NOTE})`,
      });
      const own = await runHostile("sleeps_with_timeout", ["2"], 500);
      expect(own).toMatchObject({ success: true, result: "slept" });
      const refused = await runHostile("quick", [], -1);
      expect(refused.error?.error_type).toBe("config_error");
      expect(refused.error?.message).toContain("pythonTimeoutMs");
    },
    TIMEOUT,
  );

  it(
    "frees every place held by awaits that never settle: a later task runs",
    async () => {
      const atOnce = Math.max(4, await page.evaluate(() => navigator.hardwareConcurrency));
      const started = performance.now();
      const [stuck, later] = await withCapsule<[Envelope[], Envelope]>(`
        const options = { code: ${JSON.stringify(hostile)}, language: "py", limits: { pythonTimeoutMs: 4000 } };
        const stuck = Array.from({ length: ${atOnce + 1} }, () => capsule.run({ ...options, task: "never_settles" }));
        await new Promise((resolve) => setTimeout(resolve, 500));
        const later = capsule.run({ ...options, task: "quick" });
        return Promise.all([Promise.all(stuck), later]);`);
      for (const envelope of stuck) {
        expect(envelope.error).toEqual({
          error_type: "timeout",
          message: `timed out after 4000 ms (${DEFAULT_BOUND_NOTE})`,
        });
      }
      expect(later, JSON.stringify(later.error)).toMatchObject({ success: true, result: "ran" });
      timings.stuckPlacesFreed = Math.round(performance.now() - started);
    },
    TIMEOUT,
  );

  it(
    "ends a task holding JavaScript memory outside its ram at the page's bound",
    async () => {
      const envelope = await runHostile("js_memory", [], 3000);
      expect(envelope.error?.error_type).toBe("timeout");
      expect((await runPy(hello)).result).toBe("Hello from Capsule!");
    },
    TIMEOUT,
  );
});

describe("the playground's Python mode", () => {
  it(
    "switches to Python, runs the hello example, and shares a link that reopens in Python",
    async () => {
      const outDir = mkdtempSync(join(tmpdir(), "capsule-playground-"));
      const served = await (async () => {
        await build({
          configFile: join(root, "playground", "vite.config.ts"),
          build: { outDir, emptyOutDir: true },
          logLevel: "warn",
        });
        return serveStatic(outDir);
      })();
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on("pageerror", (error) => errors.push(String(error)));
      try {
        await tab.goto(`${served.origin}/`);
        await tab.waitForSelector("body[data-ready=true]");
        await tab.selectOption("#language", "py");
        expect(await tab.inputValue("#example")).toBe("hello-py");
        expect(await tab.textContent(".cm-content")).toContain("from capsule import task");
        // The fields show the decorator's options; the code is where they are edited.
        expect(await tab.isDisabled('#options input[name="compute"]')).toBe(true);
        expect(await tab.inputValue('#options input[name="compute"]')).toBe("LOW");
        await tab.click("#run");
        await tab.waitForSelector("body[data-runs='1'][data-state=done]", { timeout: 120_000 });
        const envelope = JSON.parse((await tab.textContent("#envelope")) ?? "null") as Envelope;
        expect(envelope).toMatchObject({
          success: true,
          result: "Hello from Capsule, playground!",
        });
        expect(await tab.textContent("#console")).toContain("[main] running in a fresh sandbox");

        await tab.click("#share");
        // The link is written once the code is compressed, after the click returns.
        await tab.waitForFunction(
          () => (document.querySelector("#share-link") as HTMLInputElement | null)?.value !== "",
        );
        const link = await tab.inputValue("#share-link");
        const reopened = await browser.newPage();
        try {
          await reopened.goto(link);
          await reopened.waitForSelector("body[data-ready=true]");
          expect(await reopened.inputValue("#language")).toBe("py");
          expect(await reopened.inputValue("#example")).toBe("hello-py");
        } finally {
          await reopened.close();
        }
        expect(errors).toEqual([]);
      } finally {
        await tab.close();
        await served.close();
        rmSync(outDir, { recursive: true, force: true });
      }
    },
    TIMEOUT,
  );
});
