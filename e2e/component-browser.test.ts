// Capsule-built components in a real Chromium: built and prepared on Node in setup, then run by
// the built dist/browser module in a page, each in its own opaque-origin sandbox.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { execComponent as execOnNode, prepareComponent } from "../adapters/node/component.ts";
import { exportComponent } from "../adapters/node/component-build.ts";
import { encodePrepared, PREPARED_FORMAT } from "../core/component/prepared.ts";
import type { Envelope } from "../core/runtime/envelope.ts";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

const TASK = `import { task } from "@capsule-run/sdk";
import { readFileSync, writeFileSync } from "node:fs";

export const double = task({ name: "double", compute: "LOW" }, (n: number) => n * 2);
export const main = task({ name: "main" }, async (who: string) => {
  const sub = await double(21);
  return { hello: who, sub: sub.result, subTask: sub.execution.task_name, subOk: sub.success };
});
export const read = task({ name: "read" }, (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const write = task({ name: "write" }, (file: string, text: string) => {
  try {
    writeFileSync(file, text);
    return "written";
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const escalate = task({ name: "escalate" }, async (file: string) => (await peek(file)).result);
export const peek = task({ name: "peek", allowedFiles: ["."], allowedHosts: ["*"] }, (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const get = task({ name: "get" }, async (url: string) => {
  try {
    return (await fetch(url)).status;
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const env = task({ name: "env" }, () => ({ visible: process.env.VISIBLE ?? null, hidden: process.env.HIDDEN ?? null, names: Object.keys(process.env) }));
export const nap = task({ name: "nap" }, async (ms: number) => {
  const started = Date.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return Date.now() - started >= ms ? "slept" : "woke early";
});
export const fill = task({ name: "fill", compute: "HIGH" }, (dir: string, files: number) => {
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < files; i++) {
    try {
      writeFileSync(dir + "/f" + i + ".bin", chunk);
    } catch (error) {
      return "refused at " + i + ": " + (error as Error).message;
    }
  }
  return "wrote " + files;
});
export const spin = task({ name: "spin" }, () => {
  let i = 0;
  for (;;) i++;
});
export const hoard = task({ name: "hoard" }, () => {
  const all: number[][] = [];
  for (;;) all.push(new Array(1 << 16).fill(all.length));
});
export const fail = task({ name: "fail" }, () => {
  throw new Error("boom");
});
`;

// Building takes about 80 s here and transpiling plus metering about 60 s: both are kept between
// runs, keyed by everything that shapes the component.
const store = path.join(tmpdir(), "capsule-component-browser-test");
const cacheDir = path.join(store, "cache");
/** Served from the repository root (under .capsule/, which git ignores). */
const served = path.join(root, ".capsule", "component-browser-test");
const PREPARED = "/.capsule/component-browser-test/task.prepared.bin";
const RAW = "/.capsule/component-browser-test/task.wasm";
const FORGED = "/.capsule/component-browser-test/forged.prepared.bin";

/**
 * A prepared component whose glue is hostile code, as a tampered file would carry: it runs in
 * the sandbox's realm and tries the network, storage and the page, and reports what it reached.
 */
const FORGED_GLUE = (target: string) => `export function instantiate() {
  const tried = [];
  try {
    const request = new XMLHttpRequest();
    request.open("GET", ${JSON.stringify(`${target}/forged`)}, false);
    request.send();
    tried.push("network: " + request.status);
  } catch (error) { tried.push("network refused"); }
  try { tried.push("storage: " + typeof indexedDB.open("x")); } catch { tried.push("storage refused"); }
  try { tried.push("cookie: " + document.cookie); } catch { tried.push("no document"); }
  try { importScripts(${JSON.stringify(`${target}/script`)}); tried.push("script loaded"); } catch { tried.push("script refused"); }
  throw new Error(JSON.stringify(tried));
}
`;

/** Glue lines that keep the port the sandbox talks to the page on, as `captured`. */
const CAPTURE_PORT = `const setter = Object.getOwnPropertyDescriptor(MessagePort.prototype, "onmessage");
let captured = null;
Object.defineProperty(MessagePort.prototype, "onmessage", {
  configurable: true,
  get() { return setter.get.call(this); },
  set(value) { captured = this; setter.set.call(this, value); },
});
`;

/**
 * Hostile glue that takes the sandbox's port to the page (through the `onmessage` setter the
 * sandbox script uses) and asks the page for requests of its own making.
 */
const ASKING_GLUE = (denied: string, allowed: string) => `
${CAPTURE_PORT}export function instantiate() {
  captured.postMessage({ type: "fetch", id: 1, url: ${JSON.stringify(denied)}, method: "GET", headers: [], body: null });
  captured.postMessage({ type: "fetch", id: 2, url: ${JSON.stringify(allowed)}, method: "GET", headers: [], body: null });
  throw new Error("asked");
}
`;

/** Glue that asks the page to hold memory without bound (and wrongly), then fails the run. */
const HOARDING_GLUE = `
${CAPTURE_PORT}export function instantiate() {
  for (let id = 1; id <= 200; id++) {
    captured.postMessage({ type: "hold", id, name: "hoard", depth: 1, ramBytes: 2 ** 20 });
  }
  captured.postMessage({ type: "hold", id: 1, name: "again", depth: 1, ramBytes: 2 ** 20 });
  captured.postMessage({ type: "hold", id: 999, name: "deep", depth: 0, ramBytes: 2 ** 20 });
  captured.postMessage({ type: "hold", id: 1000, name: "odd", depth: 1, ramBytes: -1 });
  throw new Error("hoarded");
}
`;

/** Glue that floods the page with events, far past what any run sends. */
const FLOODING_GLUE = `
${CAPTURE_PORT}export function instantiate() {
  const event = { type: "created", task: "flood", id: "f", parentId: null, depth: 0, attempt: 1, at: 0 };
  for (let i = 0; i < 100000; i++) captured.postMessage({ type: "event", event });
  throw new Error("flooded");
}
`;

function writeForged(name: string, glueText: string) {
  const glue = new TextEncoder().encode(glueText);
  const engine = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
  writeFileSync(
    path.join(served, name),
    encodePrepared(
      {
        format: PREPARED_FORMAT,
        component_sha256: "0".repeat(64),
        glue: "component.js",
        engine: "component.core.wasm",
        memoryMinPages: 1,
        files: [
          { name: "component.js", bytes: glue.byteLength },
          { name: "component.core.wasm", bytes: engine.byteLength },
        ],
      },
      new Map([
        ["component.js", glue],
        ["component.core.wasm", engine],
      ]),
    ),
  );
}

let project: string;
let component: string;
let server: StaticServer;
let browser: Browser;
let page: Page;
let target: ChildProcess;
let targetOrigin: string;
let hits = 0;
const paths: string[] = [];

function buildKey(): string {
  const hash = createHash("sha256").update(TASK);
  for (const file of [
    "core/component/guest-sdk.ts",
    "core/component/guest-fs.ts",
    "core/component/guest-process.ts",
    "core/component/capsule.wit",
    "adapters/node/component-build.ts",
  ]) {
    hash.update(readFileSync(path.join(root, file)));
  }
  return hash.digest("hex").slice(0, 16);
}

beforeAll(async () => {
  mkdirSync(store, { recursive: true });
  mkdirSync(served, { recursive: true });
  project = path.join(store, "project");
  mkdirSync(project, { recursive: true });
  const built = path.join(store, `${buildKey()}.wasm`);
  if (!existsSync(built)) {
    writeFileSync(path.join(project, "task.ts"), TASK);
    const result = await exportComponent("task.ts", { cwd: project, output: `${built}.tmp` });
    copyFileSync(result.output, built);
    rmSync(result.output);
  }
  component = path.join(project, "task.wasm");
  copyFileSync(built, component);
  copyFileSync(built, path.join(served, "task.wasm"));
  await prepareComponent(component, {
    cwd: project,
    cacheDir,
    output: path.join(served, "task.prepared.bin"),
  });
  // A server the denied request must never reach.
  target = spawn(
    process.execPath,
    [
      "-e",
      'const s = require("node:http").createServer((q, r) => { process.stdout.write("hit " + q.url + "\\n"); r.setHeader("access-control-allow-origin", "*"); if (q.url === "/big") r.end(Buffer.alloc(15 * 1024 * 1024)); else if (q.url !== "/silent") r.end("reached"); }); s.listen(0, "127.0.0.1", () => process.stdout.write("port " + s.address().port + "\\n"));',
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  targetOrigin = await new Promise<string>((resolve, reject) => {
    target.stdout?.setEncoding("utf8");
    let partial = "";
    target.stdout?.on("data", (text: string) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("hit ")) {
          hits++;
          paths.push(line.slice(4));
        }
        const port = /^port (\d+)$/.exec(line)?.[1];
        if (port) resolve(`http://127.0.0.1:${port}`);
      }
    });
    target.on("exit", (code) => reject(new Error(`test server exited (${code})`)));
  });
  writeForged("forged.prepared.bin", FORGED_GLUE(targetOrigin));
  const port = new URL(targetOrigin).port;
  writeForged(
    "asking.prepared.bin",
    ASKING_GLUE(`${targetOrigin}/asked-denied`, `http://localhost:${port}/asked-allowed`),
  );
  writeForged("hoarding.prepared.bin", HOARDING_GLUE);
  writeForged("flooding.prepared.bin", FLOODING_GLUE);
  server = await serveStatic(root);
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(`${server.origin}/examples/browser/index.html`);
}, 400_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  target?.kill();
  rmSync(served, { recursive: true, force: true });
});

/** Runs `body` in the page with the built module as `capsule` (a string: no test transform). */
function withCapsule<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

function runInPage(options: Record<string, unknown>): Promise<Envelope> {
  return withCapsule(
    `return capsule.execComponent({ component: ${JSON.stringify(PREPARED)}, ...${JSON.stringify(options)} });`,
  );
}

describe("Capsule components in Chromium", () => {
  test("a task runs with the same result and exactly the same fuel as on Node", async () => {
    const inPage = await runInPage({ task: "double", args: [21] });
    expect(inPage.error).toBeNull();
    expect(inPage.result).toBe(42);
    expect(inPage.execution.task_name).toBe("double");
    expect(inPage.execution.ram_used).toBeGreaterThan(0);
    const onNode = await execOnNode(component, {
      cwd: project,
      cacheDir,
      task: "double",
      args: [21],
    });
    expect(onNode.result).toBe(42);
    expect(inPage.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
    const again = await runInPage({ task: "double", args: [21] });
    expect(again.execution.fuel_consumed).toBe(inPage.execution.fuel_consumed);
  }, 120_000);

  test("main runs a sub-task in a fresh instance and gets its envelope", async () => {
    const inPage = await runInPage({ args: ["bob"] });
    expect(inPage.error).toBeNull();
    expect(inPage.result).toEqual({ hello: "bob", sub: 42, subTask: "double", subOk: true });
    expect(inPage.execution.task_name).toBe("main");
    const onNode = await execOnNode(component, { cwd: project, cacheDir, args: ["bob"] });
    expect(onNode.result).toEqual(inPage.result);
    expect(inPage.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
  }, 120_000);

  test("lifecycle events name each task run, its sub-tasks and their ends", async () => {
    const events = await withCapsule<
      {
        type: string;
        task: string;
        id: string;
        parentId: string | null;
        depth: number;
        attempt: number;
        fuel_consumed?: number;
      }[]
    >(`
      const events = [];
      await capsule.execComponent({ component: ${JSON.stringify(PREPARED)}, args: ["ev"], onEvent: (event) => events.push(event) });
      return events;
    `);
    expect(events.map((event) => `${event.type} ${event.task}`)).toEqual([
      "created main",
      "running main",
      "created double",
      "running double",
      "completed double",
      "completed main",
    ]);
    const main = events[0];
    const sub = events[2];
    expect(main?.parentId).toBeNull();
    expect(sub?.parentId).toBe(main?.id);
    expect(sub?.depth).toBe(1);
    expect(events[5]?.fuel_consumed).toBeGreaterThan(0);
  }, 60_000);

  test("a busy loop runs out of fuel at exactly its budget", async () => {
    const envelope = await runInPage({ task: "spin", compute: "LOW" });
    expect(envelope.error?.error_type).toBe("fuel_exhausted");
    expect(envelope.execution.fuel_consumed).toBe(1e8);
  }, 60_000);

  test("a busy loop is stopped by its timeout", async () => {
    const started = performance.now();
    const envelope = await runInPage({ task: "spin", compute: "HIGH", timeout: "500ms" });
    expect(envelope.error?.error_type).toBe("timeout");
    expect(performance.now() - started).toBeLessThan(30_000);
  }, 60_000);

  test("memory is capped at ram", async () => {
    const envelope = await runInPage({ task: "hoard", ram: "32MB", compute: "HIGH" });
    expect(envelope.error?.error_type, JSON.stringify(envelope.error)).toBe("memory_exceeded");
    expect(envelope.execution.ram_used).toBeLessThanOrEqual(32 * 2 ** 20);
  }, 60_000);

  test("a run's tasks hold their ram in the page's memory budget, and free it when they end", async () => {
    // 330 MiB: room for a 64 MiB entry task and its sub-task's default 256 MiB, twice in a row
    // only if the first run freed both; not for a 96 MiB entry task beside that sub-task.
    const [first, second, refused] = await withCapsule<[Envelope, Envelope, Envelope]>(`
      capsule.configure({ memoryBudgetBytes: 330 * 2 ** 20 });
      try {
        const run = (ram) =>
          capsule.execComponent({ component: ${JSON.stringify(PREPARED)}, args: ["x"], ram, onEvent: (e) => { if (e.depth === 1 && e.error) run.error = e.error; } });
        const first = await run("64MB");
        const second = await run("64MB");
        const refused = await run("96MB");
        return [first, second, { ...refused, subError: run.error }];
      } finally {
        capsule.configure({});
      }
    `);
    expect(first.result).toMatchObject({ subOk: true });
    expect(second.result).toMatchObject({ subOk: true });
    expect(refused.result).toMatchObject({ subOk: false });
    const subError = (refused as unknown as { subError: { error_type: string; message: string } })
      .subError;
    expect(subError.error_type).toBe("permission_denied");
    expect(subError.message).toMatch(/sub-task "double" refused: .*this page/);
  }, 120_000);

  test("a task that throws is a task_error, and retries rerun it", async () => {
    const envelope = await runInPage({ task: "fail", maxRetries: 1 });
    expect(envelope.error).toEqual({ error_type: "task_error", message: "boom" });
    expect(envelope.execution.retries).toBe(1);
  }, 60_000);

  test("process.env holds only the variables envVariables names", async () => {
    const env = { VISIBLE: "shown", HIDDEN: "secret" };
    const granted = await runInPage({ task: "env", envVariables: ["VISIBLE"], env });
    expect(granted.error).toBeNull();
    expect(granted.result).toEqual({ visible: "shown", hidden: null, names: ["VISIBLE"] });
    const none = await runInPage({ task: "env", env });
    expect(none.result).toEqual({ visible: null, hidden: null, names: [] });
  }, 60_000);

  test("files: a granted OPFS directory is read; outside it, escapes and no grant are refused", async () => {
    await withCapsule(`
      await capsule.writeFile("data/in.txt", "inside");
      await capsule.writeFile("secret.txt", "outside");
    `);
    const inside = await runInPage({
      task: "read",
      args: ["/data/in.txt"],
      allowedFiles: ["./data"],
    });
    expect(inside.result).toBe("inside");
    const outside = await runInPage({
      task: "read",
      args: ["/secret.txt"],
      allowedFiles: ["./data"],
    });
    expect(outside.result).toMatch(/^refused: EACCES/);
    const escaped = await runInPage({
      task: "read",
      args: ["/data/../secret.txt"],
      allowedFiles: ["./data"],
    });
    expect(escaped.result).toMatch(/^refused: /);
    expect(JSON.stringify(escaped)).not.toContain("outside");
    const none = await runInPage({ task: "read", args: ["/data/in.txt"] });
    expect(none.result).toMatch(/^refused: EACCES/);
  }, 120_000);

  test("files: a write to a read-write grant is saved to OPFS; a read-only grant refuses it", async () => {
    const written = await runInPage({
      task: "write",
      args: ["/data/out.txt", "from the component"],
      allowedFiles: ["./data"],
    });
    expect(written.result).toBe("written");
    expect(
      await withCapsule<string>(
        `return new TextDecoder().decode(await capsule.readFile("data/out.txt"));`,
      ),
    ).toBe("from the component");
    const refused = await runInPage({
      task: "write",
      args: ["/data/in.txt", "changed"],
      allowedFiles: [{ path: "./data", mode: "ro" }],
    });
    expect(refused.result).toMatch(/^refused: EROFS/);
    const created = await runInPage({
      task: "write",
      args: ["/data/new.txt", "x"],
      allowedFiles: [{ path: "./data", mode: "read-only" }],
    });
    expect(created.result).toMatch(/^refused: EROFS/);
    const still = await runInPage({
      task: "read",
      args: ["/data/in.txt"],
      allowedFiles: [{ path: "./data", mode: "ro" }],
    });
    expect(still.result).toBe("inside");
    expect(
      await withCapsule<boolean>(
        `return capsule.readFile("data/new.txt").then(() => true, () => false);`,
      ),
    ).toBe(false);
  }, 120_000);

  test("a run writes at most its write quota (64 MiB) into the page's memory, then gets ENOSPC", async () => {
    await withCapsule(`await capsule.writeFile("fill/.keep", "");`);
    const envelope = await runInPage({
      task: "fill",
      args: ["/fill", 80],
      allowedFiles: ["./fill"],
    });
    expect(envelope.result).toMatch(/^refused at 64: ENOSPC/);
  }, 120_000);

  test("a sub-task gets the run's grants, not the wider ones it declares", async () => {
    const refused = await runInPage({ task: "escalate", args: ["/secret.txt"] });
    expect(refused.result).toMatch(/^refused: EACCES/);
    const granted = await runInPage({
      task: "escalate",
      args: ["/data/in.txt"],
      allowedFiles: ["./data"],
    });
    expect(granted.result).toBe("inside");
  }, 120_000);

  test("a host outside allowedHosts is refused before any connection", async () => {
    const before = hits;
    const envelope = await runInPage({
      task: "get",
      args: [`${targetOrigin}/x`],
      allowedHosts: ["api.example.com"],
    });
    expect(envelope.result).toMatch(/^refused/);
    expect(envelope.execution.host_requests).toEqual([
      expect.objectContaining({
        method: "GET",
        url: `${targetOrigin}/x`,
        status: null,
        reason: expect.stringContaining('host "127.0.0.1" is not in allowedHosts'),
      }),
    ]);
    expect(hits).toBe(before);
  }, 60_000);

  test("a tampered prepared component's glue reaches no network, storage or page", async () => {
    const before = hits;
    const envelope = await withCapsule<Envelope>(
      `return capsule.execComponent({ component: ${JSON.stringify(FORGED)} });`,
    );
    expect(envelope.error?.error_type).toBe("task_error");
    expect(JSON.parse(envelope.error?.message ?? "null")).toEqual([
      "network refused",
      "storage refused",
      "no document",
      "script refused",
    ]);
    expect(hits).toBe(before);
  }, 60_000);

  test("a host in allowedHosts is reached: the page makes the request, the component waits (JSPI)", async () => {
    const before = hits;
    const envelope = await runInPage({
      task: "get",
      args: [`${targetOrigin}/ok`],
      allowedHosts: ["127.0.0.1"],
    });
    expect(envelope.error).toBeNull();
    expect(envelope.result).toBe(200);
    expect(hits).toBe(before + 1);
    expect(envelope.execution.host_requests).toEqual([
      expect.objectContaining({ method: "GET", url: `${targetOrigin}/ok` }),
    ]);
  }, 60_000);

  test("the page checks the sandbox's requests again: one the sandbox forges outside allowedHosts is never made", async () => {
    const envelope = await withCapsule<Envelope>(
      `return capsule.execComponent({ component: "/.capsule/component-browser-test/asking.prepared.bin", allowedHosts: ["localhost"] });`,
    );
    expect(envelope.error?.message).toBe("asked");
    // The allowed one is made after the denied one was looked at: once it arrives, the other
    // would have been on its way.
    await expect.poll(() => paths.includes("/asked-allowed"), { timeout: 20_000 }).toBe(true);
    expect(paths).not.toContain("/asked-denied");
  }, 60_000);

  test("a sandbox asking the page to hold memory without bound gets at most 64 holds, all freed when its run ends", async () => {
    const [hoarded, after] = await withCapsule<[Envelope, Envelope]>(`
      capsule.configure({ memoryBudgetBytes: 330 * 2 ** 20 });
      try {
        const hoarded = await capsule.execComponent({ component: "/.capsule/component-browser-test/hoarding.prepared.bin", ram: "8MB" });
        const after = await capsule.execComponent({ component: ${JSON.stringify(PREPARED)}, args: ["x"], ram: "64MB" });
        return [hoarded, after];
      } finally {
        capsule.configure({});
      }
    `);
    expect(hoarded.error?.message).toBe("hoarded");
    // 64 MiB and the sub-task's 256 MiB fit in 330 MiB only if nothing of the hoard is held.
    expect(after.result).toMatchObject({ subOk: true });
  }, 60_000);

  test("a sandbox flooding the page with messages is terminated after 4096, its listener called no more", async () => {
    const [envelope, heard] = await withCapsule<[Envelope, number]>(`
      let heard = 0;
      const envelope = await capsule.execComponent({ component: "/.capsule/component-browser-test/flooding.prepared.bin", onEvent: () => heard++ });
      return [envelope, heard];
    `);
    expect(envelope.error?.error_type).toBe("internal_error");
    expect(envelope.error?.message).toContain("sent more than 4096 messages");
    expect(heard).toBeLessThanOrEqual(4096);
  }, 60_000);

  test("the page holds a run's responses only up to its ram: one larger is refused, not kept", async () => {
    const port = new URL(targetOrigin).port;
    const envelope = await runInPage({
      task: "get",
      args: [`http://localhost:${port}/big`],
      allowedHosts: ["localhost"],
      ram: "12MB",
    });
    expect(envelope.error).toBeNull();
    expect(envelope.result).toMatch(/^refused: /);
  }, 60_000);

  test("a timer waits (the component suspends), and the clock it reads shows the wait", async () => {
    const envelope = await runInPage({ task: "nap", args: [200] });
    expect(envelope.error).toBeNull();
    expect(envelope.result).toBe("slept");
    expect(envelope.execution.duration_ms).toBeGreaterThanOrEqual(200);
  }, 60_000);

  test("a task waiting on a server that never answers ends at its timeout", async () => {
    const started = performance.now();
    const envelope = await runInPage({
      task: "get",
      args: [`${targetOrigin}/silent`],
      allowedHosts: ["127.0.0.1"],
      timeout: "2s",
    });
    const took = performance.now() - started;
    expect(envelope.error?.error_type).toBe("timeout");
    expect(took).toBeGreaterThanOrEqual(1_500);
    expect(took).toBeLessThan(20_000);
  }, 60_000);

  test("bad input is named: a raw component, a non-component, a bad option", async () => {
    const raw = await withCapsule<Envelope>(
      `return capsule.execComponent({ component: ${JSON.stringify(RAW)} });`,
    );
    expect(raw.error?.error_type).toBe("compile_error");
    expect(raw.error?.message).toMatch(/task\.wasm is a WebAssembly component .*prepare/);
    const text = await withCapsule<Envelope>(
      `return capsule.execComponent({ component: new TextEncoder().encode("hello") });`,
    );
    expect(text.error?.error_type).toBe("compile_error");
    expect(text.error?.message).toMatch(/is not a prepared component/);
    const noJspi = await withCapsule<Envelope>(`
      const saved = WebAssembly.Suspending;
      delete WebAssembly.Suspending;
      try {
        return await capsule.execComponent({ component: ${JSON.stringify(PREPARED)} });
      } finally {
        WebAssembly.Suspending = saved;
      }
    `);
    expect(noJspi.error?.error_type).toBe("config_error");
    expect(noJspi.error?.message).toMatch(/needs JSPI \(WebAssembly\.Suspending\)/);
    const option = await runInPage({ fuel: 5 });
    expect(option.error?.error_type).toBe("config_error");
    expect(option.error?.message).toMatch(/unknown option "fuel"/);
    const ram = await runInPage({ ram: "1.5GB" });
    expect(ram.error?.error_type).toBe("config_error");
    const missing = await runInPage({ task: "read", args: ["/x"], allowedFiles: ["./absent"] });
    expect(missing.error?.error_type).toBe("config_error");
    expect(missing.error?.message).toMatch(/absent/);
  }, 60_000);
});
