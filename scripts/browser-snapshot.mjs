/**
 * Makes the Python snapshot in Chromium: a loaded interpreter's memory, taken by the built
 * sandbox Worker (dist/browser/python/worker.txt) in its snapshot mode. Pyodide records in its
 * memory how the engine that loaded it switches stacks (JSPI); a snapshot made on Node 20 (V8's
 * older API) cannot switch stacks in Chromium, and a page needs that for a plain `def` task to
 * wait for a sub-task. Node's sandboxes restore the same snapshot. Serves the files on 127.0.0.1
 * for the one page, which posts the bytes back; resolves to them.
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";

const FILES = {
  "/worker.txt": "text/javascript",
  "/pyodide-metered.wasm": "application/wasm",
  "/python_stdlib.zip": "application/zip",
  "/pyodide-lock.json": "application/json",
};

/** The snapshot's bytes, made in Chromium at `chromiumPath` from the files in `browserPython`. */
export async function makeBrowserSnapshot(browserPython, chromiumPath) {
  let received;
  const server = createServer((request, response) => {
    if (request.method === "POST" && request.url === "/snapshot") {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        received = Buffer.concat(chunks);
        response.end("saved");
      });
      return;
    }
    const type = FILES[request.url ?? ""];
    if (type === undefined) {
      // The sandbox frame's policy, as far as the page must reach its own server: Pyodide runs
      // in a classic Worker only where importScripts of a data: URL is refused.
      response.writeHead(request.url === "/" ? 200 : 404, {
        "content-type": "text/html",
        "content-security-policy":
          "default-src 'none'; script-src 'unsafe-inline' 'wasm-unsafe-eval' blob:; worker-src blob:; connect-src 'self'",
      });
      response.end("<!doctype html><title>snapshot</title>");
      return;
    }
    response.writeHead(200, { "content-type": type });
    response.end(readFileSync(join(browserPython, request.url.slice(1))));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  try {
    const page = await browser.newPage();
    if (process.env.SNAPSHOT_DEBUG) page.on("console", (m) => console.error("page:", m.text()));
    await page.goto(`${origin}/`);
    const outcome = await page.evaluate(async () => {
      const blob = async (name) => (await fetch(name)).blob();
      const [script, engine, stdlib, lock] = await Promise.all(
        ["worker.txt", "pyodide-metered.wasm", "python_stdlib.zip", "pyodide-lock.json"].map(blob),
      );
      const worker = new Worker(URL.createObjectURL(script));
      const channel = new MessageChannel();
      const reply = new Promise((resolve) => {
        channel.port1.onmessage = (event) => resolve(event.data);
        worker.onerror = (event) => resolve({ message: `the Worker failed: ${event.message}` });
        setTimeout(() => resolve({ message: "no answer within 120 s" }), 120_000);
      });
      worker.postMessage(
        { port: channel.port2, files: { engine, stdlib, lock }, makeSnapshot: true },
        [channel.port2],
      );
      const message = await reply;
      worker.terminate();
      if (message?.type !== "snapshot") return JSON.stringify(message ?? "no snapshot");
      const saved = await fetch("/snapshot", { method: "POST", body: message.bytes });
      return saved.ok ? "saved" : `HTTP ${saved.status}`;
    });
    if (outcome !== "saved" || received === undefined) {
      throw new Error(`Chromium made no Python snapshot: ${outcome}`);
    }
    return received;
  } finally {
    await browser.close();
    await new Promise((resolve) => server.close(resolve));
  }
}
