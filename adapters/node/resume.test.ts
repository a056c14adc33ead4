import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_ENVELOPE_CHARS } from "../../core/journal/journal.ts";
import { REPLAYED_REASON } from "../../core/runtime/replies.ts";
import { inspectRun, listRuns, run, shutdown, type TaskRunRecord } from "./index.ts";
import { closeJournals, openJournal } from "./journal.ts";
import { packageRoot } from "./paths.ts";
import { makeProject, runCapsule, taskSource } from "./test/fixtures.ts";

afterAll(async () => {
  closeJournals();
  await shutdown();
});

/**
 * Four sequential steps, each appending its number to data/out.txt. Step 3 waits while data/hold
 * exists; a step fails while data/fail-<n> exists.
 */
const FLOW = taskSource(`import { appendFileSync, existsSync } from "node:fs";
export const step = task({ name: "step", allowedFiles: ["./data"], timeout: "60s" }, async (n: string) => {
  appendFileSync("/data/out.txt", n + "\\n");
  if (existsSync("/data/fail-" + n)) throw new Error("step " + n + " failed");
  while (n === "3" && existsSync("/data/hold")) await new Promise((r) => setTimeout(r, 50));
  return "step " + n;
});
export const main = task({ name: "main", timeout: "90s" }, async (label: string) => {
  const done: string[] = [];
  for (const n of ["1", "2", "3", "4"]) {
    const envelope = await step(n);
    if (!envelope.success) throw new Error("step " + n + ": " + envelope.error?.message);
    done.push(envelope.result as string);
  }
  return { label, done };
});`);

function lines(dir: string): string[] {
  return readFileSync(join(dir, "data", "out.txt"), "utf8")
    .trimEnd()
    .split("\n");
}

function count(list: string[], value: string): number {
  return list.filter((v) => v === value).length;
}

function flat(tasks: TaskRunRecord[]): TaskRunRecord[] {
  return tasks.flatMap((t) => [t, ...flat(t.children)]);
}

function project(source = FLOW) {
  const p = makeProject();
  mkdirSync(join(p.dir, "data"));
  p.write("flow.ts", source);
  return p;
}

/** A server on 127.0.0.1: /plan answers a new plan each time; /flaky/3 fails its first time. */
async function replyServer() {
  const hits: string[] = [];
  let plans = 0;
  const server = createServer((request, response) => {
    const path = request.url ?? "";
    hits.push(path);
    if (path === "/plan") response.end(`plan-${++plans}`);
    else if (path === "/big") response.end("x".repeat(MAX_ENVELOPE_CHARS));
    else if (path === "/flaky/3" && count(hits, path) === 1) response.writeHead(500).end();
    else response.end("ok");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return { hits, url: `http://127.0.0.1:${port}`, close: () => server.close() };
}

/** main fetches a plan, runs three steps that each fetch, then fetches a plan again. */
const FETCHING_FLOW =
  taskSource(`export const step = task({ name: "step", allowedHosts: ["127.0.0.1"] }, async (n: string, plan: string, url: string) => {
  const status = (await fetch(url + "/flaky/" + n)).status;
  if (status !== 200) throw new Error("step " + n + " got " + status);
  return plan + ":" + n;
});
export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async (url: string) => {
  const plan = await (await fetch(url + "/plan")).text();
  const done: string[] = [];
  for (const n of ["1", "2", "3"]) {
    const envelope = await step(n, plan, url);
    if (!envelope.success) throw new Error(envelope.error?.message);
    done.push(envelope.result as string);
  }
  const last = await (await fetch(url + "/plan")).text();
  return { plan, done, last };
});`);

describe("resume replays fetch responses", () => {
  for (const threads of [0, 2]) {
    it(`a finished step's fetch is answered from the journal; a failed step's is made again (threads: ${threads})`, async () => {
      const p = project(FETCHING_FLOW);
      const server = await replyServer();
      try {
        const first = await run({ file: "flow.ts", args: [server.url], cwd: p.dir, threads });
        expect(first.error?.message).toContain("step 3 got 500");
        const resumed = await run({
          resume: first.execution.run_id as string,
          cwd: p.dir,
          threads,
        });
        expect(resumed.error).toBeNull();
        // Without replay, the plan would be plan-2, and steps 1 and 2's arguments would differ.
        expect(resumed.result).toEqual({
          plan: "plan-1",
          done: ["plan-1:1", "plan-1:2", "plan-1:3"],
          last: "plan-2",
        });
        expect(count(server.hits, "/plan")).toBe(2);
        expect(count(server.hits, "/flaky/1")).toBe(1);
        expect(count(server.hits, "/flaky/2")).toBe(1);
        expect(count(server.hits, "/flaky/3")).toBe(2);
        const [replayed, ...made] = resumed.execution.host_requests;
        expect(replayed).toMatchObject({
          url: `${server.url}/plan`,
          status: 200,
          reason: REPLAYED_REASON,
        });
        expect(made.map((r) => [r.url, r.reason])).toEqual([[`${server.url}/plan`, undefined]]);
        // The resumed run keeps every reply it got, the replayed one too: its own resume needs them.
        const db = openJournal(p.dir, false);
        const kept = db?.all("SELECT count(*) AS n FROM replies WHERE run_id = ?", [
          resumed.execution.run_id as string,
        ]);
        expect(Number(kept?.[0]?.n)).toBe(3);
      } finally {
        server.close();
        p.cleanup();
      }
    }, 60_000);
  }
});

describe("replies in the journal are bounded and never widen a task's reach", () => {
  it("keeps no reply over the envelope bound: that fetch is made again on resume", async () => {
    const p = project(
      taskSource(`export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async (url: string) => {
  const big = (await (await fetch(url + "/big")).text()).length;
  const plan = await (await fetch(url + "/plan")).text();
  return { big, plan };
});`),
    );
    const server = await replyServer();
    try {
      const first = await run({ file: "flow.ts", args: [server.url], cwd: p.dir, threads: 0 });
      expect(first.result).toEqual({ big: MAX_ENVELOPE_CHARS, plan: "plan-1" });
      const kept = openJournal(p.dir, false)?.all(
        "SELECT seq, length(body_base64) AS n FROM replies WHERE run_id = ?",
        [first.execution.run_id as string],
      );
      // The 1 MiB body, in base64, is over the bound; the plan's is kept.
      expect(kept?.map((row) => [Number(row.seq), Number(row.n)])).toEqual([[1, 8]]);
    } finally {
      server.close();
      p.cleanup();
    }
  });

  it("a reply is not replayed to a task whose allowedHosts no longer admit its host", async () => {
    const flow = (hosts: string) =>
      taskSource(`export const step = task({ name: "step" }, (n: string) => {
  if (n === "2") throw new Error("step 2 failed");
  return n;
});
export const main = task({ name: "main", allowedHosts: ${hosts} }, async (url: string) => {
  let plan: string;
  try {
    plan = await (await fetch(url + "/plan")).text();
  } catch (error) {
    plan = "refused: " + (error as Error).message;
  }
  await step("1");
  if (!(await step("2")).success) throw new Error("step 2 failed; plan: " + plan);
  return plan;
});`);
    const p = project(flow(`["127.0.0.1"]`));
    const server = await replyServer();
    try {
      const first = await run({ file: "flow.ts", args: [server.url], cwd: p.dir, threads: 0 });
      expect(first.error?.message).toContain("step 2 failed; plan: plan-1");
      p.write("flow.ts", flow("[]"));
      const resumed = await run({ resume: first.execution.run_id as string, cwd: p.dir });
      // Step 1 still comes from the journal; the plan's reply does not.
      expect(resumed.error?.message).toContain("step 2 failed; plan: refused: ");
      expect(count(server.hits, "/plan")).toBe(1);
    } finally {
      server.close();
      p.cleanup();
    }
  });
});

describe("resume", () => {
  it("after SIGKILL in step 3: steps 1 and 2 come from the journal, 3 and 4 run (the CLI)", async () => {
    const p = project();
    let child: ChildProcess | undefined;
    try {
      writeFileSync(join(p.dir, "data", "hold"), "");
      child = spawn(
        process.execPath,
        [join(packageRoot, "bin", "capsule.mjs"), "run", "flow.ts", "first", "--json"],
        { cwd: p.dir, stdio: "ignore" },
      );
      const out = join(p.dir, "data", "out.txt");
      for (let i = 0; i < 400; i++) {
        if (existsSync(out) && lines(p.dir).length === 3) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(lines(p.dir)).toEqual(["1", "2", "3"]);
      child.kill("SIGKILL");
      await once(child, "exit");
      rmSync(join(p.dir, "data", "hold"));

      const runs = await runCapsule(["runs", "--json"], { cwd: p.dir });
      expect(runs.code).toBe(0);
      const listed = JSON.parse(runs.stdout);
      expect(listed).toMatchObject([{ task: "main", file: "flow.ts", state: "interrupted" }]);
      const id = listed[0].id as string;

      const resumed = await runCapsule(["run", "--resume", id, "--json"], { cwd: p.dir });
      expect(resumed.code, resumed.stderr).toBe(0);
      const envelope = JSON.parse(resumed.stdout);
      expect(envelope).toMatchObject({
        success: true,
        result: { label: "first", done: ["step 1", "step 2", "step 3", "step 4"] },
      });
      const newId = envelope.execution.run_id as string;
      expect(newId).not.toBe(id);
      const written = lines(p.dir);
      expect(count(written, "1")).toBe(1);
      expect(count(written, "2")).toBe(1);
      expect(written).toContain("3");
      expect(written).toContain("4");
      expect(written.slice(-2)).toEqual(["3", "4"]);

      const old = JSON.parse((await runCapsule(["inspect", id, "--json"], { cwd: p.dir })).stdout);
      expect(old).toMatchObject({
        id,
        state: "interrupted",
        resumed_from: null,
        resumed_by: [newId],
      });
      expect(old.tasks[0]).toMatchObject({ task: "main", state: "interrupted" });
      expect(
        old.tasks[0].children.map((t: TaskRunRecord) => [t.task, t.state, t.call?.index]),
      ).toEqual([
        ["step", "completed", 0],
        ["step", "completed", 1],
        ["step", "interrupted", 2],
      ]);

      const inspected = await runCapsule(["inspect", newId, "--json"], { cwd: p.dir });
      expect(inspected.code).toBe(0);
      const detail = JSON.parse(inspected.stdout);
      expect(detail).toMatchObject({ id: newId, state: "completed", resumed_from: id });
      const steps = detail.tasks[0].children as TaskRunRecord[];
      expect(steps.map((t) => [t.state, t.call?.index, t.replayed_from !== null])).toEqual([
        ["completed", 0, true],
        ["completed", 1, true],
        ["completed", 2, false],
        ["completed", 3, false],
      ]);
      expect(steps[0]?.replayed_from).toBe(old.tasks[0].children[0].id);
      const text = await runCapsule(["inspect", newId], { cwd: p.dir });
      expect(text.stdout).toContain(`resumed from ${id}`);
      expect(text.stdout).toContain("replayed from");

      // A completed run's resume: its recorded envelope, and nothing runs.
      const again = await runCapsule(["run", "--resume", newId.slice(0, 8), "--json"], {
        cwd: p.dir,
      });
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toEqual(envelope);
      expect(lines(p.dir)).toEqual(written);
      expect(
        JSON.parse((await runCapsule(["runs", "--json"], { cwd: p.dir })).stdout),
      ).toHaveLength(2);
    } finally {
      child?.kill("SIGKILL");
      p.cleanup();
    }
  }, 90_000);

  for (const threads of [0, 2]) {
    it(`resumes a failed run, nested calls too (threads ${threads})`, async () => {
      const p = project(
        taskSource(`import { appendFileSync, existsSync } from "node:fs";
export const leaf = task({ name: "leaf", allowedFiles: ["./data"] }, (n: string) => {
  appendFileSync("/data/out.txt", n + "\\n");
  if (existsSync("/data/fail-" + n)) throw new Error("leaf " + n + " failed");
  return n.toUpperCase();
});
export const group = task({ name: "group" }, async (a: string, b: string) => {
  const [x, y] = await Promise.all([leaf(a), leaf(b)]);
  if (!x.success || !y.success) throw new Error("group " + a + b + " failed");
  return (x.result as string) + (y.result as string);
});
export const main = task({ name: "main" }, async () => {
  const one = await group("a", "b");
  const two = await group("c", "d");
  if (!two.success) throw new Error("second group: " + two.error?.message);
  return [one.result, two.result];
});`),
      );
      try {
        writeFileSync(join(p.dir, "data", "fail-d"), "");
        const first = await run({ file: "flow.ts", cwd: p.dir, threads });
        expect(first.success).toBe(false);
        expect(first.error?.message).toContain("second group");
        expect(lines(p.dir).sort()).toEqual(["a", "b", "c", "d"]);
        rmSync(join(p.dir, "data", "fail-d"));
        const events: string[] = [];
        const resumed = await run({
          resume: first.execution.run_id as string,
          cwd: p.dir,
          threads,
          onEvent: (e) => {
            if (e.type === "created") events.push(e.task);
          },
        });
        expect(resumed.error).toBeNull();
        expect(resumed.result).toEqual(["AB", "CD"]);
        // a, b and c completed before: only d ran again.
        expect(lines(p.dir).sort()).toEqual(["a", "b", "c", "d", "d"]);
        // main, the second group (run anew) and its leaf d; the first group and leaf c replayed.
        expect(events.sort()).toEqual(["group", "leaf", "main"]);
        // Leaves c and d are called together: whichever was written first, inspect shows them in
        // call order. Writing the replayed c as if it came a second later must not move it.
        openJournal(p.dir)?.run(
          "UPDATE task_runs SET created_at = created_at + 1000 WHERE run_id = ? AND task = 'leaf' AND replayed_from IS NOT NULL",
          [resumed.execution.run_id as string],
        );
        const detail = inspectRun(resumed.execution.run_id as string, { cwd: p.dir });
        expect(detail.resumed_from).toBe(first.execution.run_id);
        expect(
          flat(detail.tasks).map((t) => [
            t.task,
            t.state,
            t.replayed_from === null ? "ran" : "replayed",
          ]),
        ).toEqual([
          ["main", "completed", "ran"],
          ["group", "completed", "replayed"],
          ["group", "completed", "ran"],
          ["leaf", "completed", "replayed"],
          ["leaf", "completed", "ran"],
        ]);
      } finally {
        p.cleanup();
      }
    }, 60_000);
  }

  it("stops with a config_error naming the first call that moved when the file changed", async () => {
    const p = project();
    try {
      writeFileSync(join(p.dir, "data", "fail-3"), "");
      const first = await run({ file: "flow.ts", cwd: p.dir, args: ["x"], threads: 0 });
      expect(first.error?.message).toContain("step 3 failed");
      rmSync(join(p.dir, "data", "fail-3"));
      const id = first.execution.run_id as string;
      const before = lines(p.dir);

      const edits: Array<[string, string, RegExp]> = [
        // Step 2 dropped: call 1 is now step("3").
        [
          `for (const n of ["1", "2", "3", "4"])`,
          `for (const n of ["1", "3", "4"])`,
          /call 1 \(counting from 0\) of task "main": its arguments differ \(journal: \["2"\], now: \["3"\]\)/,
        ],
        // Another task at call 0.
        [
          `const envelope = await step(n);`,
          `const envelope = await other(n);`,
          /call 0 \(counting from 0\) of task "main": the journal has task "step" there, this run called "other"/,
        ],
        // The step's options changed.
        [
          `timeout: "60s"`,
          `timeout: "61s"`,
          /call 0 .*its options differ \(journal: .*"timeoutMs":60000/,
        ],
      ];
      for (const [from, to, message] of edits) {
        p.write(
          "flow.ts",
          `${FLOW.replace(from, to)}\nexport const other = task({ name: "other" }, (n: string) => n);\n`,
        );
        const resumed = await run({ resume: id, cwd: p.dir, threads: to.includes("61s") ? 2 : 0 });
        expect(resumed.success, to).toBe(false);
        expect(resumed.error?.error_type, to).toBe("config_error");
        expect(resumed.error?.message, to).toMatch(message);
        expect(resumed.error?.message, to).toContain(`resume of run ${id} diverged`);
        expect(lines(p.dir), to).toEqual(before);
        expect(inspectRun(resumed.execution.run_id as string, { cwd: p.dir })).toMatchObject({
          state: "failed",
          resumed_from: id,
          error: { error_type: "config_error" },
        });
      }
      // A change that keeps the calls in place resumes.
      p.write("flow.ts", FLOW.replace(`return { label, done };`, `return { label, done, v: 2 };`));
      const resumed = await run({ resume: id, cwd: p.dir, threads: 0 });
      expect(resumed.result).toEqual({
        label: "x",
        done: ["step 1", "step 2", "step 3", "step 4"],
        v: 2,
      });
      expect(lines(p.dir)).toEqual([...before, "3", "4"]);
    } finally {
      p.cleanup();
    }
  }, 60_000);

  it("refuses unknown, forged and other projects' run ids, naming them", async () => {
    const p = project();
    const other = project();
    try {
      expect(
        (await run({ resume: "0123abcd", cwd: p.dir })).error?.message,
        "no journal yet",
      ).toMatch(/resume: no run "0123abcd": this project has no journal yet/);
      const theirs = await run({ file: "flow.ts", cwd: other.dir, args: ["o"], threads: 0 });
      expect(theirs.success).toBe(true);
      await run({ file: "flow.ts", cwd: p.dir, args: ["p"], threads: 0 });
      const theirId = theirs.execution.run_id as string;
      const cases: Array<[unknown, RegExp]> = [
        ["0123abcd", /no run "0123abcd" in the journal/],
        [theirId, new RegExp(`no run "${theirId}" in the journal`)],
        [
          "../x/.capsule/journal.db",
          /no run "..\/x\/.capsule\/journal.db": a run id is hexadecimal/,
        ],
        ["1' OR '1'='1", /no run "1' OR '1'='1"/],
        ["", /resume: a run id is a string .* got ""/],
        [42, /resume: a run id is a string .* got 42/],
      ];
      for (const [id, message] of cases) {
        const envelope = await run({ resume: id as string, cwd: p.dir, threads: 0 });
        expect(envelope.success, String(id)).toBe(false);
        expect(envelope.error?.error_type, String(id)).toBe("config_error");
        expect(envelope.error?.message, String(id)).toMatch(message);
      }
      const mine = listRuns({ cwd: p.dir })[0]?.id as string;
      const extras: Array<[Partial<Parameters<typeof run>[0]>, string]> = [
        [{ file: "flow.ts" }, "leave out file"],
        [{ args: ["y"] }, "leave out args"],
        [{ task: "main" }, "leave out task"],
        [{ journal: false }, "leave out journal: false"],
      ];
      for (const [extra, named] of extras) {
        const envelope = await run({ resume: mine, cwd: p.dir, ...extra });
        expect(envelope.error?.message).toContain(named);
      }
      // A run of code cannot resume: the journal keeps no code.
      const code = await run({ code: FLOW, cwd: p.dir, args: ["c"], threads: 0 });
      expect(
        (await run({ resume: code.execution.run_id as string, cwd: p.dir })).error?.message,
      ).toMatch(/ran code given to run\(\), which the journal does not keep/);
      // The CLI: the same config_error, and a usage error for a file beside --resume.
      const cli = await runCapsule(["run", "--resume", "nope", "--json"], { cwd: p.dir });
      expect(cli.code).toBe(1);
      expect(JSON.parse(cli.stdout).error).toMatchObject({ error_type: "config_error" });
      expect(JSON.parse(cli.stdout).error.message).toContain('"nope"');
      const usage = await runCapsule(["run", "flow.ts", "--resume", mine], { cwd: p.dir });
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain("leave out a task file (flow.ts)");
      const help = await runCapsule(["run", "--help"], { cwd: p.dir });
      expect(help.stdout).toContain("--resume <run-id>");
    } finally {
      p.cleanup();
      other.cleanup();
    }
  }, 60_000);

  it("keeps the journal out of reach of a task granted the whole project", async () => {
    const p = project();
    try {
      await run({ file: "flow.ts", cwd: p.dir, args: ["p"], threads: 0 });
      const db = join(p.dir, ".capsule", "journal.db");
      const before = readFileSync(db);
      for (const grant of [".", "./", "./data/.."]) {
        p.write(
          "peek.ts",
          taskSource(`import { readFileSync, writeFileSync, appendFileSync } from "node:fs";
export const main = task({ name: "main", allowedFiles: [${JSON.stringify(grant)}] }, () => {
  const found: string[] = [];
  for (const path of ["/.capsule/journal.db", "./.capsule/journal.db", "/data/../.capsule/journal.db"]) {
    try { readFileSync(path); found.push("read " + path); } catch {}
    try { appendFileSync(path, "x"); found.push("wrote " + path); } catch {}
    try { writeFileSync(path, "x"); found.push("replaced " + path); } catch {}
  }
  return found;
});`),
        );
        const envelope = await run({ file: "peek.ts", cwd: p.dir, threads: 0, journal: false });
        expect(envelope.error, grant).toBeNull();
        expect(envelope.result, grant).toEqual([]);
      }
      expect(readFileSync(db).equals(before)).toBe(true);
      expect(openJournal(p.dir)).not.toBeNull();
    } finally {
      p.cleanup();
    }
  });
});

describe("the journal's calls", () => {
  it("opens a version 1 journal, adds what resume needs, and keeps its runs", async () => {
    const p = project();
    try {
      mkdirSync(join(p.dir, ".capsule"));
      const { Database } = createRequire(import.meta.url)("node-sqlite3-wasm") as {
        Database: new (path: string) => { exec(sql: string): void; close(): void };
      };
      const db = new Database(join(p.dir, ".capsule", "journal.db"));
      db.exec(`${SCHEMA_V1}
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
INSERT INTO runs (id, host, entry_task, file, args_json, state, started_at)
  VALUES ('00000000-0000-4000-8000-000000000001', 'node', 'main', 'flow.ts', '["v1"]', 'failed', ${Date.now()});`);
      db.close();
      const resumed = await run({ resume: "00000000", cwd: p.dir, threads: 0 });
      expect(resumed.error).toBeNull();
      expect(resumed.result).toMatchObject({ label: "v1" });
      expect(lines(p.dir)).toEqual(["1", "2", "3", "4"]);
      const detail = inspectRun(resumed.execution.run_id as string, { cwd: p.dir });
      expect(detail.resumed_from).toBe("00000000-0000-4000-8000-000000000001");
      expect(inspectRun("00000000", { cwd: p.dir }).resumed_by).toEqual([resumed.execution.run_id]);
    } finally {
      p.cleanup();
    }
  });

  it("keeps no envelope past its bound: that call runs again on resume", async () => {
    const p = project(
      taskSource(`import { appendFileSync, existsSync } from "node:fs";
export const big = task({ name: "big", allowedFiles: ["./data"] }, () => {
  appendFileSync("/data/out.txt", "big\\n");
  return "x".repeat(${MAX_ENVELOPE_CHARS});
});
export const small = task({ name: "small", allowedFiles: ["./data"] }, () => {
  appendFileSync("/data/out.txt", "small\\n");
  return "s";
});
export const main = task({ name: "main", allowedFiles: ["./data"] }, async () => {
  const b = await small();
  const a = await big();
  if (existsSync("/data/fail")) throw new Error("main failed");
  return [a.result?.length, b.result];
});`),
    );
    try {
      writeFileSync(join(p.dir, "data", "fail"), "");
      const first = await run({ file: "flow.ts", cwd: p.dir, threads: 0 });
      expect(first.error?.message).toContain("main failed");
      rmSync(join(p.dir, "data", "fail"));
      const resumed = await run({ resume: first.execution.run_id as string, cwd: p.dir });
      expect(resumed.result).toEqual([MAX_ENVELOPE_CHARS, "s"]);
      expect(lines(p.dir)).toEqual(["small", "big", "big"]);
      const store = openJournal(p.dir);
      const kept = store?.all(
        "SELECT task, length(envelope_json) AS n FROM calls WHERE run_id = ? ORDER BY seq",
        [first.execution.run_id as string],
      );
      expect(kept?.map((r) => [r.task, r.n === null ? null : "kept"])).toEqual([
        ["small", "kept"],
        ["big", null],
      ]);
    } finally {
      p.cleanup();
    }
  });
});

/** The journal's tables as version 1 made them. */
const SCHEMA_V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, host TEXT NOT NULL, entry_task TEXT NOT NULL, file TEXT,
  language TEXT, args_json TEXT, limits_json TEXT, state TEXT NOT NULL, started_at INTEGER NOT NULL,
  ended_at INTEGER, duration_ms INTEGER, fuel_consumed INTEGER, ram_used INTEGER, retries INTEGER,
  result_json TEXT, error_type TEXT, error_message TEXT, writer_pid INTEGER, writer_token TEXT);
CREATE INDEX runs_started ON runs (started_at);
CREATE TABLE task_runs (run_id TEXT NOT NULL, id TEXT NOT NULL, parent_id TEXT, depth INTEGER NOT NULL,
  task TEXT NOT NULL, file TEXT, state TEXT NOT NULL, created_at INTEGER NOT NULL, ended_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER, fuel_consumed INTEGER, error_type TEXT,
  error_message TEXT, PRIMARY KEY (run_id, id));
CREATE TABLE attempts (run_id TEXT NOT NULL, task_run_id TEXT NOT NULL, attempt INTEGER NOT NULL,
  state TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER, error_type TEXT,
  error_message TEXT, PRIMARY KEY (run_id, task_run_id, attempt));
CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, task_run_id TEXT NOT NULL,
  type TEXT NOT NULL, attempt INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE host_requests (run_id TEXT NOT NULL, task_run_id TEXT, seq INTEGER NOT NULL,
  method TEXT NOT NULL, url TEXT NOT NULL, status INTEGER, reason TEXT, duration_ms INTEGER,
  PRIMARY KEY (run_id, seq));
`;
