/**
 * Code as a model writes it, in a web page: `runCode`, `runJavaScript`, `runPython`,
 * `loadSandboxes`. Each cell is a task (core/agent/cell.ts, core/agent/python-cell.ts) run by a
 * pool of module Web Workers (Python: the Python tasks' sandboxes), one fresh sandbox per attempt,
 * with the same limits, grants, retries and envelope as `run()`.
 */
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
} from "../../core/agent/cell.ts";
import {
  checkPythonCode,
  PYTHON_CELL_FILE,
  pythonCellEnvelope,
  pythonCellFunctions,
  pythonCellTaskSource,
} from "../../core/agent/python-cell.ts";
import { CompileError, ConfigError, InternalError } from "../../core/errors.ts";
import { splitPath } from "../../core/policy/paths.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import { describe } from "../../core/runtime/run-options.ts";
import { type RuntimeSettings, resolveSettings } from "../../core/runtime/settings.ts";
import type { SessionImage } from "../../core/session/image.ts";
import { WorkerPool } from "./pool.ts";

export type { CellEnvelope, CellLimits, CellResult } from "../../core/agent/cell.ts";
export { CELL_DEFAULTS } from "../../core/agent/cell.ts";

/** The task options of a cell, plus where it runs in the page. */
export interface CodeOptions extends CellLimits {
  /** The variables `envVariables` may read: a page has no environment of its own. */
  env?: Record<string, string | undefined>;
  /** The app's directory in OPFS that `allowedFiles` are relative to; default "capsule". */
  opfsRoot?: string;
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

const HOST_KEYS = ["env", "opfsRoot", "signal", "onLog", "limits"];
const KNOWN = new Set<string>([...HOST_KEYS, ...CELL_LIMIT_KEYS]);
export const DEFAULT_OPFS_ROOT = "capsule";

/** Where Python cells are dispatched: each is a Python task (core/agent/python-cell.ts). */
export const pythonCells: PythonCells<CodeOptions> = {
  run: (code, options) => runPythonCell(code, options),
  load: () => loadPythonSandbox(),
};

let pool: WorkerPool | undefined;

/** The workers cells and sessions run on (created on first use). */
function cellPool(): WorkerPool {
  pool ??= new WorkerPool({});
  return pool;
}

/** Terminates the cells' workers; a later cell starts new ones. */
export function shutdownCells(): void {
  pool?.close();
  pool = undefined;
}

export const { runCode, runJavaScript, loadJavaScriptSandbox, loadSandboxes } =
  cellFunctions<CodeOptions>((code, options) => runJavaScriptCell({ code, options }), pythonCells);

export const { runPython, loadPythonSandbox } = pythonCellFunctions<CodeOptions>(runCode);

/** Python tasks' sandboxes (python/), loaded when the page runs its first Python cell. */
let pythonModule: Promise<typeof import("./python/index.ts")> | undefined;

/**
 * One Python cell as a Python task, each attempt in a fresh sandbox Worker, with the same limits,
 * grants, retries and envelope as `run({ language: "py" })`. Throws for a bad option. `session`:
 * a session's call (core/session/python-image.ts), with the grants it adds (its workspace).
 */
export async function runPythonCell(
  code: unknown,
  options: CodeOptions,
  session?: PythonCellSession,
): Promise<CellEnvelope> {
  checkCodeOptions(options);
  const text = checkPythonCode(code);
  const limits = cellLimits(options as Record<string, unknown>);
  if (session !== undefined) {
    limits.allowedFiles = [...(limits.allowedFiles ?? []), ...session.allowedFiles];
  }
  const source = pythonCellTaskSource(limits, session !== undefined);
  pythonModule ??= import("./python/index.ts");
  const { runPythonTask } = await pythonModule;
  const envelope = await runPythonTask({
    source,
    fileName: PYTHON_CELL_FILE,
    taskName: CELL_TASK,
    args: [text],
    env: { ...options.env },
    opfsRoot: options.opfsRoot ?? DEFAULT_OPFS_ROOT,
    settings: resolveSettings(options.limits),
    onLog: (level, line) => options.onLog?.(level, line),
    signal: options.signal,
    ...(session && { session: { image: session.image, onImage: session.onImage } }),
  });
  return pythonCellEnvelope(envelope, text);
}

export interface PythonCellSession {
  /** The state to restore (null: a fresh one); a successful call hands its new image to onImage. */
  image: Uint8Array | null;
  onImage(image: Uint8Array): void;
  allowedFiles: NonNullable<CellLimits["allowedFiles"]>;
}

/** What a page's Python session image belongs to (the engine and the sandbox's script). */
export async function pythonImageKey(): Promise<string> {
  pythonModule ??= import("./python/index.ts");
  return (await pythonModule).pythonImageKey();
}

export interface CellRequest {
  code: unknown;
  options: CodeOptions;
  /** Grants the cell gets on top of its options (a session's workspace). */
  allowedFiles?: CellLimits["allowedFiles"];
  /** A session's state: given (even null), a successful call hands its new image to onImage. */
  image?: SessionImage | null;
  onImage?: (image: SessionImage) => void;
}

/** One JavaScript cell through the pool. Throws for a bad option or a compile error. */
export async function runJavaScriptCell(request: CellRequest): Promise<CellEnvelope> {
  const { options } = request;
  checkCodeOptions(options);
  const workers = cellPool();
  const script = await prepareCellScriptWith(request.code, async (code) => {
    const outcome = await workers.compile(code, "ts");
    if (outcome.ok) return outcome.bundle.code;
    if (outcome.errorType === "compile_error") throw new CompileError(outcome.message);
    if (outcome.errorType === "config_error") throw new ConfigError(outcome.message);
    throw new InternalError(outcome.message);
  });
  const limits = cellLimits(options as Record<string, unknown>);
  if (request.allowedFiles !== undefined) {
    limits.allowedFiles = [...(limits.allowedFiles ?? []), ...request.allowedFiles];
  }
  const bundle = await cellTaskBundle(CELL_TASK, limits);
  const output = new CellConsole();
  const envelope = await workers.runTree({
    bundle,
    taskName: CELL_TASK,
    argsJson: "[]",
    settings: resolveSettings(options.limits),
    providerConfig: { opfsRoot: options.opfsRoot ?? DEFAULT_OPFS_ROOT, env: { ...options.env } },
    onLog: (level, text) => {
      output.listener(level, text);
      options.onLog?.(level, text);
    },
    signal: options.signal,
    cell: script,
    ...(request.image === undefined ? {} : { image: request.image, onImage: request.onImage }),
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
  const { opfsRoot } = options;
  if (
    opfsRoot !== undefined &&
    (typeof opfsRoot !== "string" || splitPath(opfsRoot).length === 0 || opfsRoot.includes(".."))
  ) {
    throw new ConfigError(
      `opfsRoot must name a directory in the origin's private file system, got ${describe(opfsRoot)}`,
    );
  }
}
