import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// The playground's session mode in a real Chromium: cells typed and run as a person would, each
// in the page's `Session`, whose state carries from cell to cell.
const root = fileURLToPath(new URL("..", import.meta.url));
const artifacts = join(root, "e2e", "artifacts");
const UI_TIMEOUT = 30_000;
// Python sessions load Pyodide in the page: seconds on a busy machine.
const PYTHON_TIMEOUT = 120_000;

let outDir: string;
let server: StaticServer;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  // A build of its own, so this suite and the task-mode suite never share an output folder.
  outDir = mkdtempSync(join(tmpdir(), "capsule-playground-session-"));
  await build({
    configFile: join(root, "playground", "vite.config.ts"),
    logLevel: "warn",
    build: { outDir, emptyOutDir: true },
  });
  mkdirSync(artifacts, { recursive: true });
  server = await serveStatic(outDir);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${server.origin}/`);
  await page.waitForSelector("body[data-ready=true]", { timeout: UI_TIMEOUT });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (outDir) rmSync(outDir, { recursive: true, force: true });
});

function screenshot(name: string, on: Page = page): Promise<Buffer> {
  return on.screenshot({ path: join(artifacts, `session-${name}.png`), fullPage: true });
}

interface CellShown {
  status: string;
  stdout: string | null;
  value: string | null;
  error: string | null;
  facts: string;
}

/** Types `code` into the next-cell input, runs it (button or Ctrl+Enter), returns what it shows. */
async function runCell(code: string, how: "button" | "keys" = "button", on = page) {
  const before = Number((await on.getAttribute("body", "data-cells")) ?? 0);
  await on.fill("#cell-code", code);
  if (how === "keys") {
    await on.focus("#cell-code");
    await on.keyboard.press("Control+Enter");
  } else {
    await on.getByRole("button", { name: "Run cell" }).click();
  }
  const number = before + 1;
  await on.waitForSelector(`body[data-cells="${number}"][data-session-state=idle]`, {
    timeout: UI_TIMEOUT,
  });
  return cellShown(number, on);
}

async function cellShown(number: number, on = page): Promise<CellShown> {
  const cell = on.locator(`#cells .cell[data-cell="${number}"]`);
  const text = async (selector: string) => {
    const found = cell.locator(selector);
    return (await found.count()) === 0 ? null : found.textContent();
  };
  return {
    status: (await cell.getAttribute("data-status")) ?? "none",
    stdout: await text(".cell-stdout"),
    value: await text(".cell-value"),
    error: await text(".cell-error"),
    facts: (await cell.locator(".facts").textContent()) ?? "",
  };
}

async function horizontalOverflow(on: Page): Promise<number> {
  return on.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

describe("the playground's session mode in Chromium", () => {
  it("switches from the task mode to the session mode by keyboard", async () => {
    expect(await page.isVisible("#session-view")).toBe(false);
    await page.focus('#mode input[value="task"]');
    await page.keyboard.press("ArrowRight");
    await page.waitForSelector("body[data-mode=session]", { timeout: UI_TIMEOUT });
    expect(await page.isVisible("#session-view")).toBe(true);
    expect(await page.isVisible("#task-view")).toBe(false);
    expect(await page.isVisible("#run")).toBe(false);
    expect(await page.isChecked('#mode input[value="session"]')).toBe(true);
    expect(await page.getByLabel("Next cell (JavaScript)").count()).toBe(1);
  });

  it("keeps state from cell to cell and shows output, value, fuel and duration", async () => {
    const first = await runCell(
      'let n = 1; function inc() { return ++n }\nconsole.log("defined inc")',
    );
    expect(first.status).toBe("success");
    expect(first.stdout).toBe("defined inc\n");
    expect(first.value).toBeNull();
    const second = await runCell("inc()", "keys");
    expect(second).toMatchObject({ status: "success", value: "2", error: null, stdout: null });
    expect(second.facts).toMatch(/duration\s*\d+ ms/);
    expect(second.facts).toMatch(/fuel\s*[\d,]+ of 100,000,000/);
    expect(await page.locator('#cells .cell[data-cell="2"] meter').count()).toBe(2);
    // The input empties for the next cell and keeps the focus.
    expect(await page.inputValue("#cell-code")).toBe("");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("cell-code");
    await screenshot("two-cells");
  });

  it("shows a throwing cell's error in red, and the next cell sees the state unchanged", async () => {
    const thrown = await runCell('inc(); console.log("before"); throw new Error("boom")');
    expect(thrown.status).toBe("task_error");
    expect(thrown.error).toMatch(/^task_error: .*boom/);
    expect(thrown.stdout).toBe("before\n");
    expect(thrown.facts).toMatch(/fuel/);
    const color = await page
      .locator('#cells .cell[data-cell="3"] .cell-error')
      .evaluate((element) => getComputedStyle(element).color);
    expect(color).toBe("rgb(179, 38, 30)");
    expect((await runCell("n")).value).toBe("2");
  });

  it("ends a runaway cell with fuel_exhausted and keeps the state", async () => {
    const runaway = await runCell("n = 100; while (true) {}");
    expect(runaway.status).toBe("fuel_exhausted");
    expect(runaway.error).toMatch(/^fuel_exhausted: /);
    expect(runaway.facts).toMatch(/fuel\s*[\d,]+ of 100,000,000/);
    const after = await runCell("inc()");
    expect(after.value).toBe("3");
    await screenshot("failures");
  });

  it("forgets the state on Reset", async () => {
    await page.getByRole("button", { name: "Reset" }).click();
    await page.waitForSelector("#cells .cell-reset", { timeout: UI_TIMEOUT });
    await page.waitForSelector("body[data-session-state=idle]", { timeout: UI_TIMEOUT });
    const gone = await runCell("n");
    expect(gone.status).toBe("task_error");
    expect(gone.error).toMatch(/ReferenceError|not defined/);
    expect((await runCell("typeof inc")).value).toBe("undefined");
  });

  it("puts a cell's code back in the input with Edit again", async () => {
    await page.getByRole("button", { name: "Put cell 2's code back in the input" }).click();
    expect(await page.inputValue("#cell-code")).toBe("inc()");
    await page.fill("#cell-code", "");
  });

  it("reaches the session's controls by keyboard, in order", async () => {
    await page.focus("#session-language");
    const order: string[] = [];
    for (let i = 0; i < 2; i++) {
      await page.keyboard.press("Tab");
      order.push(await page.evaluate(() => document.activeElement?.id ?? ""));
    }
    expect(order).toEqual(["session-reset", ""]);
    // Past the cells' buttons, the input and then Run cell.
    await page.focus("#cell-code");
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("cell-run");
  });

  it("opens a shared link in session mode, usable at phone width", async () => {
    await page.click("#share");
    await page.waitForFunction(
      () => document.querySelector<HTMLInputElement>("#share-link")?.value.includes("#code="),
      null,
      { timeout: UI_TIMEOUT },
    );
    const link = await page.inputValue("#share-link");
    const visitor = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      visitor.on("pageerror", (error) => pageErrors.push(String(error)));
      await visitor.goto(link);
      await visitor.waitForSelector("body[data-ready=true]", { timeout: UI_TIMEOUT });
      expect(await visitor.getAttribute("body", "data-mode")).toBe("session");
      expect(await visitor.isVisible("#session-view")).toBe(true);
      const cell = await runCell('const s = "x".repeat(400); s.length', "button", visitor);
      expect(cell.value).toBe("400");
      await runCell("s", "keys", visitor);
      await runCell("s.missing.deeper", "button", visitor);
      expect(await horizontalOverflow(visitor)).toBeLessThanOrEqual(0);
      await screenshot("phone", visitor);
    } finally {
      await visitor.close();
    }
  });

  it("keeps task-mode links opening in task mode", async () => {
    await page.check('#mode input[value="task"]');
    await page.waitForSelector("body[data-mode=task]", { timeout: UI_TIMEOUT });
    expect(await page.isVisible("#run")).toBe(true);
    expect(await page.isVisible("#session-view")).toBe(false);
    const sessionLink = await page.inputValue("#share-link");
    await page.click("#share");
    await page.waitForFunction(
      (old) => document.querySelector<HTMLInputElement>("#share-link")?.value !== old,
      sessionLink,
      { timeout: UI_TIMEOUT },
    );
    const visitor = await browser.newPage();
    try {
      await visitor.goto(await page.inputValue("#share-link"));
      await visitor.waitForSelector("body[data-ready=true]", { timeout: UI_TIMEOUT });
      expect(await visitor.getAttribute("body", "data-mode")).toBe("task");
      expect(await visitor.isVisible("#session-view")).toBe(false);
    } finally {
      await visitor.close();
    }
    await page.check('#mode input[value="session"]');
  });

  it(
    "runs a Python session whose cells share the interpreter's state",
    async () => {
      await runCell("const kept = 7");
      await page.selectOption("#session-language", "python");
      await page.waitForSelector("body[data-session-state=idle]", { timeout: PYTHON_TIMEOUT });
      expect(await page.inputValue("#session-language")).toBe("python");
      await expect
        .poll(() => page.textContent("#session-status"))
        .toMatch(/^Python session: cells share its state\./);
      await runCell("x = 20\ndef more(v): return v + 1");
      const cell = await runCell('print("py")\nmore(x)');
      expect(cell).toMatchObject({ status: "success", stdout: "py\n", value: "21" });
      await screenshot("python");
      expect(pageErrors).toEqual([]);
    },
    PYTHON_TIMEOUT + 30_000,
  );
});
