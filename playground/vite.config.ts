// The playground's own config: its `root` is this folder, while the root vite.config.ts keeps the
// repository as root, which vitest's test globs are relative to.
import { createHash } from "node:crypto";
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, extname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));
const runtimeDir = join(here, "..", "dist", "browser");
export const playgroundOutDir = join(here, "..", "dist", "playground");

const MIME: Record<string, string> = {
  ".js": "text/javascript",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".ts": "text/plain",
};

function requireRuntime(): void {
  if (!existsSync(join(runtimeDir, "capsule.js"))) {
    throw new Error(
      `the browser runtime is not built (${runtimeDir} has no capsule.js); run \`npm run build\` first`,
    );
  }
}

/** The built script-module folder (dist/browser), served and shipped as `capsule/` beside the page. */
function capsuleRuntime(): Plugin {
  let outDir = playgroundOutDir;
  return {
    name: "capsule-runtime",
    configResolved(config) {
      outDir = config.build.outDir;
    },
    configureServer(server) {
      requireRuntime();
      server.middlewares.use("/capsule/", async (request, response, next) => {
        const relative = decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname);
        const path = normalize(join(runtimeDir, relative));
        if (!path.startsWith(runtimeDir + sep)) return next();
        try {
          const body = await readFile(path);
          response.setHeader("content-type", MIME[extname(path)] ?? "application/octet-stream");
          response.end(body);
        } catch {
          next();
        }
      });
    },
    writeBundle() {
      requireRuntime();
      cpSync(runtimeDir, join(outDir, "capsule"), { recursive: true });
      writeHostingFiles(outDir);
    },
  };
}

/** Cloudflare's largest static asset (wrangler refuses to deploy a bigger one). */
export const MAX_ASSET_BYTES = 25 * 1024 * 1024;
/** The size of the parts a larger file is stored in. */
export const PART_BYTES = 20 * 1024 * 1024;
/** A runtime file whose name holds its content's hash, as esbuild names them: `chunk-HASH1234.js`. */
const HASHED_NAME = /-[A-Z0-9]{8}\.js$/;
export const IMMUTABLE = "public, max-age=31536000, immutable";

/**
 * What a static host reads beside the page (Cloudflare's Workers assets, Netlify, Pages):
 * `_headers` marks every file whose name holds its hash (Vite's assets/, esbuild's chunks)
 * immutable for a year; everything else (index.html, capsule.js, the engine's wasm) keeps the
 * host's default, revalidated on each load. A file above Cloudflare's per-file limit (the Python snapshot, about 30 MB) is also
 * written as parts with a manifest (`<file>.parts.json`), which the example Worker serves joined
 * at the file's address (examples/workers/split-assets.ts); `.assetsignore` leaves the whole file
 * out of the upload. Other hosts serve the whole file as it is.
 */
function writeHostingFiles(outDir: string): void {
  const paths = (readdirSync(outDir, { recursive: true }) as string[])
    .map((name) => relative(outDir, join(outDir, name)).split(sep).join("/"))
    .filter((path) => statSync(join(outDir, path)).isFile())
    .sort();
  const rules = [`/assets/*\n  Cache-Control: ${IMMUTABLE}`];
  for (const path of paths) {
    if (path.startsWith("capsule/") && HASHED_NAME.test(path)) {
      rules.push(`/${path}\n  Cache-Control: ${IMMUTABLE}`);
    }
  }
  writeFileSync(join(outDir, "_headers"), `${rules.join("\n")}\n`);
  const tooLarge = paths.filter((path) => statSync(join(outDir, path)).size > MAX_ASSET_BYTES);
  for (const path of tooLarge) writeParts(join(outDir, path));
  writeFileSync(join(outDir, ".assetsignore"), tooLarge.map((path) => `/${path}\n`).join(""));
}

/** `file` as `<file>.part0`, `.part1`, ... and the manifest the Worker joins them by. */
function writeParts(file: string): void {
  const bytes = readFileSync(file);
  const parts: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += PART_BYTES) {
    const name = `${basename(file)}.part${parts.length}`;
    writeFileSync(join(file, "..", name), bytes.subarray(offset, offset + PART_BYTES));
    parts.push(name);
  }
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  writeFileSync(`${file}.parts.json`, `${JSON.stringify({ parts, size: bytes.length, sha256 })}\n`);
}

export default defineConfig({
  root: here,
  // Relative asset URLs: the output folder works from any path on any static host.
  base: "./",
  publicDir: false,
  plugins: [capsuleRuntime()],
  build: {
    outDir: playgroundOutDir,
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: false,
    // CodeMirror with the TypeScript grammar is most of the page (about 170 KB gzip).
    chunkSizeWarningLimit: 700,
  },
  server: { host: "127.0.0.1" },
  preview: { host: "127.0.0.1" },
});
