// `/mcp` of the Workers app in real workerd (the bundle `wrangler deploy` would upload, served by
// Miniflare), with the real MCP client of @modelcontextprotocol/sdk over Streamable HTTP.
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { Miniflare } from "miniflare";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CellResult } from "../core/agent/tools.ts";
import type { Envelope } from "../core/runtime/envelope.ts";
import { buildWorkerBundle, root, serveWorkers } from "./workerd.ts";

const outdir = join(root, "dist/workers-mcp");
const TOKEN = "correct horse battery staple";
let miniflare: Miniflare;
const clients: Client[] = [];

/** fetch through Miniflare, so each Worker answers its own host name. */
const viaMiniflare = ((input: string | URL | Request, init?: RequestInit) =>
  miniflare.dispatchFetch(
    input instanceof Request ? input.url : String(input),
    init as never,
  )) as unknown as typeof fetch;

async function connect(worker: string, token?: string) {
  const client = new Client({ name: "capsule-test", version: "1.0.0" });
  const logs: { level: string; data: unknown }[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push(notification.params);
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`http://${worker}.test/mcp`), {
      fetch: viaMiniflare,
      requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
    }),
  );
  clients.push(client);
  return { client, logs };
}

function text(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === "text" ? first.text : "";
}

beforeAll(async () => {
  await buildWorkerBundle(outdir);
  miniflare = await serveWorkers(outdir, [
    { name: "closed" },
    { name: "guarded", bindings: { CAPSULE_TOKEN: TOKEN } },
  ]);
}, 120_000);

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => {})));
});

afterAll(async () => {
  await miniflare?.dispose();
});

describe("/mcp on Workers (workerd)", () => {
  it("lists execute_javascript only, with no session_id: Python and sessions are not here", async () => {
    const { client } = await connect("guarded", TOKEN);
    expect(client.getServerVersion()?.name).toBe("capsule-portable");
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(["execute_javascript"]);
    expect(tools[0]?.inputSchema.properties).not.toHaveProperty("session_id");
    expect(tools[0]?.description).toContain("Every call starts from a clean sandbox");
  });

  it("runs JavaScript: stdout then the last value, and the envelope as structured content", async () => {
    const { client, logs } = await connect("guarded", TOKEN);
    const result = (await client.callTool({
      name: "execute_javascript",
      arguments: { code: 'console.log("from workerd")\nconst x = 5 + 3\nx * 2' },
    })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(text(result)).toBe("from workerd\n16");
    const envelope = result.structuredContent as unknown as Envelope<CellResult>;
    expect(envelope.success).toBe(true);
    expect(envelope.result?.value).toBe(16);
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(0);
    expect(logs).toEqual([{ level: "info", logger: "execute_javascript", data: "from workerd" }]);
  });

  it("streams a log line as it is written, before the result", async () => {
    const { client } = await connect("guarded", TOKEN);
    let loggedAt = 0;
    client.setNotificationHandler(LoggingMessageNotificationSchema, () => {
      loggedAt = performance.now();
    });
    const result = (await client.callTool({
      name: "execute_javascript",
      arguments: {
        code: 'console.log("started"); await new Promise((resolve) => setTimeout(resolve, 600)); "finished"',
      },
    })) as CallToolResult;
    const done = performance.now();
    expect(text(result)).toBe("started\nfinished");
    expect(loggedAt).toBeGreaterThan(0);
    expect(done - loggedAt).toBeGreaterThanOrEqual(400);
  });

  it("fails with isError naming the error_type: a throw, a spin out of fuel", async () => {
    const { client } = await connect("guarded", TOKEN);
    const thrown = (await client.callTool({
      name: "execute_javascript",
      arguments: { code: 'throw new RangeError("out of range")' },
    })) as CallToolResult;
    expect(thrown.isError).toBe(true);
    expect(text(thrown)).toMatch(/^task_error: RangeError: out of range/);
    const spin = (await client.callTool({
      name: "execute_javascript",
      arguments: { code: "for (;;) {}" },
    })) as CallToolResult;
    expect(spin.isError).toBe(true);
    expect(text(spin)).toMatch(/^fuel_exhausted: /);
  });

  it("answers execute_python and a session_id with a clear error", async () => {
    const { client } = await connect("guarded", TOKEN);
    const python = (await client.callTool({
      name: "execute_python",
      arguments: { code: "1 + 1" },
    })) as CallToolResult;
    expect(python.isError).toBe(true);
    expect(text(python)).toMatch(
      /unknown tool "execute_python" \(Python does not run on this host\)/,
    );
    const session = (await client.callTool({
      name: "execute_javascript",
      arguments: { code: "1", session_id: "s1" },
    })) as CallToolResult;
    expect(session.isError).toBe(true);
    expect(text(session)).toMatch(/Cloudflare Workers, where nothing is kept between requests/);
  });

  it("grants nothing: no network", async () => {
    const { client } = await connect("guarded", TOKEN);
    const result = (await client.callTool({
      name: "execute_javascript",
      arguments: { code: 'await fetch("https://example.com/")' },
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/^permission_denied: /);
  });

  it("refuses a missing or wrong token (401), and runs nothing while no token is set (503)", async () => {
    await expect(connect("guarded")).rejects.toThrow(/Authorization: Bearer <token>/);
    await expect(connect("guarded", "not the token")).rejects.toThrow(
      /the bearer token is not the one this Worker expects/,
    );
    await expect(connect("closed", TOKEN)).rejects.toThrow(/has no CAPSULE_TOKEN secret/);
    const raw = await miniflare.dispatchFetch("http://guarded.test/mcp", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(raw.status).toBe(401);
  });

  it("answers a path that is not a route with a 404 that names /mcp", async () => {
    const missing = await miniflare.dispatchFetch("http://guarded.test/mpc", {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(missing.status).toBe(404);
    const body = (await missing.json()) as { error?: { message?: string } };
    expect(body.error?.message).toMatch(
      /^no route POST \/mpc; use POST \/run, GET \/health, or \/mcp \(the MCP endpoint/,
    );
  });

  it("answers fork_from with a clear error: nothing is kept to copy", async () => {
    const { client } = await connect("guarded", TOKEN);
    const result = (await client.callTool({
      name: "execute_javascript",
      arguments: { code: "1", session_id: "b", fork_from: "a" },
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(
      /fork_from "a" was given, but .*Cloudflare Workers, where nothing is kept between requests/,
    );
  });
});
