// What the workerd suites share: the Worker bundle `wrangler deploy` would upload, and Miniflare
// serving it on 127.0.0.1. workerd refuses eval, new Function and WebAssembly.compile at run
// time, as production does.
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const exampleDir = join(root, "examples/workers");
export const wranglerConfig = join(exampleDir, "wrangler.jsonc");
export const wranglerBin = join(root, "node_modules/wrangler/bin/wrangler.js");
export const wranglerEnv = {
  ...process.env,
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
  NO_COLOR: "1",
};
const COMPATIBILITY_DATE = JSON.parse(
  readFileSync(wranglerConfig, "utf8").replace(/^\s*\/\/.*$/gm, ""),
).compatibility_date as string;

/**
 * Builds the example Worker into `outdir` exactly as `wrangler deploy` would upload it (dry run:
 * no login, no network). Each suite builds into its own folder, so suites can run side by side.
 */
export async function buildWorkerBundle(outdir: string): Promise<void> {
  rmSync(outdir, { recursive: true, force: true });
  await promisify(execFile)(
    process.execPath,
    [wranglerBin, "deploy", "--dry-run", "--outdir", outdir, "-c", wranglerConfig],
    { cwd: root, env: wranglerEnv },
  );
}

/** Miniflare serving the bundle in `outdir` once per name, each at `http://<name>.test/`. */
export async function serveWorkers(
  outdir: string,
  workers: { name: string; bindings?: Record<string, string> }[],
): Promise<Miniflare> {
  const wasm = readdirSync(outdir).find((name) => name.endsWith(".wasm"));
  if (wasm === undefined) throw new Error(`no .wasm module in ${outdir}`);
  const miniflare = new Miniflare({
    host: "127.0.0.1",
    workers: workers.map(({ name, bindings = {} }) => ({
      name,
      routes: [`${name}.test/*`],
      modulesRoot: outdir,
      modules: [
        { type: "ESModule" as const, path: join(outdir, "worker.js") },
        { type: "CompiledWasm" as const, path: join(outdir, wasm) },
      ],
      compatibilityDate: COMPATIBILITY_DATE,
      bindings,
    })),
  });
  await miniflare.ready;
  return miniflare;
}
