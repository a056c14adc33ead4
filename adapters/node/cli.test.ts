import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stripVTControlCharacters } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Envelope } from "./index.ts";
import { packageRoot } from "./paths.ts";
import { type CliResult, makeProject, runCapsule, taskSource } from "./test/fixtures.ts";

/** Runs the real `capsule` command in the test project. */
function capsule(args: string[], cwd = project.dir): Promise<CliResult> {
  return runCapsule(args, { cwd });
}

function parseEnvelope(stdout: string): Envelope {
  return JSON.parse(stdout) as Envelope;
}

const project = makeProject();

beforeAll(() => {
  if (!existsSync(join(packageRoot, "dist", "cli.mjs"))) {
    throw new Error("dist/cli.mjs is missing: run `node scripts/build.mjs` (npm test does) first");
  }
  project.write(
    "greet.ts",
    taskSource(`
export const other = task({ name: "other" }, (...args: string[]) => {
  console.log("other task got", args.length, "args");
  return args;
});
export const main = task({ name: "main", compute: "LOW" }, (...args: string[]) => {
  console.log("working on", args.length, "args");
  return { args };
});`),
  );
  project.write(
    "fails.ts",
    taskSource(
      `export const main = task({ name: "main" }, () => { throw new TypeError("no such row 7"); });`,
    ),
  );
  project.write(
    "spins.ts",
    taskSource(
      `export const main = task({ name: "main", compute: "1000000" }, () => { for (;;) {} });`,
    ),
  );
  project.write(
    "bad-option.ts",
    taskSource(`export const main = task({ name: "main", compute: "ULTRA" }, () => 1);`),
  );
  project.write(
    "bad-syntax.ts",
    taskSource(`export const main = task({ name: "main" }, () => { return (; });`),
  );
  project.write(
    "retries.ts",
    taskSource(`
export const flaky = task({ name: "flaky", maxRetries: 1 }, () => { throw new Error("flaky step"); });
export const main = task({ name: "main" }, async () => (await flaky()).error?.error_type);`),
  );
  project.write(
    "chatty.ts",
    taskSource(`
export const flaky = task({ name: "flaky", maxRetries: 1 }, () => { console.log("trying"); throw new Error("again"); });
export const main = task({ name: "main" }, async () => {
  console.log("main starts");
  const outcome = await flaky();
  console.log("flaky gave " + outcome.error?.error_type);
  return true;
});`),
  );
  project.write(
    "orphan.ts",
    taskSource(`
export const slow = task({ name: "slow", compute: "HIGH", timeout: "10s" }, () => { for (;;) {} });
export const main = task({ name: "main" }, async () => { void slow(); return "parent done"; });`),
  );
  project.write(
    "fan-out.ts",
    taskSource(`
export const square = task({ name: "square" }, (n: number) => n * n);
export const stuck = task({ name: "stuck", timeout: "100ms" }, () => new Promise((r) => setTimeout(r, 60_000)));
export const main = task({ name: "main" }, async () => {
  const squares = await Promise.all([1, 2, 3, 4].map((n) => square(n)));
  const late = await stuck();
  return { squares: squares.map((e) => e.result), stuck: late.error?.error_type };
});`),
  );
});

afterAll(() => project.cleanup());

describe.concurrent("capsule run", () => {
  it("exits 0 and prints the envelope after the task's console output; args reach main as strings", async () => {
    const { code, stdout, stderr } = await capsule(["run", "greet.ts", "a b", "-7", "3"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const [logLine, ...rest] = stdout.split("\n");
    expect(logLine).toBe("working on 3 args");
    const envelope = parseEnvelope(rest.join("\n"));
    expect(envelope).toMatchObject({
      success: true,
      result: { args: ["a b", "-7", "3"] },
      error: null,
    });
    expect(envelope.execution).toMatchObject({ task_name: "main", retries: 0 });
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
  });

  it("with --json prints only the envelope on stdout; --task runs another task; args after -- pass", async () => {
    const args = ["run", "greet.ts", "--json", "--task", "other", "x", "--", "--verbose", "-q"];
    const { code, stdout, stderr } = await capsule(args);
    expect(code).toBe(0);
    const envelope = parseEnvelope(stdout);
    expect(envelope.result).toEqual(["x", "--verbose", "-q"]);
    expect(envelope.execution.task_name).toBe("other");
    expect(stderr).toBe("other task got 3 args\n");
  });

  it.each([
    ["fails.ts", "task_error", "TypeError: no such row 7"],
    ["spins.ts", "fuel_exhausted", "fuel"],
    ["bad-option.ts", "config_error", "ULTRA"],
    ["bad-syntax.ts", "compile_error", "bad-syntax.ts"],
  ])("exits 1 and prints the envelope when %s ends in %s", async (file, errorType, mention) => {
    const { code, stdout } = await capsule(["run", file, "--json"]);
    expect(code).toBe(1);
    const envelope = parseEnvelope(stdout);
    expect(envelope.success).toBe(false);
    expect(envelope.error).toMatchObject({
      error_type: errorType,
      message: expect.stringContaining(mention),
    });
  });

  it("with --verbose prints timestamped lifecycle lines with fuel and duration on stderr", async () => {
    const { code, stdout, stderr } = await capsule(["run", "retries.ts", "--verbose", "--json"]);
    expect(code).toBe(0);
    expect(parseEnvelope(stdout).result).toBe("task_error");
    const lines = stderr
      .trimEnd()
      .split("\n")
      .filter((line) => line.startsWith("[capsule "));
    // Every lifecycle line carries its time of day (UTC) to the millisecond.
    const stamp = /^\[capsule \d\d:\d\d:\d\d\.\d{3}\] /;
    expect(lines.length).toBeGreaterThanOrEqual(7);
    expect(lines.every((line) => stamp.test(line))).toBe(true);
    const events = lines.map((line) => line.replace(stamp, ""));
    expect(events[0]).toBe("main: created");
    expect(events[1]).toBe("main: running (attempt 1)");
    expect(events).toContain("  flaky: created");
    expect(stderr).toMatch(
      / {3}flaky: attempt 1 failed \(task_error: Error: flaky step\), retrying/,
    );
    expect(events).toContain("  flaky: running (attempt 2)");
    expect(stderr).toMatch(/ {3}flaky: failed after \d+ ms \(task_error: Error: flaky step\)/);
    expect(events.at(-1)).toMatch(/^main: completed in \d+ ms, fuel [1-9]\d*$/);
    // A pipe gets no colour codes.
    expect(stderr + stdout).not.toContain("\u001b[");
  });

  it("marks console lines with their task once sub-tasks run, and a retry's with its attempt", async () => {
    const { code, stdout } = await capsule(["run", "chatty.ts"]);
    expect(code).toBe(0);
    const lines = stdout.slice(0, stdout.indexOf("{")).trimEnd().split("\n");
    expect(lines).toEqual([
      "main starts",
      "[flaky] trying",
      "[flaky #2] trying",
      "[main] flaky gave task_error",
    ]);
  });

  it("names a sub-task still running when its parent ended as cancelled, not timed out", async () => {
    const { code, stdout, stderr } = await capsule(["run", "orphan.ts", "--verbose"]);
    expect(code).toBe(0);
    expect(parseEnvelope(stdout.slice(stdout.indexOf("{"))).result).toBe("parent done");
    expect(stderr).toMatch(
      / {3}slow: cancelled after \d+ ms \(timeout: cancelled: the task that started it ended before it finished\)/,
    );
    expect(stderr).not.toMatch(/slow: timed out/);
  });

  it("colours the envelope with FORCE_COLOR, and never under --json or NO_COLOR", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: "1" };
    delete env.NO_COLOR;
    const coloured = await runCapsule(["run", "greet.ts"], { cwd: project.dir, env });
    expect(coloured.code).toBe(0);
    expect(coloured.stdout).toContain('\u001b[36m"success"\u001b[39m');
    const plain = (text: string) => stripVTControlCharacters(text);
    expect(
      parseEnvelope(plain(coloured.stdout).slice(plain(coloured.stdout).indexOf("{"))).success,
    ).toBe(true);
    const json = await runCapsule(["run", "greet.ts", "--json"], { cwd: project.dir, env });
    expect(json.stdout).not.toContain("\u001b[");
    parseEnvelope(json.stdout);
    const none = await runCapsule(["run", "greet.ts"], {
      cwd: project.dir,
      env: { ...env, NO_COLOR: "1" },
    });
    expect(none.stdout).not.toContain("\u001b[");
  });

  it("runs sub-tasks on --threads 2 and exits once a stuck sub-task times out", async () => {
    const { code, stdout, elapsedMs } = await capsule(["run", "fan-out.ts", "--threads", "2"]);
    expect(code).toBe(0);
    expect(parseEnvelope(stdout).result).toEqual({ squares: [1, 4, 9, 16], stuck: "timeout" });
    // The sub-task sleeps 60 s; only its 100 ms timeout and a clean pool shutdown end the process.
    expect(elapsedMs).toBeLessThan(10_000);
  });
});

describe.concurrent("usage errors exit 2 with a message on stderr", () => {
  it.each([
    [[], /Usage: capsule/],
    [["launch", "greet.ts"], /unknown command 'launch'/],
    [["run", "greet.ts", "--fast"], /unknown option '--fast'/],
    [["run"], /give a task file \(capsule run <file>\), or set \[workflow\] entrypoint/],
    [["run", "missing.ts"], /task file missing\.ts does not exist/],
    [["run", "."], /task file \. is not a file/],
    [["run", "greet.ts", "--threads", "abc"], /'abc' is invalid.*integer from 0 to 256/],
    [["run", "missing.py"], /does not exist; give a \.ts, \.js, \.mjs or \.py file/],
    [
      ["run", "greet.ts", "--threads", "abc", "--fast", "--task"],
      /'abc' is invalid[\s\S]*unknown option '--fast'[\s\S]*'--task <name>' argument missing/,
    ],
  ])("capsule %j", async (args, message) => {
    const { code, stdout, stderr } = await capsule(args);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toMatch(message);
  });
});

describe.concurrent("help and version", () => {
  it("--help lists the run command on stdout", async () => {
    const { code, stdout } = await capsule(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("run [options] [file] [args...]");
    expect(stdout).toContain("worker");
    const mcp = await capsule(["mcp", "--help"]);
    expect(mcp.stdout).toContain('CAPSULE_SESSION_MEMORY="2GB"');
  });

  it("--version prints package.json's version", async () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as {
      version: string;
    };
    const { code, stdout } = await capsule(["--version"]);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(pkg.version);
  });
});

describe("files, mounts and environment from the command line", () => {
  beforeAll(() => {
    mkdirSync(join(project.dir, "inbox"), { recursive: true });
    writeFileSync(join(project.dir, "inbox", "note.txt"), "from a mount");
    writeFileSync(join(project.dir, ".env"), "FROM_DOTENV=dotenv\nOVERRIDDEN=dotenv\n");
    writeFileSync(join(project.dir, ".env.local"), "FROM_LOCAL=local\n");
    project.write(
      "reads-mount.ts",
      taskSource(`import { readFileSync } from "node:fs";
export const child = task({ name: "child" }, () => readFileSync("/in/note.txt", "utf8"));
export const main = task({ name: "main" }, async () => (await child()).result);`),
    );
    project.write(
      "reads-env.ts",
      taskSource(
        `export const main = task({ name: "main", envVariables: ["FROM_DOTENV", "FROM_LOCAL", "OVERRIDDEN", "PATH"] }, () => ({ ...process.env }));`,
      ),
    );
  });

  it("--mount grants a host directory to the task and its sub-tasks", async () => {
    const { code, stdout } = await capsule([
      "run",
      "reads-mount.ts",
      "--json",
      "--mount",
      "./inbox::/in:ro",
    ]);
    expect(code).toBe(0);
    expect(parseEnvelope(stdout).result).toBe("from a mount");
  });

  it("refuses a malformed --mount as a usage error naming it", async () => {
    const { code, stderr } = await capsule(["run", "reads-mount.ts", "--mount", "./inbox:rx"]);
    expect(code).toBe(2);
    expect(stderr).toContain("./inbox:rx");
  });

  it("loads .env and .env.local without overriding the real environment", async () => {
    const { stdout } = await runCapsule(["run", "reads-env.ts", "--json"], {
      cwd: project.dir,
      env: { ...process.env, OVERRIDDEN: "real" },
    });
    expect(parseEnvelope(stdout).result).toEqual({
      FROM_DOTENV: "dotenv",
      FROM_LOCAL: "local",
      OVERRIDDEN: "real",
      PATH: process.env.PATH,
    });
  });
});
