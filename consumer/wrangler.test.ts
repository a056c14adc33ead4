// A Workers project as a user makes one: an empty folder with worker.ts (`export default
// createCapsuleApp()` from capsule-portable/workers) and a wrangler.jsonc of name, main and
// compatibility date, nothing more; the packed tarball, wrangler and typescript from npm. Then
// `wrangler deploy --dry-run`, `wrangler types` + the project's own `tsc --strict`, and
// `wrangler dev` on 127.0.0.1 answering POST /run. No compatibility flag and no module rule: the
// engine's `.wasm` import inside node_modules is compiled at deploy time by wrangler's default rules.
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ErrorResponse, RunResponse } from "../adapters/workers/index.ts";
import { wranglerEnv } from "../e2e/workerd.ts";
import {
  install,
  lockedVersion,
  makeProject,
  packProject,
  type StartedServer,
  startServer,
} from "./support.ts";

const execFileAsync = promisify(execFile);

/** The whole Worker, as the README has the user write it. */
const WORKER = `import { createCapsuleApp } from "capsule-portable/workers";

export default createCapsuleApp();
`;

const WRANGLER_CONFIG = `{
  "name": "my-capsule-worker",
  "main": "worker.ts",
  "compatibility_date": "2026-04-01"
}
`;

/** Cloudflare's TypeScript settings for a Worker: runtime types from `wrangler types`. */
const TSCONFIG = {
  compilerOptions: {
    target: "es2022",
    lib: ["es2022"],
    module: "es2022",
    moduleResolution: "bundler",
    types: ["./worker-configuration.d.ts"],
    strict: true,
    isolatedModules: true,
    verbatimModuleSyntax: true,
    noEmit: true,
  },
  include: ["worker.ts", "typed.ts"],
};

/**
 * Beside worker.ts for the type check only: the app is a Worker's exported handler, the answer
 * types are exported, and a wrong option is an error (the declarations are read, not `any`).
 */
const TYPED = `import { createCapsuleApp, type RunResponse } from "capsule-portable/workers";

export const handler = createCapsuleApp({ maxBodyBytes: 1 << 20 }) satisfies ExportedHandler<Env>;
export const fuel = (answer: RunResponse): number => answer.execution.fuel_consumed;
// @ts-expect-error a size is a number of bytes
createCapsuleApp({ maxBodyBytes: "1MB" });
`;

/** A small TypeScript task file, as a caller posts it. */
const GREETING = `import { task } from "@capsule-run/sdk";
interface Greeting { who: string; times: number }
export const main = task({ name: "main", compute: "LOW" }, (who: string): string => {
  const greeting: Greeting = { who, times: 2 };
  return \`Hello, \${greeting.who}!\`.repeat(greeting.times);
});
`;

const SPINNER = `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main", compute: "LOW" }, () => { for (;;) {} });
`;

let project: ReturnType<typeof makeProject>;
const servers: StartedServer[] = [];

const wranglerBin = () => join(project.dir, "node_modules/wrangler/bin/wrangler.js");

/** `npx wrangler <args>` in the project. */
const wrangler = (args: string[]) =>
  execFileAsync(process.execPath, [wranglerBin(), ...args], {
    cwd: project.dir,
    env: wranglerEnv,
    timeout: 120_000,
  });

/** `npx wrangler dev` in the project on 127.0.0.1 and a free port: its origin. */
async function wranglerDev(vars: string[]): Promise<string> {
  const server = await startServer(
    process.execPath,
    [wranglerBin(), "dev", "--ip", "127.0.0.1", "--port", "0"].concat(
      vars.flatMap((item) => ["--var", item]),
      ["--show-interactive-dev-session=false"],
    ),
    { cwd: project.dir, env: wranglerEnv, ready: /Ready on (http:\/\/127\.0\.0\.1:\d+)/ },
  );
  servers.push(server);
  return server.ready[1] as string;
}

async function post(origin: string, body: string) {
  const response = await fetch(`${origin}/run`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  return { status: response.status, json: (await response.json()) as RunResponse & ErrorResponse };
}

beforeAll(async () => {
  const { tarball } = await packProject();
  project = makeProject({
    "package.json": `${JSON.stringify({ name: "my-capsule-worker", private: true, type: "module" }, null, 2)}\n`,
    "worker.ts": WORKER,
    "wrangler.jsonc": WRANGLER_CONFIG,
    "tsconfig.json": `${JSON.stringify(TSCONFIG, null, 2)}\n`,
    "typed.ts": TYPED,
  });
  await install(project.dir, [tarball]);
  await install(
    project.dir,
    [`wrangler@${lockedVersion("wrangler")}`, `typescript@${lockedVersion("typescript")}`],
    true,
  );
}, 300_000);

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  project?.remove();
});

describe("a Workers project using capsule-portable/workers", () => {
  it("builds with wrangler deploy --dry-run, the engine a compiled module beside worker.js", async () => {
    const outdir = join(project.dir, "bundle");
    const { stdout, stderr } = await wrangler(["deploy", "--dry-run", "--outdir", outdir]);
    expect(stdout).toContain("--dry-run: exiting now.");
    expect(stderr).not.toMatch(/WARNING|ERROR/);
    const files = readdirSync(outdir);
    const wasm = files.find((name) => name.endsWith("quickjs-metered.wasm"));
    expect(wasm).toBeDefined();
    const shipped = join(project.dir, "node_modules/capsule-portable/dist/quickjs-metered.wasm");
    expect(readFileSync(join(outdir, wasm as string)).equals(readFileSync(shipped))).toBe(true);
    const worker = readFileSync(join(outdir, "worker.js"), "utf8");
    expect(worker).toContain(`from "./${wasm}"`);
    // Nothing asks for Node's APIs (no nodejs_compat flag needed).
    expect(worker).not.toMatch(/\bfrom\s*["']node:|\brequire\(["']node:/);
  }, 120_000);

  it("type-checks worker.ts with the project's own tsc --strict and wrangler's runtime types", async () => {
    await wrangler(["types"]);
    const tsc = join(project.dir, "node_modules/typescript/bin/tsc");
    const checked = await execFileAsync(process.execPath, [tsc, "-p", "."], {
      cwd: project.dir,
      timeout: 120_000,
    }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? String(error) }));
    expect(checked.stdout).toBe("");
  }, 180_000);

  it("answers POST /run under wrangler dev opened to loopback callers", async () => {
    const origin = await wranglerDev(["CAPSULE_LOCAL_ANONYMOUS:true"]);
    expect(await (await fetch(`${origin}/health`)).json()).toEqual({ status: "ok" });

    const ran = await post(origin, JSON.stringify({ code: GREETING, args: ["Workers"] }));
    expect(ran.status).toBe(200);
    expect(ran.json).toMatchObject({
      success: true,
      result: "Hello, Workers!Hello, Workers!",
      error: null,
      execution: { task_name: "main", retries: 0, host_requests: [] },
      files: {},
    });
    expect(ran.json.execution.fuel_consumed).toBeGreaterThan(0);

    const spun = await post(origin, JSON.stringify({ code: SPINNER }));
    expect(spun.status).toBe(200);
    expect(spun.json).toMatchObject({
      success: false,
      result: null,
      error: { error_type: "fuel_exhausted" },
    });
    expect(spun.json.execution.fuel_consumed).toBeGreaterThanOrEqual(1e8);

    const broken = await post(origin, '{"code": ');
    expect(broken.status).toBe(400);
    expect(broken.json).toMatchObject({ success: false, error: { error_type: "bad_request" } });
    expect(broken.json.error.message).toMatch(/^the body is not JSON/);
  }, 90_000);

  it("runs nothing under wrangler dev without the variable: 503 saying how to set a token", async () => {
    const origin = await wranglerDev([]);
    const refused = await post(origin, JSON.stringify({ code: GREETING }));
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ success: false, error: { error_type: "not_configured" } });
    expect(refused.json.error.message).toContain("wrangler secret put CAPSULE_TOKEN");
    expect((await fetch(`${origin}/health`)).status).toBe(200);
  }, 90_000);
});
