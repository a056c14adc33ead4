// The playground's own config: its `root` is this folder, while the root vite.config.ts keeps the
// repository as root, which vitest's test globs are relative to.
import { cpSync, existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
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
    },
  };
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
