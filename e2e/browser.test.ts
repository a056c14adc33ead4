import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
