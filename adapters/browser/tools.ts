/**
 * `capsuleTools(options)` in a page: the tool definitions and handler of core/agent/tools.ts over
 * this adapter's `runCode` and `Session` (one per session_id, kept in memory: no store). Every
 * call gets the same limits and grants, the options' CodeOptions; by default an agent's: LOW
 * compute, 256MB, 30s, nothing granted.
 */
import { type CapsuleTools, type ToolsOptions, toolsOverCells } from "../../core/agent/tools.ts";
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

/**
 * Tools `execute_javascript` and `execute_python` for any tool-calling API: `tools` (name,
 * description, JSON Schema of the input) and `handle(name, input)`, which never throws.
 */
export function capsuleTools(options: CapsuleToolsOptions = {}): CapsuleTools {
  return toolsOverCells<CodeOptions>(
    {
      hostKeys: ["env", "opfsRoot", "limits"],
      // Python is offered once its cells run here.
      python: pythonCells.run !== null,
      runCode,
      openSession: (language, sessionOptions) => new Session(language, sessionOptions),
    },
    options,
  );
}
