// What the page-memory scripts share: the project served on 127.0.0.1, headless Chromium with
// the built browser module's example page open, and the browser's resident memory (its processes
// found through CDP's SystemInfo.getProcessInfo, their VmRSS read from /proc).
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("..", import.meta.url));
const MIME = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".json": "application/json",
  ".wasm": "application/wasm",
};

/** Opens the example page; `close()` ends the browser and the server. */
export async function openExamplePage() {
  const server = createServer(async (request, response) => {
    const path = normalize(
      join(root, decodeURIComponent(new URL(request.url, "http://x").pathname)),
    );
    if (!path.startsWith(root.endsWith(sep) ? root : root + sep))
      return response.writeHead(403).end();
    try {
      const body = await readFile(path);
      response.writeHead(200, {
        "content-type": MIME[extname(path)] ?? "application/octet-stream",
      });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu"],
  });
  const cdp = await browser.newBrowserCDPSession();
  /** Resident MiB of every process of this browser. */
  const residentMiB = async () => {
    const { processInfo } = await cdp.send("SystemInfo.getProcessInfo");
    let kib = 0;
    for (const { id } of processInfo) {
      try {
        const status = readFileSync(`/proc/${id}/status`, "utf8");
        kib += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      } catch {
        // A process that ended meanwhile.
      }
    }
    return Math.round(kib / 1024);
  };
  const page = await browser.newPage();
  await page.goto(`${origin}/examples/browser/index.html`);
  const close = async () => {
    await browser.close();
    await new Promise((resolve) => server.close(resolve));
  };
  return { page, residentMiB, close };
}
