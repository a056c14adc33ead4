// The Workers adapter in real workerd: the bundle `wrangler deploy` would upload, run by Miniflare
// on 127.0.0.1, and the example Worker started with `wrangler dev` as users start it.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileFile } from "../adapters/node/compile.ts";
import { run as runOnNode } from "../adapters/node/index.ts";
import type { ErrorResponse, RunResponse } from "../adapters/workers/index.ts";
import {
  buildWorkerBundle,
  wranglerConfig as config,
  root,
  serveWorkers,
  wranglerBin,
  wranglerEnv,
} from "./workerd.ts";

const outdir = join(root, "dist/workers");
const TOKEN = "correct horse battery staple";
const PAGE_ORIGIN = "https://app.example";
const GZIP_BUDGET_BYTES = 1024 * 1024;

/** A task file as a caller sends it: the SDK and node:fs imported, as on every other host. */
const taskFile = (body: string) =>
  `import { task } from "@capsule-run/sdk";\nimport fs from "node:fs";\n${body}`;

let miniflare: Miniflare;
let server: Server;
let serverOrigin: string;

async function post(
  body: unknown,
  init: {
    worker?: "open" | "guarded" | "closed" | "local" | "both";
    headers?: Record<string, string>;
    raw?: string | Uint8Array;
  } = {},
): Promise<{ status: number; json: RunResponse | ErrorResponse }> {
  const response = await miniflare.dispatchFetch(`http://${init.worker ?? "open"}.test/run`, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: init.raw ?? JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as RunResponse | ErrorResponse };
}

async function run(code: string, extra: Record<string, unknown> = {}): Promise<RunResponse> {
  const { status, json } = await post({ code, language: "ts", ...extra });
  expect(status).toBe(200);
  return json as RunResponse;
}

beforeAll(async () => {
  await buildWorkerBundle(outdir);
  server = createServer((request, response) => {
    if (request.url === "/hop") {
      response.writeHead(302, { location: "http://evil.test/steal" }).end();
      return;
    }
    response.writeHead(200, { "content-type": "text/plain" }).end(`local ${request.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  serverOrigin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Each Worker answers its own host name: open.test, guarded.test, ...; the first one, as
  // deployed with nothing set, also answers every other host (127.0.0.1 among them).
  miniflare = await serveWorkers(outdir, [
    { name: "closed" },
    { name: "open", bindings: { CAPSULE_ALLOW_ANONYMOUS: "true" } },
    { name: "guarded", bindings: { CAPSULE_TOKEN: TOKEN, CAPSULE_CORS_ORIGINS: PAGE_ORIGIN } },
    { name: "local", bindings: { CAPSULE_LOCAL_ANONYMOUS: "true" } },
    {
      name: "both",
      bindings: { CAPSULE_TOKEN: TOKEN, CAPSULE_ALLOW_ANONYMOUS: "true" },
    },
  ]);
}, 60_000);

afterAll(async () => {
  await miniflare?.dispose();
  await new Promise((resolve) => server?.close(resolve));
});

describe("the Worker bundle", () => {
  it("fits the size budget: worker.js and the engine under 1 MB gzip", () => {
    const gzipped = readdirSync(outdir)
      .filter((name) => name.endsWith(".js") || name.endsWith(".wasm"))
      .reduce((sum, name) => sum + gzipSync(readFileSync(join(outdir, name))).length, 0);
    expect(gzipped).toBeGreaterThan(100_000);
    expect(gzipped).toBeLessThanOrEqual(GZIP_BUDGET_BYTES);
  });

  it("answers GET /health, and 404 with the routes it has", async () => {
    const health = await miniflare.dispatchFetch("http://open.test/health");
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });
    const missing = await miniflare.dispatchFetch("http://open.test/nope");
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorResponse).error?.message).toContain("POST /run");
  });
});

describe("POST /run", () => {
  it("runs a TypeScript task and answers with its envelope", async () => {
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", compute: "LOW" },
        (who: string): string => \`Hello, \${who}!\`);`),
      { args: ["Workers"] },
    );
    expect(envelope).toMatchObject({
      success: true,
      result: "Hello, Workers!",
      error: null,
      execution: { task_name: "main", retries: 0, host_requests: [] },
      files: {},
    });
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
  });

  it("spends the same fuel as Node on the same task file", async () => {
    const code = taskFile(`export const main = task({ name: "main" }, (n: string) => {
      const words = JSON.stringify([...Array(Number(n)).keys()].map((i) => ({ i, word: "w" + i })));
      return words.match(/w\\d+/g)?.length;
    });`);
    const onNode = await runOnNode({ code, language: "ts", args: ["200"], threads: 0 });
    const onWorkers = await run(code, { args: ["200"] });
    expect(onWorkers.result).toBe(200);
    expect(onNode.result).toBe(200);
    expect(onWorkers.execution.fuel_consumed).toBeGreaterThan(0);
    expect(onWorkers.execution.fuel_consumed).toBe(onNode.execution.fuel_consumed);
  });

  it("runs a task bundled ahead of time on Node (files and all) posted as JavaScript", async () => {
    const project = mkdtempSync(join(tmpdir(), "capsule-ahead-"));
    try {
      writeFileSync(
        join(project, "words.ts"),
        "export const shout = (s: string) => s.toUpperCase();\n",
      );
      writeFileSync(
        join(project, "main.ts"),
        'import { task } from "@capsule-run/sdk";\nimport { shout } from "./words.ts";\nexport const main = task({ name: "main" }, (who: string) => shout(who));\n',
      );
      const bundle = await compileFile("main.ts", project, {
        sdkEntry: join(root, "sdk/index.ts"),
        cacheDir: join(project, ".cache"),
      });
      expect(bundle.code).not.toMatch(/^import /m);
      const envelope = await run(bundle.code, { language: "js", args: ["ahead"] });
      expect(envelope.error).toBeNull();
      expect(envelope.result).toBe("AHEAD");
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });

  it("runs sub-tasks in their own sandboxes, concurrently, each with its envelope", async () => {
    const envelope = await run(
      taskFile(`
        const square = task({ name: "square", compute: "LOW" }, (n: number) => n * n);
        const fail = task({ name: "fail" }, () => { throw new Error("sub-task broke"); });
        export const main = task({ name: "main" }, async () => {
          const squares = await Promise.all([1, 2, 3].map((n) => square(n)));
          const failed = await fail();
          return { squares: squares.map((e) => e.result), failed: failed.error };
        });`),
    );
    expect(envelope.result).toEqual({
      squares: [1, 4, 9],
      failed: { error_type: "task_error", message: expect.stringContaining("sub-task broke") },
    });
  });

  it("stops a task that spends its fuel", async () => {
    const envelope = await run(
      taskFile(
        `export const main = task({ name: "main", compute: "LOW" }, () => { for (;;) {} });`,
      ),
    );
    expect(envelope.error?.error_type).toBe("fuel_exhausted");
    expect(envelope.execution.fuel_consumed).toBe(1e8);
  });

  it("stops a busy loop at its timeout", async () => {
    const started = performance.now();
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", compute: "HIGH", timeout: "300ms" },
        () => { for (;;) {} });`),
    );
    expect(envelope.error).toEqual({ error_type: "timeout", message: expect.any(String) });
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("holds the isolate's requests to one memory budget: a task over it is refused, the rest wait their turn", async () => {
    const over = await run(
      taskFile(`export const main = task({ name: "main", ram: "97MB" }, () => "ran");`),
    );
    expect(over.error).toEqual({
      error_type: "config_error",
      message:
        'task "main" asks for ram of 97 MiB, more than the 96 MiB all sandboxes of this Worker\'s isolate may hold together; ask for at most "96MB"',
    });
    // Three requests of 64MB at once on one isolate.
    const holding = taskFile(`export const main = task({ name: "main", ram: "64MB" }, async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return "held";
    });`);
    const started = performance.now();
    const envelopes = await Promise.all([run(holding), run(holding), run(holding)]);
    expect(envelopes.map((e) => e.result)).toEqual(["held", "held", "held"]);
    // Each holds its 64 MiB for 200 ms and only one fits: they took turns (a lower bound only).
    expect(performance.now() - started).toBeGreaterThanOrEqual(600);
  });

  it("holds a task to its memory cap", async () => {
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", ram: "8MB" }, () => {
        const kept: string[] = [];
        for (;;) kept.push("x".repeat(100_000) + kept.length);
      });`),
    );
    expect(envelope.error?.error_type).toBe("memory_exceeded");
    expect(envelope.execution.ram_used).toBeLessThanOrEqual(8 * 1024 * 1024);
  });

  it("answers a compile error as a failed envelope, with its position", async () => {
    const envelope = await run("export const x: number = ;");
    expect(envelope.success).toBe(false);
    expect(envelope.error?.error_type).toBe("compile_error");
    expect(envelope.error?.message).toContain("<task>.ts:1:");
  });

  it("shows a task only the variables it names, from the request's env", async () => {
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", envVariables: ["GREETING"] },
        () => [process.env.GREETING, process.env.SECRET ?? "hidden"]);`),
      { env: { GREETING: "hi", SECRET: "s3cret" } },
    );
    expect(envelope.result).toEqual(["hi", "hidden"]);
  });
});

describe("network", () => {
  it("fetches from an allowed host through the Worker's fetch", async () => {
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] },
        async (url: string) => {
          const response = await fetch(url);
          return [response.status, await response.text()];
        });`),
      { args: [`${serverOrigin}/data`] },
    );
    expect(envelope.result).toEqual([200, "local /data"]);
    expect(envelope.execution.host_requests).toEqual([
      expect.objectContaining({ method: "GET", url: `${serverOrigin}/data`, status: 200 }),
    ]);
  });

  it("refuses hosts not allowed, loopback by name, and a redirect hop to another host", async () => {
    const origin = serverOrigin;
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async () => {
          const outcomes: string[] = [];
          for (const url of ["https://example.com/", "${origin.replace("127.0.0.1", "localhost")}/", "${origin}/hop"]) {
            try { outcomes.push(String((await fetch(url)).status)); }
            catch (error) { outcomes.push((error as Error).message); }
          }
          return outcomes;
        });`),
    );
    const [other, byName, hop] = envelope.result as string[];
    expect(other).toContain('host "example.com" is not in allowedHosts');
    expect(byName).toContain('host "localhost" is not in allowedHosts');
    expect(hop).toContain('host "evil.test" is not in allowedHosts');
    expect(envelope.execution.host_requests.map((r) => r.status)).toEqual([null, null, 302, null]);
  });

  it("ends a task whose refused fetch it does not catch as permission_denied", async () => {
    const envelope = await run(
      taskFile(
        `export const main = task({ name: "main" }, async (url: string) => (await fetch(url)).status);`,
      ),
      { args: [`${serverOrigin}/`] },
    );
    expect(envelope.error?.error_type).toBe("permission_denied");
  });
});

describe("files", () => {
  const reader = taskFile(`
    const writer = task({ name: "writer", allowedFiles: ["./out"] }, (text: string) => {
      fs.writeFileSync("./out/upper.txt", text);
      fs.writeFileSync("./out/bytes.bin", new Uint8Array([0xff, 0x00, 0x80]));
      fs.rmSync("./out/stale.txt");
      return fs.readdirSync("./out").sort();
    });
    export const main = task({ name: "main", allowedFiles: [{ path: "./data", mode: "read-only" }] },
      async () => {
        const text = fs.readFileSync("./data/in.txt", "utf8");
        const bytes = [...fs.readFileSync("./data/raw.bin")];
        const refused: string[] = [];
        try { fs.writeFileSync("./data/in.txt", "changed"); } catch (e) { refused.push((e as NodeJS.ErrnoException).code ?? ""); }
        try { fs.readFileSync("./secrets/key.txt"); } catch (e) { refused.push((e as NodeJS.ErrnoException).code ?? ""); }
        try { fs.readFileSync("./out/stale.txt"); } catch (e) { refused.push((e as NodeJS.ErrnoException).code ?? ""); }
        const listing = await writer(text.toUpperCase());
        return { text, bytes, refused, listing: listing.result };
      });`);

  it("seeds the tree from the request and returns what the task changed", async () => {
    const envelope = await run(reader, {
      files: {
        "data/in.txt": "hello files",
        "data/raw.bin": { base64: "AAEC/w==" },
        "out/stale.txt": "old",
        "secrets/key.txt": "never read",
      },
    });
    expect(envelope.error).toBeNull();
    expect(envelope.result).toEqual({
      text: "hello files",
      bytes: [0, 1, 2, 255],
      refused: ["EROFS", "EACCES", "EACCES"],
      listing: ["bytes.bin", "upper.txt"],
    });
    expect(envelope.files).toEqual({
      "out/upper.txt": "HELLO FILES",
      "out/bytes.bin": { base64: "/wCA" },
      "out/stale.txt": null,
    });
  });

  it("answers the README's curl example as the README says", async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Cloudflare Workers"));
    const curl = /curl -s [^\n]*\/run[\s\S]*?-d '([\s\S]*?)'\n/.exec(section);
    expect(curl, "the README's Workers section has a curl call with a -d body").not.toBeNull();
    const { status, json } = await post(undefined, { raw: curl?.[1] ?? "" });
    expect(status).toBe(200);
    expect(json).toMatchObject({
      success: true,
      result: "hello, edge",
      files: { "data/out.txt": "edge" },
    });
  });

  it("creates a granted directory the request sent no files for", async () => {
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", allowedFiles: ["./results"] }, () => {
        fs.mkdirSync("./results/deep/er", { recursive: true });
        fs.writeFileSync("./results/deep/er/answer.json", JSON.stringify({ answer: 42 }));
        return fs.readdirSync("./results");
      });`),
    );
    expect(envelope.result).toEqual(["deep"]);
    expect(envelope.files).toEqual({ "results/deep/er/answer.json": '{"answer":42}' });
  });

  it("refuses writes past the run's file budget with EFBIG, and counts removals", async () => {
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", allowedFiles: ["./out"] }, () => {
        const chunk = new Uint8Array(1024 * 1024).fill(0xff);
        let written = 0;
        let refusal = "";
        for (;;) {
          try { fs.writeFileSync(\`./out/\${written}.bin\`, chunk); written++; }
          catch (error) { refusal = (error as NodeJS.ErrnoException).code ?? ""; break; }
        }
        fs.rmSync("./out/0.bin");
        fs.writeFileSync("./out/again.bin", chunk);
        for (const name of fs.readdirSync("./out")) fs.rmSync(\`./out/\${name}\`);
        return [written, refusal];
      });`),
      { files: { "out/keep.txt": "seeded" } },
    );
    // 16 MiB in all: the seeded file leaves room for 15 more MiB.
    expect(envelope.result).toEqual([15, "EFBIG"]);
    expect(envelope.files).toEqual({ "out/keep.txt": null });
  });
});

describe("requests the Worker refuses", () => {
  const refusal = async (body: unknown, raw?: string | Uint8Array) => {
    const { status, json } = await post(body, { raw });
    expect(status).toBe(400);
    expect(json.success).toBe(false);
    expect(json.error?.error_type).toBe("bad_request");
    return json.error?.message ?? "";
  };

  it("answers 400 for a body that is not JSON", async () => {
    expect(await refusal(null, "{code: oops")).toContain("the body is not JSON");
  });

  it("answers 400 for a body that is not UTF-8, rather than running U+FFFD in its place", async () => {
    const before = new TextEncoder().encode('{"code": "export const main = () => \'');
    const after = new TextEncoder().encode("';\"}");
    const body = new Uint8Array([...before, 0xff, 0xfe, ...after]);
    expect(await refusal(null, body)).toBe("the body is not UTF-8; send JSON encoded as UTF-8");
  });

  it("answers 400 naming the field and value for wrong types", async () => {
    expect(await refusal({ code: 42 })).toBe(
      "code: expected the task's source as a string, got 42",
    );
    expect(await refusal({ language: "ts" })).toContain("code: expected");
    expect(await refusal({ code: "", args: "a b" })).toBe(
      'args: expected an array of strings, got "a b"',
    );
    expect(await refusal({ code: "", env: { PORT: 80 } })).toContain("env.PORT: expected a string");
    expect(await refusal({ code: "", files: { "data/x": 1 } })).toContain('files["data/x"]');
    expect(await refusal({ code: "", files: { "../etc/passwd": "x" } })).toContain(
      '"../etc/passwd" is not a path relative to the project root',
    );
    expect(await refusal({ code: "", files: { a: "x", "a/b": "y" } })).toContain(
      '"a" is a file, so "a/b" cannot lie inside it',
    );
    expect(await refusal({ code: "", files: { a: { base64: "**" } } })).toContain("is not base64");
    expect(await refusal({ code: "", timeout: 5 })).toContain('unknown field "timeout"');
    expect(await refusal([1, 2])).toContain("the body must be a JSON object");
  });

  it("answers 400 for a language it does not run, saying where Python runs", async () => {
    expect(await refusal({ code: "print(1)", language: "py" })).toBe(
      'language: "py" is not supported on Workers (Python tasks run on Node and in web pages); use "ts" or "js"',
    );
    expect(await refusal({ code: "x", language: "rb" })).toBe(
      'language: "rb" is not supported; use "ts" or "js"',
    );
  });

  it("answers 400 for a body over the size limit", async () => {
    const message = await refusal(null, JSON.stringify({ code: "x".repeat(9 * 1024 * 1024) }));
    expect(message).toContain("larger than 8388608 bytes");
  });

  it("answers 400 naming the depth limit for a path of 80,000 segments, in bounded time", async () => {
    const path = Array(80_000).fill("a").join("/");
    const message = await refusal({ code: "", files: { [path]: "x" } });
    expect(message).toContain("80000 segments deep, over the limit of 64 (the path depth limit)");
  });

  it("runs a request at every files limit: 1,562 paths of 64 segments, 100,000 in all", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 1562; i++) files[`${i}/${"s/".repeat(62)}s`] = "";
    const envelope = await run(
      taskFile(`export const main = task({ name: "main", compute: "LOW" }, () => "ran");`),
      { files },
    );
    expect(envelope).toMatchObject({ success: true, result: "ran", files: {} });
    const over = { ...files, [`x/${"s/".repeat(38)}s`]: "" };
    expect(await refusal({ code: "", files: over })).toContain("more than 100000 path segments");
  });

  it("answers 400 for too many files, and for arguments nested a million deep", async () => {
    const files = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`f${i}`, ""]));
    expect(await refusal({ code: "", files })).toContain("over the limit of 10000 files");
    const nested = `${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}`;
    expect(await refusal(null, `{"code": "", "args": ${nested}}`)).toMatch(
      /^args: expected an array of strings, got \[\[\[/,
    );
  });
});

describe("auth and CORS", () => {
  const hello = taskFile(`export const main = task({ name: "main" }, () => "let in");`);

  it("needs the bearer token when the CAPSULE_TOKEN secret is set", async () => {
    const none = await post({ code: hello }, { worker: "guarded" });
    expect(none.status).toBe(401);
    expect(none.json.error?.message).toContain("Authorization: Bearer");
    const wrong = await post(
      { code: hello },
      { worker: "guarded", headers: { authorization: `Bearer ${TOKEN}x` } },
    );
    expect(wrong.status).toBe(401);
    const right = await post(
      { code: hello },
      { worker: "guarded", headers: { authorization: `Bearer ${TOKEN}` } },
    );
    expect(right.status).toBe(200);
    expect(right.json).toMatchObject({ success: true, result: "let in" });
  });

  it("runs nothing while no token is set: 503 saying how to set one, on every route but /health", async () => {
    for (const worker of ["closed", "local"] as const) {
      const refused = await post({ code: hello }, { worker });
      expect(refused.status).toBe(503);
      expect(refused.json).toMatchObject({
        success: false,
        error: { error_type: "not_configured" },
      });
      expect(refused.json.error?.message).toContain("wrangler secret put CAPSULE_TOKEN");
      // A bearer token is no way in while the Worker has none to compare with.
      const guessed = await post(
        { code: hello },
        { worker, headers: { authorization: "Bearer anything" } },
      );
      expect(guessed.status).toBe(503);
      for (const [method, path] of [
        ["GET", "/run"],
        ["GET", "/runs"],
        ["POST", "/health"],
        ["OPTIONS", "/run"],
      ]) {
        const other = await miniflare.dispatchFetch(`http://${worker}.test${path}`, { method });
        expect(other.status, `${method} ${path}`).toBe(503);
        await other.arrayBuffer();
      }
      const health = await miniflare.dispatchFetch(`http://${worker}.test/health`);
      expect(health.status).toBe(200);
      await health.arrayBuffer();
    }
  });

  it("opens to loopback callers only with CAPSULE_LOCAL_ANONYMOUS, never on a Host header", async () => {
    // The closed Worker answers 127.0.0.1: a loopback address alone opens nothing.
    const loopback = await miniflare.dispatchFetch("http://127.0.0.1/run", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ code: hello }),
    });
    expect(loopback.status).toBe(503);
    await loopback.arrayBuffer();
    // The local variable set, but the request names another host, whatever its Host header says.
    const forged = await post({ code: hello }, { worker: "local", headers: { host: "localhost" } });
    expect(forged.status).toBe(503);
  });

  it("opens to anyone only with CAPSULE_ALLOW_ANONYMOUS; a token, once set, is always required", async () => {
    const open = await post({ code: hello }, { worker: "open" });
    expect(open.status).toBe(200);
    expect(open.json).toMatchObject({ success: true, result: "let in" });
    const both = await post({ code: hello }, { worker: "both" });
    expect(both.status).toBe(401);
    const withToken = await post(
      { code: hello },
      { worker: "both", headers: { authorization: `Bearer ${TOKEN}` } },
    );
    expect(withToken.status).toBe(200);
  });

  it("checks the token before reading the body", async () => {
    const { status } = await post(null, { worker: "guarded", raw: "not json" });
    expect(status).toBe(401);
  });

  it("sends CORS headers only for the origins CAPSULE_CORS_ORIGINS lists", async () => {
    const preflight = async (name: string) => {
      return miniflare.dispatchFetch(`http://${name}.test/run`, {
        method: "OPTIONS",
        headers: {
          origin: PAGE_ORIGIN,
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization, content-type",
        },
      });
    };
    const open = await preflight("open");
    expect(open.headers.get("access-control-allow-origin")).toBeNull();
    await open.arrayBuffer();
    const guarded = await preflight("guarded");
    expect(guarded.status).toBe(204);
    expect(guarded.headers.get("access-control-allow-origin")).toBe(PAGE_ORIGIN);
    expect(guarded.headers.get("access-control-allow-headers")).toContain("authorization");
  });
});

describe("wrangler dev", () => {
  let child: ChildProcess | undefined;
  let state: string | undefined;

  afterAll(async () => {
    // Its own process group (setsid): wrangler, esbuild and workerd all end together.
    const pid = child?.pid;
    if (pid !== undefined && child?.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      process.kill(-pid, "SIGTERM");
      const timer = setTimeout(() => {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }, 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (state) rmSync(state, { recursive: true, force: true });
  });

  it("serves the example Worker over HTTP as users start it", async () => {
    state = mkdtempSync(join(tmpdir(), "capsule-wrangler-"));
    child = spawn(
      process.execPath,
      [wranglerBin, "dev", "-c", config, "--ip", "127.0.0.1", "--port", "0"].concat([
        // As the README says to start it on one's own machine: open to loopback callers.
        "--var",
        "CAPSULE_LOCAL_ANONYMOUS:true",
        "--persist-to",
        state,
        "--show-interactive-dev-session=false",
      ]),
      { cwd: root, env: wranglerEnv, detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    const origin = await new Promise<string>((resolve, reject) => {
      let output = "";
      const timer = setTimeout(
        () => reject(new Error(`wrangler dev did not start:\n${output}`)),
        30_000,
      );
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        const ready = /Ready on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (ready?.[1]) {
          clearTimeout(timer);
          resolve(ready[1]);
        }
      };
      child?.stdout?.on("data", read);
      child?.stderr?.on("data", read);
      child?.on("exit", (code) => reject(new Error(`wrangler dev exited (${code}):\n${output}`)));
    });
    expect(await (await fetch(`${origin}/health`)).json()).toEqual({ status: "ok" });
    const response = await fetch(`${origin}/run`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      // The repository's first example, unchanged: a task file written for Capsule.
      body: JSON.stringify({
        code: readFileSync(join(root, "examples/hello.ts"), "utf8"),
        language: "ts",
      }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ success: true, result: "Hello from Capsule!" });
  }, 45_000);
});
