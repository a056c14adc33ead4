import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { decodePrepared } from "../../core/component/prepared.ts";
import type { LifecycleEvent } from "../../core/runtime/events.ts";
import { addComponentCommands } from "./cli-component.ts";
import { execComponent } from "./component.ts";
import { exportComponent } from "./component-build.ts";
import { processMemory } from "./pool.ts";
import { runCapsule } from "./test/fixtures.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const TASK = `import { task } from "@capsule-run/sdk";
import { readFileSync, writeFileSync } from "node:fs";

export const double = task({ name: "double", compute: "LOW" }, (n: number) => n * 2);
export const main = task({ name: "main" }, async (who: string) => {
  const sub = await double(21);
  return { hello: who, sub: sub.result, subTask: sub.execution.task_name, subOk: sub.success };
});
export const read = task({ name: "read" }, (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const write = task({ name: "write" }, (file: string, text: string) => {
  try {
    writeFileSync(file, text);
    return "written";
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const get = task({ name: "get" }, async (url: string) => {
  try {
    return (await fetch(url)).status;
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const peek = task({ name: "peek", allowedFiles: ["."], allowedHosts: ["*"] }, (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    return "refused: " + (error as Error).message;
  }
});
export const escalate = task({ name: "escalate" }, async (file: string) => (await peek(file)).result);
export const recurse = task({ name: "recurse" }, async (n: number): Promise<unknown> => {
  const inner = await recurse(n + 1);
  return inner.success ? inner.result : { depth: n, error: inner.error };
});
export const flood = task({ name: "flood" }, async (url: string, n: number) => {
  const answers = await Promise.all(
    Array.from({ length: n }, () => fetch(url).then((r) => r.status, () => "refused")),
  );
  return answers.filter((answer) => answer === 200).length;
});
export const fill = task({ name: "fill", compute: "HIGH" }, (dir: string, files: number) => {
  const chunk = new Uint8Array(1 << 20);
  for (let i = 0; i < files; i++) {
    try {
      writeFileSync(dir + "/f" + i + ".bin", chunk);
    } catch (error) {
      return "refused at " + i + ": " + (error as Error).message;
    }
  }
  return "wrote " + files;
});
export const env = task({ name: "env" }, () => ({ visible: process.env.VISIBLE ?? null, hidden: process.env.HIDDEN ?? null, names: Object.keys(process.env) }));
export const spin = task({ name: "spin" }, () => {
  let i = 0;
  for (;;) i++;
});
export const hoard = task({ name: "hoard" }, () => {
  const all: number[][] = [];
  for (;;) all.push(new Array(1 << 16).fill(all.length));
});
export const fail = task({ name: "fail" }, () => {
  throw new Error("boom");
});
`;

// Building takes about 80 s here and transpiling plus metering about 60 s, so both are kept
// between test runs, keyed by everything that shapes the component.
const store = path.join(tmpdir(), "capsule-component-test");
const cacheDir = path.join(store, "cache");
let project: string;
let component: string;
let server: ChildProcess;
let origin: string;
let hits = 0;
let manyHits = 0;

function buildKey(): string {
  const hash = createHash("sha256").update(TASK);
  for (const file of [
    "core/component/guest-sdk.ts",
    "core/component/guest-fs.ts",
    "core/component/guest-process.ts",
    "core/component/capsule.wit",
    "adapters/node/component-build.ts",
  ]) {
    hash.update(readFileSync(path.join(root, file)));
  }
  return hash.digest("hex").slice(0, 16);
}

beforeAll(async () => {
  project = mkdtempSync(path.join(tmpdir(), "capsule-component-"));
  mkdirSync(path.join(project, "data"));
  writeFileSync(path.join(project, "data", "in.txt"), "inside");
  writeFileSync(path.join(project, "secret.txt"), "outside");
  mkdirSync(store, { recursive: true });
  const built = path.join(store, `${buildKey()}.wasm`);
  if (!existsSync(built)) {
    writeFileSync(path.join(project, "task.ts"), TASK);
    const result = await exportComponent("task.ts", { cwd: project, output: `${built}.tmp` });
    copyFileSync(result.output, built);
    rmSync(result.output);
  }
  component = path.join(project, "task.wasm");
  copyFileSync(built, component);
  // In a process of its own: a component's HTTP call is synchronous and holds this thread.
  server = spawn(
    process.execPath,
    [
      "-e",
      // /silent answers nothing and keeps the connection, as a hostile or stuck server does.
      'const s = require("node:http").createServer((q, r) => { process.stdout.write("hit " + q.url + "\\n"); if (q.url !== "/silent") r.end("reached"); }); s.listen(0, "127.0.0.1", () => process.stdout.write("port " + s.address().port + "\\n"));',
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  origin = await new Promise<string>((resolve, reject) => {
    server.stdout?.setEncoding("utf8");
    // Lines may arrive split across chunks: only whole lines are read.
    let partial = "";
    server.stdout?.on("data", (text: string) => {
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("hit ")) hits++;
        if (line === "hit /many") manyHits++;
        const port = /^port (\d+)$/.exec(line)?.[1];
        if (port) resolve(`http://127.0.0.1:${port}`);
      }
    });
    server.on("exit", (code) => reject(new Error(`test server exited (${code})`)));
  });
  // The first run transpiles and meters the component (cached in cacheDir afterwards).
  await execComponent(component, { cwd: project, cacheDir, args: ["warm"] });
}, 400_000);

afterAll(() => {
  server?.kill();
  if (project) rmSync(project, { recursive: true, force: true });
});

const run = (options: Parameters<typeof execComponent>[1]) =>
  execComponent(component, { cwd: project, cacheDir, ...options });

describe("execComponent", () => {
  test("main returns its value in the envelope, with a sub-task's envelope inside", async () => {
    const envelope = await run({ args: ["bob"] });
    expect(envelope.error).toBeNull();
    expect(envelope.success).toBe(true);
    expect(envelope.result).toEqual({ hello: "bob", sub: 42, subTask: "double", subOk: true });
    expect(envelope.execution.task_name).toBe("main");
    expect(envelope.execution.retries).toBe(0);
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
    expect(envelope.execution.ram_used).toBeGreaterThan(0);
  });

  test("fuel is the same on two runs", async () => {
    const first = await run({ args: ["same"] });
    const second = await run({ args: ["same"] });
    expect(first.success).toBe(true);
    expect(second.execution.fuel_consumed).toBe(first.execution.fuel_consumed);
  });

  test("lifecycle events name each task run, its sub-tasks and retries", async () => {
    const events: LifecycleEvent[] = [];
    await run({ args: ["ev"], onEvent: (event) => events.push(event) });
    expect(events.map((event) => `${event.type} ${event.task}`)).toEqual([
      "created main",
      "running main",
      "created double",
      "running double",
      "completed double",
      "completed main",
    ]);
    expect(events[2]?.parentId).toBe(events[0]?.id);
    expect(events[2]?.call).toEqual({ attempt: 1, index: 0 });
    const retried: LifecycleEvent[] = [];
    await run({ task: "fail", maxRetries: 1, onEvent: (event) => retried.push(event) });
    expect(retried.map((event) => `${event.type} ${event.attempt}`)).toEqual([
      "created 1",
      "running 1",
      "retrying 2",
      "running 2",
      "failed 2",
    ]);
  });

  test("a task that throws is a task_error naming the message", async () => {
    const envelope = await run({ task: "fail" });
    expect(envelope.success).toBe(false);
    expect(envelope.error).toEqual({ error_type: "task_error", message: "boom" });
  });

  test("a file inside allowedFiles is readable; outside and escapes are refused", async () => {
    const inside = await run({ task: "read", args: ["/data/in.txt"], allowedFiles: ["./data"] });
    expect(inside.result).toBe("inside");
    const outside = await run({ task: "read", args: ["/secret.txt"], allowedFiles: ["./data"] });
    expect(outside.result).toMatch(/^refused: EACCES/);
    const escaped = await run({
      task: "read",
      args: ["/data/../secret.txt"],
      allowedFiles: ["./data"],
    });
    expect(escaped.result).toMatch(/^refused: /);
    expect(JSON.stringify(escaped.result)).not.toContain("outside");
    const none = await run({ task: "read", args: ["/data/in.txt"] });
    expect(none.result).toMatch(/^refused: EACCES/);
  });

  test("a host outside allowedHosts is refused before any connection", async () => {
    const before = hits;
    const envelope = await run({
      task: "get",
      args: [`${origin}/x`],
      allowedHosts: ["api.example.com"],
    });
    expect(envelope.success).toBe(true);
    expect(envelope.result).toMatch(/^refused/);
    expect(envelope.execution.host_requests).toEqual([
      expect.objectContaining({
        method: "GET",
        url: `${origin}/x`,
        status: null,
        reason: expect.stringContaining('host "127.0.0.1" is not in allowedHosts'),
      }),
    ]);
    expect(hits).toBe(before);
  });

  test("a name reached only through a pattern is refused: its address cannot be checked", async () => {
    const before = hits;
    // Under "*" our own tasks check the address a name resolves to, which a component's request
    // cannot: any name could point at 127.0.0.1, so it must be listed exactly.
    for (const allowed of [["*"], ["*.example"], ["example"]]) {
      const url = "http://internal.example/x";
      const envelope = await run({ task: "get", args: [url], allowedHosts: allowed });
      expect(envelope.result, allowed.join()).toMatch(/^refused/);
      expect(envelope.execution.host_requests).toEqual([
        expect.objectContaining({
          url,
          status: null,
          reason: expect.stringContaining('lists it exactly ("internal.example")'),
        }),
      ]);
    }
    expect(hits).toBe(before);
  });

  test("no grant may show the component cache", async () => {
    const exposed = await execComponent(component, {
      cwd: project,
      cacheDir: path.join(project, "data", "cache"),
      allowedFiles: ["./data"],
    });
    expect(exposed.error?.error_type).toBe("config_error");
    expect(exposed.error?.message).toMatch(
      /allowedFiles.*"\.\/data": would show the compile cache/,
    );
  });

  test("a read-only grant is read, and every write through it is refused", async () => {
    const readOnly = { allowedFiles: [{ path: "./data", mode: "ro" }] };
    const read = await run({ task: "read", args: ["/data/in.txt"], ...readOnly });
    expect(read.result).toBe("inside");
    const changed = await run({ task: "write", args: ["/data/in.txt", "changed"], ...readOnly });
    expect(changed.result).toMatch(/^refused: EROFS/);
    const created = await run({ task: "write", args: ["/data/new.txt", "x"], ...readOnly });
    expect(created.result).toMatch(/^refused: EROFS/);
    const mounted = await run({
      task: "write",
      args: ["/m/in.txt", "changed"],
      mounts: [`${path.join(project, "data")}::/m:ro`],
    });
    expect(mounted.result).toMatch(/^refused: EROFS/);
    expect(readFileSync(path.join(project, "data", "in.txt"), "utf8")).toBe("inside");
    expect(existsSync(path.join(project, "data", "new.txt"))).toBe(false);
    const writable = await run({
      task: "write",
      args: ["/data/rw.txt", "written"],
      allowedFiles: ["./data"],
    });
    expect(writable.result).toBe("written");
    expect(readFileSync(path.join(project, "data", "rw.txt"), "utf8")).toBe("written");
  });

  test("process.env holds only the variables envVariables names", async () => {
    const env = { VISIBLE: "shown", HIDDEN: "secret" };
    const granted = await run({ task: "env", envVariables: ["VISIBLE"], env });
    expect(granted.error).toBeNull();
    expect(granted.result).toEqual({ visible: "shown", hidden: null, names: ["VISIBLE"] });
    const none = await run({ task: "env", env });
    expect(none.result).toEqual({ visible: null, hidden: null, names: [] });
  });

  test("a host in allowedHosts is reached", async () => {
    const before = hits;
    const envelope = await run({
      task: "get",
      args: [`${origin}/ok`],
      allowedHosts: ["127.0.0.1"],
    });
    expect(envelope.result).toBe(200);
    await expect.poll(() => hits).toBe(before + 1);
    expect(envelope.execution.host_requests).toEqual([
      expect.objectContaining({ method: "GET", url: `${origin}/ok` }),
    ]);
  });

  test("a request to a server that never answers ends at the task's timeout, not the shim's ten minutes", async () => {
    const started = Date.now();
    const envelope = await run({
      task: "get",
      args: [`${origin}/silent`],
      allowedHosts: ["127.0.0.1"],
      timeout: "2s",
    });
    const took = Date.now() - started;
    // Held to what was left of the 2 s: the guest sees its request fail, or the task times out.
    if (envelope.success) expect(envelope.result).toMatch(/^refused: /);
    else expect(envelope.error?.error_type).toBe("timeout");
    expect(took).toBeLessThan(20_000);
    expect(took).toBeGreaterThanOrEqual(1_500);
  });

  test("a run makes at most 256 requests, as our tasks do: the rest are refused, never sent", async () => {
    const envelope = await run({
      task: "flood",
      args: [`${origin}/many`, 260],
      allowedHosts: ["127.0.0.1"],
      compute: "HIGH",
    });
    expect(envelope.error).toBeNull();
    expect(envelope.result).toBe(256);
    await expect.poll(() => manyHits).toBe(256);
    const refused = envelope.execution.host_requests.filter((request) => request.reason);
    expect(refused).toHaveLength(4);
    expect(refused[0]?.reason).toMatch(/at most 256 HTTP requests/);
  }, 120_000);

  test("a run writes at most its write quota (64 MiB) to disk, then gets ENOSPC", async () => {
    mkdirSync(path.join(project, "data", "fill"), { recursive: true });
    const envelope = await run({
      task: "fill",
      args: ["/data/fill", 80],
      allowedFiles: ["./data"],
    });
    expect(envelope.result).toMatch(/^refused at 64: ENOSPC/);
    expect(existsSync(path.join(project, "data", "fill", "f63.bin"))).toBe(true);
    // Opened before its write was refused: there, and empty.
    expect(statSync(path.join(project, "data", "fill", "f64.bin")).size).toBe(0);
    rmSync(path.join(project, "data", "fill"), { recursive: true, force: true });
  }, 120_000);

  test("a sub-task gets the run's grants, not the wider ones it declares", async () => {
    const refused = await run({ task: "escalate", args: ["/secret.txt"] });
    expect(refused.success).toBe(true);
    expect(refused.result).toMatch(/^refused: EACCES/);
    const granted = await run({
      task: "escalate",
      args: ["/data/in.txt"],
      allowedFiles: ["./data"],
    });
    expect(granted.result).toBe("inside");
  });

  test("sub-tasks nest a bounded depth", async () => {
    const envelope = await run({ task: "recurse", args: [0] });
    expect(JSON.stringify(envelope)).toMatch(/sub-tasks nest at most 8 deep/);
  });

  test("a busy loop runs out of fuel, deterministically", async () => {
    const first = await run({ task: "spin", compute: "LOW" });
    expect(first.error?.error_type).toBe("fuel_exhausted");
    expect(first.execution.fuel_consumed).toBe(1e8);
    const second = await run({ task: "spin", compute: "LOW" });
    expect(second.execution.fuel_consumed).toBe(first.execution.fuel_consumed);
  });

  test("a busy loop is stopped by its timeout", async () => {
    const started = performance.now();
    const envelope = await run({ task: "spin", compute: "HIGH", timeout: "300ms" });
    expect(envelope.error?.error_type).toBe("timeout");
    expect(performance.now() - started).toBeLessThan(5000);
  });

  test("memory is capped at ram", async () => {
    const envelope = await run({ task: "hoard", ram: "32MB", compute: "HIGH" });
    expect(envelope.error?.error_type, JSON.stringify(envelope.error)).toBe("memory_exceeded");
    expect(envelope.execution.ram_used).toBeLessThanOrEqual(32 * 2 ** 20);
  });

  test("a run's tasks hold their ram in the process's memory budget, as our tasks do", async () => {
    const hog = {};
    const events: LifecycleEvent[] = [];
    // Room for the entry task's ram (the default 256 MiB) and not for its sub-task's.
    const room = 256 * 2 ** 20;
    const claim = { name: "hog", depth: 0, run: {} };
    expect(await processMemory.reserve(hog, processMemory.totalBytes - room, claim)).toBeNull();
    try {
      const refused = await run({ args: ["bob"], onEvent: (event) => events.push(event) });
      expect(refused.result).toMatchObject({ subOk: false });
      const subtask = events.find((event) => event.type === "failed" && event.depth === 1);
      expect(subtask?.error?.error_type).toBe("permission_denied");
      expect(subtask?.error?.message).toMatch(/sub-task "double" refused: .*cannot wait/);
      // With nothing left, the entry task waits its turn and runs once memory is freed.
      processMemory.release(hog);
      expect(await processMemory.reserve(hog, processMemory.totalBytes, claim)).toBeNull();
      setTimeout(() => processMemory.release(hog), 300);
      const asked = performance.now();
      const waited = await run({ args: ["bob"] });
      expect(waited.result).toMatchObject({ subOk: true });
      expect(performance.now() - asked).toBeGreaterThanOrEqual(290);
    } finally {
      processMemory.release(hog);
    }
    expect(processMemory.heldBytes).toBe(0);
  });

  test("retries rerun a failed task", async () => {
    const envelope = await run({ task: "fail", maxRetries: 2 });
    expect(envelope.execution.retries).toBe(2);
  });

  test("bad files get a compile_error naming them", async () => {
    const missing = await run({ args: [] }).then(() =>
      execComponent("nope.wasm", { cwd: project, cacheDir }),
    );
    expect(missing.error?.error_type).toBe("compile_error");
    expect(missing.error?.message).toContain("nope.wasm");
    writeFileSync(path.join(project, "text.wasm"), "hello");
    const text = await execComponent("text.wasm", { cwd: project, cacheDir });
    expect(text.error?.message).toMatch(/text\.wasm is not a WebAssembly file/);
    writeFileSync(
      path.join(project, "core.wasm"),
      new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
    );
    const core = await execComponent("core.wasm", { cwd: project, cacheDir });
    expect(core.error?.message).toMatch(/core\.wasm is a core WebAssembly module, not a component/);
  });

  test("a ram below the component's floor is named", async () => {
    const envelope = await run({ ram: "1MB" });
    expect(envelope.error?.error_type).toBe("memory_exceeded");
    expect(envelope.error?.message).toMatch(/floor/);
  });
});

describe("capsule exec / build --export", () => {
  test("capsule exec prints the envelope and sets the exit code", async () => {
    const program = new Command().exitOverride();
    let exit = -1;
    addComponentCommands(program, (code) => {
      exit = code;
    });
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      await program.parseAsync(
        ["exec", component, "cli", "--cwd", project, "--cache-dir", cacheDir],
        { from: "user" },
      );
    } finally {
      process.stdout.write = write;
    }
    expect(exit).toBe(0);
    expect(JSON.parse(written.join("")).result.hello).toBe("cli");
  });

  test("capsule prepare writes the file a page runs, and names a file that is not a component", async () => {
    const codes: number[] = [];
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const writeError = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((chunk: string) => {
      out.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    process.stderr.write = ((chunk: string) => {
      out.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    const output = path.join(project, "task.prepared.bin");
    writeFileSync(path.join(project, "plain.wasm"), "hello");
    try {
      for (const argv of [
        ["prepare", component, "-o", output, "--cwd", project, "--cache-dir", cacheDir],
        ["prepare", "plain.wasm", "--cwd", project, "--cache-dir", cacheDir],
      ]) {
        const program = new Command().exitOverride();
        addComponentCommands(program, (code) => codes.push(code));
        await program.parseAsync(argv, { from: "user" });
      }
    } finally {
      process.stdout.write = write;
      process.stderr.write = writeError;
    }
    expect(codes).toEqual([0, 1]);
    const prepared = decodePrepared(readFileSync(output), output);
    expect(prepared.manifest.glue).toBe("component.jspi.js");
    expect(prepared.files.get(prepared.manifest.engine)?.byteLength).toBeGreaterThan(1_000_000);
    expect(out.join("")).toMatch(/compile_error: .*plain\.wasm is not a WebAssembly file/);
  }, 120_000);

  test("capsule exec takes --args-file through the real command, not beside positional args", async () => {
    writeFileSync(path.join(project, "args.json"), JSON.stringify(["from-file"]));
    const common = ["--cwd", project, "--cache-dir", cacheDir];
    const ran = await runCapsule(["exec", component, "--args-file", "args.json", ...common], {
      cwd: project,
      deadlineMs: 120_000,
    });
    expect(ran.code, ran.stderr).toBe(0);
    expect(JSON.parse(ran.stdout.slice(ran.stdout.indexOf("{"))).result.hello).toBe("from-file");
    const both = await runCapsule(["exec", component, "x", "--args-file", "args.json", ...common], {
      cwd: project,
    });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--args-file args.json gives the arguments");
  }, 180_000);

  test("capsule build of a missing file, with and without --export, says what is wrong", async () => {
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => {
      errors.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    const codes: number[] = [];
    try {
      for (const argv of [
        ["build", path.join(project, "absent.ts")],
        ["build", path.join(project, "missing.ts"), "--export"],
      ]) {
        const program = new Command().exitOverride();
        addComponentCommands(program, (code) => codes.push(code));
        await program.parseAsync(argv, { from: "user" });
      }
    } finally {
      process.stderr.write = write;
    }
    expect(codes).toEqual([1, 1]);
    expect(errors.join("")).toMatch(/compile_error: .*absent\.ts: file not found/);
    expect(errors.join("")).toMatch(/compile_error: cannot read task file .*missing\.ts/);
  });

  test("without ComponentizeJS, build --export names the package to install", async () => {
    writeFileSync(path.join(project, "t.ts"), TASK);
    await expect(
      exportComponent("t.ts", {
        cwd: project,
        componentizePackage: "@bytecodealliance/componentize-js-absent",
      }),
    ).rejects.toThrow(/optional package @bytecodealliance\/componentize-js-absent.*npm install/);
  });
});
