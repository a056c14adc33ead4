import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { journalBytes, trimToSize } from "../../core/journal/journal.ts";
import { inspectRun, listRuns, pruneRuns, RunLookupError, run, shutdown } from "./index.ts";
import { closeJournals, journalPath, openJournal } from "./journal.ts";
import { packageRoot } from "./paths.ts";
import { makeProject, runCapsule, taskSource } from "./test/fixtures.ts";

const project = makeProject();
let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((request, response) => {
    response.writeHead(request.url === "/missing" ? 404 : 200, { "content-type": "text/plain" });
    response.end("pong");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.close();
  closeJournals();
  project.cleanup();
  await shutdown();
});

function runFile(name: string, source: string, extra: Parameters<typeof run>[0] = {}) {
  project.write(name, taskSource(source));
  return run({ file: name, cwd: project.dir, threads: 0, ...extra });
}

describe("the run journal", () => {
  it("records a run's tree of task runs, attempts, fuel, errors and host requests", async () => {
    const envelope = await runFile(
      "tree.ts",
      `export const flaky = task({ name: "flaky", maxRetries: 1 }, () => { throw new Error("flaky step"); });
export const leaf = task({ name: "leaf", compute: "LOW" }, (n: string) => Number(n) * 2);
export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async (url: string) => {
  const response = await fetch(url + "/ping");
  await fetch(url + "/missing");
  const [a, b] = await Promise.all([leaf("1"), flaky()]);
  return { text: await response.text(), a: a.result, b: b.error?.error_type };
});`,
      { args: [base] },
    );
    expect(envelope.success).toBe(true);
    expect(envelope.result).toEqual({ text: "pong", a: 2, b: "task_error" });
    const runId = envelope.execution.run_id as string;
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);

    const detail = inspectRun(runId, { cwd: project.dir });
    expect(detail).toMatchObject({
      id: runId,
      task: "main",
      file: "tree.ts",
      state: "completed",
      host: "node",
      args: [base],
      result: { text: "pong", a: 2, b: "task_error" },
      fuel_consumed: envelope.execution.fuel_consumed,
      duration_ms: envelope.execution.duration_ms,
      error: null,
    });
    expect(detail.tasks).toHaveLength(1);
    const root = detail.tasks[0];
    expect(root).toMatchObject({ task: "main", parent_id: null, depth: 0, state: "completed" });
    expect(root?.fuel_consumed).toBe(envelope.execution.fuel_consumed);
    expect(root?.attempts.map((a) => [a.attempt, a.state])).toEqual([[1, "completed"]]);
    expect(root?.host_requests).toMatchObject([
      { method: "GET", url: `${base}/ping`, status: 200 },
      { method: "GET", url: `${base}/missing`, status: 404 },
    ]);
    const children = Object.fromEntries((root?.children ?? []).map((c) => [c.task, c]));
    expect(Object.keys(children).sort()).toEqual(["flaky", "leaf"]);
    expect(children.leaf).toMatchObject({ parent_id: root?.id, depth: 1, state: "completed" });
    expect(children.leaf?.fuel_consumed).toBeGreaterThan(0);
    expect(children.flaky).toMatchObject({
      depth: 1,
      state: "failed",
      error: { error_type: "task_error" },
    });
    expect(children.flaky?.error?.message).toContain("flaky step");
    expect(children.flaky?.attempts.map((a) => [a.attempt, a.state, a.error?.error_type])).toEqual([
      [1, "failed", "task_error"],
      [2, "failed", "task_error"],
    ]);
    // A unique prefix names the run too.
    expect(inspectRun(runId.slice(0, 8), { cwd: project.dir }).id).toBe(runId);
  });

  it("records a one-task run in two commits, every event in the order it happened", async () => {
    const store = openJournal(project.dir);
    if (store === null) throw new Error("the journal should open");
    try {
      const first = await runFile(
        "one.ts",
        `export const main = task({ name: "main" }, () => 42);`,
      );
      expect(first.success).toBe(true);
      // The run's row with the task's created and running, written before the task's code runs;
      // then its end with the envelope, written before run() resolves.
      const before = store.commits;
      const one = await run({ file: "one.ts", cwd: project.dir, threads: 0 });
      expect(store.commits - before).toBe(2);
      const ownConnection = new (createRequire(import.meta.url)("node-sqlite3-wasm").Database)(
        journalPath(project.dir),
      );
      try {
        expect(
          ownConnection.all("SELECT state FROM runs WHERE id = ?", [String(one.execution.run_id)]),
        ).toEqual([{ state: "completed" }]);
      } finally {
        ownConnection.close();
      }
      // On the pool each step comes in a turn of its own; runs in flight share commits (three
      // each before group commit).
      const flight = store.commits;
      const many = await Promise.all(
        Array.from({ length: 16 }, () => run({ file: "one.ts", cwd: project.dir, threads: 2 })),
      );
      expect(many.every((e) => e.success)).toBe(true);
      expect(store.commits - flight).toBeLessThan(16 * 3);
      expect(listRuns({ cwd: project.dir, state: "completed" }).length).toBeGreaterThanOrEqual(18);
      // A sub-task left pending when its parent ends is cancelled after that end.
      const orphan = await runFile(
        "orphan.ts",
        `export const slow = task({ name: "slow" }, () => new Promise((resolve) => setTimeout(resolve, 5000)));
export const main = task({ name: "main" }, async () => {
  void slow();
  await new Promise((resolve) => setTimeout(resolve, 100));
  return "done";
});`,
      );
      expect(orphan.success).toBe(true);
      const order = (runId: string | undefined) => {
        const mainId = inspectRun(String(runId), { cwd: project.dir }).tasks[0]?.id;
        return store
          .all("SELECT task_run_id, type FROM events WHERE run_id = ? ORDER BY seq", [
            String(runId),
          ])
          .map((row) => `${row.task_run_id === mainId ? "main" : "sub"}:${row.type}`);
      };
      expect(order(one.execution.run_id)).toEqual([
        "main:created",
        "main:running",
        "main:completed",
      ]);
      expect(order(orphan.execution.run_id)).toEqual([
        "main:created",
        "main:running",
        "sub:created",
        "sub:running",
        "main:completed",
        "sub:cancelled",
      ]);
    } finally {
      closeJournals();
    }
  });

  it("lists runs newest first, by state and up to a limit; journal: false keeps no record", async () => {
    const ok = await runFile("ok.ts", `export const main = task({ name: "main" }, () => 1);`);
    const bad = await runFile(
      "bad.ts",
      `export const main = task({ name: "main" }, () => { throw new Error("no"); });`,
    );
    const unrecorded = await runFile(
      "ok.ts",
      `export const main = task({ name: "main" }, () => 1);`,
      { journal: false },
    );
    const runs = listRuns({ cwd: project.dir });
    const ids = runs.map((r) => r.id);
    expect(ids.indexOf(bad.execution.run_id as string)).toBeLessThan(
      ids.indexOf(ok.execution.run_id as string),
    );
    expect(ids).not.toContain(unrecorded.execution.run_id);
    expect(listRuns({ cwd: project.dir, limit: 1 }).map((r) => r.id)).toEqual([
      bad.execution.run_id,
    ]);
    const failed = listRuns({ cwd: project.dir, state: "failed" });
    expect(failed.map((r) => r.id)).toContain(bad.execution.run_id);
    expect(failed.every((r) => r.state === "failed")).toBe(true);
    expect(failed[0]?.error?.message).toContain("no");
    expect(() => listRuns({ cwd: project.dir, state: "done" as "failed" })).toThrow(/"done"/);
    expect(() => listRuns({ cwd: project.dir, limit: 0 })).toThrow(/limit 0/);
    expect(() => inspectRun("ffffffff", { cwd: project.dir })).toThrow(RunLookupError);
    expect(() => inspectRun("../x", { cwd: project.dir })).toThrow(/"..\/x"/);
    const badOption = await run({ code: "x", cwd: project.dir, journal: "yes" as never });
    expect(badOption.error?.message).toContain('journal must be true or false, got "yes"');
  });

  it("prunes runs older than an age", async () => {
    const dir = makeProject();
    try {
      dir.write("one.ts", taskSource(`export const main = task({ name: "main" }, () => 1);`));
      const first = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      const second = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      const store = openJournal(dir.dir);
      store?.run("UPDATE runs SET started_at = started_at - ? WHERE id = ?", [
        8 * 86_400_000,
        first.execution.run_id as string,
      ]);
      expect(pruneRuns({ cwd: dir.dir, olderThanMs: 7 * 86_400_000 })).toBe(1);
      expect(listRuns({ cwd: dir.dir }).map((r) => r.id)).toEqual([second.execution.run_id]);
      expect(() => inspectRun(first.execution.run_id as string, { cwd: dir.dir })).toThrow(
        /no run/,
      );
    } finally {
      dir.cleanup();
    }
  });

  it("trims the oldest runs once the journal's rows pass their size bound", async () => {
    const dir = makeProject();
    try {
      dir.write(
        "big.ts",
        taskSource(`export const main = task({ name: "main" }, () => "x".repeat(60000));`),
      );
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) {
        ids.push(
          (await run({ file: "big.ts", cwd: dir.dir, threads: 0 })).execution.run_id as string,
        );
      }
      const store = openJournal(dir.dir);
      if (store === null) throw new Error("no journal");
      expect(journalBytes(store)).toBeGreaterThan(8 * 60_000);
      expect(trimToSize(store, 5 * 60_000)).toBeGreaterThan(0);
      expect(journalBytes(store)).toBeLessThanOrEqual(5 * 60_000);
      const left = listRuns({ cwd: dir.dir }).map((r) => r.id);
      expect(left.length).toBeGreaterThan(0);
      expect(left).toEqual(ids.slice(ids.length - left.length).reverse());
    } finally {
      dir.cleanup();
    }
  });

  it("shows a run whose process was killed as interrupted, earlier runs intact", async () => {
    const dir = makeProject();
    try {
      dir.write("quick.ts", taskSource(`export const main = task({ name: "main" }, () => "q");`));
      const earlier = await run({ file: "quick.ts", cwd: dir.dir, threads: 0 });
      closeJournals();
      dir.write(
        "sleep.ts",
        taskSource(
          `export const main = task({ name: "main", timeout: "60s" }, () => new Promise((r) => setTimeout(r, 60000)));`,
        ),
      );
      const script = join(dir.dir, "host.mjs");
      writeFileSync(
        script,
        `import { run } from ${JSON.stringify(join(packageRoot, "dist", "node.mjs"))};
await run({ file: "sleep.ts", cwd: ${JSON.stringify(dir.dir)}, threads: 0 });`,
      );
      const child = spawn(process.execPath, [script], { stdio: "ignore" });
      try {
        let running: string | undefined;
        for (let i = 0; i < 300 && running === undefined; i++) {
          await new Promise((r) => setTimeout(r, 100));
          running = listRuns({ cwd: dir.dir, state: "running" })[0]?.id;
        }
        expect(running).toBeDefined();
        child.kill("SIGKILL");
        await once(child, "exit");
        closeJournals();
        const runs = listRuns({ cwd: dir.dir });
        expect(runs.map((r) => [r.id, r.state])).toEqual([
          [running, "interrupted"],
          [earlier.execution.run_id, "completed"],
        ]);
        const detail = inspectRun(running as string, { cwd: dir.dir });
        expect(detail.tasks[0]).toMatchObject({ task: "main", state: "interrupted" });
        expect(detail.tasks[0]?.attempts[0]?.state).toBe("interrupted");
      } finally {
        child.kill("SIGKILL");
      }
    } finally {
      dir.cleanup();
    }
  }, 40_000);

  it("removes a lock a killed writer left, and reads on", async () => {
    const dir = makeProject();
    try {
      dir.write("one.ts", taskSource(`export const main = task({ name: "main" }, () => 1);`));
      const first = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      closeJournals();
      const lock = `${journalPath(dir.dir)}.lock`;
      mkdirSync(lock);
      const old = new Date(Date.now() - 60_000);
      utimesSync(lock, old, old);
      expect(listRuns({ cwd: dir.dir }).map((r) => r.id)).toEqual([first.execution.run_id]);
      expect(existsSync(lock)).toBe(false);
    } finally {
      dir.cleanup();
    }
  });

  it("waits out a live writer's lock, for a query it has run before too", async () => {
    const dir = makeProject();
    try {
      dir.write("one.ts", taskSource(`export const main = task({ name: "main" }, () => 1);`));
      const first = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      // The same query again after a busy step: its kept statement must not be reused as it is.
      expect(listRuns({ cwd: dir.dir }).map((r) => r.id)).toEqual([first.execution.run_id]);
      const lock = `${journalPath(dir.dir)}.lock`;
      mkdirSync(lock);
      // Another process's transaction, ending in 300 ms (this thread blocks while it waits).
      const holder = spawn(process.execPath, [
        "-e",
        `setTimeout(() => require("node:fs").rmdirSync(${JSON.stringify(lock)}), 300)`,
      ]);
      try {
        const started = Date.now();
        expect(listRuns({ cwd: dir.dir }).map((r) => r.id)).toEqual([first.execution.run_id]);
        expect(Date.now() - started).toBeGreaterThanOrEqual(200);
        const second = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
        expect(listRuns({ cwd: dir.dir }).map((r) => r.id)).toEqual([
          second.execution.run_id,
          first.execution.run_id,
        ]);
      } finally {
        holder.kill();
      }
    } finally {
      closeJournals();
      dir.cleanup();
    }
  });

  /** Runs `body` (after an import of run) as a script of its own in a new project; its exit. */
  async function inScript(body: string) {
    const dir = makeProject();
    dir.write("main.ts", taskSource(`export const main = task({ name: "main" }, () => 1);`));
    const script = join(dir.dir, "host.mjs");
    writeFileSync(
      script,
      `import { run } from ${JSON.stringify(join(packageRoot, "dist", "node.mjs"))};
const options = { file: "main.ts", cwd: ${JSON.stringify(dir.dir)}, threads: 0 };
${body}`,
    );
    const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    const [code] = await once(child, "exit");
    return { dir, code, out };
  }

  it("resolves run() in a script that waits for nothing else, its record written", async () => {
    const { dir, code, out } = await inScript(
      "console.log((await run(options)).execution.run_id);",
    );
    try {
      expect(code).toBe(0);
      expect(listRuns({ cwd: dir.dir }).map((r) => [r.id, r.state])).toEqual([
        [out.trim(), "completed"],
      ]);
    } finally {
      closeJournals();
      dir.cleanup();
    }
  });

  it("writes what the last turn recorded when the process exits in it", async () => {
    // The task's running event is recorded, then the process exits in that same turn, before
    // the turn's batch would be written.
    const { dir, code } = await inScript(
      `run({ ...options, onEvent: (event) => { if (event.type === "running") process.exit(0); } });`,
    );
    try {
      expect(code).toBe(0);
      const runs = listRuns({ cwd: dir.dir });
      expect(runs.map((r) => [r.task, r.state])).toEqual([["main", "interrupted"]]);
      expect(inspectRun(runs[0]?.id as string, { cwd: dir.dir }).tasks[0]?.attempts).toHaveLength(
        1,
      );
    } finally {
      closeJournals();
      dir.cleanup();
    }
  });

  it("never fails a run it cannot record: one warning instead", async () => {
    const dir = makeProject();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      // The journal's place is taken by a directory: it cannot be opened.
      mkdirSync(join(dir.dir, ".capsule", "journal.db"), { recursive: true });
      dir.write("one.ts", taskSource(`export const main = task({ name: "main" }, () => 7);`));
      const first = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      const second = await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      expect([first.result, second.result]).toEqual([7, 7]);
      await new Promise((r) => setTimeout(r, 10));
      const ours = warnings.filter((w) => (w as { code?: string }).code === "CAPSULE_JOURNAL");
      expect(ours).toHaveLength(1);
      expect(ours[0]?.message).toContain(journalPath(dir.dir));
    } finally {
      process.off("warning", onWarning);
      dir.cleanup();
    }
  });

  it("keeps the journal out of every task's reach", async () => {
    const dir = makeProject();
    try {
      dir.write("one.ts", taskSource(`export const main = task({ name: "main" }, () => 1);`));
      await run({ file: "one.ts", cwd: dir.dir, threads: 0 });
      const db = journalPath(dir.dir);
      const before = readFileSync(db);
      symlinkSync(join(dir.dir, ".capsule"), join(dir.dir, "state"));
      symlinkSync(db, join(dir.dir, "journal-link"));
      mkdirSync(join(dir.dir, "data"));
      symlinkSync(db, join(dir.dir, "data", "j.db"));
      const attempts: Array<[string, Parameters<typeof run>[0]]> = [
        ["allowedFiles .capsule", { code: grantTask(`"./.capsule"`, "/.capsule/journal.db") }],
        ["allowedFiles symlink", { code: grantTask(`"./state"`, "/state/journal.db") }],
        ["root grant, guest path", { code: grantTask(`"./"`, "/.capsule/journal.db") }],
        ["root grant, file symlink", { code: grantTask(`"./"`, "/journal-link") }],
        ["data grant, file symlink", { code: grantTask(`"./data"`, "/data/j.db") }],
        ["mount .capsule", { code: grantTask("", "/m/journal.db"), mounts: ["./.capsule::/m"] }],
        ["mount symlink", { code: grantTask("", "/m/journal.db"), mounts: ["./state::/m"] }],
        [
          "mount elsewhere cache",
          {
            code: grantTask("", "/m/journal.db"),
            mounts: ["./state::/m"],
            cacheDir: join(dir.dir, "cache"),
          },
        ],
      ];
      for (const [label, options] of attempts) {
        const envelope = await run({ language: "ts", cwd: dir.dir, threads: 0, ...options });
        expect(envelope.result, label).toBeNull();
        expect(envelope.success, label).toBe(false);
        expect(envelope.error?.message, label).toMatch(/"\.capsule" holds|outside the allowed/);
      }
      expect(readFileSync(db).subarray(0, 16).toString()).toBe("SQLite format 3\0");
      expect(before.subarray(0, 16).equals(readFileSync(db).subarray(0, 16))).toBe(true);
    } finally {
      dir.cleanup();
    }
  });

  it("answers capsule runs --json and capsule inspect <id> --json", async () => {
    const dir = makeProject();
    try {
      dir.write("one.ts", taskSource(`export const main = task({ name: "main" }, () => "cli");`));
      const ran = await runCapsule(["run", "one.ts", "--json"], { cwd: dir.dir });
      expect(ran.code).toBe(0);
      const runId = JSON.parse(ran.stdout).execution.run_id;
      const runs = await runCapsule(["runs", "--json"], { cwd: dir.dir });
      expect(runs.code).toBe(0);
      expect(JSON.parse(runs.stdout)).toMatchObject([
        { id: runId, task: "main", file: "one.ts", state: "completed" },
      ]);
      const inspected = await runCapsule(["inspect", runId.slice(0, 6), "--json"], {
        cwd: dir.dir,
      });
      expect(inspected.code).toBe(0);
      expect(JSON.parse(inspected.stdout)).toMatchObject({
        id: runId,
        result: "cli",
        tasks: [{ task: "main", state: "completed", attempts: [{ attempt: 1 }] }],
      });
      dir.write(
        "retry.ts",
        taskSource(`export const flaky = task({ name: "flaky", maxRetries: 1 }, () => { throw new Error("flaky step"); });
export const main = task({ name: "main" }, async () => (await flaky()).error?.error_type);`),
      );
      const retried = await runCapsule(["run", "retry.ts", "--json"], { cwd: dir.dir });
      const retriedId = JSON.parse(retried.stdout).execution.run_id;
      const tree = await runCapsule(["inspect", retriedId], { cwd: dir.dir });
      expect(tree.code).toBe(0);
      const treeLines = tree.stdout.trimEnd().split("\n");
      expect(treeLines[0]).toContain(`run ${retriedId}  completed  retry.ts main`);
      expect(
        treeLines.slice(1).map((line) => line.replace(/\[\w+\]|\d+ ms|fuel \d+/g, "#")),
      ).toEqual([
        "  main # completed  #  #",
        "    attempt 1 completed",
        "    flaky # failed  #  #",
        "      attempt 1 failed  task_error: Error: flaky step",
        "      attempt 2 failed  task_error: Error: flaky step",
      ]);
      const table = await runCapsule(["runs"], { cwd: dir.dir });
      expect(table.stdout).toContain(runId.slice(0, 8));
      expect(table.stdout).toContain("completed");
      for (const [args, named] of [
        [["inspect", "0123abcd"], '"0123abcd"'],
        [["runs", "--state", "done"], "'done'"],
        [["runs", "--limit", "0"], "'0'"],
        [["runs", "--limit", "abc"], "'abc'"],
        [["runs", "--prune", "--older-than", "soon"], "'soon'"],
      ] as const) {
        const refused = await runCapsule([...args], { cwd: dir.dir });
        expect(refused.code, args.join(" ")).toBe(2);
        expect(refused.stderr, args.join(" ")).toContain(named);
      }
      const pruned = await runCapsule(["runs", "--prune", "--older-than", "7d", "--json"], {
        cwd: dir.dir,
      });
      expect(JSON.parse(pruned.stdout)).toEqual({ pruned: 0 });
    } finally {
      dir.cleanup();
    }
  }, 60_000);
});

/** A task granted `grant` (allowedFiles) that reads `path` and writes to it. */
function grantTask(grant: string, path: string): string {
  return taskSource(`import { readFileSync, writeFileSync } from "node:fs";
export const main = task({ name: "main", allowedFiles: [${grant}] }, () => {
  const text = readFileSync(${JSON.stringify(path)}, "latin1");
  writeFileSync(${JSON.stringify(path)}, "overwritten");
  return text.slice(0, 16);
});`);
}
