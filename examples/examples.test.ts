import { readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { run, shutdown } from "../adapters/node/index.ts";
import { makeProject } from "../adapters/node/test/fixtures.ts";
import {
  CAPSULE_README_PYTHON,
  FILES_EXAMPLE_OUTPUT,
  FILES_PY_RESULT,
} from "../core/testing/python-examples.ts";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const project = makeProject();

afterAll(async () => {
  project.cleanup();
  await shutdown();
});

// 0 runs on this thread; 2 sizes a pool of worker threads for the call, as the CLI does.
describe.each([0, 2])("examples/ with threads: %i", (threads) => {
  const runExample = (name: string) => run({ file: `examples/${name}`, cwd: repoRoot, threads });

  it("hello.ts greets", async () => {
    const envelope = await runExample("hello.ts");
    expect(envelope).toMatchObject({ success: true, result: "Hello from Capsule!", error: null });
    expect(envelope.execution.task_name).toBe("main");
  });

  it("subtasks.ts returns the result of each analyzeData sub-task", async () => {
    const envelope = await runExample("subtasks.ts");
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual([
      { processed: 5, status: "complete" },
      { processed: 2, status: "complete" },
      { processed: 3, status: "complete" },
    ]);
  });

  it("limits.ts ends one runaway by fuel and the other by its timeout", async () => {
    const envelope = await runExample("limits.ts");
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual({ spin: "fuel_exhausted", stuck: "timeout" });
  });

  it("files.ts reads its read-only input, writes through its writer, and is refused elsewhere", async () => {
    const output = join(repoRoot, "examples", "output", "result.txt");
    rmSync(output, { force: true });
    const envelope = await runExample("files.ts");
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual({
      words: 9,
      written: 44,
      refused: {
        "/etc/passwd": "EACCES",
        "./examples/data/../../package.json": "EACCES",
        "write to read-only ./examples/data": "EROFS",
      },
    });
    expect(readFileSync(output, "utf8")).toBe(FILES_EXAMPLE_OUTPUT);
    rmSync(output, { force: true });
  });

  it("fetch.ts fetches from a listed loopback server and is refused an unlisted host", async () => {
    const server = createServer((_request, response) => response.end("hi there"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const envelope = await run({
        file: "examples/fetch.ts",
        cwd: repoRoot,
        threads,
        args: [url],
      });
      expect(envelope.error).toBeNull();
      const result = envelope.result as { status: number; bytes: number; denied: string };
      expect(result.status).toBe(200);
      expect(result.bytes).toBe(8);
      expect(result.denied).toMatch(/fetch failed: .*evil\.test/);
      expect(envelope.execution.host_requests.map((r) => r.status)).toEqual([200, null]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

// The same examples as Python tasks: each attempt in its own interpreter process.
describe("examples/ in Python", () => {
  const runExample = (name: string, args: string[] = []) =>
    run({ file: `examples/${name}`, cwd: repoRoot, args });

  it("hello.py greets", async () => {
    const envelope = await runExample("hello.py");
    expect(envelope).toMatchObject({ success: true, result: "Hello from Capsule!", error: null });
  });

  it("subtasks.py gathers the result of each analyze_data sub-task", async () => {
    const envelope = await runExample("subtasks.py");
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual([
      { processed: 5, status: "complete" },
      { processed: 2, status: "complete" },
      { processed: 3, status: "complete" },
    ]);
  });

  it("limits.py ends one runaway by fuel and the other by its timeout", async () => {
    const envelope = await runExample("limits.py");
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual({ spin: "fuel_exhausted", stuck: "timeout" });
  });

  it("files.py reads its read-only input, writes through its writer, and is refused elsewhere", async () => {
    const output = join(repoRoot, "examples", "output", "result.txt");
    rmSync(output, { force: true });
    const envelope = await runExample("files.py");
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual(FILES_PY_RESULT);
    expect(readFileSync(output, "utf8")).toBe(FILES_EXAMPLE_OUTPUT);
    rmSync(output, { force: true });
  });

  it("Capsule's README Python task file runs unchanged: main returns analyze_data's envelope", async () => {
    project.write("main.py", CAPSULE_README_PYTHON);
    const envelope = await run({ file: "main.py", cwd: project.dir });
    expect(envelope.error).toBeNull();
    expect(envelope.result).toMatchObject({
      success: true,
      result: { processed: 5, status: "complete" },
      error: null,
      execution: { task_name: "analyze_data", retries: 0 },
    });
  });

  it("fetch.py fetches from a listed loopback server and is refused an unlisted host", async () => {
    const server = createServer((_request, response) => response.end("hi there"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const envelope = await runExample("fetch.py", [url]);
      expect(envelope.error).toBeNull();
      const result = envelope.result as { status: number; bytes: number; denied: string };
      expect(result).toMatchObject({ status: 200, bytes: 8 });
      expect(result.denied).toContain("evil.test");
      expect(envelope.execution.host_requests.map((r) => r.status)).toEqual([200, null]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

// Task files from Capsule's own README, unchanged: they must run here as they are.
const capsuleHello = `import { task } from "@capsule-run/sdk";

export const main = task({
  name: "main",
  compute: "LOW",
  ram: "64MB"
}, (): string => {
  return "Hello from Capsule!";
});
`;

const capsuleAnalyzeData = `import { task } from "@capsule-run/sdk";

export const analyzeData = task({
  name: "analyze_data",
  compute: "MEDIUM",
  ram: "512MB",
  timeout: "30s",
  maxRetries: 1
}, (dataset: number[]): object => {
  // Your code runs safely in a Wasm sandbox
  return { processed: dataset.length, status: "complete" };
});

// The "main" task is required as the entrypoint
export const main = task({
    name: "main",
    compute: "HIGH"
}, () => {
  return analyzeData([1, 2, 3, 4, 5]);
});
`;

const capsuleEval = `import { task } from "@capsule-run/sdk";

export const main = task({
  name: "main",
  compute: "LOW",
  ram: "64MB"
}, (code: string): string => {
  return eval(code);
});
`;

describe.each([0, 2])("Capsule's README examples with threads: %i", (threads) => {
  const runFile = (name: string, source: string, args: string[] = []) => {
    project.write(name, source);
    return run({ file: name, cwd: project.dir, args, threads });
  };

  it("hello.ts", async () => {
    const envelope = await runFile("hello.ts", capsuleHello);
    expect(envelope).toMatchObject({ success: true, result: "Hello from Capsule!", error: null });
  });

  it("main.ts: main returns the analyzeData sub-task's envelope as its result", async () => {
    const envelope = await runFile("main.ts", capsuleAnalyzeData);
    expect(envelope.error).toBeNull();
    expect(envelope.result).toMatchObject({
      success: true,
      result: { processed: 5, status: "complete" },
      error: null,
      execution: { task_name: "analyze_data", retries: 0 },
    });
  });

  it('capsule.ts evaluates the code it is given: "1 + 2" is 3', async () => {
    const envelope = await runFile("capsule.ts", capsuleEval, ["1 + 2"]);
    expect(envelope).toMatchObject({ success: true, result: 3, error: null });
  });
});
