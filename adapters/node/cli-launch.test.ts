// `capsule run` on V8's baseline tier for wasm: where V8 ignores the flag set at run time (V8 13,
// Node 24 and later), bin/capsule.mjs starts the CLI again with it on the command line. Runs in the
// whole suite and on every other Node line (scripts/node-lines.mjs), where it restarts.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { needsBaselineTierRestart } from "./launch.ts";
import { packageRoot } from "./paths.ts";
import { findSetpriv } from "./setpriv.ts";
import { makeProject, runCapsule, taskSource } from "./test/fixtures.ts";
import { commandLine, descendants, stillRunningAfter } from "./test/processes.ts";

const TIMEOUT = 60_000;
const restarts = Number(process.versions.v8.split(".")[0]) >= 13;

describe("needsBaselineTierRestart", () => {
  it("restarts `capsule run` only where V8 ignores the flag at run time, and only when asked of no one else", () => {
    expect(needsBaselineTierRestart(["run", "a.ts"], "13.6.233.10-node.30", [])).toBe(true);
    expect(needsBaselineTierRestart(["run", "a.ts"], "14.1.146.11-node.12", [])).toBe(true);
    expect(needsBaselineTierRestart(["run", "a.ts"], "12.4.254.21-node.33", [])).toBe(false);
    expect(needsBaselineTierRestart(["run", "a.ts"], "11.3.244.8-node.30", [])).toBe(false);
    // --optimize asks for V8's default tiers; other commands run no task, or serve for long.
    expect(needsBaselineTierRestart(["run", "a.ts", "--optimize"], "13.6.0", [])).toBe(false);
    for (const command of ["mcp", "runs", "inspect", "--help", "worker"]) {
      expect(needsBaselineTierRestart([command], "13.6.0", [])).toBe(false);
    }
    expect(needsBaselineTierRestart([], "13.6.0", [])).toBe(false);
    // Node started with flags of its own: the flag itself, or the user's (an inspector's port).
    expect(needsBaselineTierRestart(["run", "a.ts"], "13.6.0", ["--liftoff-only"])).toBe(false);
    expect(needsBaselineTierRestart(["run", "a.ts"], "13.6.0", ["--inspect"])).toBe(false);
  });
});

describe("capsule run, started again on the baseline tier where it must be", () => {
  let project: ReturnType<typeof makeProject>;
  beforeAll(() => {
    project = makeProject();
    project.write(
      "asleep.ts",
      taskSource(
        'export const main = task({ name: "main", timeout: "5m" }, async () => { await new Promise((r) => setTimeout(r, 300_000)); return "woke"; });',
      ),
    );
    project.write(
      "fails.ts",
      taskSource('export const main = task({ name: "main" }, () => { throw new Error("boom"); });'),
    );
    project.write(
      "hello.ts",
      taskSource('export const main = task({ name: "main" }, () => "hi");'),
    );
  });
  afterAll(() => project.cleanup());

  /** Starts the CLI on a task that sleeps, and answers once the task runs. */
  async function asleep() {
    const cli = spawn(
      process.execPath,
      [join(packageRoot, "bin", "capsule.mjs"), "run", "asleep.ts", "--verbose"],
      {
        cwd: project.dir,
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    cli.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    cli.stdout.resume();
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      cli.on("exit", (code, signal) => resolve({ code, signal })),
    );
    for (let waited = 0; !stderr.includes("main: running"); waited += 50) {
      if (waited > 30_000 || cli.exitCode !== null) {
        cli.kill("SIGKILL");
        throw new Error(`asleep.ts did not start running; stderr:\n${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const started = descendants(cli.pid as number);
    return { cli, exited, started };
  }

  it(
    "runs the task in a node given the flag on its command line (V8 13 and later), else in the process started",
    async () => {
      const { cli, exited, started } = await asleep();
      const nodes = started
        .map(commandLine)
        .filter((args) => args.includes("--liftoff-only"))
        .map((args) => args.slice(args.indexOf("--liftoff-only") + 2));
      cli.kill("SIGTERM");
      // Ended as the CLI would have been: by the signal sent to the process the user started.
      expect(await exited).toEqual({ code: null, signal: "SIGTERM" });
      const left = await stillRunningAfter(started, 5_000);
      for (const pid of left) process.kill(pid, "SIGKILL");
      expect(left).toEqual([]);
      if (restarts) {
        expect(nodes).toEqual([["run", "asleep.ts", "--verbose"]]);
      } else {
        // The task ran in the process started (its only other process is esbuild's service).
        expect(nodes).toEqual([]);
        expect(started.filter((pid) => commandLine(pid)[0] === process.execPath)).toEqual([]);
      }
    },
    TIMEOUT,
  );

  it.runIf(process.platform === "linux" && findSetpriv() !== null)(
    "ends the restarted CLI and its task when the process started is killed outright",
    async () => {
      const { cli, exited, started } = await asleep();
      cli.kill("SIGKILL");
      expect((await exited).signal).toBe("SIGKILL");
      const left = await stillRunningAfter(started, 5_000);
      for (const pid of left) process.kill(pid, "SIGKILL");
      expect(left).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    "passes on the envelope and the exit code: 0, 1 for a failed task, 2 for a usage error",
    async () => {
      const ok = await runCapsule(["run", "hello.ts", "--json"], { cwd: project.dir });
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ success: true, result: "hi" });
      const failed = await runCapsule(["run", "fails.ts", "--json"], { cwd: project.dir });
      expect(failed.code).toBe(1);
      expect(JSON.parse(failed.stdout)).toMatchObject({ success: false });
      expect(JSON.parse(failed.stdout).error.message).toContain("boom");
      const usage = await runCapsule(["run", "hello.ts", "--no-such-flag"], { cwd: project.dir });
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain("--no-such-flag");
    },
    TIMEOUT,
  );
});
