import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { launchChromium, serveStatic } from "../e2e/support.ts";

export interface SizeReport {
  /**
   * What a page fetches to run its first JavaScript task with `journal: false`: page module,
   * Worker, chunks, engine (every file Chromium requested from dist/browser, gzip -9).
   */
  browserInitialKb: number;
  /** What a recorded run (the default) fetches on top: the journal's Worker and SQLite. */
  browserJournalKb: number;
  /** What the first TypeScript task fetches on top: the TypeScript transformer. */
  browserTypeScriptKb: number;
  /** Guest chunks (URL, Buffer, TextDecoder, fs...) fetched the first time a task uses one. */
  browserLazyGuestKb: number;
  /** The engine wasm alone, part of browserInitialKb. */
  engineKb: number;
  /** The Worker as `wrangler deploy` uploads it. */
  workerKb: number;
}

const gzipKb = (file: string) =>
  Math.round((gzipSync(readFileSync(file), { level: 9 }).length / 1024) * 10) / 10;
const sum = (values: number[]) => Math.round(values.reduce((a, b) => a + b, 0) * 10) / 10;

/**
 * gzip -9 sizes of what a page fetches from the built browser folder, step by step, in headless
 * Chromium; and of the Worker bundle (built here, dry run).
 */
export async function benchSizes(root: string): Promise<SizeReport> {
  const browser = join(root, "dist/browser");
  const fetched = await fetchedByPage(root);
  const sizeOf = (paths: string[]) => sum(paths.map((path) => gzipKb(join(root, path))));
  const lazy = readdirSync(join(browser, "guest")).map((name) => join(browser, "guest", name));

  const outdir = mkdtempSync(join(tmpdir(), "capsule-worker-size-"));
  try {
    await promisify(execFile)(
      process.execPath,
      [
        join(root, "node_modules/wrangler/bin/wrangler.js"),
        "deploy",
        "--dry-run",
        "--outdir",
        outdir,
        "-c",
        join(root, "examples/workers/wrangler.jsonc"),
      ],
      {
        cwd: root,
        env: {
          ...process.env,
          CLOUDFLARE_CF_FETCH_ENABLED: "false",
          WRANGLER_SEND_METRICS: "false",
        },
      },
    );
    const uploaded = readdirSync(outdir).filter((name) => /\.(js|mjs|wasm)$/.test(name));
    return {
      browserInitialKb: sizeOf(fetched.javaScript),
      browserJournalKb: sizeOf(fetched.journal),
      browserTypeScriptKb: sizeOf(fetched.typeScript),
      browserLazyGuestKb: sum(lazy.map(gzipKb)),
      engineKb: gzipKb(join(browser, "quickjs-metered.wasm")),
      workerKb: sum(uploaded.map((name) => gzipKb(join(outdir, name)))),
    };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/**
 * The files of dist/browser a page requests, served from `root` on 127.0.0.1: for a first
 * JavaScript task without a journal, then a recorded one, then a TypeScript one (each only what
 * the steps before had not fetched). A file the page fetches twice counts once.
 */
export async function fetchedByPage(
  root: string,
): Promise<{ javaScript: string[]; journal: string[]; typeScript: string[] }> {
  const server = await serveStatic(root);
  const chromium = await launchChromium();
  try {
    const page = await (await chromium.newContext()).newPage();
    await page.route(`${server.origin}/blank.html`, (route) =>
      route.fulfill({ contentType: "text/html", body: "<!doctype html><title>sizes</title>" }),
    );
    const seen = new Set<string>();
    let step: string[] = [];
    // Requests from the page and from its Workers (the context sees both).
    page.context().on("requestfinished", (request) => {
      const path = new URL(request.url()).pathname.slice(1);
      if (!path.startsWith("dist/browser/") || seen.has(path)) return;
      seen.add(path);
      step.push(path);
    });
    await page.goto(`${server.origin}/blank.html`);
    const runStep = async (options: string): Promise<string[]> => {
      step = [];
      const envelope = (await page.evaluate(
        `import("/dist/browser/capsule.js").then((capsule) => capsule.run(${options}))`,
      )) as { success: boolean; error: unknown };
      if (!envelope.success) throw new Error(`page run failed: ${JSON.stringify(envelope.error)}`);
      // Requests finish their events a moment after the envelope is back.
      await page.waitForTimeout(500);
      return step;
    };
    const hello = (name: string, typed: string) =>
      JSON.stringify(
        `import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "${name}" }, (who${typed}) => "hello " + who);`,
      );
    const javaScript = await runStep(
      `{ code: ${hello("js", "")}, language: "js", args: ["page"], journal: false }`,
    );
    const journal = await runStep(`{ code: ${hello("js", "")}, language: "js", args: ["page"] }`);
    const typeScript = await runStep(
      `{ code: ${hello("ts", ": string")}, language: "ts", args: ["page"], journal: false }`,
    );
    return { javaScript, journal, typeScript };
  } finally {
    await chromium.close();
    await server.close();
  }
}

/** `npm run bench -- --only=sizes`: these sizes alone, as Markdown lines. */
export async function main(root: string): Promise<string> {
  const sizes = await benchSizes(root);
  return [
    `Measured ${new Date().toISOString().slice(0, 10)}, gzip -9:`,
    `- a page's first JavaScript task, journal: false: ${sizes.browserInitialKb} KB (engine ${sizes.engineKb} KB)`,
    `- a recorded run on top (the journal's code, its Worker and SQLite): ${sizes.browserJournalKb} KB`,
    `- the first TypeScript task on top: ${sizes.browserTypeScriptKb} KB; large guest modules: ${sizes.browserLazyGuestKb} KB`,
    `- the Worker bundle as \`wrangler deploy\` uploads it: ${sizes.workerKb} KB`,
  ].join("\n");
}
