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
        const running = capsule.run({ ...${JSON.stringify({ code: tasks, language: "py", task: "forever" })}, signal: controller.signal });
        setTimeout(() => controller.abort(), 500);
        return running;`);
      expect(aborted.error?.error_type).toBe("timeout");
      expect(aborted.error?.message).toContain("cancelled by its caller");
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

PROBE = r"""
self.__capsuleProbe = async (url, pageUrl) => {
  const out = { origin: String(self.location.origin), document: typeof document, parent: typeof parent, localStorage: typeof localStorage, secret: typeof self.capsuleSecret };
  const attempt = async (name, work) => {
    try { out[name] = "reached: " + String(await work()).slice(0, 80); }
    catch (error) { out[name] = "refused: " + (error && error.name) + ": " + String(error && error.message).slice(0, 200); }
  };
  await attempt("fetch", () => fetch(url).then((response) => response.text()));
  await attempt("pageFetch", () => fetch(pageUrl).then((response) => response.text()));
  await attempt("xhr", () => { const request = new XMLHttpRequest(); request.open("GET", url, false); request.send(); return request.responseText; });
  await attempt("pageXhr", () => { const request = new XMLHttpRequest(); request.open("GET", pageUrl, false); request.send(); return request.responseText; });
  await attempt("websocket", () => new Promise((resolve, reject) => { const socket = new WebSocket(url.replace("http", "ws")); socket.onopen = () => resolve("open"); socket.onerror = () => reject(new Error("no connection")); }));
  await attempt("importScripts", () => importScripts(url));
  await attempt("indexedDB", () => new Promise((resolve, reject) => { const opening = indexedDB.open("probe"); opening.onsuccess = () => resolve("opened"); opening.onerror = () => reject(opening.error); }));
  await attempt("caches", () => caches.open("probe").then(() => "opened"));
  await attempt("opfs", () => navigator.storage.getDirectory().then(() => "opened"));
  await attempt("eval", () => eval("1 + 1"));
  await attempt("Function", () => new Function("return 1")());
  await attempt("nestedWorkerFetch", () => new Promise((resolve, reject) => {
    const code = "fetch(" + JSON.stringify(url) + ").then((r) => r.text()).then((t) => postMessage('reached: ' + t), (e) => postMessage('refused: ' + e))";
    const worker = new Worker(URL.createObjectURL(new Blob([code], { type: "text/javascript" })));
    worker.onmessage = (event) => (String(event.data).startsWith("reached") ? resolve(event.data) : reject(new Error(event.data)));
    worker.onerror = () => reject(new Error("the nested worker failed"));
  }));
  new BroadcastChannel("capsule").postMessage("heard from the sandbox");
  return JSON.stringify(out);
};
"""


def _run_js(js, source):
    from pyodide.ffi import to_js
    options = to_js({"type": "text/javascript"}, dict_converter=js.Object.fromEntries)
    js.importScripts(js.URL.createObjectURL(js.Blob.new(to_js([source]), options)))


async def _probe(js, url, page_url):
    _run_js(js, PROBE)
    return json.loads(await js.__capsuleProbe(url, page_url))


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


FORGE = r"""
self.__capsuleForge = () => new Promise((resolve) => {
  const send = MessagePort.prototype.postMessage;
  // The next message the runtime sends reveals its port; the forged ones follow it.
  MessagePort.prototype.postMessage = function (message, ...rest) {
    MessagePort.prototype.postMessage = send;
    const port = this;
    const replies = [];
    port.addEventListener("message", (event) => {
      if (event.data && event.data.type === "reply" && event.data.id >= 9000) {
        replies.push(event.data);
        if (replies.length === 3) resolve(JSON.stringify(replies));
      }
    });
    send.call(port, message, ...rest);
    send.call(port, { type: "call", id: 9001, request: { op: "read_page_secret" } });
    send.call(port, { type: "call", id: 9002, request: { op: "run_subtask", name: 42 } });
    send.call(port, { type: "call", id: 9003, request: { op: "fs", call: "readFile", argsJson: JSON.stringify({ path: "/etc/passwd" }) } });
    send.call(port, { type: "eval", code: "document.title = 'owned'" });
    send.call(port, { type: "log", level: "error", text: { toString: 1 } });
  };
});
"""


FORGE_CHANGES = r"""
self.__capsuleForgeChanges = (path) => {
  const send = MessagePort.prototype.postMessage;
  // The next message the sandbox sends reveals its port; a forged end of the job follows it.
  MessagePort.prototype.postMessage = function (message, ...rest) {
    MessagePort.prototype.postMessage = send;
    send.call(this, message, ...rest);
    const bytes = (text) => new TextEncoder().encode(text);
    send.call(this, {
      type: "done",
      outcomeJson: JSON.stringify({ ok: true, value_json: '"forged"' }),
      ramUsed: 0,
      fuelConsumed: 0,
      changes: [
        { kind: "file", path: "/py-out/forged.txt", data: bytes("saved?"), mtimeMs: 0 },
        { kind: "file", path, data: bytes("owned"), mtimeMs: 0 },
      ],
    });
  };
};
"""


@task(name="forged_changes", compute="HIGH", timeout="30s", allowed_files=[{"path": "./py-data", "mode": "read-only"}, "./py-out"])
def forged_changes(path):
    import js
    _run_js(js, FORGE_CHANGES)
    js.__capsuleForgeChanges(path)
    print("the message the forged report follows")
    while True:
        pass


@task(name="forged", compute="HIGH", timeout="30s")
async def forged(url, page_url):
    import js
    _run_js(js, FORGE)
    replies = js.__capsuleForge()
    print("this line goes out first, and the forged messages after it")
    return json.loads(await replies)
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
      // The worker's own fetch answers only Pyodide's files; the policy refuses the real one.
      expect((viaJs.result as Record<string, string>).nestedWorkerFetch).toContain(
        "Failed to fetch",
      );
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
      for (const path of ["/py-data/in.txt", "/py-out/../py-data/in.txt", "/elsewhere.txt"]) {
        const envelope = await runPy(boundary, { task: "forged_changes", args: [path] });
        expect(envelope.error?.error_type, path).toBe("permission_denied");
        expect(envelope.error?.message).toContain(
          `the sandbox reported a change to ${JSON.stringify(path)}`,
        );
        expect(envelope.error?.message).toContain("nothing was saved");
      }
      const after = await withCapsule<string[]>(`
        const read = (path) => capsule.readFile(path).then((bytes) => new TextDecoder().decode(bytes), (error) => error.name);
        return Promise.all(["py-data/in.txt", "py-out/forged.txt", "elsewhere.txt"].map(read));`);
      expect(after).toEqual(["hello files", "NotFoundError", "NotFoundError"]);
    },
    TIMEOUT,
  );

  it(
    "refuses forged bridge messages, and the page is unharmed",
    async () => {
      const forged = await probe("forged");
      expect(forged.success, JSON.stringify(forged.error)).toBe(true);
      expect(forged.result).toEqual([
        {
          type: "reply",
          id: 9001,
          reply: { error: "the runtime does not understand this request" },
        },
        {
          type: "reply",
          id: 9002,
          reply: { error: "the runtime does not understand this request" },
        },
        {
          type: "reply",
          id: 9003,
          reply: { json: expect.stringContaining('"code":"EACCES"') },
        },
      ]);
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
