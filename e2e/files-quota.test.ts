// A page's OPFS write-back under the run's write quota, in a real Chromium: the entry quota bounds
// how many files a task leaves to write back, the write-back ends within the task's timeout,
// sub-tasks running at once in other Web Workers share one quota, and an origin whose storage
// runs out fails the task with ENOSPC, each file left whole.
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope } from "../core/runtime/envelope.ts";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

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

function withCapsule<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

/** Runs a task in the page; also how long the page waited for its envelope. */
async function timedRun(
  options: Record<string, unknown>,
): Promise<{ envelope: Envelope; wallMs: number }> {
  return withCapsule(`
    const started = performance.now();
    const envelope = await capsule.run(${JSON.stringify(options)});
    return { envelope, wallMs: performance.now() - started };`);
}

/** Names and sizes of the files in an OPFS directory of the app root. */
function listing(directory: string): Promise<Record<string, number>> {
  return listingIn(page, directory);
}

function listingIn(tab: Page, directory: string): Promise<Record<string, number>> {
  return tab.evaluate(async (path) => {
    let handle = await navigator.storage.getDirectory();
    for (const name of `capsule/${path}`.split("/")) handle = await handle.getDirectoryHandle(name);
    const sizes: Record<string, number> = {};
    const entries = (
      handle as unknown as { entries(): AsyncIterable<[string, FileSystemFileHandle]> }
    ).entries();
    for await (const [name, entry] of entries) {
      if (entry.kind === "file") sizes[name] = (await entry.getFile()).size;
    }
    return sizes;
  }, directory);
}

const manyFiles = (directory: string, options: string) => `
  import { task } from "@capsule-run/sdk";
  import fs from "node:fs";
  export const main = task(${options}, () => {
    let n = 0;
    try { for (;;) { fs.writeFileSync("${directory}/f" + n, ""); n++; } }
    catch (e) { return [n, (e as NodeJS.ErrnoException).code]; }
  });`;

describe("OPFS write-back under the write quota", () => {
  it("the page is not cross-origin isolated, so jobs settle their writes with the pool", async () => {
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(false);
  });

  it("10,000 empty files (the default entry quota) are all written back", async () => {
    await withCapsule(`await capsule.writeFile("fq-many/.keep", "");`);
    const { envelope } = await timedRun({
      code: manyFiles("fq-many", `{ name: "main", allowedFiles: ["./fq-many"], compute: "HIGH" }`),
    });
    expect(envelope.result).toEqual([10_000, "ENOSPC"]);
    expect(Object.keys(await listing("fq-many"))).toHaveLength(10_001);
  }, 180_000);

  it("a task with timeout 1s that makes 20,000 empty files: stopped at the quota, its write-back bounded by the timeout", async () => {
    await withCapsule(`await capsule.writeFile("fq-timed/.keep", "");`);
    const { envelope, wallMs } = await timedRun({
      code: manyFiles(
        "fq-timed",
        `{ name: "main", allowedFiles: ["./fq-timed"], compute: "HIGH", timeout: "1s" }`,
      ),
    });
    // Before: 20,000 files and 33.6 s. Now at most the quota's entries, and the answer comes
    // within the timeout plus the writes in flight at the deadline (and a loaded machine).
    expect(wallMs).toBeLessThan(5_000);
    const saved = Object.keys(await listing("fq-timed")).length;
    expect(saved).toBeLessThanOrEqual(10_000);
    if (!envelope.success) {
      expect(envelope.error?.error_type).toBe("timeout");
      expect(envelope.error?.message).toMatch(/timeout ran out while its files were saved/);
    }
  }, 60_000);

  it("sub-tasks running at once in other workers share one quota: what crosses it is not saved", async () => {
    await withCapsule(`await capsule.writeFile("fq-shared/.keep", "");`);
    const { envelope } = await timedRun({
      code: `
        import { task } from "@capsule-run/sdk";
        import fs from "node:fs";
        export const fill = task({ name: "fill", allowedFiles: ["./fq-shared"] }, (n: string) => {
          fs.writeFileSync("fq-shared/part" + n, "x".repeat(400));
          return "written";
        });
        export const main = task({ name: "main" }, async () => {
          const all = await Promise.all(["1", "2", "3"].map((n) => fill(n)));
          return all.map((e) => e.success ? "saved" : e.error.message);
        });`,
      limits: { writeBytes: 1000 },
    });
    const outcomes = envelope.result as string[];
    expect(
      outcomes.filter((outcome) => outcome === "saved"),
      JSON.stringify(outcomes),
    ).toHaveLength(2);
    expect(outcomes.find((outcome) => outcome !== "saved")).toMatch(
      /ENOSPC.*write quota.*not saved/,
    );
    const sizes = Object.values(await listing("fq-shared"));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(800);
  }, 60_000);

  it("an origin out of storage fails the task with ENOSPC, and every file is whole or absent", async () => {
    // A browser of its own: with another context's OPFS writes behind it in the same browser,
    // Chromium did not enforce the overridden quota (the writes succeeded).
    const ownBrowser = await launchChromium();
    const context = await ownBrowser.newContext();
    const tab = await context.newPage();
    await tab.goto(`${server.origin}/examples/browser/index.html`);
    const inTab = <T>(body: string) =>
      tab.evaluate(
        `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
      ) as Promise<T>;
    await inTab(`await capsule.writeFile("fq-full/.keep", "");`);
    const cdp = await context.newCDPSession(tab);
    const origin = server.origin;
    const usage = await tab.evaluate(async () => (await navigator.storage.estimate()).usage ?? 0);
    await cdp.send("Storage.overrideQuotaForOrigin", {
      origin,
      // Less than the four files need, from the first: Chromium checks OPFS writes against it,
      // but with headroom left it let some runs write past it.
      quotaSize: usage + 256 * 1024,
    });
    try {
      const envelope = await inTab<Envelope>(
        `return capsule.run(${JSON.stringify({
          code: `
          import { task } from "@capsule-run/sdk";
          import fs from "node:fs";
          export const main = task({ name: "main", allowedFiles: ["./fq-full"] }, () => {
            for (let i = 0; i < 4; i++) fs.writeFileSync("fq-full/mb" + i, new Uint8Array(1024 * 1024).fill(65 + i));
            return "written";
          });`,
        })});`,
      );
      expect(envelope.success).toBe(false);
      expect(envelope.error?.error_type).toBe("task_error");
      expect(envelope.error?.message).toMatch(/ENOSPC: the origin's storage quota ran out/);
      const sizes = await listingIn(tab, "fq-full");
      for (const [name, size] of Object.entries(sizes)) {
        if (name !== ".keep") expect(size, name).toBe(1024 * 1024);
      }
      expect(Object.keys(sizes).length).toBeLessThan(5);
    } finally {
      await cdp.send("Storage.overrideQuotaForOrigin", { origin });
      await context.close();
      await ownBrowser.close();
    }
  }, 60_000);
});
