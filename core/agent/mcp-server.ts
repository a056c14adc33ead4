/**
 * The Model Context Protocol server over the tools of core/agent/tools.ts, on any transport: the
 * SDK's low-level `Server` (platform-neutral), answering `tools/list` with the tool definitions and
 * `tools/call` with the handler's result. Console output of a running call goes to the client as
 * `notifications/message`, tied to the call's request (so over Streamable HTTP it arrives on the
 * call's own response stream), at or above the level the client set with `logging/setLevel`.
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  ListToolsRequestSchema,
  type LoggingLevel,
  LoggingLevelSchema,
  SetLevelRequestSchema,
  type Tool,
} from "@modelcontextprotocol/sdk/types.js";
import type { jsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";
import type { LogLevel } from "../runtime/attempt.ts";
import type { CapsuleTools, ToolDefinition } from "./tools.ts";

export const MCP_SERVER_NAME = "capsule-portable";

/** Console levels as MCP's syslog levels. */
const MCP_LEVELS: Readonly<Record<LogLevel, LoggingLevel>> = {
  debug: "debug",
  info: "info",
  log: "info",
  warn: "warning",
  error: "error",
};
const SEVERITY = new Map(LoggingLevelSchema.options.map((level, index) => [level, index]));

const TITLES: Readonly<Record<string, string>> = {
  execute_javascript: "Execute JavaScript",
  execute_python: "Execute Python",
};

export interface McpServerOptions {
  version: string;
  /** Where the SDK validates JSON Schemas it is sent; the default (Ajv) compiles with new Function. */
  jsonSchemaValidator?: jsonSchemaValidator;
  /** Extra sentence for the client's model about this server. */
  instructions?: string;
}

/** One MCP server (one client connection) answering with `tools`. */
export function createMcpServer(tools: CapsuleTools, options: McpServerOptions): Server {
  const server = new Server(
    { name: MCP_SERVER_NAME, title: "Capsule (portable)", version: options.version },
    {
      capabilities: { tools: {}, logging: {} },
      instructions:
        options.instructions ??
        "Runs code in fuel-metered WebAssembly sandboxes. Give the same session_id to calls that should share variables and functions; fork_from with a new session_id copies a session before trying something in it.",
      ...(options.jsonSchemaValidator ? { jsonSchemaValidator: options.jsonSchemaValidator } : {}),
    },
  );
  let minimum: LoggingLevel = "debug";
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    minimum = request.params.level;
    return {};
  });
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: tools.tools.map((tool) => mcpTool(tool, (tools.limits.allowedHosts ?? []).length > 0)),
  }));
  server.setRequestHandler(
    CallToolRequestSchema,
    async (request, extra): Promise<CallToolResult> => {
      const { name, arguments: input } = request.params;
      const result = await tools.handle(name, input ?? {}, {
        signal: extra.signal,
        onLog: (level, text) => {
          const mcpLevel = MCP_LEVELS[level] ?? "info";
          if ((SEVERITY.get(mcpLevel) ?? 0) < (SEVERITY.get(minimum) ?? 0)) return;
          // A client gone mid-call must not fail the call: the result is still recorded.
          extra
            .sendNotification({
              method: "notifications/message",
              params: { level: mcpLevel, logger: name, data: text },
            })
            .catch(() => {});
        },
      });
      return {
        content: [{ type: "text", text: result.text }],
        ...(result.envelope ? { structuredContent: { ...result.envelope } } : {}),
        ...(result.isError ? { isError: true } : {}),
      };
    },
  );
  return server;
}

function mcpTool(tool: ToolDefinition, network: boolean): Tool {
  const title = TITLES[tool.name] ?? tool.name;
  return {
    ...tool,
    title,
    annotations: {
      title,
      readOnlyHint: false,
      destructiveHint: false,
      idempotentHint: false,
      openWorldHint: network,
    },
  };
}
