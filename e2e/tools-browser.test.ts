import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// capsuleTools() from capsule-portable/browser in a real Chromium: the built dist/browser folder
// served as static files, driven as an agent loop in a page drives it.
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

describe("capsuleTools() in Chromium", () => {
  it("lists the tools and answers calls: stateless, in a session, failing, refused", async () => {
    const result = await inPage<Record<string, unknown>>(`
      const { tools, handle, close } = capsule.capsuleTools();
      const logs = [];
      const plain = await handle("execute_javascript", { code: 'console.log("in a page"); 6 * 7' }, { onLog: (level, text) => logs.push(level + " " + text) });
      const define = await handle("execute_javascript", { code: "function twice(n) { return 2 * n }\\nconst base = 20\\ntwice(base)", session_id: "page-1" });
      const reuse = await handle("execute_javascript", { code: "twice(base + 1)", session_id: "page-1" });
      const other = await handle("execute_javascript", { code: "typeof twice", session_id: "page-2" });
      const stateless = await handle("execute_javascript", { code: "typeof twice" });
      const failed = await handle("execute_javascript", { code: "for (;;) {}" });
      const refused = await handle("execute_javascript", { code: 7 });
      await close();
      return {
        names: tools.map((tool) => tool.name),
        keys: Object.keys(tools[0]).sort(),
        plain: [plain.text, plain.isError, plain.envelope.result.value],
        logs,
        session: [define.text, reuse.text, other.text, stateless.text],
        failed: [failed.isError, failed.text.split(":")[0]],
        refused: [refused.isError, refused.text],
      };
    `);
    // execute_python is listed too once Python cells run in a page.
    expect(["execute_javascript", "execute_javascript,execute_python"]).toContain(
      (result.names as string[]).join(),
    );
    expect({ ...result, names: undefined }).toEqual({
      names: undefined,
      keys: ["description", "inputSchema", "name"],
      plain: ["in a page\n42", false, 42],
      logs: ["log in a page"],
      session: ["40", "42", "undefined", "undefined"],
      failed: [true, "fuel_exhausted"],
      refused: [true, 'execute_javascript: "code" must be a string of source code, got 7'],
    });
  });

  it("forks a session with fork_from, and bounds what the page's sessions hold together", async () => {
    const result = await inPage<Record<string, unknown>>(`
      const budget = capsule.Session.imageBudget;
      const defaults = [budget.totalBytes, budget.owner];
      const before = budget.heldBytes;
      budget.totalBytes = before + 128 * 2 ** 20;
      try {
        const { handle, close } = capsule.capsuleTools({ ram: "64MB" });
        await handle("execute_javascript", { code: "let seen = ['a']; const show = () => seen.join()", session_id: "A" });
        const fork = await handle("execute_javascript", { code: "seen.push('b'); show()", session_id: "B", fork_from: "A" });
        await handle("execute_javascript", { code: "seen.push('changed')", session_id: "A" });
        const inA = await handle("execute_javascript", { code: "show()", session_id: "A" });
        const inB = await handle("execute_javascript", { code: "show()", session_id: "B" });
        const missing = await handle("execute_javascript", { code: "1", session_id: "C", fork_from: "nope" });
        const hoards = [];
        let most = 0;
        for (let i = 0; i < 5; i++) {
          const r = await handle("execute_javascript", { code: "const hoard = new Uint8Array(40e6).fill(" + (i + 1) + "); hoard.length", session_id: "h" + i });
          hoards.push(r.isError ? r.text : "kept");
          most = Math.max(most, budget.heldBytes - before);
        }
        const first = await handle("execute_javascript", { code: "hoard[0]", session_id: "h0" });
        await close();
        return {
          defaults,
          fork: [fork.text, inA.text, inB.text],
          missing: missing.text,
          hoards,
          first: first.text,
          withinBudget: most <= 128 * 2 ** 20,
          mostMiB: Math.round(most / 2 ** 20),
          afterClose: budget.heldBytes - before,
        };
      } finally {
        budget.totalBytes = defaults[0];
      }
    `);
    expect(result.defaults).toEqual([2 ** 29, "this page"]);
    expect(result.fork).toEqual(["a,b", "a,changed", "a,b"]);
    expect(result.missing).toMatch(/fork_from "nope" names no open JavaScript session/);
    const hoards = result.hoards as string[];
    expect(hoards.slice(0, 3)).toEqual(["kept", "kept", "kept"]);
    for (const refusal of hoards.slice(3)) {
      expect(refusal).toMatch(
        /^memory_exceeded: session_id "h[34]": the session's state after this call was not kept: its state of \d+(\.\d)? MiB does not fit in the \d+(\.\d)? MiB the session images of this page may hold together/,
      );
    }
    expect(result.first).toBe("1");
    expect(result.withinBudget).toBe(true);
    expect(result.afterClose).toBe(0);
  });
});
