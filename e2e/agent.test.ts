import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// Cells and sessions in a real Chromium: the built dist/browser folder served as static files.
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

/** Runs `body` in the page with the built module as `capsule` (a string: no test transform). */
function inPage<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

describe("cells in Chromium", () => {
  it("runJavaScript returns the output and the last value; runCode gives the envelope", async () => {
    const result = await inPage<{ text: string; envelope: { result: unknown }; unknown: unknown }>(`
      const text = await capsule.runJavaScript('console.log("Hello from JavaScript!"); let x = 5 + 3; x * 2;');
      const envelope = await capsule.runCode({ language: "javascript", code: 'import { join } from "node:path"; const n: number = await Promise.resolve(2); [join("a", "b"), n]' });
      const unknown = (await capsule.runCode({ language: "ruby", code: "1" })).error;
      return { text, envelope, unknown };
    `);
    expect(result.text).toBe("Hello from JavaScript!\n16");
    expect(result.envelope.result).toEqual({ output: '["a/b",2]', stdout: "", value: ["a/b", 2] });
    expect(result.unknown).toMatchObject({ error_type: "config_error" });
  });

  it("applies the agent defaults (LOW fuel) and throws naming the error type", async () => {
    const message = await inPage<string>(`
      try { await capsule.runJavaScript("for (;;) {}"); return "no error"; }
      catch (error) { return error.message; }
    `);
    expect(message).toMatch(/^fuel_exhausted: /);
  });
});

describe("sessions in Chromium", () => {
  it("keeps the whole state between calls, each in a fresh sandbox; failures change nothing", async () => {
    const result = await inPage<string[]>(`
      const session = new capsule.Session("javascript");
      const out = [];
      out.push(await session.run("class Counter { n = 0; next() { return ++this.n } }; const c = new Counter(); const add = (a) => a + c.n; c.next()"));
      out.push(await session.run("c.next(); add(40)"));
      out.push((await session.runCode("c.next(); globalThis.leak = 1; throw new Error('x')")).error.error_type);
      out.push((await session.runCode("c.next(); for (;;) {}")).error.error_type);
      out.push(await session.run("[c.n, typeof leak].join()"));
      const copy = await session.fork();
      await copy.run("c.next()");
      out.push(await session.run("c.n") + "/" + await copy.run("c.n"));
      const other = new capsule.Session("javascript");
      out.push(await other.run("typeof c + typeof Counter"));
      out.push(await capsule.runJavaScript("typeof c + typeof Counter"));
      await session.run("import fs from 'node:fs'; fs.writeFileSync('/workspace/a.txt', 'kept')");
      out.push(await session.run("import fs from 'node:fs'; fs.readFileSync('workspace/a.txt', 'utf8')"));
      await session.close(); await copy.close(); await other.close();
      return out;
    `);
    expect(result).toEqual([
      "1",
      "42",
      "task_error",
      "fuel_exhausted",
      "2,undefined",
      "2/3",
      "undefinedundefined",
      "undefinedundefined",
      "kept",
    ]);
  });

  it("survives a reload with a store (IndexedDB)", async () => {
    const name = `store-${Date.now()}`;
    await inPage(`
      const session = new capsule.Session("javascript", { store: ${JSON.stringify(name)} });
      await session.run("var visits = 41; const greet = (n) => 'visit ' + n");
      await session.close();
    `);
    await page.reload();
    const text = await inPage<string>(`
      const session = new capsule.Session("javascript", { store: ${JSON.stringify(name)} });
      const text = await session.run("visits += 1; greet(visits)");
      await session.reset();
      return text;
    `);
    expect(text).toBe("visit 42");
  });
});
