/**
 * Code as a model writes it, on Node: `runCode`, `runJavaScript`, `runPython`, `loadSandboxes`.
 * Each cell is a task (core/agent/cell.ts, core/agent/python-cell.ts): the same limits, grants,
 * retries and envelope as `run()`, in a fresh sandbox per attempt. JavaScript cells run on the
 * calling thread, as `run({ threads: 0 })` does; Python cells in child processes, as Python tasks.
 */
import { resolve } from "node:path";
import {
  CELL_LIMIT_KEYS,
  CELL_TASK,
  CellConsole,
  type CellEnvelope,
  type CellLimits,
  cellEnvelope,
  cellFunctions,
  cellLimits,
  cellTaskBundle,
  type PythonCells,
  prepareCellScriptWith,
  sucraseStripper,
} from "../../core/agent/cell.ts";
import {
  checkPythonCode,
  PYTHON_CELL_FILE,
  pythonCellEnvelope,
  pythonCellFunctions,
  pythonCellTaskSource,
} from "../../core/agent/python-cell.ts";
import { ConfigError } from "../../core/errors.ts";
import type { PythonTaskRequest } from "../../core/python/tasks.ts";
import type { AttemptState, LogLevel } from "../../core/runtime/attempt.ts";
import { runTreeInProcess } from "../../core/runtime/run-in-process.ts";
import { describe } from "../../core/runtime/run-options.ts";
import { type RuntimeSettings, resolveSettings } from "../../core/runtime/settings.ts";
import { loadEngine } from "./engine.ts";
import { processMemory } from "./pool.ts";
import { createNodeProvider, parseMounts } from "./provider.ts";
import { runPythonTask } from "./python/runner.ts";

export type { CellEnvelope, CellLimits, CellResult } from "../../core/agent/cell.ts";
export { CELL_DEFAULTS } from "../../core/agent/cell.ts";

/** The task options of a cell, plus where it runs on this host. */
export interface CodeOptions extends CellLimits {
  /** Project root that `allowedFiles` are relative to; defaults to `process.cwd()`. */
  cwd?: string;
  /** Where `envVariables` are read from; defaults to `process.env`. */
  env?: Record<string, string | undefined>;
  /** Host directories for the cell: `HOST_PATH[::GUEST_PATH][:ro|:rw]`, as in `run()`. */
  mounts?: string[];
  /** Aborting ends the cell with a `timeout` envelope. */
  signal?: AbortSignal;
  /** Console output as it happens (it is also collected into the result's `stdout`). */
  onLog?: (level: LogLevel, text: string) => void;
  /** Runtime-wide limits (result size, console size, ...). */
  limits?: Partial<RuntimeSettings>;
}

export interface RunCodeOptions extends CodeOptions {
  language: "javascript" | "python";
  code: string;
}

const HOST_KEYS = ["cwd", "env", "mounts", "signal", "onLog", "limits"];
const KNOWN = new Set<string>([...HOST_KEYS, ...CELL_LIMIT_KEYS]);

/** Where Python cells are dispatched: each is a Python task (core/agent/python-cell.ts). */
export const pythonCells: PythonCells<CodeOptions> = {
  run: (code, options) => runPythonCell(code, options),
  load: () => loadPythonSandbox(),
};

export const { runCode, runJavaScript, loadJavaScriptSandbox, loadSandboxes } =
  cellFunctions<CodeOptions>(
    (code, options) => runJavaScriptCell({ code, taskName: CELL_TASK, options }),
    pythonCells,
  );

export const { runPython, loadPythonSandbox } = pythonCellFunctions<CodeOptions>(runCode);

/**
 * One Python cell as a Python task, each attempt in its own child process, with the same limits,
 * grants, retries and envelope as `run({ language: "py" })`. Throws for a bad option.
 */
export async function runPythonCell(
  code: unknown,
  options: CodeOptions,
  session?: PythonTaskRequest["session"],
): Promise<CellEnvelope> {
  checkCodeOptions(options);
  const text = checkPythonCode(code);
  const source = pythonCellTaskSource(
    cellLimits(options as Record<string, unknown>),
    session !== undefined,
  );
  const cwd = resolve(options.cwd ?? process.cwd());
  const envelope = await runPythonTask({
    source,
    fileName: PYTHON_CELL_FILE,
    taskName: CELL_TASK,
    args: [text],
    provider: createNodeProvider({
      projectRoot: cwd,
      mounts: parseMounts(options.mounts ?? [], cwd),
      env: { ...(options.env ?? process.env) },
      cacheDir: resolve(cwd, ".capsule", "cache"),
    }),
    settings: resolveSettings(options.limits),
    onLog: (level, text) => options.onLog?.(level, text),
    signal: options.signal,
    ...(session && { session }),
  });
  return pythonCellEnvelope(envelope, text);
}

const stripTypes = sucraseStripper(() => import("sucrase"));

export interface CellRequest {
  code: unknown;
  taskName: string;
  options: CodeOptions;
  /** A session's state (core/session). */
  state?: AttemptState;
}

/** One JavaScript cell through the task machinery. Throws for a bad option or a compile error. */
export async function runJavaScriptCell(request: CellRequest): Promise<CellEnvelope> {
  const { options, taskName } = request;
  checkCodeOptions(options);
  const script = await prepareCellScriptWith(request.code, stripTypes);
  const bundle = await cellTaskBundle(taskName, cellLimits(options as Record<string, unknown>));
  const cwd = resolve(options.cwd ?? process.cwd());
  const settings = resolveSettings(options.limits);
  const output = new CellConsole();
  const tree = {
    bundle,
    taskName,
    argsJson: "[]",
    settings,
    signal: options.signal,
    onLog: (level: LogLevel, text: string) => {
      output.listener(level, text);
      options.onLog?.(level, text);
    },
    cell: script,
    state: request.state,
  };
  const envelope = await runTreeInProcess({
    ...tree,
    engine: loadEngine(),
    provider: createNodeProvider({
      projectRoot: cwd,
      mounts: parseMounts(options.mounts ?? [], cwd),
      env: { ...(options.env ?? process.env) },
      cacheDir: resolve(cwd, ".capsule", "cache"),
    }),
    reserveMemory: processMemory.reserverFor(tree),
  });
  return cellEnvelope(envelope, output.lines);
}

function checkCodeOptions(options: CodeOptions): void {
  if (options === null || typeof options !== "object") {
    throw new ConfigError(`options must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      throw new ConfigError(
        `unknown option ${JSON.stringify(key)}; a cell takes ${[...KNOWN].join(", ")}`,
      );
    }
  }
  if (options.cwd !== undefined && (typeof options.cwd !== "string" || options.cwd === "")) {
    throw new ConfigError(`cwd must be a directory path, got ${describe(options.cwd)}`);
  }
  if (options.mounts !== undefined && !Array.isArray(options.mounts)) {
    throw new ConfigError(
      `mounts must be an array of mount specs, got ${describe(options.mounts)}`,
    );
  }
}
