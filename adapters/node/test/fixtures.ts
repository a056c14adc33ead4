import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageRoot } from "../paths.ts";

/** A temporary project directory for task files; removed by `cleanup`. */
export function makeProject(): {
  dir: string;
  write: (name: string, source: string) => string;
  cleanup: () => void;
} {
  const dir = mkdtempSync(join(tmpdir(), "capsule-test-"));
  return {
    dir,
    write(name, source) {
      const path = join(dir, name);
      writeFileSync(path, source);
      return path;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Task source with the SDK import already in place. */
export function taskSource(body: string): string {
  return `import { task } from "@capsule-run/sdk";\n${body}\n`;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** Generous against a loaded machine; a CLI that leaves a worker thread alive never gets here. */
const CLI_EXIT_DEADLINE_MS = 15_000;

/**
 * Runs the real `capsule` command (bin/capsule.mjs) with no standard input and waits for the
 * process to exit on its own; one that does not exit by the deadline fails the test.
 */
export function runCapsule(
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; deadlineMs?: number },
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(packageRoot, "bin", "capsule.mjs"), ...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: options.deadlineMs ?? CLI_EXIT_DEADLINE_MS,
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== null) {
        reject(new Error(`capsule ${args.join(" ")} did not exit (${signal}); stderr:\n${stderr}`));
        return;
      }
      resolvePromise({ code, stdout, stderr, elapsedMs: performance.now() - started });
    });
  });
}
