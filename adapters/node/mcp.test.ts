// `capsule mcp` with the real MCP client of @modelcontextprotocol/sdk: over stdio (the client
// spawns `node bin/capsule.mjs mcp`) and over Streamable HTTP (`capsule mcp --http`).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { CellResult } from "../../core/agent/tools.ts";
import type { Envelope } from "./index.ts";
import { packageRoot } from "./paths.ts";
import { makeProject, runCapsule } from "./test/fixtures.ts";

const bin = join(packageRoot, "bin", "capsule.mjs");
const TOKEN = "a token long enough for the server";
const project = makeProject();
const opened: Client[] = [];
const children: ChildProcess[] = [];

interface Logged {
  level: string;
  data: unknown;
  /** performance.now() when it arrived. */
  at: number;
  /** How many results had arrived when this line did. */
  resultsBefore: number;
}

/** A connected client and what it heard. */
interface Connection {
  client: Client;
  logs: Logged[];
  call(name: string, input: Record<string, unknown>): Promise<CallToolResult>;
}

function watch(client: Client): Connection {
  const logs: Logged[] = [];
  let results = 0;
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push({ ...notification.params, at: performance.now(), resultsBefore: results });
  });
  opened.push(client);
  return {
    client,
    logs,
    async call(name, input) {
      const result = (await client.callTool({ name, arguments: input })) as CallToolResult;
      results++;
      return result;
    },
  };
}

async function stdioClient(flags: string[] = [], env: Record<string, string> = {}) {
  const client = new Client({ name: "capsule-test", version: "1.0.0" });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [bin, "mcp", ...flags],
    cwd: project.dir,
    env: { PATH: process.env.PATH ?? "", ...env },
    stderr: "pipe",
  });
  await client.connect(transport);
  return watch(client);
}

function text(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === "text" ? first.text : "";
}

function envelope(result: CallToolResult): Envelope<CellResult> {
  return result.structuredContent as unknown as Envelope<CellResult>;
}

beforeAll(() => {
  if (!existsSync(join(packageRoot, "dist", "cli.mjs"))) {
    throw new Error("dist/cli.mjs is missing: run `node scripts/build.mjs` (npm test does) first");
  }
  mkdirSync(join(project.dir, "data"));
});

afterAll(async () => {
  await Promise.all(opened.map((client) => client.close().catch(() => {})));
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  project.cleanup();
});

describe("capsule mcp over stdio", () => {
  let plain: Connection;
  beforeAll(async () => {
    plain = await stdioClient();
  }, 30_000);

  it("names itself and lists execute_javascript with a JSON Schema of { code, session_id? }", async () => {
    expect(plain.client.getServerVersion()?.name).toBe("capsule-portable");
    const { tools } = await plain.client.listTools();
    const js = tools.find((tool) => tool.name === "execute_javascript");
    expect(js?.inputSchema).toMatchObject({
      type: "object",
      properties: { code: { type: "string" } },
      required: ["code"],
      additionalProperties: false,
    });
    expect(js?.description).toContain("No network access. No file access.");
    expect(js?.annotations?.openWorldHint).toBe(false);
  });

  it("runs JavaScript: the text is stdout then the last value, the envelope is structured content", async () => {
    const result = await plain.call("execute_javascript", {
      code: 'console.log("Hello from JavaScript!")\nlet x = 5 + 3\nx * 2',
    });
    expect(result.isError).toBeFalsy();
    expect(text(result)).toBe("Hello from JavaScript!\n16");
    const run = envelope(result);
    expect(run.success).toBe(true);
    expect(run.result).toMatchObject({ stdout: "Hello from JavaScript!\n", value: 16 });
    expect(run.execution.fuel_consumed).toBeGreaterThan(0);
  });

  it("runs Python: printed text then the last value, print streamed as logs, an exception as isError", async () => {
    const { tools } = await plain.client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(["execute_javascript", "execute_python"]);
    const before = plain.logs.length;
    const result = await plain.call("execute_python", {
      code: 'print("Hello from Python!")\nx = 5 + 3\nx * 2',
    });
    expect(result.isError).toBeFalsy();
    expect(text(result)).toBe("Hello from Python!\n16");
    expect(envelope(result).result?.value).toBe(16);
    expect(plain.logs.slice(before).map(({ data }) => data)).toEqual(["Hello from Python!"]);
    const failed = await plain.call("execute_python", { code: "rows = []\nrows[0]" });
    expect(failed.isError).toBe(true);
    expect(text(failed)).toMatch(/^task_error: IndexError: list index out of range/);
    const dict = await plain.call("execute_python", { code: "{'average': 2.5, 'months': (1, 2)}" });
    expect(text(dict)).toBe('{"average":2.5,"months":[1,2]}');
  }, 120_000);

  it("gives objects back as JSON", async () => {
    const result = await plain.call("execute_javascript", {
      code: "({ average: 2.5, months: [1, 2] })",
    });
    expect(text(result)).toBe('{"average":2.5,"months":[1,2]}');
  });

  it("streams console output as log notifications while the call runs", async () => {
    const before = plain.logs.length;
    const result = await plain.call("execute_javascript", {
      code: 'console.log("step one"); console.warn("careful"); console.error("bad row"); "done"',
    });
    expect(text(result)).toBe("step one\ncareful\nbad row\ndone");
    const lines = plain.logs.slice(before);
    expect(lines.map(({ level, data }) => [level, data])).toEqual([
      ["info", "step one"],
      ["warning", "careful"],
      ["error", "bad row"],
    ]);
    // Each line arrived before the call's result did.
    const resultsBefore = lines[0]?.resultsBefore;
    for (const line of lines) expect(line.resultsBefore).toBe(resultsBefore);
  });

  it("sends a log line as it is written, not with the result", async () => {
    const before = plain.logs.length;
    const result = await plain.call("execute_javascript", {
      code: 'console.log("started"); await new Promise((resolve) => setTimeout(resolve, 600)); "finished"',
    });
    const done = performance.now();
    expect(text(result)).toBe("started\nfinished");
    const started = plain.logs.slice(before).find(({ data }) => data === "started");
    expect(done - (started?.at ?? done)).toBeGreaterThanOrEqual(400);
  });

  it("logs no lower than the level the client sets", async () => {
    await plain.client.setLoggingLevel("warning");
    const before = plain.logs.length;
    await plain.call("execute_javascript", {
      code: 'console.log("quiet"); console.warn("loud"); 1',
    });
    expect(plain.logs.slice(before).map(({ data }) => data)).toEqual(["loud"]);
    await plain.client.setLoggingLevel("debug");
  });

  it("fails with isError and a text naming the error_type and the message", async () => {
    const result = await plain.call("execute_javascript", {
      code: 'throw new TypeError("no such row 7")',
    });
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/^task_error: TypeError: no such row 7/);
    expect(envelope(result).error?.error_type).toBe("task_error");
  });

  it("refuses bad input naming the bad value, without running anything", async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ code: 42 }, /"code" must be a string of source code, got 42/],
      [{}, /the input has no "code"/],
      [{ code: "1", language: "js" }, /unknown input property "language"/],
      [
        { code: "1", session_id: "../../etc" },
        /"session_id" must be 1 to 128 .*got "\.\.\/\.\.\/etc"/,
      ],
    ];
    for (const [input, message] of cases) {
      const result = await plain.call("execute_javascript", input);
      expect(result.isError).toBe(true);
      expect(text(result)).toMatch(message);
      expect(result.structuredContent).toBeUndefined();
    }
    const unknown = await plain.call("execute_ruby", { code: "1" });
    expect(unknown.isError).toBe(true);
    expect(text(unknown)).toMatch(/unknown tool "execute_ruby"; the tools are execute_javascript/);
  });

  it("refuses code over the size limit (1 MiB) and keeps serving", async () => {
    const huge = `"${"x".repeat(1024 * 1024)}"`;
    const result = await plain.call("execute_javascript", { code: huge });
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/"code" is longer than 1048576 bytes \(the limit\)/);
    const after = await plain.call("execute_javascript", { code: "1 + 1" });
    expect(text(after)).toBe("2");
  });

  it("grants nothing by default: no variables, no network, no files", async () => {
    const env = await plain.call("execute_javascript", {
      code: "process.env.CAPSULE_TEST_SECRET ?? 'unset'",
    });
    expect(text(env)).toBe("unset");
    const net = await plain.call("execute_javascript", {
      code: 'await fetch("http://127.0.0.1:9/")',
    });
    expect(net.isError).toBe(true);
    expect(text(net)).toMatch(/^permission_denied: /);
    const file = await plain.call("execute_javascript", {
      code: 'import fs from "node:fs"; fs.writeFileSync("data/x.txt", "hi")',
    });
    expect(file.isError).toBe(true);
    expect(text(file)).toMatch(/permission_denied|denied/);
  });

  it("applies its flags to every call: --compute, --env, --allow-file", async () => {
    const flagged = await stdioClient(
      ["--compute", "20000000", "--env", "CAPSULE_TEST_SECRET", "--allow-file", "data"],
      { CAPSULE_TEST_SECRET: "s3cret" },
    );
    const { tools } = await flagged.client.listTools();
    expect(tools[0]?.description).toContain("Each call gets 20000000 fuel");
    expect(tools[0]?.description).toContain("Environment variables: CAPSULE_TEST_SECRET.");
    expect(tools[0]?.inputSchema.properties).toHaveProperty("session_id");
    const spin = await flagged.call("execute_javascript", { code: "for (;;) {}" });
    expect(spin.isError).toBe(true);
    expect(text(spin)).toMatch(/^fuel_exhausted: /);
    const env = await flagged.call("execute_javascript", {
      code: "process.env.CAPSULE_TEST_SECRET",
    });
    expect(text(env)).toBe("s3cret");
    const file = await flagged.call("execute_javascript", {
      code: 'import fs from "node:fs"; fs.writeFileSync("data/x.txt", "hi"); fs.readFileSync("data/x.txt", "utf8")',
    });
    expect(text(file)).toBe("hi");
  });

  it("keeps a session's functions, variables and classes alive from one call to the next", async () => {
    const define = await plain.call("execute_javascript", {
      code: "let total = 0\nfunction add(n) { total += n; return total }\nclass Counter { constructor() { this.n = 1 } }\nconst c = new Counter()\nadd(5)",
      session_id: "analysis-1",
    });
    expect(text(define)).toBe("5");
    const reuse = await plain.call("execute_javascript", {
      code: "c.n += 1; add(10) + c.n",
      session_id: "analysis-1",
    });
    expect(reuse.isError).toBeFalsy();
    expect(text(reuse)).toBe("17");
  });

  it("keeps a Python session's function and objects alive, and forks it", async () => {
    const define = await plain.call("execute_python", {
      code: "import collections\nseen = collections.Counter()\ndef note(word):\n    seen[word] += 1\n    return seen[word]\nnote('a')",
      session_id: "py-1",
    });
    expect(define.isError, text(define)).toBeFalsy();
    expect(text(define)).toBe("1");
    const reuse = await plain.call("execute_python", { code: "note('a')", session_id: "py-1" });
    expect(text(reuse)).toBe("2");
    const fork = await plain.call("execute_python", {
      code: "note('a')",
      session_id: "py-2",
      fork_from: "py-1",
    });
    expect(text(fork)).toBe("3");
    // The original went on from where the fork left it, not from the fork's call.
    expect(
      text(await plain.call("execute_python", { code: "note('a')", session_id: "py-1" })),
    ).toBe("3");
    const stateless = await plain.call("execute_python", { code: "'note' in globals()" });
    expect(text(stateless)).toBe("False");
  }, 120_000);

  it("keeps sessions apart, and a stateless call sees none of them", async () => {
    await plain.call("execute_javascript", { code: "var secret = 'alpha'", session_id: "s-a" });
    const other = await plain.call("execute_javascript", {
      code: "typeof secret",
      session_id: "s-b",
    });
    expect(text(other)).toBe("undefined");
    const stateless = await plain.call("execute_javascript", { code: "typeof secret" });
    expect(text(stateless)).toBe("undefined");
    const same = await plain.call("execute_javascript", { code: "secret", session_id: "s-a" });
    expect(text(same)).toBe("alpha");
  });

  it("leaves a session as it was when a call fails", async () => {
    await plain.call("execute_javascript", { code: "var kept = 1", session_id: "s-fail" });
    const failed = await plain.call("execute_javascript", {
      code: "kept = 2; throw new Error('nope')",
      session_id: "s-fail",
    });
    expect(failed.isError).toBe(true);
    const after = await plain.call("execute_javascript", { code: "kept", session_id: "s-fail" });
    expect(text(after)).toBe("1");
  });

  it("forks a session with fork_from: the copy keeps its own state while the source changes", async () => {
    const { tools } = await plain.client.listTools();
    const js = tools.find((tool) => tool.name === "execute_javascript");
    expect(js?.inputSchema.properties).toHaveProperty("fork_from");
    expect(js?.description).toContain("fork_from copies an open session into a new session_id");
    await plain.call("execute_javascript", {
      code: "const notes = ['start']\nfunction summary() { return notes.join(' > ') }",
      session_id: "fork-a",
    });
    const forked = await plain.call("execute_javascript", {
      code: "notes.push('in b'); summary()",
      session_id: "fork-b",
      fork_from: "fork-a",
    });
    expect(forked.isError).toBeFalsy();
    expect(text(forked)).toBe("start > in b");
    await plain.call("execute_javascript", { code: "notes.push('in a')", session_id: "fork-a" });
    const a = await plain.call("execute_javascript", { code: "summary()", session_id: "fork-a" });
    const b = await plain.call("execute_javascript", { code: "summary()", session_id: "fork-b" });
    expect([text(a), text(b)]).toEqual(["start > in a", "start > in b"]);
    const missing = await plain.call("execute_javascript", {
      code: "1",
      session_id: "fork-c",
      fork_from: "fork-zzz",
    });
    expect(missing.isError).toBe(true);
    expect(text(missing)).toMatch(/fork_from "fork-zzz" names no open JavaScript session/);
    const bad = await plain.call("execute_javascript", {
      code: "1",
      session_id: "fork-c",
      fork_from: "../a",
    });
    expect(text(bad)).toMatch(/"fork_from" must be 1 to 128 .*got "\.\.\/a"/);
  });

  it("bounds the live sessions (--max-sessions) and says how to go on", async () => {
    const bounded = await stdioClient(["--max-sessions", "1"]);
    expect(text(await bounded.call("execute_javascript", { code: "1", session_id: "one" }))).toBe(
      "1",
    );
    const refused = await bounded.call("execute_javascript", { code: "1", session_id: "two" });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(
      /session_id "two" would open a new session, but 1 is open \(the limit\); reuse a session_id/,
    );
    // The open session and stateless calls still work.
    expect(text(await bounded.call("execute_javascript", { code: "2", session_id: "one" }))).toBe(
      "2",
    );
    expect(text(await bounded.call("execute_javascript", { code: "3" }))).toBe("3");
  });

  it("ends the connection on a message over its limit, saying why on stderr", async () => {
    const child = spawn(process.execPath, [bin, "mcp"], {
      cwd: project.dir,
      stdio: ["pipe", "pipe", "pipe"],
    });
    children.push(child);
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.stdin?.on("error", () => {});
    const code = "x".repeat(7 * 1024 * 1024);
    child.stdin?.write(
      `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "execute_javascript", arguments: { code } } })}\n`,
    );
    const exit = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(exit).toBe(0);
    expect(stderr).toMatch(/capsule mcp: ReadBuffer exceeded maximum size of \d+ bytes/);
  });

  it("exits when the client closes its stdin", async () => {
    const result = await runCapsule(["mcp"], { cwd: project.dir });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("");
  });
});

describe("capsule mcp refuses bad flags with exit code 2, naming the flag", () => {
  const cases: [string[], RegExp][] = [
    [["--ram", "lots"], /--ram: "lots" is not a valid size/],
    [["--compute", "ULTRA"], /--compute: "ULTRA" is not a known compute level/],
    [["--timeout", "soon"], /--timeout: "soon" is not a valid duration/],
    [["--allow-host", "*.*"], /--allow-host\[0\]: "\*\.\*"/],
    [["--allow-file", "missing"], /--allow-file: "missing" is not a directory/],
    [["--mount", "./nowhere::/x:zz"], /--mount/],
    [["--env", "NOT-A-NAME"], /--env: "NOT-A-NAME" is not an environment variable name/],
    [["--max-sessions", "-1"], /--max-sessions/],
    [["--port", "8080"], /--port is for --http/],
    [["--http", "--port", "70000"], /--port: "70000" is not a port number/],
    [["--frobnicate"], /unknown option '--frobnicate'/],
  ];
  for (const [flags, message] of cases) {
    it(flags.join(" "), async () => {
      const result = await runCapsule(["mcp", ...flags], { cwd: project.dir });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stdout).toBe("");
    });
  }

  it("a CAPSULE_MCP_TOKEN too short to be safe", async () => {
    const result = await runCapsule(["mcp", "--http"], {
      cwd: project.dir,
      env: { ...process.env, CAPSULE_MCP_TOKEN: "short" },
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /CAPSULE_MCP_TOKEN: a token of 5 characters is too easy to guess/,
    );
  });
});

/** `capsule mcp --http` as a child process, and the address it printed. */
async function startHttp(
  flags: string[] = [],
  env: Record<string, string> = { CAPSULE_MCP_TOKEN: TOKEN },
): Promise<{ url: string; stderr: () => string; child: ChildProcess }> {
  const child = spawn(process.execPath, [bin, "mcp", "--http", "--port", "0", ...flags], {
    cwd: project.dir,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
      const match = /serving (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(stderr);
      if (match?.[1] && (env.CAPSULE_MCP_TOKEN || /bearer token \S+/.test(stderr))) {
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`capsule mcp --http exited ${code}: ${stderr}`)));
  });
  return { url, stderr: () => stderr, child };
}

/** A client over Streamable HTTP; `end()` closes its MCP session (DELETE) as a client should. */
async function httpClient(
  url: string,
  token = TOKEN,
): Promise<Connection & { end: () => Promise<void> }> {
  const client = new Client({ name: "capsule-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return {
    ...watch(client),
    async end() {
      await transport.terminateSession();
      await client.close();
    },
  };
}

describe("capsule mcp --http", () => {
  let server: Awaited<ReturnType<typeof startHttp>>;
  beforeAll(async () => {
    server = await startHttp(["--max-clients", "2"]);
  }, 30_000);

  it("serves on 127.0.0.1 and runs JavaScript with a real client", async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const connection = await httpClient(server.url);
    const { tools } = await connection.client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("execute_javascript");
    const result = await connection.call("execute_javascript", {
      code: 'console.log("over http"); 6 * 7',
    });
    expect(text(result)).toBe("over http\n42");
    expect(envelope(result).result?.value).toBe(42);
    // The log line came on the call's own response stream, before its result.
    expect(connection.logs.map(({ data, resultsBefore }) => [data, resultsBefore])).toEqual([
      ["over http", 0],
    ]);
    const slow = await connection.call("execute_javascript", {
      code: 'console.log("started"); await new Promise((resolve) => setTimeout(resolve, 600)); "finished"',
    });
    const done = performance.now();
    expect(text(slow)).toBe("started\nfinished");
    const started = connection.logs.find(({ data }) => data === "started");
    expect(done - (started?.at ?? done)).toBeGreaterThanOrEqual(400);
    const failed = await connection.call("execute_javascript", { code: "null.x" });
    expect(failed.isError).toBe(true);
    expect(text(failed)).toMatch(/^task_error: TypeError/);
    await connection.end();
  });

  it("refuses a missing or wrong bearer token with 401", async () => {
    const initialize = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "x", version: "1" },
      },
    });
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    const none = await fetch(server.url, { method: "POST", headers, body: initialize });
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toBe('Bearer realm="capsule"');
    expect(await none.text()).toMatch(/needs an Authorization: Bearer <token> header/);
    const wrong = await fetch(server.url, {
      method: "POST",
      headers: { ...headers, authorization: `Bearer ${TOKEN}x` },
      body: initialize,
    });
    expect(wrong.status).toBe(401);
    await expect(httpClient(server.url, "not the token at all")).rejects.toThrow(
      /the bearer token is not the one this server expects/,
    );
  });

  it("answers only its own Host (DNS rebinding)", async () => {
    const port = new URL(server.url).port;
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const request = httpRequest(
        {
          host: "127.0.0.1",
          port,
          path: "/mcp",
          method: "POST",
          headers: { host: `attacker.example:${port}`, authorization: `Bearer ${TOKEN}` },
        },
        (response) => {
          response.resume();
          resolve(response.statusCode);
        },
      );
      request.on("error", reject);
      request.end("{}");
    });
    expect(status).toBe(403);
  });

  it("refuses a body over its limit with 413", async () => {
    const connection = await httpClient(server.url);
    const big = `"${"y".repeat(7 * 1024 * 1024)}"`;
    await expect(connection.call("execute_javascript", { code: big })).rejects.toThrow(
      /413|larger than/,
    );
    await connection.end();
  });

  it("bounds the MCP sessions open at once (--max-clients)", async () => {
    const first = await httpClient(server.url);
    const second = await httpClient(server.url);
    await expect(httpClient(server.url)).rejects.toThrow(/2 MCP sessions are open \(the limit\)/);
    await first.end();
    await second.end();
    // A closed session frees its place.
    const third = await httpClient(server.url);
    await third.end();
  });

  it("scopes session_ids to the MCP session: another client with the same token cannot reach them", async () => {
    const alice = await httpClient(server.url);
    const bob = await httpClient(server.url);
    await alice.call("execute_javascript", {
      code: "const note = 'for alice only'; function greet() { return 'hi ' + note }",
      session_id: "shared-name",
    });
    const kept = await alice.call("execute_javascript", {
      code: "greet()",
      session_id: "shared-name",
    });
    expect(text(kept)).toBe("hi for alice only");
    const probe = await bob.call("execute_javascript", {
      code: "typeof greet + ' ' + typeof note",
      session_id: "shared-name",
    });
    expect(text(probe)).toBe("undefined undefined");
    await alice.end();
    await bob.end();
  });

  it("closes an MCP session idle longer than --client-idle, with its code sessions", async () => {
    const short = await startHttp(["--client-idle", "1s", "--max-clients", "1"]);
    const connection = await httpClient(short.url);
    await connection.call("execute_javascript", { code: "var x = 1", session_id: "s" });
    // A second client is refused while the first is open, and let in once it has been closed:
    // waited for, not slept on, since a loaded machine may run the idle check late.
    const next = await vi.waitFor(() => httpClient(short.url), { timeout: 20_000, interval: 250 });
    await next.end();
    await expect(
      connection.call("execute_javascript", { code: "x", session_id: "s" }),
    ).rejects.toThrow(/no such MCP session \(it was closed, expired or never existed\)/);
  });

  it("prints a generated token when CAPSULE_MCP_TOKEN is not set, and accepts only it", async () => {
    const generated = await startHttp([], {});
    const token = /bearer token (\S+)/.exec(generated.stderr())?.[1] ?? "";
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const connection = await httpClient(generated.url, token);
    expect(text(await connection.call("execute_javascript", { code: "1 + 1" }))).toBe("2");
    await expect(httpClient(generated.url, TOKEN)).rejects.toThrow(/bearer token is not the one/);
    await connection.end();
  });

  it("forks over HTTP, and bounds what sessions hold (CAPSULE_SESSION_MEMORY)", async () => {
    const small = await startHttp([], {
      CAPSULE_MCP_TOKEN: TOKEN,
      CAPSULE_SESSION_MEMORY: "100MB",
    });
    const connection = await httpClient(small.url);
    await connection.call("execute_javascript", {
      code: "let seen = ['a']; const show = () => seen.join()",
      session_id: "A",
    });
    const fork = await connection.call("execute_javascript", {
      code: "seen.push('b'); show()",
      session_id: "B",
      fork_from: "A",
    });
    expect(text(fork)).toBe("a,b");
    await connection.call("execute_javascript", { code: "seen.push('changed')", session_id: "A" });
    const b = await connection.call("execute_javascript", { code: "show()", session_id: "B" });
    expect(text(b)).toBe("a,b");
    const taken = await connection.call("execute_javascript", {
      code: "1",
      session_id: "A",
      fork_from: "B",
    });
    expect(text(taken)).toMatch(
      /session_id "A" is already open, and fork_from copies into a new session/,
    );
    // Another client cannot copy this client's session: its ids are not there.
    const other = await httpClient(small.url);
    const stolen = await other.call("execute_javascript", {
      code: "show()",
      session_id: "mine",
      fork_from: "A",
    });
    expect(stolen.isError).toBe(true);
    expect(text(stolen)).toMatch(/fork_from "A" names no open JavaScript session/);
    await other.end();
    // A model hoarding memory in session after session is refused once 100 MB are held.
    const texts: string[] = [];
    for (let i = 0; i < 4; i++) {
      const result = await connection.call("execute_javascript", {
        code: `const hoard = new Uint8Array(40e6).fill(${i + 1}); hoard.length`,
        session_id: `hoard-${i}`,
      });
      texts.push(result.isError ? text(result) : "kept");
    }
    expect(texts.slice(0, 2)).toEqual(["kept", "kept"]);
    expect(texts[2]).toMatch(
      /^memory_exceeded: session_id "hoard-2": the session's state after this call was not kept: its state of \d+(\.\d)? MiB does not fit in the 100 MiB the session images of this process may hold together/,
    );
    const first = await connection.call("execute_javascript", {
      code: "hoard[0]",
      session_id: "hoard-0",
    });
    expect(text(first)).toBe("1");
    await connection.end();
  });
});
