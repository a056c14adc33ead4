import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

// Python sessions in a page: the interpreter's memory is taken in the sandbox's Worker after each
// call and copied into a fresh sandbox before the next (core/session/python-image.ts).
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

/** Runs `body` in the page with `capsule` (the browser entry) in scope. */
function inPage<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

interface Envelope {
  success: boolean;
  result: unknown;
  error: { error_type: string; message: string } | null;
}

describe("Python sessions in Chromium", () => {
  it(
    "keep globals, functions, classes, generators and modules from call to call",
    { timeout: 120_000 },
    async () => {
      const out = await inPage<string[]>(`
        const session = new capsule.Session("python");
        const out = [];
        try {
          out.push(await session.run("import collections\\nx = 41\\ndef f(): return x + 1"));
          out.push(await session.run("class C:\\n    def __init__(self): self.n = 7\\nc = C()\\ng = (i * i for i in range(5))"));
          out.push(await session.run("next(g); next(g)"));
          out.push(await session.run("f(), c.n, next(g), collections.Counter('aab')['a']"));
          out.push(String(session.stateBytes > 1_000_000));
        } finally {
          await session.close();
        }
        return out;`);
      expect(out).toEqual(["", "", "1", "(42, 7, 4, 2)", "true"]);
    },
  );

  it(
    "keep the state of before a call that raises, runs out of fuel or holds a JavaScript value",
    { timeout: 120_000 },
    async () => {
      const result = await inPage<{ failures: Envelope[]; after: string }>(`
        const session = new capsule.Session("python", { compute: "LOW" });
        try {
          await session.run("n = 1");
          const failures = [];
          failures.push(await session.runCode("n = 2\\nraise ValueError('no')"));
          failures.push(await session.runCode("n = 3\\nwhile True: pass"));
          failures.push(await session.runCode("import js\\nn = 4\\nkept = js.Object.new()"));
          return { failures, after: await session.run("n") };
        } finally {
          await session.close();
        }`);
      expect(result.failures.map((envelope) => envelope.error?.error_type)).toEqual([
        "task_error",
        "fuel_exhausted",
        "task_error",
      ]);
      expect(result.failures[0]?.error?.message).toMatch(/ValueError: no/);
      expect(result.failures[2]?.error?.message).toMatch(/JavaScript values/);
      expect(result.after).toBe("1");
    },
  );

  it(
    "fork into independent copies, and share nothing with other sessions or stateless cells",
    { timeout: 180_000 },
    async () => {
      const result = await inPage<Record<string, string>>(`
        // What the other session's cells scan its memory for: the token's hash, never the token.
        const token = crypto.randomUUID();
        const digest = Array.from(
          new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))),
          (byte) => byte.toString(16).padStart(2, "0"),
        ).join("");
        const scan = [
          "import hashlib, sys",
          "had = 'pyodide_js' in sys.modules",
          "import pyodide_js",
          "size, step, hits = pyodide_js._module.HEAPU8.length, 1 << 20, 0",
          "buf = bytearray(step + 64)",
          "for at in range(0, size, step):",
          "    view = pyodide_js._module.HEAPU8.subarray(at, min(at + step + 64, size))",
          "    n = view.length",
          "    view.assign_to(memoryview(buf)[:n])",
          "    del view",
          "    i = buf.find(b'" + token.slice(0, 8) + "', 0, n)",
          "    while 0 <= i < step:",
          "        hits += hashlib.sha256(bytes(buf[i:i + 36])).hexdigest() == '" + digest + "'",
          "        i = buf.find(b'" + token.slice(0, 8) + "', i + 1, n)",
          "del pyodide_js, buf",
          "if not had: del sys.modules['pyodide_js']",
          // Raised, so that the call keeps no state (the scan's JavaScript proxies could not carry over).
          "raise LookupError(f'hits={hits}')",
        ].join("\\n");
        const hits = async (run) => (await run(scan)).error?.message.match(/hits=(\\d+)/)?.[1];
        // A scan copies the whole memory, which fuel charges per byte.
        const a = new capsule.Session("python", { compute: "HIGH" });
        const b = new capsule.Session("python", { compute: "HIGH" });
        try {
          await a.run("secret = '" + token + "'\\nitems = [1]");
          const fork = await a.fork();
          await fork.run("items.append(2)");
          const result = {
            original: await a.run("items"),
            forked: await fork.run("items, secret == '" + token + "'"),
            other: await b.run("'secret' in globals(), sorted(k for k in globals() if not k.startswith('__'))"),
            stateless: await capsule.runPython("'secret' in globals()"),
            // The control: the session that holds the token finds it in its memory.
            foundInOwn: await hits((code) => a.runCode(code)),
            foundInOther: await hits((code) => b.runCode(code)),
            foundStateless: await hits((code) =>
              capsule.runCode({ language: "python", code, compute: "HIGH" }),
            ),
          };
          await fork.close();
          return result;
        } finally {
          await a.close();
          await b.close();
        }`);
      expect(Number(result.foundInOwn)).toBeGreaterThan(0);
      expect(result).toEqual({
        original: "[1]",
        forked: "([1, 2], True)",
        other: "(False, [])",
        stateless: "False",
        foundInOwn: result.foundInOwn,
        foundInOther: "0",
        foundStateless: "0",
      });
    },
  );

  it(
    "keep workspace files between calls, and the state across a reload with a store",
    { timeout: 180_000 },
    async () => {
      const first = await inPage<string[]>(`
        const session = new capsule.Session("python", { store: "py-reload" });
        await session.reset();
        const out = [];
        out.push(await session.run("with open('/workspace/note.txt', 'w') as f: f.write('kept')"));
        out.push(await session.run("def twice(v): return v * 2\\ntotal = twice(21)"));
        out.push(await session.exportFile("note.txt", "exported/note.txt"));
        return out;`);
      expect(first[2]).toBe("exported at exported/note.txt");
      await page.reload();
      const second = await inPage<string[]>(`
        const session = new capsule.Session("python", { store: "py-reload" });
        try {
          return [
            await session.run("total, twice(5), open('/workspace/note.txt').read()"),
          ];
        } finally {
          await session.reset();
          await session.close();
        }`);
      expect(second).toEqual(["(42, 10, 'kept')"]);
    },
  );

  it(
    "refuse a tampered stored image with a config_error, and reset() clears it",
    { timeout: 120_000 },
    async () => {
      const result = await inPage<{ tampered: Envelope; after: string }>(`
        const session = new capsule.Session("python", { store: "py-tampered" });
        try {
          await session.reset();
          await session.run("x = 1");
          // Writes another value under the session's key, as a hostile script on the origin could.
          const db = await new Promise((resolve, reject) => {
            const request = indexedDB.open("capsule-sessions", 1);
            request.onsuccess = () => resolve(request.result);
            request.onerror = () => reject(request.error);
          });
          const keys = await new Promise((resolve) => {
            const request = db.transaction("images").objectStore("images").getAllKeys();
            request.onsuccess = () => resolve(request.result);
          });
          const key = keys.find((k) => String(k).includes("py-tampered"));
          const stored = await new Promise((resolve) => {
            const request = db.transaction("images").objectStore("images").get(key);
            request.onsuccess = () => resolve(request.result);
          });
          const forged = new Uint8Array(stored);
          forged.fill(7, forged.length - 64);
          await new Promise((resolve) => {
            const transaction = db.transaction("images", "readwrite");
            transaction.objectStore("images").put(forged, key);
            transaction.oncomplete = resolve;
          });
          db.close();
          const reopened = new capsule.Session("python", { store: "py-tampered" });
          const tampered = await reopened.runCode("x");
          await reopened.reset();
          const after = await reopened.run("'x' in globals()");
          await reopened.close();
          return { tampered, after };
        } finally {
          await session.close();
        }`);
      expect(result.tampered.success).toBe(false);
      expect(result.tampered.error?.error_type).toBe("config_error");
      expect(result.after).toBe("False");
    },
  );
});
