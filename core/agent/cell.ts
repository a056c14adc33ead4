/**
 * Cells: code as a model writes it (statements, imports, TypeScript), run as a task. A cell
 * becomes two pieces that the ordinary task machinery runs: a generated task module that carries
 * the limits and grants (so they are parsed, enforced and retried exactly as for a task file), and
 * the cell itself, which the attempt evaluates as a global script just before the task (top-level
 * await allowed, `const`/`let`/`var`/functions land in the global scope, the completion value of
 * the last statement is the result). The task then describes that value for the host.
 */
import { compileTaskModule, MAX_SOURCE_CHARS } from "../compile/task-module.ts";
import { CompileError, ConfigError } from "../errors.ts";
import { NODE_MODULES, nodeModuleName } from "../guest/node-modules.ts";
import { CELL_SLOT } from "../runtime/attempt.ts";
import { type Envelope, envelopeForError } from "../runtime/envelope.ts";
import { describe } from "../runtime/run-options.ts";
import type { Bundle } from "../runtime/run-task.ts";

/** What a cell run gives: Capsule's adapter string, the console output, and the value as JSON. */
export interface CellResult {
  /** The console output followed by the last expression's value: what `runJavaScript` returns. */
  output: string;
  /** Everything the cell wrote to the console (every level), one line per call. */
  stdout: string;
  /** The last expression's value as JSON; null when it has none or it is not JSON. */
  value: unknown;
}

export type CellEnvelope = Envelope<CellResult>;

/** The task options a cell takes, with the same names and values as `task({...})`. */
export interface CellLimits {
  /** "LOW" (1e8 fuel, the default for cells), "MEDIUM", "HIGH" or a fuel amount. */
  compute?: string | number;
  /** Memory cap; "256MB" by default for cells. */
  ram?: string | number;
  /** Wall-clock limit; "30s" by default for cells. */
  timeout?: string | number;
  maxRetries?: number;
  allowedFiles?: (string | { path: string; mode?: string })[];
  allowedHosts?: string[];
  envVariables?: string[];
}

/** Defaults for code an agent runs: bounded fuel, memory and time, nothing granted. */
export const CELL_DEFAULTS = { compute: "LOW", ram: "256MB", timeout: "30s" } as const;

export const CELL_LIMIT_KEYS = [
  "compute",
  "ram",
  "timeout",
  "maxRetries",
  "allowedFiles",
  "allowedHosts",
  "envVariables",
] as const;

/** The task name a stateless cell runs as. */
export const CELL_TASK = "main";

/** Picks the task options out of a call's options (values are checked by the task parser). */
export function cellLimits(options: Record<string, unknown>): CellLimits {
  const limits: Record<string, unknown> = {};
  for (const key of CELL_LIMIT_KEYS) {
    const value = options[key];
    if (value === undefined) continue;
    if (!isJsonLike(value)) {
      throw new ConfigError(`${key}: ${describe(value)} is not a value a task option accepts`);
    }
    limits[key] = value;
  }
  return limits as CellLimits;
}

function isJsonLike(value: unknown): boolean {
  if (value === null || ["string", "number", "boolean"].includes(typeof value)) return true;
  if (Array.isArray(value)) return value.every(isJsonLike);
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.values(value as object).every(isJsonLike);
  }
  return false;
}

/**
 * The task module a cell runs under: its options are the cell's limits over the agent defaults,
 * and its function takes the cell's completion record and describes the value.
 */
export function cellTaskSource(taskName: string, limits: CellLimits): string {
  const options = { name: taskName, ...CELL_DEFAULTS, ...limits };
  // Registered once per heap: a session's later cells run in the image of its earlier ones,
  // whose registration (same function) is still there; the host reads the limits from this
  // module in a fresh sandbox either way.
  return `import { task } from "@capsule-run/sdk";
const slot = ${JSON.stringify(CELL_SLOT)};
const registered = "__capsule_cell_task";
if (!Object.prototype.hasOwnProperty.call(globalThis, registered)) {
  task(${JSON.stringify(options)}, async () => {
    const completion = globalThis[slot];
    delete globalThis[slot];
    const record = await completion;
    let value = record === undefined ? undefined : record.value;
    if (value instanceof Promise) value = await value;
    let text;
    try { text = JSON.stringify(value); } catch { text = undefined; }
    let display = null;
    if (typeof value === "string") display = value;
    else if (typeof value === "function") display = "[Function: " + (value.name || "(anonymous)") + "]";
    else if (value !== undefined) {
      if (typeof value === "object" && value !== null && typeof text === "string") display = text;
      else { try { display = String(value); } catch { display = Object.prototype.toString.call(value); } }
    }
    return { display, value: typeof text === "string" ? JSON.parse(text) : null };
  });
  Object.defineProperty(globalThis, registered, { value: true });
}
`;
}

/** The generated task module of a cell, compiled like any JavaScript task (no compiler needed). */
export function cellTaskBundle(taskName: string, limits: CellLimits): Promise<Bundle> {
  return compileTaskModule(cellTaskSource(taskName, limits), "js", {
    sourceName: "<cell-task>.js",
    loadSucrase: () => {
      throw new Error("a JavaScript task needs no compiler");
    },
  });
}

/**
 * Turns a cell's static imports of the sandbox's Node built-ins into `var` declarations bound to
 * the guest's own modules (a script cannot import), keeping every line where it was. `import type`
 * and type-only names disappear. Anything else cannot be imported: a CompileError says what can.
 */
export function rewriteCellImports(code: string): string {
  return code.replace(
    IMPORT_STATEMENT,
    (statement, start: string, typeOnly, clause, from, _quote, specifier) => {
      const lines = "\n".repeat((statement.match(/\n/g) ?? []).length);
      if (typeOnly) return `${start}${lines}`;
      const trimmed = (clause as string).trim();
      if (trimmed !== "" && from === undefined) return statement;
      const module = moduleExpression(specifier as string);
      const bindings = importBindings(trimmed, module);
      if (bindings.length === 0) return `${start}${module};${lines}`;
      return `${start}var ${bindings.join(", ")};${lines}`;
    },
  );
}

/** `import [type] <clause> from "m";` or `import "m";` at the start of a line or after a `;`. */
const IMPORT_STATEMENT =
  /((?:^|(?<=;))[ \t]*)import(?:\s+(type)(?=[\s{*]))?\s*([\w$\s{},*]*?)\s*(from)?\s*(["'])([^"'\n]+)\5[ \t]*;?/gm;

function moduleExpression(specifier: string): string {
  const name = nodeModuleName(specifier);
  if (name === undefined) {
    throw new CompileError(
      `${JSON.stringify(specifier)} cannot be imported in a cell; a cell can import the Node built-ins ${Object.keys(NODE_MODULES).join(", ")} (also as "node:...")`,
    );
  }
  const { chunk, property } = NODE_MODULES[name] as { chunk: string; property?: string };
  return `globalThis.__capsule.require(${JSON.stringify(chunk)})${property === undefined ? "" : `.${property}`}`;
}

function importBindings(clause: string, module: string): string[] {
  const bindings: string[] = [];
  let rest = clause;
  const first = /^([\w$]+)\s*(?:,|$)/.exec(rest);
  if (first && first[1] !== undefined) {
    bindings.push(`${first[1]} = ${module}`);
    rest = rest.slice(first[0].length).trim();
  }
  const namespace = /^\*\s*as\s+([\w$]+)$/.exec(rest);
  if (namespace && namespace[1] !== undefined) {
    bindings.push(`${namespace[1]} = ${module}`);
    return bindings;
  }
  const named = /^\{([^}]*)\}$/.exec(rest);
  if (named && named[1] !== undefined) {
    const parts: string[] = [];
    for (const raw of named[1].split(",")) {
      const part = raw.trim();
      if (part === "" || /^type\s+[\w$]/.test(part)) continue;
      const alias = /^([\w$]+)\s+as\s+([\w$]+)$/.exec(part);
      if (alias && alias[1] !== undefined && alias[2] !== undefined) {
        if (alias[1] === "default") bindings.push(`${alias[2]} = ${module}`);
        else parts.push(`${alias[1]}: ${alias[2]}`);
      } else if (/^[\w$]+$/.test(part)) {
        parts.push(part);
      } else {
        throw new CompileError(`cannot read the import list { ${named[1].trim()} }`);
      }
    }
    if (parts.length > 0) bindings.push(`{ ${parts.join(", ")} } = ${module}`);
    return bindings;
  }
  if (rest !== "") throw new CompileError(`cannot read the import clause "${clause}"`);
  return bindings;
}

type Sucrase = Pick<typeof import("sucrase"), "transform">;
type SucraseImport = Sucrase | { default: Sucrase };

/** Removes TypeScript types from a cell (its imports already rewritten). */
export type TypeStripper = (code: string) => Promise<string>;

/** Strips types with sucrase loaded on this thread. */
export function sucraseStripper(
  loadSucrase: () => Promise<SucraseImport> | SucraseImport,
): TypeStripper {
  return async (code) => {
    const loaded = await loadSucrase();
    const sucrase = "transform" in loaded ? loaded : loaded.default;
    try {
      return sucrase.transform(code, { transforms: ["typescript"], disableESTransforms: true })
        .code;
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      const position = /\((\d+):(\d+)\)\s*$/.exec(text);
      const message = text.replace(/\s*\(\d+:\d+\)\s*$/, "");
      throw new CompileError(
        position ? `<cell>:${position[1]}:${position[2]}: ${message}` : `<cell>: ${message}`,
      );
    }
  };
}

/**
 * A cell as the sandbox evaluates it: imports rewritten, then TypeScript types removed (sucrase,
 * the same version and options on every host, so the same cell spends the same fuel everywhere).
 */
export function prepareCellScript(
  code: unknown,
  loadSucrase: () => Promise<SucraseImport> | SucraseImport,
): Promise<string> {
  return prepareCellScriptWith(code, sucraseStripper(loadSucrase));
}

/** prepareCellScript with another way to strip types (a page asks its worker to). */
export async function prepareCellScriptWith(
  code: unknown,
  stripTypes: TypeStripper,
): Promise<string> {
  if (typeof code !== "string") {
    throw new ConfigError(
      `code must be a string of JavaScript or TypeScript, got ${describe(code)}`,
    );
  }
  if (code.length > MAX_SOURCE_CHARS) {
    throw new CompileError(
      `code: ${code.length} characters, over the ${MAX_SOURCE_CHARS}-character limit for a cell`,
    );
  }
  return stripTypes(rewriteCellImports(code));
}

/** Collects a run's console output, in order. */
export class CellConsole {
  readonly lines: string[] = [];
  readonly listener = (_level: string, text: string) => {
    this.lines.push(text);
  };
}

/** The task's envelope as a cell's: its result becomes `{ output, stdout, value }`. */
export function cellEnvelope(envelope: Envelope, lines: readonly string[]): CellEnvelope {
  const printed = lines.join("\n");
  const stdout = lines.length > 0 ? `${printed}\n` : "";
  if (!envelope.success) return { ...envelope, result: null };
  const result = envelope.result as { display?: unknown; value?: unknown } | null;
  const display = typeof result?.display === "string" ? result.display : null;
  const output = display === null ? printed : lines.length > 0 ? `${printed}\n${display}` : display;
  return { ...envelope, result: { output, stdout, value: result?.value ?? null } };
}

/** The envelope of a cell that failed before it ran (a bad option, a compile error). */
export function cellFailure(error: unknown, startedAt: number): CellEnvelope {
  const elapsed = Math.round(performance.now() - startedAt);
  return envelopeForError(CELL_TASK, error, elapsed) as CellEnvelope;
}

/** Where Python cells are dispatched; null until the Python side provides a runner. */
export interface PythonCells<Options> {
  run: ((code: string, options: Options) => Promise<CellEnvelope>) | null;
  load: (() => Promise<void>) | null;
}

/**
 * The functions an adapter offers for cells, around its own way of running a JavaScript cell
 * (which may throw for a bad option or a compile error: those become envelopes here).
 */
export function cellFunctions<Options extends object>(
  runJavaScriptCell: (code: unknown, options: Options) => Promise<CellEnvelope>,
  python: PythonCells<Options>,
) {
  /**
   * Runs one cell and resolves to its envelope; `result` is `{ output, stdout, value }`. Never
   * throws for the cell's failure or a bad option: those are envelopes too. Python cells are a
   * config_error until their runner is provided, never a made-up result.
   */
  async function runCode(
    options: Options & { language: "javascript" | "python"; code: string },
  ): Promise<CellEnvelope> {
    const started = performance.now();
    try {
      if (options === null || typeof options !== "object") {
        throw new ConfigError(
          `runCode(): expected { language, code, ... }, got ${describe(options)}`,
        );
      }
      const { language, code, ...rest } = options;
      if (language === "python") {
        if (python.run === null) {
          throw new ConfigError("Python cells are not available yet: runCode supports javascript");
        }
        return await python.run(code, rest as unknown as Options);
      }
      if (language !== "javascript") {
        throw new ConfigError(
          `runCode(): language must be "javascript" or "python", got ${describe(language)}`,
        );
      }
      return await runJavaScriptCell(code, rest as unknown as Options);
    } catch (error) {
      return cellFailure(error, started);
    }
  }

  /**
   * Runs JavaScript or TypeScript as a model writes it and returns the console output followed
   * by the last expression's value, as `@capsule-run/adapter` does. Throws an Error naming the
   * error_type and message when the cell fails.
   */
  async function runJavaScript(code: string, options?: Options): Promise<string> {
    return cellOutput(await runCode({ ...(options as Options), language: "javascript", code }));
  }

  /** Loads the engine and warms a sandbox, so the first cell starts at once. */
  async function loadJavaScriptSandbox(): Promise<void> {
    const envelope = await runCode({
      language: "javascript",
      code: "// pre-load sandbox",
    } as Options & { language: "javascript"; code: string });
    if (!envelope.success) throw cellError(envelope);
  }

  /** Warms both languages (Python once its cells are available). */
  async function loadSandboxes(): Promise<void> {
    await Promise.all([loadJavaScriptSandbox(), python.load?.()]);
  }

  return { runCode, runJavaScript, loadJavaScriptSandbox, loadSandboxes };
}

/** The Error `runJavaScript` and `Session.run` throw for a failed cell. */
export function cellError(envelope: CellEnvelope): Error {
  const error = envelope.error ?? { error_type: "internal_error", message: "the cell failed" };
  return Object.assign(new Error(`${error.error_type}: ${error.message}`), {
    errorType: error.error_type,
    envelope,
  });
}

/** The outcome of a cell for callers that want the string (Capsule's adapter format). */
export function cellOutput(envelope: CellEnvelope): string {
  if (!envelope.success || envelope.result === null) throw cellError(envelope);
  return envelope.result.output;
}
