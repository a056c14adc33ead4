// `capsule build FILE` (no --export): the bundle it writes runs with no compile step through
// `capsule exec`, `run({ file })` and a Worker's `code`, with the fuel of the task file itself;
// an edited bundle is refused, on Node and in workerd alike.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileStats } from "../adapters/node/compile.ts";
import { type Envelope, run } from "../adapters/node/index.ts";
import {
  type CliResult,
  makeProject,
  runCapsule,
  taskSource,
} from "../adapters/node/test/fixtures.ts";
import type { RunResponse } from "../adapters/workers/index.ts";
import { buildWorkerBundle, serveWorkers } from "./workerd.ts";

const project = makeProject();
const outdir = mkdtempSync(join(tmpdir(), "capsule-bundle-worker-"));
let miniflare: Miniflare;

function capsule(args: string[]): Promise<CliResult> {
  return runCapsule(args, { cwd: project.dir });
}

beforeAll(async () => {
  project.write("words.ts", "export const shout = (s: string) => s.toUpperCase();\n");
  project.write(
    "main.ts",
    taskSource(`import { shout } from "./words.ts";
export const double = task({ name: "double" }, (n: number) => n * 2);
export const main = task({ name: "main", compute: "LOW" }, async (who = "world") => {
  const sub = await double(21);
  if (who === "boom") throw new Error("boom from the bundle");
  return { greeting: shout(\`hello \${who}\`), sub: sub.result };
});`),
  );
  await buildWorkerBundle(outdir);
  miniflare = await serveWorkers(outdir, [
    { name: "open", bindings: { CAPSULE_ALLOW_ANONYMOUS: "true" } },
  ]);
}, 120_000);

afterAll(async () => {
  await miniflare?.dispose();
  rmSync(outdir, { recursive: true, force: true });
  project.cleanup();
});

async function onWorkers(code: string, args: string[]): Promise<RunResponse> {
  const response = await miniflare.dispatchFetch("http://open.test/run", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code, language: "js", args }),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as RunResponse;
}

describe("capsule build without --export", () => {
  it("writes a bundle that capsule exec, run() and a Worker run with the task file's fuel", async () => {
    const built = await capsule(["build", "main.ts"]);
    expect(built.code).toBe(0);
    expect(built.stderr).toMatch(/^wrote main\.capsule\.mjs \(\d+ bytes\) in \d+ ms\n$/);
    const text = readFileSync(join(project.dir, "main.capsule.mjs"), "utf8");
    expect(text).toMatch(/\n\/\/# capsule-bundle \{"format":1,"sha256":"[0-9a-f]{64}",/);

    const fromSource = JSON.parse((await capsule(["run", "main.ts", "ada", "--json"])).stdout);
    const executed = await capsule(["exec", "main.capsule.mjs", "ada"]);
    expect(executed.code).toBe(0);
    const fromBundle = JSON.parse(executed.stdout) as Envelope;
    expect(fromBundle.result).toEqual({ greeting: "HELLO ADA", sub: 42 });
    expect(fromBundle.execution.fuel_consumed).toBe(fromSource.execution.fuel_consumed);

    // No compile step: the bundle is read as it is.
    const before = compileStats().builds;
    const inProcess = await run({ file: "main.capsule.mjs", cwd: project.dir, args: ["ada"] });
    expect(compileStats().builds).toBe(before);
    expect(inProcess.execution.fuel_consumed).toBe(fromSource.execution.fuel_consumed);

    const edge = await onWorkers(text, ["ada"]);
    expect(edge.error).toBeNull();
    expect(edge.result).toEqual({ greeting: "HELLO ADA", sub: 42 });
    expect(edge.execution.fuel_consumed).toBe(fromSource.execution.fuel_consumed);
  });

  it("prints the envelope with no control character of the task's", async () => {
    project.write(
      "loud.ts",
      taskSource(
        'export const main = task({ name: "main" }, () => { throw new Error("x\\u001b]52;c;aGk=\\u0007\\u009b2J\\u202e"); });',
      ),
    );
    await capsule(["build", "loud.ts"]);
    const executed = await capsule(["exec", "loud.capsule.mjs"]);
    expect(executed.code).toBe(1);
    const raw = ["\u001b", "\u0007", "\u009b", "\u202e"].filter((c) => executed.stdout.includes(c));
    expect(raw).toEqual([]);
    expect(JSON.parse(executed.stdout).error.message).toContain(
      "\u001b]52;c;aGk=\u0007\u009b2J\u202e",
    );
  });

  it("maps a failure's stack back to the task file on Node and in a Worker", async () => {
    await capsule(["build", "main.ts", "-o", "out/traced.capsule.mjs"]);
    const failed = JSON.parse((await capsule(["exec", "out/traced.capsule.mjs", "boom"])).stdout);
    expect(failed.error.error_type).toBe("task_error");
    expect(failed.error.message).toMatch(/boom from the bundle\n\s+at .*main\.ts:\d+:\d+/);
    const text = readFileSync(join(project.dir, "out/traced.capsule.mjs"), "utf8");
    const edge = await onWorkers(text, ["boom"]);
    expect(edge.error?.message).toMatch(/boom from the bundle\n\s+at .*main\.ts:\d+:\d+/);
  });

  it("refuses an edited bundle by name on every host, and bad input with clear errors", async () => {
    await capsule(["build", "main.ts"]);
    const text = readFileSync(join(project.dir, "main.capsule.mjs"), "utf8");
    const edited = text.replace("hello", "HACKED");
    writeFileSync(join(project.dir, "edited.capsule.mjs"), edited);

    const cli = await capsule(["exec", "edited.capsule.mjs"]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/edited\.capsule\.mjs was changed after capsule build/);
    const inProcess = await run({ file: "edited.capsule.mjs", cwd: project.dir });
    expect(inProcess.error?.error_type).toBe("compile_error");
    expect(inProcess.error?.message).toMatch(/was changed after capsule build/);
    const edge = await onWorkers(edited, []);
    expect(edge.error?.error_type).toBe("compile_error");
    expect(edge.error?.message).toMatch(/was changed after capsule build/);

    const plain = await capsule(["exec", "main.ts"]);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(
      /main\.ts is neither a WebAssembly component .* run a task file with capsule run/,
    );
    const limits = await capsule([
      "exec",
      "main.capsule.mjs",
      "--compute",
      "LOW",
      "--allow-host",
      "x.com",
    ]);
    expect(limits.code).toBe(2);
    expect(limits.stderr).toMatch(/--compute, --allow-host set a component's limits/);
    const missing = await capsule(["build", "nope.ts"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/compile_error: nope\.ts: file not found/);
    project.write("task.py", "from capsule import task\n");
    const python = await capsule(["build", "task.py"]);
    expect(python.stderr).toMatch(/task\.py: a Python task runs from its source/);
    const self = await capsule(["build", "main.capsule.mjs", "-o", "main.capsule.mjs"]);
    expect(self.stderr).toMatch(/would overwrite its own task file/);
    // The refused builds left the bundle as it was.
    expect(readFileSync(join(project.dir, "main.capsule.mjs"), "utf8")).toBe(text);
  });
});
