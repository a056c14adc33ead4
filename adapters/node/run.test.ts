import { afterAll, describe, expect, it } from "vitest";
import { type LifecycleEvent, run, shutdown } from "./index.ts";
import { makeProject, taskSource } from "./test/fixtures.ts";

const project = makeProject();
afterAll(async () => {
  project.cleanup();
  await shutdown();
});

function runCode(source: string, extra: Parameters<typeof run>[0] = {}) {
  return run({ code: taskSource(source), language: "ts", cwd: project.dir, threads: 0, ...extra });
}

describe("envelope", () => {
  it("runs main with positional string args and reports execution facts", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "LOW" }, (a: string, b: string) => a + "+" + b);`,
      { args: ["1", "2"] },
    );
    expect(envelope).toMatchObject({ success: true, result: "1+2", error: null });
    expect(envelope.execution.task_name).toBe("main");
    expect(envelope.execution.retries).toBe(0);
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
    expect(envelope.execution.ram_used).toBeGreaterThan(0);
    expect(envelope.execution.host_requests).toEqual([]);
    expect(typeof envelope.execution.duration_ms).toBe("number");
  });

  it("reports a thrown error as task_error with its message and stack", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main" }, () => { throw new RangeError("bad input 42"); });`,
    );
    expect(envelope.success).toBe(false);
    expect(envelope.error?.error_type).toBe("task_error");
    expect(envelope.error?.message).toContain("RangeError: bad input 42");
  });

  it("refuses a result that is not JSON", async () => {
    const envelope = await runCode(`export const main = task({ name: "main" }, () => 10n);`);
    expect(envelope.error?.error_type).toBe("task_error");
    expect(envelope.error?.message).toMatch(/JSON/);
  });

  it("caps the result size", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main" }, () => "y".repeat(5000));`,
      { limits: { maxResultBytes: 1000 } },
    );
    expect(envelope.error?.error_type).toBe("task_error");
    expect(envelope.error?.message).toMatch(/over the 1000 limit/);
  });

  it("ends a task whose promise can never settle with a clear task_error", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main" }, () => new Promise(() => {}));`,
    );
    expect(envelope.error?.error_type).toBe("task_error");
    expect(envelope.error?.message).toMatch(/never settled/);
  });

  it("captures console output through onLog, never into the envelope", async () => {
    const lines: string[] = [];
    const envelope = await runCode(
      `export const main = task({ name: "main" }, () => { console.log("hello", 1); console.error("oops"); return "done"; });`,
      { onLog: (level, text) => lines.push(`${level}:${text}`) },
    );
    expect(envelope.result).toBe("done");
    expect(lines).toEqual(["log:hello 1", "error:oops"]);
    expect(JSON.stringify(envelope)).not.toContain("hello");
  });

  it("passes a console line whole, NUL characters and all", async () => {
    const lines: string[] = [];
    const envelope = await runCode(
      `export const main = task({ name: "main" }, () => {
         console.log("before\\0after\\0");
         console.log("\\0é\\u{1F600}\\0\\0z" + "x".repeat(3000) + "\\0");
         console.log("a\\uD800b\\0c");
         console.log("plain");
         return "done";
       });`,
      { onLog: (_level, text) => lines.push(text) },
    );
    expect(envelope.result).toBe("done");
    expect(lines).toEqual([
      "before\0after\0",
      `\0é\u{1F600}\0\0z${"x".repeat(3000)}\0`,
      "a\uD800b\0c",
      "plain",
    ]);
  });

  it("runs the first declared task when the file has no main, as Capsule's SDK does", async () => {
    const envelope = await runCode(
      `export const first = task({ name: "first", compute: "LOW" }, (a: string, b: string) => \`first:\${a}:\${b}\`);
       export const second = task({ name: "second" }, () => "second");`,
      { args: ["x", "y"] },
    );
    expect(envelope.error).toBeNull();
    expect(envelope.result).toBe("first:x:y");
    // Its own options hold: LOW is 1e8 fuel.
    const spin = await runCode(
      `export const spin = task({ name: "spin", compute: "LOW" }, () => { for (;;) {} });`,
    );
    expect(spin.error?.error_type).toBe("fuel_exhausted");
  });

  it("names a missing main task when the file declares none", async () => {
    const envelope = await runCode(`export const value = 1;`);
    expect(envelope.error?.error_type).toBe("config_error");
    expect(envelope.error?.message).toContain(
      'no task named "main" in the task file (declared: none)',
    );
  });
});

describe("options", () => {
  it.each([
    [`compute: "ULTRA"`, "compute"],
    [`ram: "1.5GB"`, "ram"],
    [`timeout: "soon"`, "timeout"],
    [`maxRetries: -1`, "maxRetries"],
    [`timout: "1s"`, "timout"],
  ])("refuses %s with a config_error naming the option", async (option, name) => {
    const envelope = await runCode(
      `export const main = task({ name: "main", ${option} }, () => 1);`,
    );
    expect(envelope.error?.error_type).toBe("config_error");
    expect(envelope.error?.message).toContain(name);
  });

  it("accepts every documented format", async () => {
    for (const option of [
      `compute: "LOW"`,
      `compute: "medium"`,
      `compute: "HIGH"`,
      `compute: "50000000"`,
      `compute: 50000000`,
      `ram: "5MB"`,
      `ram: "10MB"`,
      `ram: "64MB"`,
      `ram: "256 MB"`,
      `ram: "2GB"`,
      `ram: 33554432`,
      `timeout: "100ms"`,
      `timeout: "30s"`,
      `timeout: "5m"`,
      `timeout: "1h 30m"`,
      `timeout: 5000`,
      `maxRetries: 2`,
      `max_retries: 2`,
    ]) {
      const envelope = await runCode(
        `export const main = task({ name: "main", ${option} }, () => "ok");`,
      );
      expect([option, envelope.error]).toEqual([option, null]);
    }
  });

  it("reports a ram cap below the engine's floor as memory_exceeded, naming the floor", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", ram: "64KB" }, () => 1);`,
    );
    expect(envelope.error?.error_type).toBe("memory_exceeded");
    expect(envelope.error?.message).toMatch(
      /^ram: "64KB" is below the engine's floor of [\d.]+ MB( \(\d+ bytes\))?, so the task ran out of memory before it could start; use at least "\d+MB"$/,
    );
  });

  it("reports bad run() options as config_error envelopes", async () => {
    expect((await run({ threads: 0 })).error?.error_type).toBe("config_error");
    expect((await run({ file: "x.ts", code: "1" })).error?.error_type).toBe("config_error");
    const bad = await run({ code: "", args: [1 as unknown as string] });
    expect(bad.error?.message).toContain("args");
    const unknown = await run({ file: "x.ts", fuel: 3 } as never);
    expect(unknown.error?.message).toContain('"fuel"');
  });
});

describe("limits", () => {
  it("ends a busy loop with fuel_exhausted and the same fuel count every time", async () => {
    const source = `export const main = task({ name: "main", compute: "LOW" }, () => { for (;;) {} });`;
    const first = await runCode(source);
    const second = await runCode(source);
    expect(first.error?.error_type).toBe("fuel_exhausted");
    expect(first.execution.fuel_consumed).toBe(second.execution.fuel_consumed);
    expect(first.execution.fuel_consumed).toBeGreaterThanOrEqual(1e8);
  });

  it("charges running the task's code, not compiling it, so a tiny exact budget works", async () => {
    const tiny = await runCode(
      `export const main = task({ name: "main", compute: "1000000" }, () => 1);`,
    );
    expect(tiny.result).toBe(1);
    expect(tiny.execution.fuel_consumed).toBeLessThan(1_000_000);
    // Compiled but never called: its parse would cost ~9M fuel if compiling were charged.
    const padding = `function unused() { return [${Array.from({ length: 2000 }, (_, i) => i).join(",")}]; }`;
    const padded = await runCode(
      `${padding}\nexport const main = task({ name: "main", compute: "1000000" }, () => 1);`,
    );
    expect(padded.error).toBe(null);
  });

  it("counts the same fuel for the same work on every run", async () => {
    const source = `export const main = task({ name: "main" }, () => {
      let s = 0; for (let i = 0; i < 20000; i++) s += JSON.stringify({ i }).length; return s; });`;
    const a = await runCode(source);
    const b = await runCode(source);
    const c = await runCode(source, { threads: 1 });
    expect(a.success).toBe(true);
    expect(b.execution.fuel_consumed).toBe(a.execution.fuel_consumed);
    expect(c.execution.fuel_consumed).toBe(a.execution.fuel_consumed);
  });

  it("charges work done inside a built-in", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "LOW", ram: "2GB" }, () => "x".repeat(1e9).length);`,
    );
    expect(envelope.error?.error_type).toBe("fuel_exhausted");
  });

  it("ends an allocation bomb with memory_exceeded and keeps the host working", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", ram: "32MB", compute: "HIGH" }, () => {
        const hoard: string[] = []; for (;;) hoard.push("z".repeat(1 << 16) + hoard.length); });`,
    );
    expect(envelope.error?.error_type).toBe("memory_exceeded");
    expect(envelope.execution.ram_used).toBeLessThanOrEqual(32 * 1024 * 1024);
    const after = await runCode(`export const main = task({ name: "main" }, () => "still fine");`);
    expect(after.result).toBe("still fine");
  });

  it("stops a busy loop at its timeout", async () => {
    const started = Date.now();
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "HIGH", timeout: "150ms" }, () => { for (;;) {} });`,
    );
    expect(envelope.error?.error_type).toBe("timeout");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("stops a loop that spends its time inside built-ins at its timeout", async () => {
    const started = Date.now();
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "HIGH", timeout: "200ms" }, () => {
        let s = ""; for (;;) s = "x".repeat(100000).slice(1); });`,
    );
    expect(envelope.error?.error_type).toBe("timeout");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("stops a task stuck awaiting at its timeout", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", timeout: "150ms" }, async () => {
        await new Promise((r) => setTimeout(r, 60000)); return "late"; });`,
    );
    expect(envelope.error?.error_type).toBe("timeout");
    expect(envelope.execution.duration_ms).toBeLessThan(5000);
  });

  it("still meters lazy set-up code after the task hijacked the globals it uses", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "LOW" }, () => {
        const spin = () => { for (;;) {} };
        Object.defineProperty = spin as never;
        Object.defineProperties = spin as never;
        Object.freeze = spin as never;
        Array.prototype.push = spin as never;
        return String(new URL("https://example.com/a?b=1"));
      });`,
    );
    expect(envelope.success).toBe(false);
    expect(envelope.error?.error_type).toBe("fuel_exhausted");
  });

  it.each([
    0, 1,
  ])("ends with timeout when the caller aborts, even before the task started (threads: %i)", async (threads) => {
    const controller = new AbortController();
    controller.abort();
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "HIGH" }, () => { for (;;) {} });`,
      { signal: controller.signal, threads },
    );
    expect(envelope.error?.error_type).toBe("timeout");
    expect(envelope.error?.message).toMatch(/cancelled/);
  });

  it("survives a stack overflow", async () => {
    const envelope = await runCode(
      `export const main = task({ name: "main", compute: "HIGH" }, () => { const f = (n: number): number => f(n + 1) + 1; return f(0); });`,
    );
    expect(envelope.success).toBe(false);
    expect(["task_error", "memory_exceeded"]).toContain(envelope.error?.error_type);
  });
});

describe("retries and lifecycle", () => {
  it("retries a failing task in fresh sandboxes and counts the retries that ran", async () => {
    const events: LifecycleEvent[] = [];
    const envelope = await runCode(
      `export const main = task({ name: "main", maxRetries: 2 }, () => { throw new Error("always"); });`,
      { onEvent: (e) => events.push(e) },
    );
    expect(envelope.error?.error_type).toBe("task_error");
    expect(envelope.execution.retries).toBe(2);
    expect(events.map((e) => e.type)).toEqual([
      "created",
      "running",
      "retrying",
      "running",
      "retrying",
      "running",
      "failed",
    ]);
  });

  it("does not retry a success, and reports zero retries", async () => {
    const events: string[] = [];
    const envelope = await runCode(
      `export const main = task({ name: "main", maxRetries: 3 }, () => "once");`,
      { onEvent: (e) => events.push(e.type) },
    );
    expect(envelope.execution.retries).toBe(0);
    expect(events).toEqual(["created", "running", "completed"]);
  });

  it("names each task run by id and links sub-tasks to their parent, on every thread", async () => {
    for (const threads of [0, 2]) {
      const events: LifecycleEvent[] = [];
      await runCode(
        `export const leaf = task({ name: "leaf" }, (n: number) => n);
        export const main = task({ name: "main" }, async () => Promise.all([leaf(1), leaf(2)]));`,
        { threads, onEvent: (e) => events.push(e) },
      );
      const created = events.filter((e) => e.type === "created");
      const main = created.find((e) => e.task === "main");
      const leaves = created.filter((e) => e.task === "leaf");
      expect(main?.parentId).toBe(null);
      expect(leaves).toHaveLength(2);
      expect(new Set(leaves.map((e) => e.id)).size).toBe(2);
      for (const leaf of leaves) expect(leaf.parentId).toBe(main?.id);
      for (const event of events) expect(created.map((e) => e.id)).toContain(event.id);
    }
  });

  it("reports timed_out for a timeout", async () => {
    const events: string[] = [];
    await runCode(
      `export const main = task({ name: "main", timeout: "50ms" }, async () => new Promise((r) => setTimeout(r, 10000)));`,
      { onEvent: (e) => events.push(e.type) },
    );
    expect(events.at(-1)).toBe("timed_out");
  });
});

describe("sub-tasks", () => {
  const subtasks = `
    export const nap = task({ name: "nap", timeout: "5s" }, async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms)); return ms; });
    export const main = task({ name: "main" }, async () => {
      const started = Date.now();
      const all = await Promise.all([300, 300, 300, 300].map((ms) => nap(ms)));
      return { results: all.map((e) => e.result), elapsed: Date.now() - started };
    });`;

  it("runs sub-tasks started together concurrently, each in its own sandbox", async () => {
    const events: LifecycleEvent[] = [];
    const envelope = await runCode(subtasks, { onEvent: (event) => events.push(event) });
    const result = envelope.result as { results: number[]; elapsed: number };
    expect(result.results).toEqual([300, 300, 300, 300]);
    // All four were running before the first one completed (one after another, the first would
    // complete before the second started): an order, which a loaded machine does not change.
    const naps = events.filter((event) => event.task === "nap");
    const firstDone = naps.findIndex((event) => event.type === "completed");
    expect(naps.slice(0, firstDone).filter((event) => event.type === "running")).toHaveLength(4);
  });

  it("runs sub-tasks on the worker pool too", async () => {
    const envelope = await runCode(subtasks, { threads: 2 });
    expect((envelope.result as { results: number[] }).results).toEqual([300, 300, 300, 300]);
  });

  it("gives each sub-task its own limits and fuel", async () => {
    const envelope = await runCode(`
      export const spin = task({ name: "spin", compute: "LOW" }, () => { for (;;) {} });
      export const main = task({ name: "main", compute: "LOW" }, async () => {
        const child = await spin();
        return { type: child.error?.error_type, fuel: child.execution.fuel_consumed };
      });`);
    expect(envelope.success).toBe(true);
    const result = envelope.result as { type: string; fuel: number };
    expect(result.type).toBe("fuel_exhausted");
    expect(envelope.execution.fuel_consumed).toBeLessThan(result.fuel);
  });

  it("stops a busy sub-task on another thread when its parent times out", async () => {
    const events: LifecycleEvent[] = [];
    const envelope = await run({
      code: taskSource(
        `export const spin = task({ name: "spin", compute: "1000000000000" }, () => { for (;;) {} });
        export const main = task({ name: "main", timeout: "300ms" }, async () => (await spin()).error);`,
      ),
      language: "ts",
      cwd: project.dir,
      onEvent: (event) => events.push(event),
    });
    expect(envelope.error?.error_type).toBe("timeout");
    // The child has fuel for tens of seconds; the cancel flag in shared memory reaches its busy
    // worker and stops it within moments (an abort message alone would wait for the fuel).
    const deadline = Date.now() + 10_000;
    while (
      !events.some((e) => e.task === "spin" && e.type === "cancelled") &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const ended = events.find((e) => e.task === "spin" && e.type === "cancelled");
    expect(ended?.error).toEqual({
      error_type: "timeout",
      message: "cancelled: the task that started it ended before it finished",
    });
  });

  it("refuses sub-tasks nested deeper than the depth limit", async () => {
    const envelope = await runCode(
      `export const dive = task({ name: "dive" }, async (n: number): Promise<unknown> => {
        const next = await dive(n + 1);
        return next.success ? next.result : { stoppedAt: n, error: next.error };
      });
      export const main = task({ name: "main" }, () => dive(1));`,
      { limits: { maxSubtaskDepth: 3 } },
    );
    const inner = envelope.result as {
      result: { stoppedAt: number; error: { error_type: string; message: string } };
    };
    expect(inner.result.stoppedAt).toBe(3);
    expect(inner.result.error.error_type).toBe("permission_denied");
    expect(inner.result.error.message).toMatch(/depth/);
  });

  it("refuses sub-tasks over the per-run count limit", async () => {
    const envelope = await runCode(
      `export const one = task({ name: "one" }, () => 1);
      export const main = task({ name: "main" }, async () => {
        const all = await Promise.all([1, 2, 3, 4, 5].map(() => one()));
        return all.map((e) => e.error?.error_type ?? "ok");
      });`,
      { limits: { maxSubtasksPerRun: 3 } },
    );
    expect(envelope.result).toEqual(["ok", "ok", "ok", "permission_denied", "permission_denied"]);
  });
});

describe("compile", () => {
  it("reports a syntax error as compile_error with file and line", async () => {
    const file = project.write(
      "broken.ts",
      taskSource(`export const main = task({ name: "main" }, () => {\n  return 1 +;\n});`),
    );
    const envelope = await run({ file, cwd: project.dir, threads: 0 });
    expect(envelope.error?.error_type).toBe("compile_error");
    expect(envelope.error?.message).toMatch(/broken\.ts:3:/);
  });

  it("points a task's error at the line of the task file, not the bundle", async () => {
    const file = project.write(
      "thrower.ts",
      taskSource(
        `\nfunction check(n: number) {\n  if (n > 1) throw new Error("too big: " + n);\n}\nexport const main = task({ name: "main" }, () => check(5));`,
      ),
    );
    const envelope = await run({ file, cwd: project.dir, threads: 0 });
    expect(envelope.error?.message).toContain("too big: 5");
    expect(envelope.error?.message).toMatch(/thrower\.ts:4:\d+/);
    expect(envelope.error?.message).not.toContain("task.js");
  });

  it("reports an unresolved import as compile_error", async () => {
    const envelope = await runCode(
      `import x from "./nowhere.ts";\nexport const main = task({ name: "main" }, () => x);`,
    );
    expect(envelope.error?.error_type).toBe("compile_error");
    expect(envelope.error?.message).toContain("nowhere");
  });

  it("runs a JavaScript task file with a relative import", async () => {
    project.write("helper.mjs", `export const twice = (s) => s + s;`);
    const file = project.write(
      "entry.mjs",
      `import { task } from "@capsule-run/sdk";\nimport { twice } from "./helper.mjs";\nexport const main = task({ name: "main" }, (s) => twice(s));`,
    );
    const envelope = await run({ file, cwd: project.dir, args: ["ab"], threads: 0 });
    expect(envelope.result).toBe("abab");
  });
});
