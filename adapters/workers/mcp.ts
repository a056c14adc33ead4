/**
 * `/mcp` on Workers: the MCP server of core/agent/mcp-server.ts over Streamable HTTP, stateless
 * (every request is answered by a fresh server, no `Mcp-Session-Id`), behind the app's bearer
 * token like `/run`.
 *
 * What it offers: `execute_javascript` only (Python does not run on Workers), and no sessions: a
 * call with a `session_id` gets an isError result saying so, since an isolate keeps nothing
 * between requests. Every call is a cell in fresh sandboxes with the agent limits (LOW compute,
 * 30s) and 16MB of memory (the isolate's 128 MB is shared), with no network, no files and no
 * environment variables. Console output streams back as log notifications on the call's response.
 */
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import type {
  JsonSchemaType,
  JsonSchemaValidator,
  jsonSchemaValidator,
} from "@modelcontextprotocol/sdk/validation/types.js";
import {
  CELL_TASK,
  CellConsole,
  type CellLimits,
  type CellResult,
  cellEnvelope,
  cellTaskBundle,
  prepareCellScript,
} from "../../core/agent/cell.ts";
import { createMcpServer } from "../../core/agent/mcp-server.ts";
import { type CodeBackend, createCapsuleTools } from "../../core/agent/tools.ts";
import type { Engine } from "../../core/engine/engine.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import { type Envelope, envelopeForError } from "../../core/runtime/envelope.ts";
import type { MemoryBudget } from "../../core/runtime/memory-budget.ts";
import { runTreeInProcess } from "../../core/runtime/run-in-process.ts";
import type { RuntimeSettings } from "../../core/runtime/settings.ts";
import { RequestFileTree } from "./files.ts";
import { createWorkersProvider } from "./provider.ts";

/** Limits of every call on Workers: the agent defaults, with memory the isolate can hold. */
export const WORKERS_CELL_LIMITS: CellLimits = { compute: "LOW", ram: "16MB", timeout: "30s" };
const MCP_VERSION = "0.1.0";

export interface McpRouteOptions {
  engine: () => Engine;
  settings: RuntimeSettings;
  memory: MemoryBudget;
  maxBodyBytes: number;
  onLog?: (level: LogLevel, text: string, task: string) => void;
}

/**
 * The SDK would check JSON Schemas it is sent with Ajv, which compiles them with `new Function`,
 * refused on Workers. This server asks its client for nothing (no elicitation), so none arrive.
 */
const noSchemaCompiler: jsonSchemaValidator = {
  getValidator<T>(_schema: JsonSchemaType): JsonSchemaValidator<T> {
    return () => ({
      valid: false,
      data: undefined,
      errorMessage: "this server validates no JSON Schema",
    });
  },
};

/** Answers one `/mcp` request. */
export async function handleMcpRequest(
  request: Request,
  options: McpRouteOptions,
): Promise<Response> {
  // Stateless: no stream for server-initiated messages to listen on (clients then go without).
  if (request.method === "GET") {
    return new Response(null, { status: 405, headers: { allow: "POST, DELETE" } });
  }
  const backend: CodeBackend = {
    languages: ["javascript"],
    noSessionsReason:
      "this server runs on Cloudflare Workers, where nothing is kept between requests, so it has no sessions",
    runCode: (_language, code, call) => runCell(code, options, call),
  };
  const tools = createCapsuleTools(backend, {}, WORKERS_CELL_LIMITS);
  const server = createMcpServer(tools, {
    version: MCP_VERSION,
    jsonSchemaValidator: noSchemaCompiler,
    instructions:
      "Runs JavaScript in fuel-metered WebAssembly sandboxes. Every call starts from a clean sandbox.",
  });
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    maxRequestBodySize: options.maxBodyBytes,
  });
  await server.connect(transport);
  return transport.handleRequest(request);
}

async function runCell(
  code: string,
  options: McpRouteOptions,
  call: { onLog?: (level: LogLevel, text: string) => void; signal?: AbortSignal },
): Promise<Envelope<CellResult>> {
  const started = performance.now();
  try {
    const script = await prepareCellScript(code, () => import("sucrase"));
    const bundle = await cellTaskBundle(CELL_TASK, WORKERS_CELL_LIMITS);
    const output = new CellConsole();
    const run = {};
    const envelope = await runTreeInProcess({
      engine: options.engine(),
      bundle,
      taskName: CELL_TASK,
      argsJson: "[]",
      settings: options.settings,
      provider: createWorkersProvider(new RequestFileTree(new Map(), 0), {}),
      reserveMemory: options.memory.reserverFor(run),
      onLog: (level, text, task) => {
        output.listener(level, text);
        call.onLog?.(level, text);
        options.onLog?.(level, text, task);
      },
      signal: call.signal,
      cell: script,
    });
    return cellEnvelope(envelope, output.lines);
  } catch (error) {
    return envelopeForError(
      CELL_TASK,
      error,
      Math.round(performance.now() - started),
    ) as Envelope<CellResult>;
  }
}
