/**
 * `capsuleTools(options)` on Node: the tool definitions and handler of core/agent/tools.ts over
 * this adapter's `runCode` and `Session` (one per session_id, kept in memory: no store). Every call gets the same limits and grants, the
 * options' CodeOptions; by default an agent's: LOW compute, 256MB, 30s, nothing granted.
 */

import { CELL_LIMIT_KEYS } from "../../core/agent/cell.ts";
import {
  type CapsuleTools,
  type CodeBackend,
  createCapsuleTools,
  type ToolsOptions,
} from "../../core/agent/tools.ts";
import { ConfigError } from "../../core/errors.ts";
import { describe } from "../../core/runtime/run-options.ts";
import { type CodeOptions, pythonCells, runCode } from "./agent.ts";
import { Session } from "./session.ts";

export type {
  AgentLanguage,
  CapsuleTools,
  ToolCallContext,
  ToolDefinition,
  ToolName,
  ToolResult,
} from "../../core/agent/tools.ts";

/** The limits and grants of every call (CodeOptions but the per-call ones), and the tools' own. */
export interface CapsuleToolsOptions extends Omit<CodeOptions, "signal" | "onLog">, ToolsOptions {}

const TOOLS_KEYS = new Set([
  "languages",
  "maxSessions",
  "sessionIdle",
  "maxCodeBytes",
  "sessionBudget",
  "onLog",
]);
/** A cell's task options, and where it runs on this host. */
const CODE_KEYS = new Set<string>([...CELL_LIMIT_KEYS, "cwd", "env", "mounts", "limits"]);

/**
 * Tools `execute_javascript` and `execute_python` for any tool-calling API: `tools` (name,
 * description, JSON Schema of the input) and `handle(name, input)`, which never throws.
 */
export function capsuleTools(options: CapsuleToolsOptions = {}): CapsuleTools {
  if (options === null || typeof options !== "object") {
    throw new ConfigError(`capsuleTools(): options must be an object, got ${describe(options)}`);
  }
  const code: Record<string, unknown> = {};
  const tools: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (TOOLS_KEYS.has(key)) tools[key] = value;
    else if (CODE_KEYS.has(key)) code[key] = value;
    else {
      throw new ConfigError(
        `capsuleTools(): unknown option ${JSON.stringify(key)}; it takes ${[...CODE_KEYS, ...TOOLS_KEYS].join(", ")}`,
      );
    }
  }
  const codeOptions = code as CodeOptions;
  const backend: CodeBackend = {
    // Python is offered once its cells run on this host.
    languages: pythonCells.run === null ? ["javascript"] : ["javascript", "python"],
    runCode: (language, source, call) =>
      runCode({
        ...codeOptions,
        language,
        code: source,
        ...(call.onLog ? { onLog: call.onLog } : {}),
        ...(call.signal ? { signal: call.signal } : {}),
      }),
    openSession: (language, onLog) => new Session(language, { ...codeOptions, onLog }),
  };
  return createCapsuleTools(backend, tools as ToolsOptions, codeOptions);
}
