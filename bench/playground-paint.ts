// The online playground as `npx wrangler deploy -c examples/workers/wrangler.jsonc --env
// playground` puts it up: the example Worker's bundle with the built playground as its static
// assets, served by Miniflare in local workerd on 127.0.0.1. The e2e suite
// (e2e/playground-online.test.ts) tests it; `benchPlaygroundPaint` measures its first paint.
import { execFile } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";
import type { Browser } from "playwright-core";
import { build } from "vite";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { launchChromium } from "../e2e/support.ts";

export const PLAYGROUND_ENV = "playground";

export interface PlaygroundOnline {
  /** Where the page is: http://127.0.0.1:<port>/ */
  origin: string;
  /** The built page, as the deploy uploads it. */
  siteDir: string;
  close(): Promise<void>;
}

/**
 * Builds the page into `<outdir>/site` and the Worker into `<outdir>/worker` (each suite and
 * bench its own folder: the deploy's own build writes dist/playground, which other suites
 * read), then serves both from one origin as the deployed Worker does. The Worker's bundle is
 * the one `wrangler deploy --dry-run` makes; the assets settings (files first, then the Worker;
 * `_headers`; `.assetsignore`) come from the `playground` environment of wrangler.jsonc, read by
 * wrangler itself.
 */
export async function servePlaygroundOnline(
  root: string,
  outdir: string,
  bindings: Record<string, string> = {},
): Promise<PlaygroundOnline> {
  const siteDir = join(outdir, "site");
  const workerDir = join(outdir, "worker");
  const wranglerConfig = join(root, "examples", "workers", "wrangler.jsonc");
  await build({
    configFile: join(root, "playground", "vite.config.ts"),
    build: { outDir: siteDir },
    logLevel: "warn",
  });
  // The Worker's bundle as the deploy uploads it, with this page as its assets: wrangler checks
  // them as a deploy does (it refuses a file over 25 MiB). `--assets` stands in for the
  // environment's directory and build command, which would write dist/playground.
  rmSync(workerDir, { recursive: true, force: true });
  await promisify(execFile)(
    process.execPath,
    [
      join(root, "node_modules", "wrangler", "bin", "wrangler.js"),
      ...["deploy", "--dry-run", "--outdir", workerDir, "-c", wranglerConfig, "--assets", siteDir],
    ],
    {
      cwd: root,
      env: {
        ...process.env,
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
        WRANGLER_SEND_METRICS: "false",
        NO_COLOR: "1",
      },
    },
  );
  const wasm = readdirSync(workerDir).find((name) => name.endsWith(".wasm"));
  if (wasm === undefined) throw new Error(`no .wasm module in ${workerDir}`);
  const { workerOptions } = unstable_getMiniflareWorkerOptions(wranglerConfig, PLAYGROUND_ENV, {
    overrides: { assets: { directory: siteDir } },
  });
  if (workerOptions.assets === undefined) {
    throw new Error(`wrangler.jsonc's "${PLAYGROUND_ENV}" environment serves no assets`);
  }
  const miniflare = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    workers: [
      {
        name: "playground",
        modulesRoot: workerDir,
        modules: [
          { type: "ESModule" as const, path: join(workerDir, "worker.js") },
          { type: "CompiledWasm" as const, path: join(workerDir, wasm) },
        ],
        compatibilityDate: workerOptions.compatibilityDate,
        bindings: { ...workerOptions.bindings, ...bindings },
        assets: workerOptions.assets,
      },
    ],
  });
  const url = await miniflare.ready;
  return { origin: url.origin, siteDir, close: () => miniflare.dispose() };
}

export interface PaintBench {
  /** First contentful paint with an empty cache (a new browser context each load), ms. */
  coldMedianMs: number;
  coldRangeMs: [number, number];
  /** Reloaded in the same context: hashed files come from the cache, the rest revalidate. */
  warmMedianMs: number;
  warmRangeMs: [number, number];
  runs: number;
  chromium: string;
}

const RUNS = 9;

/** Chromium's `first-contentful-paint` of the page `origin` serves, `RUNS` times each way. */
export async function measureFirstPaint(origin: string, browser: Browser): Promise<PaintBench> {
  const cold: number[] = [];
  const warm: number[] = [];
  const paint = () =>
    new Promise<number>((resolve) => {
      const read = () => {
        const entry = performance.getEntriesByName("first-contentful-paint")[0];
        if (entry) resolve(entry.startTime);
        else requestAnimationFrame(read);
      };
      read();
    });
  for (let i = 0; i < RUNS; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      await page.goto(`${origin}/`);
      cold.push(await page.evaluate(paint));
      await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
      await page.reload();
      warm.push(await page.evaluate(paint));
      await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
    } finally {
      await context.close();
    }
  }
  const median = (values: number[]) =>
    Math.round([...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN);
  const range = (values: number[]): [number, number] => [
    Math.round(Math.min(...values)),
    Math.round(Math.max(...values)),
  ];
  return {
    coldMedianMs: median(cold),
    coldRangeMs: range(cold),
    warmMedianMs: median(warm),
    warmRangeMs: range(warm),
    runs: RUNS,
    chromium: browser.version(),
  };
}

/** The Worker-served playground's first paint in headless Chromium on this machine. */
export async function benchPlaygroundPaint(
  rootDir: string,
  log: (line: string) => void,
): Promise<PaintBench> {
  log(`playground first paint: the Worker-served page in Chromium, ${RUNS} cold and warm loads`);
  const online = await servePlaygroundOnline(
    rootDir,
    join(rootDir, "dist", "bench-playground-online"),
  );
  let browser: Browser | undefined;
  try {
    browser = await launchChromium();
    return await measureFirstPaint(online.origin, browser);
  } finally {
    await browser?.close();
    await online.close();
  }
}

/** `npm run bench -- --only=playground-paint`: this bench alone, as a Markdown line. */
export async function main(rootDir: string): Promise<string> {
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  const result = await benchPlaygroundPaint(rootDir, log);
  return [
    `| playground served by the Worker (local workerd), first contentful paint, median of ${result.runs} | cold ${result.coldMedianMs} ms (${result.coldRangeMs.join("-")}), warm ${result.warmMedianMs} ms (${result.warmRangeMs.join("-")}) | - |`,
    `Chromium ${result.chromium}; load average ${loadavg()[0]?.toFixed(2)} when it ended`,
  ].join("\n");
}
