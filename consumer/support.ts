// What every consumer test shares: the project packed as `npm pack` packs it, and fresh projects
// in temporary folders that install the tarball from npm as a user's would.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { checkBuild, publishedManifest } from "../scripts/pack-manifest.mjs";

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

interface PackReport {
  filename: string;
  size: number;
  files: { path: string }[];
}

/**
 * The project packed as `npm pack` packs it: the same file list and the same published
 * manifest (scripts/pack-manifest.mjs), packed from a staged copy so that the repository's
 * package.json is never rewritten under the tests running beside this one. One tarball per
 * build, shared by every consumer test file; a lock folder keeps two from packing at once.
 */
export async function packProject(): Promise<{ tarball: string; bytes: number; files: string[] }> {
  const [listed] = JSON.parse(
    await npm(root, ["pack", "--dry-run", "--json", "--ignore-scripts"]),
  ) as PackReport[];
  if (listed === undefined) throw new Error("npm pack --dry-run reported no files");
  const manifestText = readFileSync(join(root, "package.json"), "utf8");
  const key = createHash("sha256").update(manifestText);
  for (const { path } of listed.files) {
    const stat = statSync(join(root, path));
    key.update(`${path}\0${stat.size}\0${stat.mtimeMs}\0`);
  }
  const dir = join(tmpdir(), `capsule-pack-${key.digest("hex").slice(0, 16)}`);
  removeStalePacks();
  const done = join(dir, "report.json");
  const unlock = await lock(`${dir}.lock`);
  try {
    if (!existsSync(done)) {
      const stage = join(dir, "package");
      rmSync(dir, { recursive: true, force: true });
      for (const { path } of listed.files) {
        mkdirSync(dirname(join(stage, path)), { recursive: true });
        copyFileSync(join(root, path), join(stage, path));
      }
      writeFileSync(join(stage, "package.json"), publishedManifest(manifestText));
      checkBuild(stage);
      const [report] = JSON.parse(
        await npm(stage, ["pack", "--json", "--ignore-scripts", "--pack-destination", dir]),
      ) as PackReport[];
      if (report === undefined) throw new Error("npm pack reported no tarball");
      rmSync(stage, { recursive: true, force: true });
      writeFileSync(done, JSON.stringify(report));
    }
  } finally {
    unlock();
  }
  const report = JSON.parse(readFileSync(done, "utf8")) as PackReport;
  return {
    tarball: join(dir, report.filename),
    bytes: report.size,
    files: report.files.map((file) => file.path),
  };
}

/** Tarballs of earlier builds, a day old: the tests of those builds are long over. */
function removeStalePacks() {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith("capsule-pack-")) continue;
    const path = join(tmpdir(), name);
    try {
      if (Date.now() - statSync(path).mtimeMs > 86_400_000) rmSync(path, { recursive: true });
    } catch {
      // Removed meanwhile.
    }
  }
}

/** Waits for a lock folder (mkdir is atomic); one older than ten minutes is a crashed run's. */
async function lock(path: string): Promise<() => void> {
  for (;;) {
    try {
      mkdirSync(path);
      return () => rmSync(path, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      try {
        if (Date.now() - statSync(path).mtimeMs > 600_000) rmSync(path, { recursive: true });
      } catch {
        // Released meanwhile.
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
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

/** A server started by `startServer`: the match of its ready line, its output so far, its end. */
export interface StartedServer {
  ready: RegExpExecArray;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts a server command (e.g. `wrangler dev`) in a process group of its own, so the whole tree
 * it starts (wrangler, esbuild, workerd) ends together on `stop()`; resolves once its output
 * matches `ready`, rejects with the output if it exits or is not ready in time.
 */
export async function startServer(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; ready: RegExp; timeoutMs?: number },
): Promise<StartedServer> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let output = "";
  const stop = async () => {
    const pid = child.pid;
    if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const signal = (name: NodeJS.Signals) => {
      try {
        process.kill(-pid, name);
      } catch {
        // The group has ended already.
      }
    };
    signal("SIGTERM");
    const timer = setTimeout(() => signal("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };
  const ready = await new Promise<RegExpExecArray>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      void stop().then(() => reject(new Error(`${command} ${args.join(" ")} ${why}:\n${output}`)));
    };
    const timer = setTimeout(() => fail("was not ready in time"), options.timeoutMs ?? 60_000);
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      // Colours are on under CI (picocolors turns them on when CI is set): match the plain text.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the escape is what is removed
      const match = options.ready.exec(output.replace(/\u001b\[[0-9;]*m/g, ""));
      if (match !== null) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout?.on("data", read);
    child.stderr?.on("data", read);
    child.once("error", (error) => fail(`did not start (${error.message})`));
    child.once("exit", (code, signal) => fail(`exited (${code ?? signal})`));
  });
  return { ready, output: () => output, stop };
}
