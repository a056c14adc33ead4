// A Vite web app as a user makes one (the shape of `npm create vite` with vanilla-ts): package.json,
// index.html and src/main.ts, which imports `run` from capsule-portable/browser; the packed tarball
// and vite from npm; no vite.config and no file copied by hand. `vite build` must emit the engine,
// the pool's worker and the Python files, and the page served by `vite preview` must run a
// JavaScript task, a Python task and one that spends its fuel, in Chromium, with Node's fuel. The
// dev server (`vite`) must run the same tasks with no configuration either.
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run as runOnNode, shutdown as shutdownNode } from "../adapters/node/index.ts";
import type { Envelope } from "../core/runtime/envelope.ts";
import { launchChromium } from "../e2e/support.ts";
import {
  install,
  lockedVersion,
  makeProject,
  packProject,
  type StartedServer,
  startServer,
} from "./support.ts";

const execFileAsync = promisify(execFile);

const INDEX_HTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <link rel="icon" href="data:," />
    <title>Tasks in a sandbox</title>
  </head>
  <body>
    <form id="task">
      <textarea id="code" rows="12" cols="80"></textarea>
      <select id="language">
        <option value="ts">TypeScript</option>
        <option value="js">JavaScript</option>
        <option value="py">Python</option>
      </select>
      <button>Run</button>
    </form>
    <pre id="envelope"></pre>
    <script type="module" src="/src/main.ts"></script>
  </body>
</html>
`;

/** The app's whole code: run the task in the form, show its envelope. */
const MAIN_TS = `import { run } from "capsule-portable/browser";

const form = document.querySelector<HTMLFormElement>("#task")!;
const code = document.querySelector<HTMLTextAreaElement>("#code")!;
const language = document.querySelector<HTMLSelectElement>("#language")!;
const output = document.querySelector<HTMLPreElement>("#envelope")!;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  output.textContent = "running...";
  const envelope = await run({ code: code.value, language: language.value as "ts" | "js" | "py" });
  output.textContent = JSON.stringify(envelope, null, 2);
});
`;

/** TypeScript (the transformer), URL and Buffer (guest modules loaded on first use). */
const TS_TASK = `import { task } from "@capsule-run/sdk";
interface Totals { sum: number; query: string | null; hex: string }
export const main = task({ name: "main", compute: "LOW" }, (): Totals => {
  let sum = 0;
  for (let i = 0; i < 1000; i++) sum += i % 7;
  const query = new URL("https://api.example/v1?q=vite").searchParams.get("q");
  return { sum, query, hex: Buffer.from("hi").toString("hex") };
});
`;

const PY_TASK = `from capsule import task

@task(name="main", compute="LOW")
def main():
    return "Hello from Python in a Vite app"
`;

const SPIN_TASK = `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main", compute: "LOW" }, () => { for (;;) {} });
`;

let project: ReturnType<typeof makeProject>;
let tarball: string | undefined;
let vite: string;
let buildLog = "";
let emitted: string[] = [];
const servers: StartedServer[] = [];
let browser: Browser | undefined;
let page: Page;

/** `vite <args>` in the app on 127.0.0.1 and a port of its own choosing: the page's address. */
async function serve(args: string[]): Promise<string> {
  const server = await startServer(
    process.execPath,
    [vite, ...args, "--host", "127.0.0.1", "--port", "0", "--strictPort"],
    { cwd: project.dir, ready: /Local:\s+(http:\/\/127\.0\.0\.1:\d+\/)/ },
  );
  servers.push(server);
  return server.ready[1] as string;
}

beforeAll(async () => {
  ({ tarball } = await packProject());
  project = makeProject({
    "package.json": JSON.stringify(
      {
        name: "vite-app",
        private: true,
        version: "0.0.0",
        type: "module",
        scripts: { dev: "vite", build: "vite build", preview: "vite preview" },
        dependencies: { "capsule-portable": `file:${tarball}` },
        devDependencies: { vite: lockedVersion("vite") },
      },
      null,
      2,
    ),
    "index.html": INDEX_HTML,
    "src/main.ts": MAIN_TS,
  });
  await install(project.dir, []);
  vite = join(project.dir, "node_modules/vite/bin/vite.js");
  const built = await execFileAsync(process.execPath, [vite, "build"], {
    cwd: project.dir,
    timeout: 180_000,
  });
  buildLog = built.stdout + built.stderr;
  emitted = readdirSync(join(project.dir, "dist/assets"));
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(await serve(["preview"]));
}, 600_000);

afterAll(async () => {
  await browser?.close();
  for (const server of servers) await server.stop();
  await shutdownNode();
  project?.remove();
}, 60_000);

/** Runs a task through the app's form and reads back the envelope it shows. */
async function runInApp(code: string, language: "ts" | "js" | "py"): Promise<Envelope> {
  await page.fill("#code", code);
  await page.selectOption("#language", language);
  await page.click("button");
  await page.waitForFunction(
    () => document.querySelector("#envelope")?.textContent?.startsWith("{"),
    null,
    { timeout: 120_000 },
  );
  return JSON.parse((await page.textContent("#envelope")) ?? "") as Envelope;
}

/** Files in the run journal's OPFS directory: none until a run has opened it. */
function journalFiles(): Promise<number> {
  return page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    try {
      const dir = await root.getDirectoryHandle(".capsule-journal");
      let count = 0;
      for await (const _ of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) count++;
      return count;
    } catch {
      return 0;
    }
  });
}

describe("a Vite app that imports capsule-portable/browser, built and previewed", () => {
  it("builds with vite build, emitting the engines, the worker and the Python files", () => {
    const has = (pattern: RegExp) => emitted.filter((name) => pattern.test(name));
    expect(has(/^quickjs-metered-[\w-]+\.wasm$/)).toHaveLength(1);
    expect(has(/^capsule-worker-[\w-]+\.js$/)).toHaveLength(1);
    // Guest modules larger than Vite's inline limit are files; the small ones are data: URLs.
    expect(has(/^(url|buffer)-[\w-]+\.txt$/)).toHaveLength(2);
    expect(has(/^pyodide-metered-[\w-]+\.wasm$/)).toHaveLength(1);
    expect(has(/^pyodide-snapshot-[\w-]+\.bin$/)).toHaveLength(1);
    expect(has(/^python_stdlib-[\w-]+\.zip$/)).toHaveLength(1);
    expect(has(/^pyodide-lock-[\w-]+\.json$/)).toHaveLength(1);
    expect(has(/^worker-[\w-]+\.txt$/)).toHaveLength(1);
    // The run journal's Worker and SQLite.
    expect(has(/^capsule-journal-[\w-]+\.js$/)).toHaveLength(1);
    expect(has(/^sqlite3-[\w-]+\.wasm$/)).toHaveLength(1);
    // Every address the package names was found at build time (else Vite leaves it to runtime).
    expect(buildLog).not.toContain("doesn't exist at build time");
    const html = readFileSync(join(project.dir, "dist/index.html"), "utf8");
    expect(html).not.toContain("node_modules");
  });

  it("runs a TypeScript task in Chromium with the same fuel as on Node", async () => {
    const envelope = await runInApp(TS_TASK, "ts");
    expect(envelope).toMatchObject({
      success: true,
      result: { sum: 2997, query: "vite", hex: "6869" },
      error: null,
    });
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
    const onNode = await runOnNode({ code: TS_TASK, language: "ts" });
    expect(envelope.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
    // The run was recorded in the page's journal, in OPFS.
    expect(await journalFiles()).toBeGreaterThan(0);
  }, 120_000);

  it("runs a Python task", async () => {
    const envelope = await runInApp(PY_TASK, "py");
    expect(envelope).toMatchObject({
      success: true,
      result: "Hello from Python in a Vite app",
      error: null,
    });
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
  }, 180_000);

  it("ends a task that spins with fuel_exhausted at its budget", async () => {
    const envelope = await runInApp(SPIN_TASK, "js");
    expect(envelope.success).toBe(false);
    expect(envelope.error?.error_type).toBe("fuel_exhausted");
    expect(envelope.execution.fuel_consumed).toBe(100_000_000);
  }, 60_000);
});

describe("the same app under the dev server (vite)", () => {
  beforeAll(async () => {
    page = await (browser as Browser).newPage();
    await page.goto(await serve([]));
  }, 120_000);

  it("runs the TypeScript task with the same fuel, and the Python task", async () => {
    const typescript = await runInApp(TS_TASK, "ts");
    expect(typescript).toMatchObject({ success: true, result: { query: "vite", hex: "6869" } });
    const onNode = await runOnNode({ code: TS_TASK, language: "ts" });
    expect(typescript.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
    expect(await journalFiles()).toBeGreaterThan(0);
    const python = await runInApp(PY_TASK, "py");
    expect(python).toMatchObject({ success: true, result: "Hello from Python in a Vite app" });
  }, 240_000);
});
