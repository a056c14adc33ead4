import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// The built playground in a real Chromium, driven through its controls as a person would.
const root = fileURLToPath(new URL("..", import.meta.url));
const artifacts = join(root, "e2e", "artifacts");
const UI_TIMEOUT = 30_000;

let server: StaticServer;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  await build({
    configFile: join(root, "playground", "vite.config.ts"),
    logLevel: "warn",
  });
  mkdirSync(artifacts, { recursive: true });
  // Served from a sub-path of the server, as on a static host: every URL must be relative.
  server = await serveStatic(join(root, "dist"));
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${server.origin}/playground/`);
  await page.waitForSelector("body[data-ready=true]", { timeout: UI_TIMEOUT });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

function screenshot(name: string): Promise<Buffer> {
  return page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

async function waitUntilIdle(): Promise<void> {
  await page.waitForSelector("body[data-state=done]", { timeout: UI_TIMEOUT });
}

function runsStarted(): Promise<number> {
  return page.evaluate(() => Number(document.body.dataset.runs ?? 0));
}

/** Waits until run number `run` has started and ended. */
async function waitForRun(run: number): Promise<void> {
  await page.waitForFunction((n) => Number(document.body.dataset.runs ?? 0) >= n, run, {
    timeout: UI_TIMEOUT,
  });
  await waitUntilIdle();
}

/** Picks an example, presses Run, and waits for the envelope; returns the status shown. */
async function runExample(id: string): Promise<string> {
  await page.selectOption("#example", id);
  const before = await runsStarted();
  await page.click("#run");
  await waitForRun(before + 1);
  await screenshot(`example-${id}`);
  return statusShown();
}

async function statusShown(): Promise<string> {
  return (await page.getAttribute("#summary .status", "data-status")) ?? "none";
}

async function envelopeShown(): Promise<{
  success: boolean;
  result: unknown;
  error: { error_type: string; message: string } | null;
  execution: { retries: number; fuel_consumed: number; host_requests: unknown[] };
}> {
  return JSON.parse((await page.textContent("#envelope")) ?? "null");
}

describe("the playground in Chromium", () => {
  it("runs the hello example and shows its envelope, console and fuel", async () => {
    await screenshot("start");
    expect(await runExample("hello")).toBe("success");
    const envelope = await envelopeShown();
    expect(envelope.result).toBe("Hello from Capsule, playground!");
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
    expect(await page.textContent("#console")).toContain("running in a fresh sandbox");
    expect(await page.locator("#summary meter").count()).toBe(2);
    expect(await page.textContent("#timeline")).toContain("main");
  });

  it("shows sub-tasks on the timeline", async () => {
    expect(await runExample("subtasks")).toBe("success");
    expect((await envelopeShown()).result).toEqual({ values: [1, 4, 9, 16], sum: 30 });
    await page.waitForFunction(
      () => document.querySelectorAll("#timeline .timeline-row").length === 6,
      null,
      { timeout: UI_TIMEOUT },
    );
    const labels = await page.locator("#timeline .timeline-label").allTextContents();
    expect(labels.filter((label) => label === "square")).toHaveLength(4);
    expect(labels).toContain("total");
  });

  it("refuses a fetch to a host the task did not list", async () => {
    expect(await runExample("fetch")).toBe("success");
    const denied = page.locator("#summary .requests .denied", { hasText: "example.com" });
    await expect(denied.textContent()).resolves.toMatch(/example\.com.*not in allowedHosts/);
    const envelope = await envelopeShown();
    expect(JSON.stringify(envelope.result)).toMatch(/example\.com.*not in allowedHosts/);
  });

  it("lists a file a task wrote in the file browser, shows and deletes it", async () => {
    expect(await runExample("files")).toBe("success");
    const row = page.locator("#files .file-row", { hasText: "notes/hello.txt" });
    await row.waitFor({ timeout: UI_TIMEOUT });
    await row.getByRole("button", { name: "View notes/hello.txt" }).click();
    await expect(page.locator("#file-viewer .file-content").textContent()).resolves.toBe(
      "Written by a task in the playground.",
    );
    await screenshot("file-browser");
    await row.getByRole("button", { name: "Delete notes/hello.txt" }).click();
    await row.waitFor({ state: "detached", timeout: UI_TIMEOUT });
  });

  it("ends a task over its fuel with fuel_exhausted", async () => {
    expect(await runExample("fuel")).toBe("fuel_exhausted");
  });

  it("times out an infinite loop while the page still responds to clicks", async () => {
    await page.selectOption("#example", "loop");
    await page.click("#run");
    // While the task spins in its worker, the page's own controls answer.
    await page.click("#envelope-details summary");
    expect(await page.getAttribute("#envelope-details", "open")).not.toBeNull();
    expect(await page.getAttribute("body", "data-state")).toBe("running");
    await screenshot("loop-running");
    await waitUntilIdle();
    await screenshot("example-loop");
    expect(await statusShown()).toBe("timeout");
    await page.click("#envelope-details summary");
  });

  it("stops a running task with the Stop button", async () => {
    await page.fill('#options input[name="timeout"]', "");
    // A budget that lasts far longer than any delay before the click reaches the page.
    await page.fill('#options input[name="compute"]', "10000000000000");
    await page.click("#run");
    await page.click("#stop");
    await waitUntilIdle();
    expect(await statusShown()).toBe("timeout");
    await screenshot("stopped");
  });

  it("ends a memory bomb with memory_exceeded", async () => {
    expect(await runExample("memory")).toBe("memory_exceeded");
  });

  it("retries a failing sub-task and marks the retries on the timeline", async () => {
    expect(await runExample("retries")).toBe("success");
    expect((await envelopeShown()).result).toEqual({
      success: false,
      retries: 2,
      error: { error_type: "task_error", message: expect.stringContaining("upstream unavailable") },
    });
    await page.waitForSelector("#timeline .timeline-bar.retrying", { timeout: UI_TIMEOUT });
    expect(await page.locator("#timeline .timeline-bar.retrying").count()).toBe(2);
    expect(await page.locator("#timeline .timeline-bar.failed").count()).toBe(1);
    expect(await page.locator("#timeline .timeline-label").allTextContents()).toContain("flaky ↻2");
  });

  it("edits the code's options from the fields", async () => {
    await page.selectOption("#example", "hello");
    await page.fill('#options input[name="timeout"]', "2s");
    await page.fill('#options input[name="allowedHosts"]', "api.example.com, *.x.com");
    // CodeMirror's DOM joins lines without newlines: compare without spaces.
    const code = (await page.textContent(".cm-content"))?.replace(/\s+/g, "");
    expect(code).toContain(
      'task({name:"main",compute:"LOW",ram:"64MB",timeout:"2s",allowedHosts:["api.example.com","*.x.com"],}',
    );
    // The code is no longer the example the list named.
    expect(await page.inputValue("#example")).toBe("custom");
  });

  it("restores code and args from a shared link", async () => {
    await page.click(".cm-content");
    await page.keyboard.press("Control+End");
    await page.keyboard.type("\n// shared marker 42");
    await page.fill("#args", "from, a link");
    await page.click("#share");
    await page.waitForFunction(
      () => document.querySelector<HTMLInputElement>("#share-link")?.value.includes("#code="),
      null,
      { timeout: UI_TIMEOUT },
    );
    const link = await page.inputValue("#share-link");
    await screenshot("shared");
    const visitor = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await visitor.goto(link);
      await visitor.waitForSelector("body[data-ready=true]", { timeout: UI_TIMEOUT });
      expect(await visitor.textContent(".cm-content")).toContain("// shared marker 42");
      expect(await visitor.inputValue("#args")).toBe("from, a link");
      expect(await visitor.inputValue('#options input[name="timeout"]')).toBe("2s");
      // Usable at phone width: nothing wider than the screen.
      const overflow = await visitor.evaluate(
        () => document.documentElement.scrollWidth - window.innerWidth,
      );
      expect(overflow).toBeLessThanOrEqual(0);
      await visitor.click("#run");
      await visitor.waitForSelector("body[data-state=done]", { timeout: UI_TIMEOUT });
      expect(await visitor.getAttribute("#summary .status", "data-status")).toBe("success");
      // The result was brought into view when the run started, not left ~1,000 px below.
      const resultTop = await visitor.evaluate(
        () => document.querySelector("#summary")?.getBoundingClientRect().top ?? -1,
      );
      expect(resultTop).toBeGreaterThanOrEqual(0);
      expect(resultTop).toBeLessThan(844);
      await visitor.screenshot({ path: join(artifacts, "phone.png"), fullPage: true });
    } finally {
      await visitor.close();
    }
  });

  it("reaches every control by keyboard, in order", async () => {
    await page.focus("#example");
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      order.push(await page.evaluate(() => document.activeElement?.id ?? ""));
      await page.keyboard.press("Tab");
    }
    expect(order).toEqual(["example", "run", "share", "share-link"]);
    // Ctrl+Enter in the editor runs the task.
    const before = await runsStarted();
    await page.focus(".cm-content");
    await page.keyboard.press("Control+Enter");
    await waitForRun(before + 1);
    expect(await statusShown()).toBe("success");
    expect(pageErrors).toEqual([]);
  });

  it("shows a compile_error without fuel or memory meters: the task never started", async () => {
    await page.selectOption("#example", "hello");
    await page.click(".cm-content");
    await page.keyboard.press("Control+End");
    await page.keyboard.type("\nexport const broken = (;");
    const before = await runsStarted();
    await page.click("#run");
    await waitForRun(before + 1);
    expect(await statusShown()).toBe("compile_error");
    expect(await page.locator("#summary meter").count()).toBe(0);
    expect(await page.textContent("#summary")).toContain("none: the task did not start");
    await page.selectOption("#example", "hello");
  });

  it("highlights Python as it highlights TypeScript", async () => {
    const tokens = () => page.locator(".cm-content .cm-line span").count();
    await page.selectOption("#language", "py");
    await page.waitForFunction(() =>
      document.querySelector(".cm-content")?.textContent?.includes("def "),
    );
    expect(await tokens()).toBeGreaterThan(5);
    await page.selectOption("#language", "ts");
    expect(await tokens()).toBeGreaterThan(5);
  });
});
