/**
 * Python cells: code as a model writes it, run as a Python task. The cell's limits and grants go
 * into a generated task file (one text per set of limits, so the runtime reads its tasks once and
 * not once per cell) whose `main` takes the cell's code as its argument. Inside the sandbox `main`
 * parses the code with `ast`, runs every statement in a fresh namespace (`__name__` is
 * "__main__"; top-level `await` is allowed), evaluates a final expression statement for the value,
 * and collects what `print` writes to stdout (it also reaches `onLog` as it happens).
 *
 * The value comes back as JSON where JSON can hold it (a tuple becomes a list); otherwise, as
 * for a set, bytes, NaN or an object, `value` is its `repr()` text. The output text shows the
 * value as `str()` does, after the printed text, as Capsule's Python adapter does.
 *
 * A syntax error is a compile_error ("SyntaxError: invalid syntax", then where). An exception
 * the cell raises (SystemExit and KeyboardInterrupt too) is a task_error whose message starts
 * with the exception's type and message (`ZeroDivisionError: division by zero`), followed by the
 * traceback of the cell's frames. Fuel, memory, time and grants are those of any Python task: the envelope says
 * `fuel_exhausted`, `memory_exceeded`, `timeout` or `permission_denied` as it would for one.
 */
import { MAX_SOURCE_CHARS } from "../compile/task-module.ts";
import { CompileError, ConfigError } from "../errors.ts";
import type { Envelope } from "../runtime/envelope.ts";
import { describe } from "../runtime/run-options.ts";
import {
  CELL_DEFAULTS,
  CELL_TASK,
  type CellEnvelope,
  type CellLimits,
  cellEnvelope,
  cellError,
  cellOutput,
} from "./cell.ts";

/** The task file a Python cell runs as (its name shows only if the runtime's own code fails). */
export const PYTHON_CELL_FILE = "<cell-task>.py";

/** The name a Python cell's own lines carry in tracebacks. */
export const PYTHON_CELL_SOURCE = "<cell>";

/** What `loadPythonSandbox()` runs: nothing, through the whole path. */
export const PYTHON_WARM_CODE = "# pre-load sandbox";

const SNAKE_CASE: Record<keyof CellLimits, string> = {
  compute: "compute",
  ram: "ram",
  timeout: "timeout",
  maxRetries: "max_retries",
  allowedFiles: "allowed_files",
  allowedHosts: "allowed_hosts",
  envVariables: "env_variables",
};

/** Checks a Python cell's code before anything runs. */
export function checkPythonCode(code: unknown): string {
  if (typeof code !== "string") {
    throw new ConfigError(`code must be a string of Python, got ${describe(code)}`);
  }
  if (code.length > MAX_SOURCE_CHARS) {
    throw new CompileError(
      `code: ${code.length} characters, over the ${MAX_SOURCE_CHARS}-character limit for a cell`,
    );
  }
  return code;
}

/**
 * The Python task file a cell runs under: `main(code)` with the cell's limits over the agent
 * defaults. The text depends only on the limits, never on the code.
 */
export function pythonCellTaskSource(limits: CellLimits, session = false): string {
  const options: Record<string, unknown> = { name: CELL_TASK };
  for (const [key, value] of Object.entries({ ...CELL_DEFAULTS, ...limits })) {
    if (value !== undefined) options[SNAKE_CASE[key as keyof CellLimits] ?? key] = value;
  }
  // A JSON string literal is a Python string literal too.
  return `${PYTHON_CELL_RUNNER}
@task(**json.loads(${JSON.stringify(JSON.stringify(options))}))
async def main(code):
    return await _run_cell(code${session ? ", _session()" : ""})
`;
}

/**
 * The runner inside the sandbox, kept short: compiling Python is metered, and every line here is
 * paid from the cell's fuel. Measured on Node: a cell `x = 1` spends about 15M of LOW's 100M
 * fuel (a plain Python task returning 1 spends 0.7M), a cell that raises about 19M. The cell runs in a
 * namespace of its own, so redefining these names there changes nothing here. A failure leaves
 * as a CellError whose text is JSON; the host words it (`pythonCellEnvelope`).
 */
const PYTHON_CELL_RUNNER = `import ast, builtins, io, json, sys
from capsule import task
_C = ${JSON.stringify(PYTHON_CELL_SOURCE)}
class CellError(Exception): pass
class _Out(io.StringIO):
    def write(self, s):
        self.to.write(s)
        return io.StringIO.write(self, s)
def _fail(e):
    t, frames, k = e.__traceback__, [], type(e)
    while t and t.tb_frame.f_code.co_filename != _C: t = t.tb_next
    while t:
        frames.append([t.tb_frame.f_code.co_filename, t.tb_lineno, t.tb_frame.f_code.co_name])
        t = t.tb_next
    n = k.__qualname__ if k.__module__ in ("builtins", "__main__") else k.__module__ + "." + k.__qualname__
    try: s = str(e)
    except BaseException: s = "<exception str() failed>"
    return CellError(json.dumps({"error": n + ": " + s if s else n, "frames": frames}))
def _json(v):
    try: return json.loads(json.dumps(v, allow_nan=False))
    except BaseException:
        try: return repr(v)
        except BaseException: return object.__repr__(v)
async def _go(c, ns):
    r = eval(c, ns)
    return (await r) if c.co_flags & 0x80 else r
def _session():
    m = sys.modules.get("__capsule_session__")
    if m is None:
        m = sys.modules["__capsule_session__"] = type(sys)("__main__")
        m.__builtins__ = builtins
    return m.__dict__
async def _run_cell(code, ns=None):
    try:
        tree = ast.parse(code, _C)
        last = tree.body.pop().value if tree.body and type(tree.body[-1]) is ast.Expr else None
        body = compile(tree, _C, "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if last is not None: last = compile(ast.Expression(last), _C, "eval", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except MemoryError: raise
    except SyntaxError as e:
        raise CellError(json.dumps({"error": type(e).__name__ + ": " + str(e.msg), "syntax": [e.lineno, e.offset, e.text]})) from None
    except BaseException as e: raise _fail(e) from None
    if ns is None: ns = {"__name__": "__main__", "__builtins__": builtins}
    out = _Out()
    out.to, sys.stdout = sys.stdout, out
    try:
        await _go(body, ns)
        v = None if last is None else await _go(last, ns)
    except MemoryError: raise
    except BaseException as e: raise _fail(e) from None
    finally: sys.stdout = out.to
    try: d = None if v is None else v if type(v) is str else str(v)
    except BaseException: d = object.__repr__(v)
    return {"stdout": out.getvalue(), "display": d, "value": _json(v)}
`;

/** The last line of the guest's message when the cell's own code failed (see `_fail`). */
const CELL_FAILURE = /CellError: (\{[^\n]*\})\s*$/;

interface CellFailure {
  error: string;
  frames?: [string, number, string][];
  syntax?: [number | null, number | null, string | null];
}

/**
 * A Python cell task's envelope as a cell's: `{ output, stdout, value }` from what the task
 * returned. A failure of the cell's own code reads "Type: message", then where: the traceback of
 * the cell's frames (with their lines), or the place of a syntax error (then a compile_error).
 */
export function pythonCellEnvelope(envelope: Envelope, code: string): CellEnvelope {
  if (!envelope.success) {
    const error = envelope.error;
    const marked = error?.error_type === "task_error" ? CELL_FAILURE.exec(error.message) : null;
    const failure = marked?.[1] === undefined ? undefined : readFailure(marked[1]);
    if (error && failure) {
      const lines = code.split(/\r?\n|\r/);
      if (failure.syntax) {
        return {
          ...envelope,
          result: null,
          error: {
            error_type: "compile_error",
            message: `${failure.error}\n${syntaxPlace(failure.syntax, lines)}`,
          },
        };
      }
      const frames = (failure.frames ?? []).map(([file, line, name]) => {
        const text = file === PYTHON_CELL_SOURCE ? lines[line - 1]?.trim() : undefined;
        return `  File "${file}", line ${line}, in ${name}${text ? `\n    ${text}` : ""}`;
      });
      const trace =
        frames.length === 0 ? "" : `\nTraceback (most recent call last):\n${frames.join("\n")}`;
      return {
        ...envelope,
        result: null,
        error: { ...error, message: `${failure.error}${trace}` },
      };
    }
    return { ...envelope, result: null };
  }
  // The guest's reply is checked like any guest's words: wrong types read as nothing.
  const result = envelope.result as Record<string, unknown> | null;
  const stdout = typeof result?.stdout === "string" ? result.stdout : "";
  const display = typeof result?.display === "string" ? result.display : null;
  const lines = stdout === "" ? [] : stdout.replace(/\n$/, "").split("\n");
  const cell = cellEnvelope(
    { ...envelope, result: { display, value: result?.value ?? null } },
    lines,
  );
  return cell.result === null ? cell : { ...cell, result: { ...cell.result, stdout } };
}

/** `  File "<cell>", line N`, the line, and a caret under the column, as Python prints them. */
function syntaxPlace(
  [line, column, text]: [number | null, number | null, string | null],
  lines: string[],
): string {
  const place = `  File "${PYTHON_CELL_SOURCE}"${line === null ? "" : `, line ${line}`}`;
  const source = text ?? (line === null ? undefined : lines[line - 1]);
  if (source === undefined || source.trim() === "") return place;
  const trimmed = source.replace(/[\r\n]+$/, "");
  const indent = trimmed.length - trimmed.trimStart().length;
  const caret =
    column === null || column < 1 ? "" : `\n    ${" ".repeat(Math.max(0, column - 1 - indent))}^`;
  return `${place}\n    ${trimmed.trimStart()}${caret}`;
}

function readFailure(text: string): CellFailure | undefined {
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    if (typeof parsed.error !== "string") return undefined;
    const frames = Array.isArray(parsed.frames)
      ? parsed.frames.filter(
          (frame): frame is [string, number, string] =>
            Array.isArray(frame) &&
            typeof frame[0] === "string" &&
            Number.isSafeInteger(frame[1]) &&
            typeof frame[2] === "string",
        )
      : undefined;
    const syntax = Array.isArray(parsed.syntax)
      ? ([
          Number.isSafeInteger(parsed.syntax[0]) ? parsed.syntax[0] : null,
          Number.isSafeInteger(parsed.syntax[1]) ? parsed.syntax[1] : null,
          typeof parsed.syntax[2] === "string" ? parsed.syntax[2] : null,
        ] as [number | null, number | null, string | null])
      : undefined;
    return { error: parsed.error, ...(frames && { frames }), ...(syntax && { syntax }) };
  } catch {
    return undefined;
  }
}

/** `runPython` and `loadPythonSandbox` over an adapter's `runCode`. */
export function pythonCellFunctions<Options extends object>(
  runCode: (
    options: Options & { language: "javascript" | "python"; code: string },
  ) => Promise<CellEnvelope>,
) {
  /**
   * Runs Python as a model writes it and returns the printed output followed by the last
   * expression's value, as `@capsule-run/adapter` does. Throws an Error naming the error_type
   * and message when the cell fails.
   */
  async function runPython(code: string, options?: Options): Promise<string> {
    return cellOutput(await runCode({ ...(options as Options), language: "python", code }));
  }

  /** Loads Pyodide and reads the default cell task, so the first Python cell starts sooner. */
  async function loadPythonSandbox(): Promise<void> {
    const envelope = await runCode({
      language: "python",
      code: PYTHON_WARM_CODE,
    } as Options & { language: "python"; code: string });
    if (!envelope.success) throw cellError(envelope);
  }

  return { runPython, loadPythonSandbox };
}
