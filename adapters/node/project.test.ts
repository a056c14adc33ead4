// A project as Capsule users have one: capsule.toml defaults and entry point, --args-file, the
// `capsule worker` process driven over pipes, and Capsule's runner import. All through the real
// CLI (bin/capsule.mjs) and real sandboxes.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { type Envelope, run } from "./index.ts";
import { packageRoot } from "./paths.ts";
import { makeProject, runCapsule, taskSource } from "./test/fixtures.ts";

const projects: ReturnType<typeof makeProject>[] = [];
afterAll(() => {
  for (const project of projects) project.cleanup();
});

function project(files: Record<string, string>): ReturnType<typeof makeProject> {
  const made = makeProject();
  projects.push(made);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(made.dir, name, ".."), { recursive: true });
    writeFileSync(join(made.dir, name), text);
  }
  return made;
}

/** ~1.4M fuel of work: over a 1M default, well under the task's own MEDIUM. */
const LOOP = "let sum = 0; for (let i = 0; i < 20000; i++) sum += i; return sum;";

describe("capsule.toml", () => {
  it("gives every task its defaults, and a task's own options win", async () => {
    const dir = project({
      "capsule.toml": `[tasks]\ndefault_compute = "1000000"\n`,
      "defaults.ts": taskSource(`export const main = task({ name: "main" }, () => { ${LOOP} });`),
      "own.ts": taskSource(
        `export const main = task({ name: "main", compute: "MEDIUM" }, () => { ${LOOP} });`,
      ),
      "sub.ts": taskSource(
        `export const leaf = task({ name: "leaf" }, () => { ${LOOP} });
export const main = task({ name: "main", compute: "MEDIUM" }, async () => (await leaf()).error?.error_type);`,
      ),
    }).dir;
    const defaults = await run({ file: "defaults.ts", cwd: dir, threads: 0 });
    expect(defaults.error?.error_type).toBe("fuel_exhausted");
    const own = await run({ file: "own.ts", cwd: dir, threads: 0 });
    expect(own.success).toBe(true);
    // Sub-tasks get the project's defaults too.
    const sub = await run({ file: "sub.ts", cwd: dir, threads: 0 });
    expect(sub.result).toBe("fuel_exhausted");
  });

  it("gives Python tasks the same defaults", async () => {
    const dir = project({
      "capsule.toml": `[tasks]\ndefault_timeout = "300ms"\n`,
      "slow.py": `import time\nfrom capsule import task\n\n@task(name="main")\ndef main():\n    time.sleep(5)\n    return "late"\n`,
    }).dir;
    const envelope = await run({ file: "slow.py", cwd: dir });
    expect(envelope.error?.error_type).toBe("timeout");
    expect(envelope.error?.message).toContain("300");
  }, 60_000);

  it("sets our own limits from [portable], under run()'s own limits", async () => {
    const dir = project({
      "capsule.toml": `[portable]\nmax_subtasks_per_run = 1\n`,
      "two.ts": taskSource(
        `export const leaf = task({ name: "leaf" }, () => 1);
export const main = task({ name: "main" }, async () => [(await leaf()).success, (await leaf()).error?.error_type]);`,
      ),
    }).dir;
    const limited = await run({ file: "two.ts", cwd: dir, threads: 0 });
    expect(limited.result).toEqual([true, "permission_denied"]);
    const lifted = await run({
      file: "two.ts",
      cwd: dir,
      threads: 0,
      limits: { maxSubtasksPerRun: 5 },
    });
    expect(lifted.result).toEqual([true, null]);
  });

  it("a bad value is a config_error naming the key and the file, and nothing runs", async () => {
    const dir = project({
      "capsule.toml": `[tasks]\ndefault_ram = "plenty"\n`,
      "hello.ts": taskSource(`export const main = task({ name: "main" }, () => "ran");`),
    }).dir;
    const envelope = await run({ file: "hello.ts", cwd: dir, threads: 0 });
    expect(envelope.success).toBe(false);
    expect(envelope.error?.error_type).toBe("config_error");
    expect(envelope.error?.message).toContain(join(dir, "capsule.toml"));
    expect(envelope.error?.message).toContain("default_ram");
    expect(envelope.error?.message).toContain('"plenty"');
  });

  it("capsule run with no file runs [workflow] entrypoint; without one it says how", async () => {
    const dir = project({
      "capsule.toml": `[workflow]\nname = "demo"\nentrypoint = "src/main.ts"\n`,
      "src/main.ts": taskSource(
        `export const main = task({ name: "main" }, (...args: string[]) => "entry " + args.join(","));`,
      ),
    }).dir;
    const ran = await runCapsule(["run", "--json"], { cwd: dir });
    expect(ran.code, ran.stderr).toBe(0);
    expect((JSON.parse(ran.stdout) as Envelope).result).toBe("entry ");
    const fromCode = await run({ cwd: dir, args: ["x"], threads: 0 });
    expect(fromCode.result).toBe("entry x");
    const bare = project({}).dir;
    const refused = await runCapsule(["run"], { cwd: bare });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("set [workflow] entrypoint in a capsule.toml");
  });
});

describe("--args-file", () => {
  const dir = project({
    "echo.ts": taskSource(
      `export const main = task({ name: "main" }, (...args: string[]) => ({ count: args.length, last: args.at(-1)?.length }));`,
    ),
    "args.json": JSON.stringify(["a", "b", "x".repeat(300_000)]),
    "object.json": JSON.stringify({ a: 1 }),
    "numbers.json": JSON.stringify(["a", 2]),
    "broken.json": "[1,",
  }).dir;

  it("gives main the arguments in the file, even ones too large for a command line", async () => {
    const ran = await runCapsule(["run", "echo.ts", "--args-file", "args.json", "--json"], {
      cwd: dir,
    });
    expect(ran.code, ran.stderr).toBe(0);
    expect((JSON.parse(ran.stdout) as Envelope).result).toEqual({ count: 3, last: 300_000 });
  });

  it.each([
    [["--args-file", "args.json", "extra"], /leave out the 1 on the command line \("extra"\)/],
    [["--args-file", "missing.json"], /--args-file missing\.json: does not exist/],
    [["--args-file", "object.json"], /must hold a JSON array of strings.*got \{/],
    [["--args-file", "numbers.json"], /entry 1 is 2, not a string/],
    [["--args-file", "broken.json"], /--args-file broken\.json: not valid JSON/],
  ])("refuses %j as a usage error", async (args, message) => {
    const ran = await runCapsule(["run", "echo.ts", ...args], { cwd: dir });
    expect(ran.code).toBe(2);
    expect(ran.stdout).toBe("");
    expect(ran.stderr).toMatch(message);
  });
});

/** `capsule worker` with pipes on both ends. */
function startWorker(cwd: string): {
  child: ChildProcessWithoutNullStreams;
  answers: Record<string, unknown>[];
  next: (count: number) => Promise<Record<string, unknown>[]>;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, [join(packageRoot, "bin", "capsule.mjs"), "worker"], {
    cwd,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const answers: Record<string, unknown>[] = [];
  let buffer = "";
  let waiting: (() => void) | undefined;
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
      answers.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      buffer = buffer.slice(nl + 1);
    }
    waiting?.();
  });
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const next = async (count: number) => {
    const deadline = Date.now() + 30_000;
    while (answers.length < count) {
      if (Date.now() > deadline)
        throw new Error(`only ${answers.length} answers: ${JSON.stringify(answers)}`);
      await new Promise<void>((resolve) => {
        waiting = resolve;
        setTimeout(resolve, 200);
      });
    }
    return answers;
  };
  return { child, answers, next, exited };
}

describe("capsule worker", () => {
  const dir = project({
    "slow.ts": taskSource(
      `export const main = task({ name: "main", timeout: "20s" }, async (ms: string) => { await new Promise((r) => setTimeout(r, Number(ms))); return "slept " + ms; });`,
    ),
    "hello.ts": taskSource(
      `export const main = task({ name: "main" }, (who: string) => { console.log("log line"); return "hello " + who; });`,
    ),
  }).dir;

  it("answers requests as they finish, survives malformed lines, and ends when stdin closes", async () => {
    const worker = startWorker(dir);
    const send = (value: unknown) =>
      worker.child.stdin.write(`${typeof value === "string" ? value : JSON.stringify(value)}\n`);
    send({ id: "slow", file: "slow.ts", args: ["1500"] });
    send({ id: "fast", file: "hello.ts", args: ["there"] });
    send("{not json");
    send({ id: "bad-args", file: "hello.ts", args: [1] });
    send({ id: "missing", file: "nope.ts" });
    const answers = await worker.next(5);
    // The fast request is answered before the slow one that came first: they ran at once.
    const order = answers.map((answer) => answer.id);
    expect(order.indexOf("fast")).toBeLessThan(order.indexOf("slow"));
    const byId = Object.fromEntries(answers.map((answer) => [answer.id, answer]));
    expect((byId.fast?.output as Envelope).result).toBe("hello there");
    expect((byId.slow?.output as Envelope).result).toBe("slept 1500");
    expect(byId.unknown?.error).toMatch(/^Failed to parse request: /);
    expect(byId["bad-args"]?.error).toMatch(/"args" must be an array of strings/);
    expect(byId.missing?.error).toBe(`File not found: ${join(dir, "nope.ts")}`);
    // Still alive after all that: one more request, then a clean end on stdin's close.
    send({ id: "after", file: "hello.ts", args: ["again"] });
    await worker.next(6);
    expect((worker.answers[5]?.output as Envelope).result).toBe("hello again");
    worker.child.stdin.end();
    expect(await worker.exited).toBe(0);
  }, 60_000);

  it("sends components to capsule exec instead of running them on its shared thread", async () => {
    writeFileSync(join(dir, "task.wasm"), "\0asm");
    const worker = startWorker(dir);
    worker.child.stdin.end(`${JSON.stringify({ id: "c", file: "task.wasm" })}\n`);
    expect(await worker.exited).toBe(0);
    expect(worker.answers).toEqual([
      { id: "c", error: "task.wasm: components run with capsule exec, not in the worker, for now" },
    ]);
  }, 60_000);

  it("finishes the requests in flight when stdin closes before they end", async () => {
    const worker = startWorker(dir);
    worker.child.stdin.end(`${JSON.stringify({ id: "last", file: "slow.ts", args: ["500"] })}\n`);
    expect(await worker.exited).toBe(0);
    expect(worker.answers).toHaveLength(1);
    expect((worker.answers[0]?.output as Envelope).result).toBe("slept 500");
  }, 60_000);
});

describe("@capsule-run/sdk/runner", () => {
  it("runs a task file as Capsule's runner does, and rejects a missing file", async () => {
    const dir = project({
      "hello.ts": taskSource(
        `export const main = task({ name: "main" }, (who: string) => "hi " + who);`,
      ),
    }).dir;
    // The built entry the package exports as ./runner.
    const runner = (await import(pathToFileURL(join(packageRoot, "dist", "runner.mjs")).href)) as {
      run: (options: Record<string, unknown>) => Promise<Envelope>;
    };
    const envelope = await runner.run({
      file: "hello.ts",
      args: ["you"],
      cwd: dir,
      capsulePath: "capsule",
    });
    expect(envelope.result).toBe("hi you");
    await expect(runner.run({ file: "gone.ts", cwd: dir })).rejects.toThrow(
      `File not found: ${join(dir, "gone.ts")}.`,
    );
    await expect(runner.run({ file: "task.wasm", cwd: dir })).rejects.toThrow(
      /capsule build --export/,
    );
  });
});
