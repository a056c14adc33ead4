import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page, Worker } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { run as runOnNode, shutdown as shutdownNode } from "../adapters/node/index.ts";
import type { Envelope } from "../core/runtime/envelope.ts";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// The browser adapter in a real Chromium: the built dist/browser folder served as static files.
const root = fileURLToPath(new URL("..", import.meta.url));

let server: StaticServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  server = await serveStatic(root);
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(`${server.origin}/examples/browser/index.html`);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await shutdownNode();
});

/**
 * Runs `body` in the page with the built module as `capsule`. A string, so that the test runner's
 * own transform of `import()` does not reach the page.
 */
function withCapsule<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

function runInPage(options: Record<string, unknown>): Promise<Envelope> {
  return withCapsule(`return capsule.run(${JSON.stringify(options)});`);
}

const sumTask = `
  import { task } from "@capsule-run/sdk";
  interface Totals { sum: number; count: number }
  export const main = task({ name: "main", compute: "LOW" }, (n: string): Totals => {
    let sum = 0;
    for (let i = 0; i < Number(n); i++) sum += i % 7;
    return { sum, count: Number(n) };
  });
`;

describe("browser adapter in Chromium", () => {
  it("the README's script-module snippet runs as written", async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const snippet = readme.match(/## In a web page[\s\S]*?```html\n([\s\S]*?)```/)?.[1];
    expect(snippet).toBeTruthy();
    // Served from the repository root, where the snippet's "./dist/browser/capsule.js" resolves.
    const file = join(root, ".readme-snippet.html");
    writeFileSync(file, `<!doctype html><html><body>${snippet}</body></html>`);
    const tab = await browser.newPage();
    try {
      await tab.goto(`${server.origin}/.readme-snippet.html`);
      // Setting the body's text replaces the script element itself: that marks the run's end.
      await tab.waitForFunction(() => document.querySelector("script") === null, null, {
        timeout: 30_000,
      });
      expect(await tab.textContent("body")).toBe("Hello from the browser");
    } finally {
      await tab.close();
      rmSync(file, { force: true });
    }
  });

  it("the example page runs a hello task and shows its envelope", async () => {
    await page.waitForFunction(() => "capsuleEnvelope" in window, null, { timeout: 20_000 });
    const envelope = await page.evaluate(
      () => (window as unknown as { capsuleEnvelope: Envelope }).capsuleEnvelope,
    );
    expect(envelope).toMatchObject({
      success: true,
      result: "Hello from Capsule, browser!",
      error: null,
      execution: { task_name: "main", retries: 0 },
    });
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
    await expect(page.locator("#status").textContent()).resolves.toBe("done");
  });

  it("runs TypeScript with the same fuel as Node", async () => {
    const inPage = await runInPage({ code: sumTask, language: "ts", args: ["5000"] });
    const onNode = await runOnNode({ code: sumTask, language: "ts", args: ["5000"], cwd: root });
    expect(inPage.result).toEqual({ sum: 14995, count: 5000 });
    expect(onNode.result).toEqual(inPage.result);
    expect(inPage.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
  });

  it("loads the large guest modules only when a task uses them, with the same fuel as Node", async () => {
    const context = await browser.newContext();
    const fresh = await context.newPage();
    const requested: string[] = [];
    context.on("request", (request) => requested.push(new URL(request.url()).pathname));
    try {
      await fresh.goto(`${server.origin}/examples/browser/index.html`);
      const runFresh = (code: string) =>
        fresh.evaluate(
          `import("/dist/browser/capsule.js").then((capsule) => capsule.run(${JSON.stringify({ code, language: "js" })}))`,
        ) as Promise<Envelope>;
      const hello = await runFresh(
        'import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "main" }, () => "hi");',
      );
      expect(hello.result).toBe("hi");
      expect(requested.filter((path) => path.includes("/guest/"))).toEqual([]);

      const usesUrl = `import { task } from "@capsule-run/sdk";
        export const main = task({ name: "main" }, () =>
          new URL("https://api.example/v1?q=2").searchParams.get("q") + Buffer.from("hi").toString("hex"));`;
      const inPage = await runFresh(usesUrl);
      const onNode = await runOnNode({ code: usesUrl, language: "js", cwd: root });
      expect(inPage.result).toBe("26869");
      expect(inPage.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
      expect(requested.filter((path) => path.includes("/guest/")).sort()).toEqual([
        "/dist/browser/guest/buffer.txt",
        "/dist/browser/guest/url.txt",
      ]);
    } finally {
      await context.close();
    }
  });

  it("ends a task over its fuel with fuel_exhausted", async () => {
    const envelope = await runInPage({
      code: `import { task } from "@capsule-run/sdk";
        export const main = task({ name: "main", compute: 1000000 }, () => { for (;;) {} });`,
      language: "js",
    });
    expect(envelope.error?.error_type).toBe("fuel_exhausted");
  });

  it("times out a busy loop while the page keeps responding", async () => {
    const pending = runInPage({
      code: `import { task } from "@capsule-run/sdk";
        export const main = task({ name: "main", compute: "HIGH", timeout: "300ms" }, () => { for (;;) {} });`,
    });
    // The page's own thread answers while the task spins in its worker.
    const ticks = await page.evaluate(
      () =>
        new Promise<number>((resolve) => {
          let count = 0;
          const timer = setInterval(() => {
            if (++count === 5) {
              clearInterval(timer);
              resolve(count);
            }
          }, 20);
        }),
    );
    expect(ticks).toBe(5);
    const envelope = await pending;
    expect(envelope.error?.error_type).toBe("timeout");
  });

  it("refuses a fetch to a host the task did not allow", async () => {
    const envelope = await runInPage({
      code: `import { task } from "@capsule-run/sdk";
        export const main = task({ name: "main", allowedHosts: ["api.example.com"] }, async () => {
          try { await fetch("https://evil.example.org/x"); return "fetched"; }
          catch (error) { return String(error); }
        });`,
    });
    expect(envelope.success).toBe(true);
    expect(envelope.result).toMatch(/evil\.example\.org.*not in allowedHosts/);
    expect(envelope.execution.host_requests[0]).toMatchObject({
      url: "https://evil.example.org/x",
      status: null,
    });
  });

  it("writes a file to OPFS that the page and a later task read back", async () => {
    await withCapsule(`await capsule.writeFile("e2e/input.txt", "seeded by the page");`);
    const written = await runInPage({
      code: `import { task } from "@capsule-run/sdk";
        import { readFileSync, writeFileSync } from "node:fs";
        export const main = task({ name: "main", allowedFiles: ["./e2e"] }, () => {
          const input = readFileSync("/e2e/input.txt", "utf8");
          writeFileSync("/e2e/output.txt", input.toUpperCase());
          return input;
        });`,
    });
    expect(written).toMatchObject({ success: true, result: "seeded by the page" });
    const fromPage = await withCapsule<string>(
      `return new TextDecoder().decode(await capsule.readFile("e2e/output.txt"));`,
    );
    expect(fromPage).toBe("SEEDED BY THE PAGE");
    const readOnly = await runInPage({
      code: `import { task } from "@capsule-run/sdk";
        import { readFileSync, writeFileSync } from "node:fs";
        export const main = task({ name: "main", allowedFiles: [{ path: "./e2e", mode: "ro" }] }, () => {
          const text = readFileSync("/e2e/output.txt", "utf8");
          try { writeFileSync("/e2e/output.txt", "x"); } catch (error) { return [text, error.code]; }
          return [text, "written"];
        });`,
    });
    expect(readOnly.result).toEqual(["SEEDED BY THE PAGE", "EROFS"]);
  });

  it("shows a task only the variables it lists", async () => {
    const envelope = await runInPage({
      code: `import { task } from "@capsule-run/sdk";
        export const main = task({ name: "main", envVariables: ["API_KEY", "MISSING"] },
          () => ({ key: process.env.API_KEY, secret: process.env.SECRET ?? null, missing: process.env.MISSING ?? null }));`,
      env: { API_KEY: "k-123", SECRET: "hidden" },
    });
    expect(envelope.result).toEqual({ key: "k-123", secret: null, missing: null });
  });
});

describe("browser worker pool watchdog in Chromium", () => {
  const graceMs = 200;
  // Fuel for tens of seconds of looping: only the pool's watchdog can end this task in time.
  const spinSource = `import { task } from "@capsule-run/sdk";
    export const spin = task({ name: "spin", compute: "1000000000000" }, () => { for (;;) {} });`;
  let workers: { spawned: Worker[]; closed: Set<Worker> };
  let stopTracking: () => void;

  beforeEach(async () => {
    // A fresh pool of one worker per test, so a sub-task shares its parent's thread and a stuck
    // task would hold up the next one.
    await withCapsule(`capsule.configure({ workers: 1, graceMs: ${graceMs} });`);
    const tracked = { spawned: [] as Worker[], closed: new Set<Worker>() };
    const onWorker = (worker: Worker) => {
      // The pool's workers only: a recorded run may start the journal's Worker too.
      if (!worker.url().includes("/capsule-worker.js")) return;
      tracked.spawned.push(worker);
      worker.on("close", () => tracked.closed.add(worker));
    };
    page.on("worker", onWorker);
    workers = tracked;
    stopTracking = () => page.off("worker", onWorker);
  });

  afterEach(() => stopTracking());

  afterAll(async () => {
    // Back to the default pool; closing this one also ends any worker a failed check left busy.
    await withCapsule(`capsule.configure({});`);
  });

  /** A small task completes on a fresh worker, and the task's own worker is terminated. */
  async function expectReplacedWorker() {
    const { spawned, closed } = workers;
    // With one worker, the next task would queue for tens of seconds behind a stuck one; a fresh
    // worker runs it in well under 10 s, even on a loaded machine.
    const next = await withCapsule<Envelope | "stuck">(`
      const run = capsule.run(${JSON.stringify({ code: sumTask, args: ["100"] })});
      return Promise.race([run, new Promise((resolve) => setTimeout(() => resolve("stuck"), 10_000))]);`);
    expect(next).toMatchObject({ success: true, result: { sum: 295, count: 100 } });
    expect(spawned).toHaveLength(2);
    // Chromium reports a worker busy in a loop as gone about 2 s after terminate() (more when the
    // machine is loaded).
    await expect.poll(() => closed.size, { timeout: 15_000 }).toBe(1);
    expect(closed.has(spawned[0] as Worker)).toBe(true);
  }

  it("terminates a worker whose task overran its timeout, and runs the next task on a fresh one", async () => {
    // The parent awaits the spinning sub-task on the same (only) worker, so the worker's own
    // deadline timer for the parent can never fire: the parent overruns its 300 ms timeout.
    const source = `${spinSource}
      export const main = task({ name: "main", timeout: "300ms" }, async () => (await spin()).error);`;
    // The page's own timers keep firing all the while the worker is stuck. Unrecorded: a
    // recorded run's first sub-task call waits for the page's journal to open, and the parent's
    // own deadline would fire if that took 300 ms (seen at load 12).
    const { envelope, ticks } = await withCapsule<{ envelope: Envelope; ticks: number }>(`
      let ticks = 0;
      const timer = setInterval(() => ticks++, 20);
      const envelope = await capsule.run({ code: ${JSON.stringify(source)}, journal: false });
      clearInterval(timer);
      return { envelope, ticks };`);
    expect(envelope.error).toEqual({
      error_type: "timeout",
      message: `the task exceeded its timeout of 300 ms and did not stop within ${graceMs} ms; its worker was terminated`,
    });
    expect(envelope.execution.duration_ms).toBeGreaterThanOrEqual(300 + graceMs);
    expect(ticks).toBeGreaterThanOrEqual(10);
    await expectReplacedWorker();
  }, 45_000);

  it("terminates a worker whose busy task ignores an abort, and runs the next task on a fresh one", async () => {
    // A worker cannot read the abort message while its guest keeps the thread busy.
    const envelope = await withCapsule<Envelope>(`
      const controller = new AbortController();
      return capsule.run({
        code: ${JSON.stringify(spinSource)},
        task: "spin",
        signal: controller.signal,
        onEvent: (event) => { if (event.type === "running") setTimeout(() => controller.abort(), 50); },
      });`);
    expect(envelope.error).toEqual({
      error_type: "timeout",
      message: `the task was aborted and did not stop within ${graceMs} ms; its worker was terminated`,
    });
    await expectReplacedWorker();
  }, 45_000);
});
