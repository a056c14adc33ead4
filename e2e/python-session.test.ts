import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// Python sessions keep the interpreter's state on Node only (core/session/python-image.ts); a
// page says so plainly instead of running a session that forgets.
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
});

describe("Python sessions in Chromium", () => {
  it("are a config_error that says why, and a JavaScript session still works", async () => {
    const result =
      (await page.evaluate(`import("/dist/browser/capsule.js").then(async (capsule) => {
      const python = new capsule.Session("python");
      const envelope = await python.runCode("x = 1");
      const thrown = await python.run("x").then(() => null, (error) => String(error.message));
      const js = new capsule.Session("javascript");
      await js.run("let kept = 41");
      const value = await js.run("kept + 1");
      await python.close();
      await js.close();
      return { envelope, thrown, value };
    })`)) as {
        envelope: { success: boolean; error: { error_type: string; message: string } };
        thrown: string | null;
        value: string;
      };
    expect(result.envelope.success).toBe(false);
    expect(result.envelope.error.error_type).toBe("config_error");
    expect(result.envelope.error.message).toMatch(/Python sessions run on Node only for now/);
    expect(result.thrown).toMatch(/^config_error: Python sessions run on Node only/);
    expect(result.value).toBe("42");
  });
});
