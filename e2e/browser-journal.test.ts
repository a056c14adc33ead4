// The run journal in a page (adapters/browser/journal.ts), in a real Chromium: runs recorded in
// OPFS, a run whose page reloaded mid-way read as interrupted and resumed without redoing its
// finished steps, forged ids refused, and a task with files granted kept away from the journal.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { build } from "vite";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { SOURCES_SQL } from "../adapters/browser/journal.ts";
import { MAX_ENVELOPE_CHARS } from "../core/journal/bounds.ts";
import { SCHEMA_SQL } from "../core/journal/schema.ts";
import type { Envelope } from "../core/runtime/envelope.ts";
import { REPLAYED_REASON } from "../core/runtime/replies.ts";
import { launchChromium, type StaticServer, serveStatic } from "./support.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

let server: StaticServer;
let browser: Browser;
/** The steps' server: counts each step's requests; can hold one step's answer. */
let steps: Server;
let stepsOrigin: string;
const stepCounts = new Map<string, number>();
let holdStep: string | null = null;
const held: ServerResponse[] = [];
let onHeld: (() => void) | null = null;

let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  server = await serveStatic(root);
  steps = createServer((request: IncomingMessage, response: ServerResponse) => {
    const step = new URL(request.url ?? "/", "http://x").pathname.replace(/^\/step\//, "");
    stepCounts.set(step, (stepCounts.get(step) ?? 0) + 1);
    if (step === holdStep) {
      held.push(response);
      onHeld?.();
      return;
    }
    const headers = { "access-control-allow-origin": "*" };
    if (step === "big") {
      response.writeHead(200, headers).end("b".repeat(MAX_ENVELOPE_CHARS));
      return;
    }
    if (step === "fails-once" && stepCounts.get(step) === 1) {
      response.writeHead(500, headers).end("first time fails");
      return;
    }
    response.writeHead(200, headers).end(`done ${step}`);
  });
  await new Promise<void>((resolve) => steps.listen(0, "127.0.0.1", resolve));
  stepsOrigin = `http://127.0.0.1:${(steps.address() as AddressInfo).port}`;
  browser = await launchChromium();
});

afterAll(async () => {
  for (const response of held) response.destroy();
  await browser?.close();
  await server?.close();
  await new Promise<void>((resolve) => steps.close(() => resolve()));
});

beforeEach(async () => {
  // A context of its own: an origin's OPFS (and so its journal) starts empty.
  context = await browser.newContext();
  // An empty page of the server's origin, which imports the built module.
  await context.route(`${server.origin}/blank.html`, (route) =>
    route.fulfill({ contentType: "text/html", body: "<!doctype html><title>journal</title>" }),
  );
  page = await context.newPage();
  await page.goto(`${server.origin}/blank.html`);
  stepCounts.clear();
  holdStep = null;
});

afterEach(async () => {
  await context?.close();
});

/** Runs `body` in the page with the built module as `capsule` (a string: see browser.test.ts). */
function withCapsule<T>(body: string): Promise<T> {
  return page.evaluate(
    `import("/dist/browser/capsule.js").then(async (capsule) => { ${body} })`,
  ) as Promise<T>;
}

/** A plan from the steps server, then four sequential steps, each a sub-task asking it once. */
function workflow(): string {
  return `import { task } from "@capsule-run/sdk";
    export const step = task({ name: "step", allowedHosts: ["127.0.0.1"] }, async (n: string) => {
      const response = await fetch(${JSON.stringify(stepsOrigin)} + "/step/" + n);
      return await response.text();
    });
    export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async (label: string) => {
      await (await fetch(${JSON.stringify(stepsOrigin)} + "/step/plan")).text();
      const results: string[] = [];
      for (const n of ["1", "2", "3", "4"]) {
        const envelope = await step(n);
        if (!envelope.success) throw new Error("step " + n + ": " + envelope.error?.message);
        results.push(envelope.result);
      }
      return { label, results };
    });`;
}

interface Summary {
  id: string;
  state: string;
  task: string;
  [key: string]: unknown;
}

describe("the run journal in a page", () => {
  it("records a run: run_id in the envelope, listRuns() and inspectRun() after a reload", async () => {
    const envelope = await withCapsule<Envelope>(
      `return capsule.run({ code: ${JSON.stringify(workflow())}, args: ["first"] });`,
    );
    expect(envelope).toMatchObject({
      success: true,
      result: { label: "first", results: ["done 1", "done 2", "done 3", "done 4"] },
    });
    const runId = envelope.execution.run_id as string;
    expect(runId).toMatch(/^[0-9a-f-]{36}$/);
    // journal: false keeps no record.
    const unrecorded = await withCapsule<Envelope>(
      `return capsule.run({ code: ${JSON.stringify(workflow())}, args: ["second"], journal: false });`,
    );
    expect(unrecorded.success).toBe(true);
    await page.reload();
    const listed = await withCapsule<Summary[]>("return capsule.listRuns();");
    expect(listed.map((run) => run.id)).toEqual([runId]);
    expect(listed[0]).toMatchObject({ state: "completed", task: "main" });
    const detail = await withCapsule<{ tasks: { task: string; state: string }[] }>(
      `return capsule.inspectRun(${JSON.stringify(runId)});`,
    );
    expect(JSON.stringify(detail)).toContain('"step"');
  });

  it("a page that runs with journal: false fetches neither the journal's code nor SQLite", async () => {
    const fetched: string[] = [];
    context.on("request", (request) => fetched.push(new URL(request.url()).pathname));
    const returning = (value: number) =>
      JSON.stringify(
        `import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "main" }, () => ${value});`,
      );
    const journalFiles = () =>
      fetched.filter((path) =>
        /\/(journal-[^/]*\.js|capsule-journal\.js|sqlite3\.wasm)$/.test(path),
      );
    const unrecorded = await withCapsule<Envelope>(
      `return capsule.run({ code: ${returning(1)}, language: "js", journal: false });`,
    );
    expect(unrecorded).toMatchObject({ success: true, result: 1 });
    expect(fetched).toContain("/dist/browser/capsule-worker.js");
    expect(journalFiles()).toEqual([]);
    // The same page's first recorded run loads them.
    const recorded = await withCapsule<Envelope>(
      `return capsule.run({ code: ${returning(2)}, language: "js" });`,
    );
    expect(recorded).toMatchObject({ success: true, result: 2 });
    expect(journalFiles().some((path) => path.endsWith("/sqlite3.wasm"))).toBe(true);
    expect(journalFiles().some((path) => /\/journal-[^/]*\.js$/.test(path))).toBe(true);
  });

  it("a run whose page reloaded while its third step ran reads interrupted, and resumes without redoing steps 1 and 2", async () => {
    holdStep = "3";
    const reached = new Promise<void>((resolve) => {
      onHeld = resolve;
    });
    await withCapsule(
      `window.pending = capsule.run({ code: ${JSON.stringify(workflow())}, args: ["resumed"] }); return null;`,
    );
    await reached;
    onHeld = null;
    const running = await withCapsule<Summary[]>("return capsule.listRuns();");
    expect(running).toHaveLength(1);
    const runId = running[0]?.id as string;
    expect(running[0]?.state).toBe("running");
    expect(Object.fromEntries(stepCounts)).toEqual({ plan: 1, "1": 1, "2": 1, "3": 1 });

    await page.reload();
    holdStep = null;
    const after = await withCapsule<Summary[]>("return capsule.listRuns();");
    expect(after.map((run) => [run.id, run.state])).toEqual([[runId, "interrupted"]]);

    const envelope = await withCapsule<Envelope>(
      `return capsule.run({ resume: ${JSON.stringify(runId)} });`,
    );
    expect(envelope).toMatchObject({
      success: true,
      result: { label: "resumed", results: ["done 1", "done 2", "done 3", "done 4"] },
    });
    const newId = envelope.execution.run_id as string;
    expect(newId).not.toBe(runId);
    // The plan and steps 1 and 2 came from the journal; 3 ran again, 4 for the first time.
    expect(Object.fromEntries(stepCounts)).toEqual({ plan: 1, "1": 1, "2": 1, "3": 2, "4": 1 });
    expect(envelope.execution.host_requests[0]).toMatchObject({
      url: `${stepsOrigin}/step/plan`,
      status: 200,
      reason: REPLAYED_REASON,
    });
    const detail = await withCapsule<Record<string, unknown>>(
      `return capsule.inspectRun(${JSON.stringify(newId)});`,
    );
    expect(detail).toMatchObject({ id: newId, state: "completed", resumed_from: runId });
    // Resuming the completed resume returns its envelope, running nothing.
    const again = await withCapsule<Envelope>(
      `return capsule.run({ resume: ${JSON.stringify(newId)} });`,
    );
    expect(again).toMatchObject({ success: true, result: envelope.result });
    expect(again.execution.run_id).toBe(newId);
    expect(Object.fromEntries(stepCounts)).toEqual({ plan: 1, "1": 1, "2": 1, "3": 2, "4": 1 });
  });

  it("keeps no fetch reply over the bound (1 MiB as base64): a resume fetches it again and replays the rest", async () => {
    const origin = JSON.stringify(stepsOrigin);
    const code = `import { task } from "@capsule-run/sdk";
      export const step = task({ name: "step", allowedHosts: ["127.0.0.1"] }, async (n: string) => {
        const response = await fetch(${origin} + "/step/" + n);
        if (!response.ok) throw new Error(n + " answered " + response.status);
        return await response.text();
      });
      export const main = task({ name: "main", compute: "HIGH", allowedHosts: ["127.0.0.1"] }, async () => {
        const big = (await (await fetch(${origin} + "/step/big")).text()).length;
        const plan = await (await fetch(${origin} + "/step/plan")).text();
        const first = await step("1");
        const second = await step("fails-once");
        if (!second.success) throw new Error("step 2: " + second.error?.message);
        return { big, plan, steps: [first.result, second.result] };
      });`;
    const failed = await withCapsule<Envelope>(
      `return capsule.run({ code: ${JSON.stringify(code)} });`,
    );
    expect(failed.error?.message).toContain("fails-once answered 500");
    const resumed = await withCapsule<Envelope>(
      `return capsule.run({ resume: ${JSON.stringify(failed.execution.run_id)} });`,
    );
    expect(resumed.result).toEqual({
      big: MAX_ENVELOPE_CHARS,
      plan: "done plan",
      steps: ["done 1", "done fails-once"],
    });
    // The big reply was not kept, so it was asked again; the plan and step 1 were answered from
    // the journal; step 2 failed, so it ran again.
    expect(Object.fromEntries(stepCounts)).toEqual({ big: 2, plan: 1, "1": 1, "fails-once": 2 });
    const [big, plan] = resumed.execution.host_requests;
    expect(big).toMatchObject({ url: `${stepsOrigin}/step/big`, status: 200 });
    expect(big?.reason).not.toBe(REPLAYED_REASON);
    expect(plan).toMatchObject({ url: `${stepsOrigin}/step/plan`, reason: REPLAYED_REASON });
  });

  it("opens and records under a strict Content-Security-Policy (no eval, wasm allowed)", async () => {
    const policy =
      "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'";
    await context.route(`${server.origin}/strict.html`, (route) =>
      route.fulfill({
        contentType: "text/html",
        headers: { "content-security-policy": policy },
        body: "<!doctype html><title>strict</title>",
      }),
    );
    await page.goto(`${server.origin}/strict.html`);
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { violations: string[] }).violations = seen;
      document.addEventListener("securitypolicyviolation", (event) =>
        seen.push(`${event.violatedDirective} ${event.blockedURI}`),
      );
    });
    const envelope = await withCapsule<Envelope>(
      `return capsule.run({ code: "import { task } from '@capsule-run/sdk'; export const main = task({ name: 'main' }, () => 'strict');" });`,
    );
    expect(envelope).toMatchObject({ success: true, result: "strict" });
    const listed = await withCapsule<Summary[]>("return capsule.listRuns();");
    expect(listed.map((run) => [run.id, run.state])).toEqual([
      [envelope.execution.run_id, "completed"],
    ]);
    expect(
      await page.evaluate(() => (window as unknown as { violations: string[] }).violations),
    ).toEqual([]);
  });

  it("a second page of the origin runs unrecorded, with one warning, while the first holds the journal", async () => {
    const hello = `import { task } from "@capsule-run/sdk";
      export const main = task({ name: "main" }, () => "hello");`;
    const first = await withCapsule<Envelope>(
      `return capsule.run({ code: ${JSON.stringify(hello)} });`,
    );
    const second = await context.newPage();
    const warnings: string[] = [];
    second.on("console", (message) => {
      if (message.type() === "warning") warnings.push(message.text());
    });
    await second.goto(`${server.origin}/blank.html`);
    const [envelope, listed] = (await second.evaluate(
      `import("/dist/browser/capsule.js").then(async (capsule) => [
        await capsule.run({ code: ${JSON.stringify(hello)} }),
        await capsule.listRuns(),
      ])`,
    )) as [Envelope, Summary[]];
    expect(envelope).toMatchObject({ success: true, result: "hello" });
    expect(listed).toEqual([]);
    expect(warnings.filter((text) => text.includes("run journal"))).toHaveLength(1);
    expect(warnings.join("\n")).toMatch(/another page of this origin holds the run journal/);
    // The first page's journal is whole.
    const runs = await withCapsule<Summary[]>("return capsule.listRuns();");
    expect(runs.map((run) => run.id)).toEqual([first.execution.run_id]);
    await second.close();
  });

  it("a forged or malformed resume id is refused with a message naming it", async () => {
    const forged = "0badc0de-0000-4000-8000-000000000000";
    for (const id of [forged, "../.capsule-journal/journal.db", "<img src=x>"]) {
      const envelope = await withCapsule<Envelope>(
        `return capsule.run({ resume: ${JSON.stringify(id)} });`,
      );
      expect(envelope.success).toBe(false);
      expect(envelope.error?.error_type).toBe("config_error");
      expect(envelope.error?.message).toContain(JSON.stringify(id));
    }
    const withCode = await withCapsule<Envelope>(
      `return capsule.run({ resume: ${JSON.stringify(forged)}, code: "x" });`,
    );
    expect(withCode.error?.message).toMatch(/leave out code/);
  });

  it("a task with files granted cannot read, list or overwrite the journal's files", async () => {
    await withCapsule(`await capsule.writeFile("data/input.txt", "granted");`);
    const first = await withCapsule<Envelope>(
      `return capsule.run({ code: ${JSON.stringify(workflow())}, args: ["kept"] });`,
    );
    expect(first.success).toBe(true);
    const before = await journalFiles();
    expect(before.length).toBeGreaterThan(0);
    // Unrecorded, so that the journal's files must stay exactly as they were.
    const attack = await withCapsule<Envelope>(
      `return capsule.run({ journal: false, code: ${JSON.stringify(`import { task } from "@capsule-run/sdk";
        import { readdirSync, readFileSync, writeFileSync } from "node:fs";
        export const main = task({ name: "main", allowedFiles: ["./data"] }, () => {
          const tried: Record<string, string> = {};
          const attempt = (label: string, fn: () => unknown) => {
            try { tried[label] = "reached: " + JSON.stringify(fn()); }
            catch (error) { tried[label] = "refused: " + (error as Error).message; }
          };
          attempt("list /", () => readdirSync("/"));
          attempt("list /data/..", () => readdirSync("/data/.."));
          attempt("list journal", () => readdirSync("/.capsule-journal"));
          attempt("list journal via data", () => readdirSync("/data/../../.capsule-journal"));
          attempt("read db", () => readFileSync("/.capsule-journal/journal.db", "utf8"));
          attempt("read via data", () => readFileSync("/data/../.capsule-journal/journal.db", "utf8"));
          attempt("write db", () => writeFileSync("/.capsule-journal/journal.db", "x"));
          attempt("write via data", () => writeFileSync("/data/../../.capsule-journal/.opaque", "x"));
          attempt("read input", () => readFileSync("/data/input.txt", "utf8"));
          return tried;
        });`)} });`,
    );
    expect(attack.success).toBe(true);
    const tried = attack.result as Record<string, string>;
    expect(tried["read input"]).toBe('reached: "granted"');
    for (const [label, outcome] of Object.entries(tried)) {
      if (label === "read input" || label.startsWith("list /")) continue;
      expect(outcome, label).toMatch(/^refused: /);
    }
    // Listing the root shows the grant only, never the journal's directory.
    expect(tried["list /"]).not.toContain("capsule-journal");
    expect(tried["list /data/.."] ?? "").not.toContain("capsule-journal");
    // An app root in the journal's directory is refused, for runs and for the page's file helpers.
    for (const opfsRoot of [".capsule-journal", "./.capsule-journal/x", ".CAPSULE-JOURNAL"]) {
      const refused = await withCapsule<Envelope>(
        `return capsule.run({ journal: false, code: "export const main = 1", opfsRoot: ${JSON.stringify(opfsRoot)} });`,
      );
      expect(refused.error?.error_type).toBe("config_error");
      expect(refused.error?.message).toContain(JSON.stringify(opfsRoot));
      const helper = await withCapsule<string>(
        `try { await capsule.writeFile("journal.db", "x", { opfsRoot: ${JSON.stringify(opfsRoot)} }); return "written"; } catch (error) { return String(error); }`,
      );
      expect(helper).toContain("run journal");
    }
    expect(await journalFiles()).toEqual(before);
    await page.reload();
    const listed = await withCapsule<Summary[]>("return capsule.listRuns();");
    expect(listed.map((run) => [run.id, run.state])).toEqual([
      [first.execution.run_id, "completed"],
    ]);
  });
});

describe("the playground's History", () => {
  let playground: StaticServer;

  beforeAll(async () => {
    // A folder of its own, so that other suites' playground builds are left alone.
    const outDir = join(root, "dist", "playground-journal");
    await build({
      configFile: join(root, "playground", "vite.config.ts"),
      logLevel: "warn",
      build: { outDir, emptyOutDir: true },
    });
    playground = await serveStatic(outDir);
  }, 180_000);

  afterAll(async () => {
    await playground?.close();
  });

  it("lists past runs from the journal (state, task, when, fuel) and shows a run's envelope, as text only", async () => {
    await page.goto(`${playground.origin}/`);
    await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
    await page.waitForSelector("body[data-history=ready]", { timeout: 30_000 });
    expect(await page.textContent("#history")).toContain("No runs yet");
    await page.click("#run");
    await page.waitForSelector("#history .history-row", { timeout: 30_000 });
    // A task whose name, result and error carry markup and terminal control characters.
    const hostile = "<img src=x onerror=window.pwned=1>\u001b[2J\u202e";
    const envelope = (await page.evaluate(
      `import(new URL("capsule/capsule.js", document.baseURI).href).then((capsule) => capsule.run({
        task: ${JSON.stringify(hostile)},
        code: ${JSON.stringify(`import { task } from "@capsule-run/sdk";
          export const hostile = task({ name: ${JSON.stringify(hostile)} }, () => {
            throw new Error("<script>window.pwned = 2</script>\u0007");
          });`)},
      }))`,
    )) as Envelope;
    expect(envelope.error?.error_type).toBe("task_error");
    await page.click("#refresh-history");
    await page.waitForFunction(
      () => document.querySelectorAll("#history .history-row").length === 2,
      null,
      {
        timeout: 30_000,
      },
    );
    const rows = await page.$$eval("#history .history-row", (items) =>
      items.map((row) => ({
        id: (row as HTMLElement).dataset.runId,
        state: row.querySelector(".history-state")?.textContent,
        task: row.querySelector(".history-task")?.textContent,
        when: row.querySelector("time")?.getAttribute("datetime"),
        fuel: row.querySelector(".history-fuel")?.textContent,
      })),
    );
    expect(rows[0]).toMatchObject({
      id: envelope.execution.run_id,
      state: "failed",
      task: "<img src=x onerror=window.pwned=1>\\u001b[2J\\u202e",
    });
    expect(rows[1]).toMatchObject({ state: "completed", task: "main" });
    expect(rows[1]?.fuel).toMatch(/^[\d,. ]+ fuel$/);
    expect(Date.parse(rows[1]?.when ?? "")).toBeGreaterThan(Date.now() - 600_000);
    // Nothing the task chose became markup.
    expect(await page.$$("#history img, #history-viewer img, #history-viewer script")).toHaveLength(
      0,
    );
    await page.click(`#history .history-row[data-run-id="${envelope.execution.run_id}"] button`);
    const shown = (await page.textContent("#history-viewer pre")) ?? "";
    expect(JSON.parse(shown)).toMatchObject({
      success: false,
      error: { error_type: "task_error" },
      execution: { run_id: envelope.execution.run_id },
    });
    expect(shown).toContain("<script>window.pwned = 2</script>");
    for (const raw of ["\u0007", "\u001b", "\u202e"]) expect(shown).not.toContain(raw);
    expect(await page.$$("#history-viewer script, #history-viewer img")).toHaveLength(0);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBe(
      undefined,
    );
    // After a reload the list comes from OPFS.
    await page.reload();
    await page.waitForSelector("body[data-history=ready]", { timeout: 30_000 });
    expect(await page.$$eval("#history .history-row", (items) => items.length)).toBe(2);
  });
});

describe("the page journal's sources", () => {
  it("a source goes with the last run that names it, so pruning runs frees their sources", () => {
    const { Database } = createRequire(import.meta.url)("node-sqlite3-wasm");
    const db = new Database(":memory:");
    try {
      db.exec(SCHEMA_SQL);
      db.exec(SOURCES_SQL);
      const run = (id: string, file: string | null) =>
        db.run(
          "INSERT INTO runs (id, host, entry_task, file, state, started_at) VALUES (?, 'browser', 'main', ?, 'completed', 0)",
          [id, file],
        );
      run("r1", "code:aa");
      run("r2", "code:aa");
      run("r3", "code:bb");
      run("r4", null);
      for (const hash of ["aa", "bb"]) {
        db.run("INSERT INTO sources (sha256, language, code) VALUES (?, 'ts', 'x')", [hash]);
      }
      const kept = () =>
        (db.all("SELECT sha256 FROM sources ORDER BY sha256") as { sha256: string }[]).map(
          (row) => row.sha256,
        );
      db.run("DELETE FROM runs WHERE id = 'r1'");
      expect(kept()).toEqual(["aa", "bb"]);
      db.run("DELETE FROM runs WHERE id IN ('r2', 'r4')");
      expect(kept()).toEqual(["bb"]);
      db.run("DELETE FROM runs WHERE id = 'r3'");
      expect(kept()).toEqual([]);
    } finally {
      db.close();
    }
  });
});

/** The journal's files in OPFS, with their sizes and a digest of their bytes. */
function journalFiles(): Promise<string[]> {
  return page.evaluate(async () => {
    const out: string[] = [];
    const walk = async (dir: FileSystemDirectoryHandle, path: string) => {
      for await (const [name, handle] of (
        dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }
      ).entries()) {
        if (handle.kind === "directory") {
          await walk(handle as FileSystemDirectoryHandle, `${path}/${name}`);
        } else {
          const file = await (handle as FileSystemFileHandle).getFile();
          const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
          const hex = [...new Uint8Array(digest)].map((b) => b.toString(16)).join("");
          out.push(`${path}/${name} ${file.size} ${hex}`);
        }
      }
    };
    const root = await navigator.storage.getDirectory();
    await walk(await root.getDirectoryHandle(".capsule-journal"), "");
    return out.sort();
  });
}
