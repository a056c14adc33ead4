/**
 * Capsule's host-side runner under its own name: `import { run } from "@capsule-run/sdk/runner"`
 * works unchanged once this package is installed as `@capsule-run/sdk`
 * (`npm install @capsule-run/sdk@npm:capsule-portable`). Capsule's runner starts its CLI as a
 * worker process; here the task runs in this process's sandboxes, so `capsulePath` has nothing to
 * name and is accepted only so that existing calls keep working.
 */
import { existsSync } from "node:fs";
import { extname, resolve } from "node:path";
import { type Envelope, run as runTask } from "./index.ts";

export interface RunnerOptions {
  /** The task file, relative to `cwd`. */
  file: string;
  /** Arguments for `main`, as strings. */
  args?: string[];
  /** Host directories: `HOST_PATH[::GUEST_PATH][:ro|:rw]`. */
  mounts?: string[];
  /** The project directory (capsule.toml, `.env`, relative paths); default `process.cwd()`. */
  cwd?: string;
  /** Capsule's CLI path; unused here (no CLI process is started). */
  capsulePath?: string;
}

export type RunnerResult = Envelope;

/**
 * Runs a task file's `main` and resolves to its envelope. As Capsule's runner does, it rejects
 * when the file does not exist; every other failure is an envelope.
 */
export async function run(options: RunnerOptions): Promise<RunnerResult> {
  const { file, args, mounts, cwd } = options ?? ({} as RunnerOptions);
  if (typeof file !== "string" || file === "") {
    throw new Error(`run(): file must be a task file path, got ${JSON.stringify(file)}`);
  }
  const resolved = resolve(cwd ?? process.cwd(), file);
  if (!existsSync(resolved)) {
    const wasm = [".wasm", ".cwasm"].includes(extname(resolved).toLowerCase());
    throw new Error(
      `File not found: ${resolved}.${wasm ? " Run `capsule build --export` first to generate the .wasm artifact." : ""}`,
    );
  }
  return runTask({
    file,
    ...(args !== undefined ? { args } : {}),
    ...(mounts !== undefined ? { mounts } : {}),
    ...(cwd !== undefined ? { cwd } : {}),
  });
}
