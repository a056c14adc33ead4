// The online playground as deployed: the example Worker serving the built page as static assets
// from one origin, in local workerd (Miniflare), opened in Chromium. A run in the page and a run
// on the edge (the same Worker's POST /run) of the same example agree; every file carries the
// cache header it should; the deploy's own config is the one served.
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unstable_readConfig } from "wrangler";
import {
  PLAYGROUND_ENV,
  type PlaygroundOnline,
  servePlaygroundOnline,
} from "../bench/playground-paint.ts";
import { decodeState } from "../playground/share.ts";
import { IMMUTABLE, MAX_ASSET_BYTES } from "../playground/vite.config.ts";
import { launchChromium, serveStatic } from "./support.ts";
import { root, wranglerConfig } from "./workerd.ts";

const artifacts = join(root, "e2e", "artifacts");
const TOKEN = "playground token for the test";
const UI_TIMEOUT = 90_000;
/** The asset server's default: a browser keeps the file but asks again (ETag) on every load. */
const REVALIDATE = "public, max-age=0, must-revalidate";

let online: PlaygroundOnline;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

interface ShownEnvelope {
  success: boolean;
  result: unknown;
  error: { error_type: string; message: string } | null;
  execution: { task_name: string; duration_ms: number; fuel_consumed: number };
}

beforeAll(async () => {
  mkdirSync(artifacts, { recursive: true });
  online = await servePlaygroundOnline(root, join(root, "dist", "playground-online"), {
    CAPSULE_TOKEN: TOKEN,
  });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${online.origin}/`);
  await page.waitForSelector("body[data-ready=true][data-edge]", { timeout: UI_TIMEOUT });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await online?.close();
});

/** Every file of the built page, relative to it, with `/` separators. */
function siteFiles(): string[] {
  return (readdirSync(online.siteDir, { recursive: true }) as string[])
    .map((name) => relative(online.siteDir, join(online.siteDir, name)).split(sep).join("/"))
    .filter((path) => statSync(join(online.siteDir, path)).isFile())
    .sort();
}

function ignoredFiles(): string[] {
  return readFileSync(join(online.siteDir, ".assetsignore"), "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => line.replace(/^\//, ""));
}

function screenshot(name: string, on: Page = page): Promise<Buffer> {
  return on.screenshot({ path: join(artifacts, `online-${name}.png`), fullPage: true });
}

async function runShown(on: Page = page): Promise<ShownEnvelope> {
  const before = await on.evaluate(() => Number(document.body.dataset.runs ?? 0));
  await on.click("#run");
  await on.waitForFunction((n) => Number(document.body.dataset.runs ?? 0) > n, before, {
    timeout: UI_TIMEOUT,
  });
  await on.waitForSelector("body[data-state=done]", { timeout: UI_TIMEOUT });
  return JSON.parse((await on.textContent("#envelope")) ?? "null");
}

describe("the deploy's config", () => {
  it("serves the built page from the Worker, building it first", () => {
    const config = unstable_readConfig({ config: wranglerConfig, env: PLAYGROUND_ENV });
    expect(config.build.command).toBe("npm run build:playground");
    // wrangler reads the directory relative to the config file.
    const directory = resolve(dirname(wranglerConfig), config.assets?.directory ?? "");
    expect(directory).toBe(join(root, "dist", "playground"));
    // The Worker's own code is the example's, as in the default environment.
    expect(config.main).toBe(join(root, "examples", "workers", "worker.ts"));
    // Closed by default, as the Worker without the page is.
    expect(config.vars).toEqual({ CAPSULE_CORS_ORIGINS: "" });
  });

  it("is the one the README's command deploys", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    expect(readme).toContain(
      `npx wrangler deploy -c examples/workers/wrangler.jsonc --env ${PLAYGROUND_ENV}\n`,
    );
    expect(relative(root, wranglerConfig)).toBe(join("examples", "workers", "wrangler.jsonc"));
  });

  it("uploads no file above Cloudflare's 25 MiB limit: larger ones go up in parts", () => {
    const ignored = ignoredFiles();
    const files = siteFiles();
    for (const path of files) {
      const size = statSync(join(online.siteDir, path)).size;
      expect(size > MAX_ASSET_BYTES, `${path} is ${size} bytes`).toBe(ignored.includes(path));
    }
    for (const path of ignored) {
      const manifest = JSON.parse(readFileSync(join(online.siteDir, `${path}.parts.json`), "utf8"));
      const dir = dirname(path);
      const sizes = (manifest.parts as string[]).map((part) => {
        expect(files).toContain(`${dir}/${part}`);
        return statSync(join(online.siteDir, dir, part)).size;
      });
      expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_ASSET_BYTES);
      expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(manifest.size);
    }
  });
});

describe("cache headers", () => {
  it("marks hashed files immutable and has every other file revalidated", async () => {
    const ignored = ignoredFiles();
    const served = siteFiles().filter(
      (path) => !ignored.includes(path) && path !== "_headers" && path !== ".assetsignore",
    );
    expect(served).toContain("index.html");
    let immutable = 0;
    for (const path of served) {
      const response = await fetch(`${online.origin}/${path}`);
      await response.arrayBuffer();
      expect(response.status, path).toBe(200);
      const hashed = path.startsWith("assets/") || /^capsule\/.*-[A-Z0-9]{8}\.js$/.test(path);
      if (path === "index.html") {
        // html_handling serves the page at / and sends /index.html there.
        expect(response.url).toBe(`${online.origin}/`);
      }
      expect(response.headers.get("cache-control"), path).toBe(hashed ? IMMUTABLE : REVALIDATE);
      expect(response.headers.get("etag"), path).toMatch(/^"/);
      if (hashed) immutable++;
    }
    // The page's script and style, and the runtime's chunks.
    expect(immutable).toBeGreaterThanOrEqual(4);
  });

  it("revalidates the page itself: an unchanged page is a 304", async () => {
    const first = await fetch(`${online.origin}/`);
    expect(first.headers.get("content-type")).toMatch(/^text\/html/);
    expect(first.headers.get("cache-control")).toBe(REVALIDATE);
    expect(await first.text()).toContain("<title>Capsule playground</title>");
    const etag = first.headers.get("etag") ?? "";
    const again = await fetch(`${online.origin}/`, { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
  });

  it("never lets a cache keep the Worker's answers: /run, /health and a missing file", async () => {
    const run = await fetch(`${online.origin}/run`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({
        language: "js",
        code: 'import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "main", compute: "LOW" }, () => 42);',
      }),
    });
    expect(run.status).toBe(200);
    expect(await run.json()).toMatchObject({ success: true, result: 42 });
    expect(run.headers.get("cache-control")).toBe("no-store");
    const refused = await fetch(`${online.origin}/run`, { method: "POST", body: "{}" });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("cache-control")).toBe("no-store");
    const health = await fetch(`${online.origin}/health`);
    expect(await health.json()).toEqual({ status: "ok" });
    expect(health.headers.get("cache-control")).toBe("no-store");
    const missing = await fetch(`${online.origin}/capsule/nothing-here.js`);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("cache-control")).toBe("no-store");
  });

  it("serves a file too large for the host whole, joined from its parts, and revalidated", async () => {
    const ignored = ignoredFiles();
    // The Python snapshot, where the build made one (it needs Chromium).
    for (const path of ignored) {
      const whole = readFileSync(join(online.siteDir, path));
      expect(whole.length).toBeGreaterThan(MAX_ASSET_BYTES);
      const response = await fetch(`${online.origin}/${path}`);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-length"), path).toBe(String(whole.length));
      expect(response.headers.get("cache-control"), path).toBe(REVALIDATE);
      const served = Buffer.from(await response.arrayBuffer());
      expect(served.equals(whole), `${path} is served byte for byte`).toBe(true);
      const etag = response.headers.get("etag") ?? "";
      expect(etag).toBe(`"${createHash("sha256").update(whole).digest("hex")}"`);
      const again = await fetch(`${online.origin}/${path}`, { headers: { "if-none-match": etag } });
      expect(again.status).toBe(304);
    }
  });
});

describe("the page served by the Worker", () => {
  it("runs the hello example in the page and on the edge, with the same result and fuel", async () => {
    expect(await page.getAttribute("body", "data-edge")).toBe("true");
    await page.selectOption("#example", "hello");
    await page.selectOption("#where", "page");
    const local = await runShown();
    expect(local).toMatchObject({ success: true, result: "Hello from Capsule, playground!" });
    await screenshot("desktop-page-run");

    await page.selectOption("#where", "edge");
    expect(await page.isVisible("#edge-token")).toBe(true);
    // Without the Worker's token the edge refuses, and the page says why.
    await page.fill("#edge-token", "");
    await runShown();
    expect(await page.getAttribute("#summary .status", "data-status")).toBe("unauthorized");
    expect(await page.textContent("#summary")).toContain("HTTP 401");
    expect(await page.textContent("#summary")).toContain("Worker token field");
    await screenshot("desktop-edge-refused");

    await page.fill("#edge-token", TOKEN);
    const edge = await runShown();
    expect(edge).toMatchObject({ success: true, result: "Hello from Capsule, playground!" });
    // The same source makes the same module on every host, so the count agrees to the unit.
    expect(edge.execution.fuel_consumed).toBe(local.execution.fuel_consumed);
    expect(await page.getAttribute("#summary .status", "data-status")).toBe("success");
    expect(await page.textContent("#summary")).toContain("the Worker (edge)");
    expect(await page.textContent("#timeline")).toContain("no timeline comes back");
    await screenshot("desktop-edge-run");
    // A shared link carries the code and args, never the token.
    await page.click("#share");
    await page.waitForFunction(
      () => document.querySelector<HTMLInputElement>("#share-link")?.value.includes("#"),
      null,
      { timeout: UI_TIMEOUT },
    );
    const link = await page.inputValue("#share-link");
    expect(link.startsWith(`${online.origin}/#`)).toBe(true);
    const shared = await decodeState(new URL(link).hash);
    expect(shared?.code).toContain("Hello from Capsule");
    expect(JSON.stringify(shared)).not.toContain(TOKEN);
    expect(pageErrors).toEqual([]);
  });

  it("offers the edge for TypeScript only: Python runs in the page", async () => {
    await page.selectOption("#language", "py");
    expect(await page.inputValue("#where")).toBe("page");
    expect(await page.locator('#where option[value="edge"]').isDisabled()).toBe(true);
    expect(await page.textContent("#where-note")).toContain("TypeScript and JavaScript tasks only");
    await page.selectOption("#language", "ts");
    expect(await page.locator('#where option[value="edge"]').isDisabled()).toBe(false);
  });

  it("runs Python in the page, started from the snapshot the Worker joins", async () => {
    await page.selectOption("#language", "py");
    await page.selectOption("#example", "hello-py");
    expect(await page.inputValue("#where")).toBe("page");
    const envelope = await runShown();
    expect(envelope).toMatchObject({ success: true, result: "Hello from Capsule, playground!" });
    if (ignoredFiles().includes("capsule/python/pyodide-snapshot.bin")) {
      const status = await page.evaluate(
        (url) =>
          (performance.getEntriesByName(url)[0] as PerformanceResourceTiming | undefined)
            ?.responseStatus,
        `${online.origin}/capsule/python/pyodide-snapshot.bin`,
      );
      expect(status).toBe(200);
    }
    await screenshot("desktop-python-run");
    await page.selectOption("#language", "ts");
  }, 120_000);

  it("shows one duration for the run in the summary and on the timeline", async () => {
    await page.selectOption("#where", "page");
    await page.selectOption("#example", "subtasks");
    const envelope = await runShown();
    expect(envelope.success).toBe(true);
    await page.waitForFunction(
      () => document.querySelectorAll("#timeline .timeline-row").length === 6,
      null,
      { timeout: UI_TIMEOUT },
    );
    const summaryDuration = await page
      .locator("#summary dt", { hasText: "duration" })
      .locator("xpath=following-sibling::dd[1]")
      .textContent();
    expect(summaryDuration).toBe(`${envelope.execution.duration_ms} ms`);
    const mainOutcome = await page.locator("#timeline .timeline-outcome").first().textContent();
    expect(mainOutcome).toBe(`completed ${envelope.execution.duration_ms} ms`);
  });

  it("draws the underscore of the API_KEY placeholder at 1x", async () => {
    const field = page.locator('#options input[name="envVariables"]');
    expect(await field.inputValue()).toBe("");
    expect(await field.getAttribute("placeholder")).toBe("API_KEY");
    const withUnderscore = await field.screenshot({
      path: join(artifacts, "online-api-key-field.png"),
    });
    await field.evaluate((input: HTMLInputElement) => {
      input.placeholder = "API KEY";
    });
    const withSpace = await field.screenshot();
    await field.evaluate((input: HTMLInputElement) => {
      input.placeholder = "API_KEY";
    });
    // Identical pixels would mean the underscore is not drawn (it was not, at 14.4px).
    expect(withUnderscore.equals(withSpace)).toBe(false);
  });

  it("offers no edge where no Worker serves the page (a static host)", async () => {
    const host = await serveStatic(online.siteDir);
    const other = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await other.goto(`${host.origin}/`);
      await other.waitForSelector("body[data-ready=true][data-edge]", { timeout: UI_TIMEOUT });
      expect(await other.getAttribute("body", "data-edge")).toBe("false");
      expect(await other.isVisible("#where")).toBe(false);
      expect(await other.inputValue("#where")).toBe("page");
      expect(await other.textContent("#where-note")).toContain("examples/workers");
    } finally {
      await other.close();
      await host.close();
    }
  });

  it("works at phone width: a run on the edge brings its result into view", async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      const errors: string[] = [];
      phone.on("pageerror", (error) => errors.push(String(error)));
      await phone.goto(`${online.origin}/`);
      await phone.waitForSelector("body[data-ready=true][data-edge=true]", {
        timeout: UI_TIMEOUT,
      });
      await screenshot("phone-start", phone);
      await phone.selectOption("#where", "edge");
      // Kept for the tab: the token typed in the other page is not here.
      expect(await phone.inputValue("#edge-token")).toBe("");
      await phone.fill("#edge-token", TOKEN);
      const edge = await runShown(phone);
      expect(edge).toMatchObject({ success: true, result: "Hello from Capsule, playground!" });
      const box = await phone.locator("#summary .status").boundingBox();
      expect(box).not.toBeNull();
      expect(box?.y ?? -1).toBeGreaterThanOrEqual(0);
      expect(box?.y ?? Number.POSITIVE_INFINITY).toBeLessThan(844);
      await phone.screenshot({ path: join(artifacts, "online-phone-edge-run.png") });
      // The layout fits the width: nothing scrolls sideways.
      expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
        390,
      );
      expect(errors).toEqual([]);
    } finally {
      await phone.close();
    }
  });
});
