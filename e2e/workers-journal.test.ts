// The run journal on Workers in real workerd: each run in a Durable Object of its own (SQLite
// storage on disk), listed, inspected and resumed by id; workerd itself is stopped by its PID and
// started again on the same storage, as a redeploy or a crash would.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunDetail, RunSummary, TaskRunRecord } from "../adapters/node/journal.ts";
import type { ErrorResponse, RunResponse } from "../adapters/workers/index.ts";
import { MAX_ENVELOPE_CHARS } from "../core/journal/bounds.ts";
import { REPLAYED_REASON } from "../core/runtime/replies.ts";
import { buildWorkerBundle, root } from "./workerd.ts";

const outdir = join(root, "dist/workers-journal");
const TOKEN = "journal token for tests";
const COMPATIBILITY_DATE = "2026-04-01";

/** workerd started on `config`, with its PID and the port of each socket. */
interface Workerd {
  process: ChildProcess;
  ports: Record<string, number>;
  exited: Promise<void>;
}

let storageDir: string;
let configPath: string;
let workerd: Workerd | undefined;
let server: Server;
let serverOrigin: string;

/** A reply over the journal's bound once in base64 (MAX_ENVELOPE_CHARS, 1 MiB): never kept. */
const BIG_REPLY_CHARS = MAX_ENVELOPE_CHARS;

/** How often the server saw each path. */
const hits = new Map<string, number>();
/** Paths the server holds unanswered while set: the test learns a request arrived, then acts. */
let holdPath: string | null = null;
let arrived: (() => void) | null = null;

function writeConfig(): void {
  const wasm = readdirSync(outdir).find((name) => name.endsWith(".wasm"));
  if (wasm === undefined) throw new Error(`no .wasm module in ${outdir}`);
  const modules = `[
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "${wasm}", wasm = embed "${wasm}"),
  ]`;
  writeFileSync(
    configPath,
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "journaled", worker = .journaled),
    (name = "plain", worker = .plain),
    (name = "internet", network = (allow = ["public", "local", "private"])),
    (name = "do-disk", disk = (path = ${JSON.stringify(storageDir)}, writable = true)),
  ],
  sockets = [
    (name = "journaled", address = "127.0.0.1:0", http = (), service = "journaled"),
    (name = "plain", address = "127.0.0.1:0", http = (), service = "plain"),
  ],
);
const journaled :Workerd.Worker = (
  modules = ${modules},
  compatibilityDate = "${COMPATIBILITY_DATE}",
  bindings = [
    (name = "CAPSULE_TOKEN", text = ${JSON.stringify(TOKEN)}),
    (name = "CAPSULE_RUNS", durableObjectNamespace = "CapsuleRun"),
  ],
  durableObjectNamespaces = [
    (className = "CapsuleRun", uniqueKey = "capsule-runs-e2e", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-disk"),
);
const plain :Workerd.Worker = (
  modules = ${modules},
  compatibilityDate = "${COMPATIBILITY_DATE}",
  bindings = [(name = "CAPSULE_TOKEN", text = ${JSON.stringify(TOKEN)})],
);
`,
  );
}

/** Starts workerd on the config and storage; resolves once both sockets listen. */
async function startWorkerd(): Promise<Workerd> {
  const child = spawn(
    join(root, "node_modules/workerd/bin/workerd"),
    ["serve", configPath, "--experimental", "--control-fd=3"],
    { cwd: outdir, stdio: ["ignore", "pipe", "pipe", "pipe"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += String(chunk);
  });
  child.stdout?.resume();
  const ports: Record<string, number> = {};
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface(child.stdio[3] as NodeJS.ReadableStream);
    lines.on("line", (line) => {
      const message = JSON.parse(line) as { event: string; socket: string; port: number };
      if (message.event === "listen") ports[message.socket] = message.port;
      if (ports.journaled !== undefined && ports.plain !== undefined) resolve();
    });
    child.once("exit", (code) => reject(new Error(`workerd exited (${code}): ${stderr}`)));
  });
  return { process: child, ports, exited };
}

/** Stops the workerd this suite started, by its PID, and waits for it to end. */
async function stopWorkerd(signal: NodeJS.Signals): Promise<void> {
  const running = workerd;
  workerd = undefined;
  if (running?.process.pid === undefined) return;
  process.kill(running.process.pid, signal);
  await running.exited;
}

async function restartWorkerd(signal: NodeJS.Signals): Promise<void> {
  await stopWorkerd(signal);
  workerd = await startWorkerd();
}

async function call<T>(
  path: string,
  init: { method?: string; body?: unknown; token?: string | null; socket?: string } = {},
): Promise<{ status: number; json: T }> {
  const port = workerd?.ports[init.socket ?? "journaled"];
  const token = init.token === undefined ? TOKEN : init.token;
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: {
      "content-type": "application/json",
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  return { status: response.status, json: (await response.json()) as T };
}

/**
 * A workflow that fetches `/<label>/plan` of the server, then runs `steps` sequential sub-tasks,
 * step i fetching `/<label>/<i>`.
 */
function workflow(label: string, steps: number): string {
  return `import { task } from "@capsule-run/sdk";
const step = task({ name: "step", compute: "LOW", allowedHosts: ["127.0.0.1"], timeout: "120s" },
  async (n: number): Promise<string> => {
    const response = await fetch(${JSON.stringify(serverOrigin)} + "/${label}/" + n);
    return await response.text();
  });
export const main = task({ name: "main", compute: "LOW", allowedHosts: ["127.0.0.1"], timeout: "300s" }, async () => {
  await (await fetch(${JSON.stringify(serverOrigin)} + "/${label}/plan")).text();
  const out: string[] = [];
  for (let i = 1; i <= ${steps}; i++) {
    const done = await step(i);
    if (!done.success) throw new Error("step " + i + " failed: " + done.error?.message);
    out.push(done.result as string);
  }
  return out;
});`;
}

function flatten(tasks: TaskRunRecord[]): TaskRunRecord[] {
  return tasks.flatMap((t) => [t, ...flatten(t.children)]);
}

beforeAll(async () => {
  await buildWorkerBundle(outdir);
  storageDir = mkdtempSync(join(tmpdir(), "capsule-do-"));
  configPath = join(outdir, "journal.capnp");
  server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = request.url ?? "/";
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (path === holdPath) {
      // Never answered: workerd is stopped while this request waits.
      holdPath = null;
      arrived?.();
      return;
    }
    if (path.endsWith("/big")) {
      response.writeHead(200, { "content-type": "text/plain" }).end("b".repeat(BIG_REPLY_CHARS));
      return;
    }
    if (path.endsWith("/fails-once") && hits.get(path) === 1) {
      response.writeHead(500, { "content-type": "text/plain" }).end("first time fails");
      return;
    }
    response.writeHead(200, { "content-type": "text/plain" }).end(`done ${path}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  serverOrigin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  writeConfig();
  workerd = await startWorkerd();
}, 120_000);

afterAll(async () => {
  await stopWorkerd("SIGTERM");
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(storageDir, { recursive: true, force: true });
});

describe("runs journaled in Durable Objects", () => {
  it("records a run in its own object, and the record survives a restart of workerd", async () => {
    const ran = await call<RunResponse>("/run", {
      body: { code: workflow("a", 3), language: "ts" },
    });
    expect(ran.status).toBe(200);
    expect(ran.json.success).toBe(true);
    expect(ran.json.result).toEqual(["done /a/1", "done /a/2", "done /a/3"]);
    const id = ran.json.execution.run_id as string;
    expect(id).toMatch(/^[0-9a-f]{64}$/);

    const before = await call<RunDetail>(`/runs/${id}`);
    expect(before.status).toBe(200);
    expect(before.json).toMatchObject({ id, task: "main", state: "completed", host: "workers" });
    expect(before.json.result).toEqual(ran.json.result);
    const tasks = flatten(before.json.tasks);
    expect(tasks.map((t) => [t.task, t.state])).toEqual([
      ["main", "completed"],
      ["step", "completed"],
      ["step", "completed"],
      ["step", "completed"],
    ]);
    expect(tasks[1]?.host_requests).toEqual([]);

    await restartWorkerd("SIGTERM");

    const listed = await call<{ runs: RunSummary[] }>("/runs");
    expect(listed.status).toBe(200);
    expect(listed.json.runs.find((r) => r.id === id)).toMatchObject({
      id,
      task: "main",
      state: "completed",
    });
    const after = await call<RunDetail>(`/runs/${id}`);
    expect(after.json).toEqual(before.json);

    // A completed run's resume answers its recorded response, and runs nothing again.
    const seen = hits.get("/a/1");
    const again = await call<RunResponse>(`/runs/${id}/resume`, { method: "POST" });
    expect(again.status).toBe(200);
    expect(again.json).toEqual(ran.json);
    expect(hits.get("/a/1")).toBe(seen);
  }, 180_000);

  it("shows a run whose workerd died mid-way as interrupted, and resumes it without redoing finished steps", async () => {
    holdPath = "/b/3";
    const third = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const pending = call<RunResponse>("/run", {
      body: { code: workflow("b", 4), language: "ts" },
    }).catch((error: unknown) => error);
    await third;
    // A run still going cannot be resumed.
    const going = (await call<{ runs: RunSummary[] }>("/runs")).json.runs[0] as RunSummary;
    expect(going.state).toBe("running");
    const early = await call<ErrorResponse>(`/runs/${going.id}/resume`, { method: "POST" });
    expect(early.status).toBe(409);
    expect(early.json.error.message).toContain(`run ${going.id} is still running`);
    // workerd dies while the third step waits on the server.
    await restartWorkerd("SIGKILL");
    expect(await pending).toBeInstanceOf(Error);

    const listed = await call<{ runs: RunSummary[] }>("/runs");
    const run = listed.json.runs[0] as RunSummary;
    expect(run).toMatchObject({ id: going.id, task: "main", state: "interrupted" });
    const interrupted = await call<{ runs: RunSummary[] }>("/runs?state=interrupted");
    expect(interrupted.json.runs.map((r) => r.id)).toContain(run.id);
    const detail = await call<RunDetail>(`/runs/${run.id}`);
    expect(flatten(detail.json.tasks).map((t) => [t.task, t.state])).toEqual([
      ["main", "interrupted"],
      ["step", "completed"],
      ["step", "completed"],
      ["step", "interrupted"],
    ]);

    const resumed = await call<RunResponse>(`/runs/${run.id}/resume`, { method: "POST" });
    expect(resumed.status).toBe(200);
    expect(resumed.json.success).toBe(true);
    expect(resumed.json.result).toEqual(["done /b/1", "done /b/2", "done /b/3", "done /b/4"]);
    const newId = resumed.json.execution.run_id as string;
    expect(newId).toMatch(/^[0-9a-f]{64}$/);
    expect(newId).not.toBe(run.id);
    // The plan and steps 1 and 2 ran once; step 3 ran twice (the interrupted one and the
    // resumed one). The plan's response came from the journal: the steps after it depended on it.
    expect(resumed.json.execution.host_requests[0]).toMatchObject({
      url: `${serverOrigin}/b/plan`,
      reason: REPLAYED_REASON,
    });
    const paths = ["/b/plan", "/b/1", "/b/2", "/b/3", "/b/4"];
    expect(paths.map((path) => [path, hits.get(path) ?? 0])).toEqual([
      ["/b/plan", 1],
      ["/b/1", 1],
      ["/b/2", 1],
      ["/b/3", 2],
      ["/b/4", 1],
    ]);

    const record = await call<RunDetail>(`/runs/${newId}`);
    expect(record.json).toMatchObject({ id: newId, state: "completed", resumed_from: run.id });
    const steps = flatten(record.json.tasks).filter((t) => t.task === "step");
    expect(steps.map((t) => t.replayed_from !== null)).toEqual([true, true, false, false]);
    const list = await call<{ runs: RunSummary[] }>("/runs?limit=2");
    expect(list.json.runs.map((r) => [r.id, r.state])).toEqual([
      [newId, "completed"],
      [run.id, "interrupted"],
    ]);
  }, 240_000);
});

describe("fetch replies in the journal", () => {
  it("keeps none over the bound (1 MiB as base64): a resume fetches it again and replays the rest", async () => {
    const origin = JSON.stringify(serverOrigin);
    const code = `import { task } from "@capsule-run/sdk";
const step = task({ name: "step", compute: "LOW", allowedHosts: ["127.0.0.1"] }, async (path: string) => {
  const response = await fetch(${origin} + path);
  if (!response.ok) throw new Error(path + " answered " + response.status);
  return await response.text();
});
export const main = task({ name: "main", compute: "HIGH", allowedHosts: ["127.0.0.1"], timeout: "120s" }, async () => {
  const big = (await (await fetch(${origin} + "/r/big")).text()).length;
  const plan = await (await fetch(${origin} + "/r/plan")).text();
  const first = await step("/r/1");
  const second = await step("/r/fails-once");
  if (!second.success) throw new Error("step 2: " + second.error?.message);
  return { big, plan, steps: [first.result, second.result] };
});`;
    const failed = await call<RunResponse>("/run", { body: { code, language: "ts" } });
    expect(failed.json.error?.message).toContain("/r/fails-once answered 500");
    const runId = failed.json.execution.run_id as string;
    const resumed = await call<RunResponse>(`/runs/${runId}/resume`, { method: "POST" });
    expect(resumed.json.result).toEqual({
      big: BIG_REPLY_CHARS,
      plan: "done /r/plan",
      steps: ["done /r/1", "done /r/fails-once"],
    });
    // The big reply was not kept, so it was asked again; the plan and step 1 were answered
    // from the journal; step 2 failed, so it ran again.
    const paths = ["/r/big", "/r/plan", "/r/1", "/r/fails-once"];
    expect(paths.map((path) => [path, hits.get(path) ?? 0])).toEqual([
      ["/r/big", 2],
      ["/r/plan", 1],
      ["/r/1", 1],
      ["/r/fails-once", 2],
    ]);
    const requests = resumed.json.execution.host_requests;
    expect(requests[0]).toMatchObject({ url: `${serverOrigin}/r/big`, status: 200 });
    expect(requests[0]?.reason).not.toBe(REPLAYED_REASON);
    expect(requests[1]).toMatchObject({ url: `${serverOrigin}/r/plan`, reason: REPLAYED_REASON });
  }, 120_000);
});

describe("run ids", () => {
  it("refuses a malformed or forged id by name, and never reaches another run's data", async () => {
    const ran = await call<RunResponse>("/run", {
      body: { code: workflow("c", 1), language: "ts" },
    });
    const id = ran.json.execution.run_id as string;
    for (const [bad, status, words] of [
      ["not-an-id", 400, "is not a run id"],
      ["..%2Findex", 400, "is not a run id"],
      ["a".repeat(63), 400, "is not a run id"],
      ["0".repeat(64), 404, "not an id of this Worker's runs"],
      // One digit changed: not an id this namespace made.
      [`${id.slice(0, 10)}${id[10] === "0" ? "1" : "0"}${id.slice(11)}`, 404, "no run"],
    ] as const) {
      for (const [path, method] of [
        [`/runs/${bad}`, "GET"],
        [`/runs/${bad}/resume`, "POST"],
      ] as const) {
        const answer = await call<ErrorResponse>(path, { method });
        expect([path, answer.status]).toEqual([path, status]);
        expect(answer.json.success).toBe(false);
        expect(answer.json.error.message).toContain(words);
        if (process.env.SHOW_ID_ERRORS) console.log(path, answer.status, answer.json.error.message);
        if (status === 400) {
          expect(answer.json.error.message).toContain(JSON.stringify(decodeURIComponent(bad)));
        }
      }
    }
    // Another namespace's id (the plain Worker keeps no journal) and the same auth as /run.
    const closed = await call<ErrorResponse>(`/runs/${id}`, { token: null });
    expect(closed.status).toBe(401);
    const wrong = await call<ErrorResponse>("/runs", { token: "guess" });
    expect(wrong.status).toBe(401);
    const inspected = await call<RunDetail>(`/runs/${id}`);
    expect(inspected.json.id).toBe(id);
    expect(flatten(inspected.json.tasks)).toHaveLength(2);
    const bad = await call<ErrorResponse>("/runs?limit=0");
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain('limit "0"');
    const state = await call<ErrorResponse>("/runs?state=done");
    expect(state.status).toBe(400);
    expect(state.json.error.message).toContain('state "done"');
  }, 120_000);

  it("keeps the journal out of every task's reach", async () => {
    const ran = await call<RunResponse>("/run", {
      body: {
        code: `import { task } from "@capsule-run/sdk";
import fs from "node:fs";
export const main = task({ name: "main", allowedFiles: ["./"], allowedHosts: ["*"] }, async () => {
  const walk = (dir: string): string[] => fs.readdirSync(dir).flatMap((name: string) => {
    const path = dir === "." ? name : dir + "/" + name;
    return fs.statSync(path).isDirectory() ? [path + "/", ...walk(path)] : [path];
  });
  const tries: string[] = [];
  for (const path of [".capsule/journal.db", "../journal.db", "/do-disk", "texts"]) {
    try { tries.push(path + ": " + fs.readFileSync(path, "utf8").slice(0, 20)); }
    catch (error) { tries.push(path + ": refused"); }
  }
  let reached = "refused";
  try { reached = await (await fetch("https://capsule-run.internal/inspect")).text(); } catch {}
  fs.writeFileSync("runs.db", "not the journal");
  const env = typeof process === "undefined" ? [] : Object.keys(process.env ?? {});
  return { files: walk("."), tries, reached, env };
});`,
        language: "ts",
        files: { "data/in.txt": "hello" },
      },
    });
    expect(ran.json.success).toBe(true);
    const result = ran.json.result as {
      files: string[];
      tries: string[];
      reached: string;
      env: string[];
    };
    // The request's files and the one it wrote: no journal, no storage of the run's object.
    expect(result.files.sort()).toEqual(["data/", "data/in.txt", "runs.db"]);
    expect(result.tries.every((t) => t.endsWith("refused"))).toBe(true);
    expect(result.reached).toBe("refused");
    expect(result.env).toEqual([]);
    // The file it wrote is the response's, not the journal's.
    expect(ran.json.files).toEqual({ "runs.db": "not the journal" });
    const record = await call<RunDetail>(`/runs/${ran.json.execution.run_id}`);
    expect(record.json.state).toBe("completed");
  }, 120_000);
});

describe("a Worker without the run objects bound", () => {
  it("runs as before, keeps no journal, and says how to turn it on", async () => {
    const ran = await call<RunResponse>("/run", {
      socket: "plain",
      body: { code: workflow("d", 1), language: "ts" },
    });
    expect(ran.json.success).toBe(true);
    expect(ran.json.execution.run_id).toMatch(/^[0-9a-f-]{36}$/);
    const listed = await call<ErrorResponse>("/runs", { socket: "plain" });
    expect(listed.status).toBe(404);
    expect(listed.json.error.message).toContain(
      "bind the CapsuleRun Durable Object class as CAPSULE_RUNS",
    );
  }, 60_000);
});
