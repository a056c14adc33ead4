import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";

export interface SizeReport {
  /** What a page downloads to run a JavaScript task: page module, worker, chunks, engine. */
  browserInitialKb: number;
  /** The TypeScript transformer chunk, fetched by the first TypeScript task. */
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

/** gzip -9 sizes of the built browser folder and of the Worker bundle (built here, dry run). */
export async function benchSizes(root: string): Promise<SizeReport> {
  const browser = join(root, "dist/browser");
  const files = readdirSync(browser).filter((name) => statSync(join(browser, name)).isFile());
  // sucrase's chunk is the one holding its option names; nothing else loads it.
  const isTypeScript = (name: string) =>
    name.endsWith(".js") &&
    readFileSync(join(browser, name), "utf8").includes("enableLegacyTypeScriptModuleInterop");
  const initial = files.filter((name) => !isTypeScript(name));
  const typeScript = files.filter(isTypeScript);
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
      browserInitialKb: sum(initial.map((name) => gzipKb(join(browser, name)))),
      browserTypeScriptKb: sum(typeScript.map((name) => gzipKb(join(browser, name)))),
      browserLazyGuestKb: sum(lazy.map(gzipKb)),
      engineKb: gzipKb(join(browser, "quickjs-metered.wasm")),
      workerKb: sum(uploaded.map((name) => gzipKb(join(outdir, name)))),
    };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}
