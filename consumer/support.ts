// What every consumer test shares: the project packed as `npm pack` packs it, and fresh projects
// in temporary folders that install the tarball from npm as a user's would.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** npm as the user runs it, quiet; `--prefer-offline` takes registry packages from the cache. */
async function npm(cwd: string, args: string[], timeoutMs = 300_000): Promise<string> {
  const { stdout } = await execFileAsync("npm", [...args, "--no-audit", "--no-fund"], {
    cwd,
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, npm_config_loglevel: "error", npm_config_update_notifier: "false" },
  });
  return stdout;
}

/** `npm pack` of the project into a temporary folder: the path of the tarball. */
export async function packProject(): Promise<{ tarball: string; bytes: number; files: string[] }> {
  const out = mkdtempSync(join(tmpdir(), "capsule-pack-"));
  const [report] = JSON.parse(await npm(root, ["pack", "--json", "--pack-destination", out])) as {
    filename: string;
    size: number;
    files: { path: string }[];
  }[];
  if (report === undefined) throw new Error("npm pack reported no tarball");
  return {
    tarball: join(out, report.filename),
    bytes: report.size,
    files: report.files.map((file) => file.path),
  };
}

/** A new project folder holding `files` (paths relative to it), removed by `remove()`. */
export function makeProject(files: Record<string, string>): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "capsule-consumer-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `npm install <specs>` in a project, as a user would type it. */
export async function install(dir: string, specs: string[], dev = false): Promise<void> {
  await npm(dir, ["install", ...(dev ? ["--save-dev"] : []), "--prefer-offline", ...specs]);
}

/** The version of a package the project itself is locked to, so consumers test the same one. */
export function lockedVersion(name: string): string {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as {
    packages: Record<string, { version?: string }>;
  };
  const version = lock.packages[`node_modules/${name}`]?.version;
  if (version === undefined) throw new Error(`${name} is not in package-lock.json`);
  return version;
}
