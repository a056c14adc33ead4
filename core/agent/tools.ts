/**
 * The tools an agent's model calls, `execute_javascript` and `execute_python`, as plain data: a
 * name, a description and a JSON Schema for each, and one handler. Any tool-calling API (OpenAI's,
 * Anthropic's, the Vercel AI SDK's, MCP) can use them as they are; nothing here depends on those
 * SDKs. Each adapter binds `createCapsuleTools` to its own `runCode` and `Session` as
 * `capsuleTools(options)`; the MCP servers (adapters/node/mcp.ts, adapters/workers/mcp.ts) serve
 * the same definitions and handler.
 *
 * Calls with a `session_id` share one session per language (its state lives from one call to the
 * next); calls without one are stateless. A call with `fork_from` too first makes its session
 * an independent copy of that one. The number of live sessions (forks included) is bounded, an
 * idle session is closed after a while (CapsuleToolsOptions), and the state every session holds
 * counts against the host's session image budget (core/runtime/memory-budget.ts, ImageBudget).
 */
import { formatValue, parseBytes, parseCompute, parseDuration } from "../config/units.ts";
import { asCapsuleError, ConfigError } from "../errors.ts";
import { parseAllowedHosts } from "../policy/hosts.ts";
import type { LogLevel } from "../runtime/attempt.ts";
import type { Envelope } from "../runtime/envelope.ts";
import { CELL_LIMIT_KEYS, type CellResult } from "./cell.ts";

export type AgentLanguage = "javascript" | "python";

export type { CellResult };

/** One tool as every tool-calling API takes it: exactly these three fields. */
export interface ToolDefinition {
  name: ToolName;
  description: string;
  /** JSON Schema (draft 2020-12 compatible) of the tool's input. */
  inputSchema: {
    type: "object";
    properties: Record<string, { type: string; description: string }>;
    required: string[];
    additionalProperties: false;
  };
}

export type ToolName = "execute_javascript" | "execute_python";

/** What a call gives back, for the model (`text`) and for the program (`envelope`). */
export interface ToolResult {
  /** stdout followed by the last value; on failure "<error_type>: <message>". */
  text: string;
  /** True when the code failed or the call was refused; `text` says why. */
  isError: boolean;
  /** The run's envelope; absent when the call was refused before anything ran. */
  envelope?: Envelope<CellResult>;
}

/** Per call: where its console output goes while it runs, and what cancels it. */
export interface ToolCallContext {
  onLog?: (level: LogLevel, text: string) => void;
  signal?: AbortSignal;
}

/** What a host gives the tools: its runner of stateless cells and, where it keeps any, sessions. */
export interface CodeBackend {
  /** The languages this host runs. */
  languages: readonly AgentLanguage[];
  /** Runs one stateless cell; never throws for the code's own failure (the envelope says). */
  runCode(
    language: AgentLanguage,
    code: string,
    call: ToolCallContext,
  ): Promise<Envelope<CellResult>>;
  /** Opens a session; absent on hosts that keep no session state (then `session_id` is refused). */
  openSession?(
    language: AgentLanguage,
    onLog: (level: LogLevel, text: string) => void,
  ): CodeSession;
  /** Why this host keeps no sessions, for the error a `session_id` gets. */
  noSessionsReason?: string;
}

export interface CodeSession {
  runCode(code: string): Promise<Envelope<CellResult>>;
  close(): Promise<void>;
  /**
   * An independent copy with the state after every call so far, whose console output goes to
   * `onLog`; absent where sessions cannot be copied (then `fork_from` is refused).
   */
  fork?(onLog: (level: LogLevel, text: string) => void): Promise<CodeSession>;
}

/** The host-independent tool options; each adapter adds its CodeOptions (limits and grants). */
export interface ToolsOptions {
  /** Which tools to offer; defaults to every language the host runs. */
  languages?: AgentLanguage[];
  /** Most sessions alive at once (per `capsuleTools()` result); default 16, 0 turns sessions off. */
  maxSessions?: number;
  /** A session unused this long is closed and its state dropped: "10m" (default), "1h", ms. */
  sessionIdle?: string | number;
  /** Largest `code` accepted, in UTF-8 bytes or a size like "1MB"; default 1 MiB. */
  maxCodeBytes?: string | number;
  /**
   * A cap shared with other tool sets (an MCP server over HTTP gives each client its own tools,
   * so that one client's session_ids never reach another's, and one budget for all of them).
   */
  sessionBudget?: SessionBudget;
  /** Console output of every call, besides each call's own `onLog`. */
  onLog?: (level: LogLevel, text: string, call: { tool: ToolName; sessionId?: string }) => void;
}

/** The limits and grants every call gets, as the tool descriptions state them. */
export interface ToolLimits {
  compute?: string | number;
  ram?: string | number;
  timeout?: string | number;
  allowedHosts?: string[];
  allowedFiles?: unknown[];
  envVariables?: string[];
}

export interface CapsuleTools {
  tools: ToolDefinition[];
  /** Runs one tool call. Never throws: a bad name or input is an `isError` result naming it. */
  handle(name: string, input: unknown, call?: ToolCallContext): Promise<ToolResult>;
  /** Closes every live session. Later calls with a session_id open new ones. */
  close(): Promise<void>;
  /** How many sessions are alive now. */
  readonly liveSessions: number;
  /** The limits and grants every call gets (what the descriptions state). */
  readonly limits: ToolLimits;
}

export const TOOL_NAMES: Readonly<Record<AgentLanguage, ToolName>> = {
  javascript: "execute_javascript",
  python: "execute_python",
};

/** Defaults an agent gets when it sets nothing (README "For agents"). */
export const AGENT_DEFAULTS = { compute: "LOW", ram: "256MB", timeout: "30s" } as const;
export const DEFAULT_MAX_SESSIONS = 16;
export const DEFAULT_SESSION_IDLE_MS = 10 * 60_000;
export const DEFAULT_MAX_CODE_BYTES = 1024 * 1024;
/** Letters, digits and `_ . : -`, 1 to 128 of them: a UUID, a thread id, a name. */
const SESSION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const INPUT_KEYS = new Set(["code", "session_id", "fork_from"]);

const LANGUAGE_TEXT: Readonly<Record<AgentLanguage, { title: string; output: string }>> = {
  javascript: { title: "JavaScript", output: "console.log output" },
  python: { title: "Python", output: "print output" },
};

/**
 * The tools over a host's backend. Throws ConfigError naming the option for a bad option; the
 * handler itself never throws.
 */
export function createCapsuleTools(
  backend: CodeBackend,
  options: ToolsOptions = {},
  limits: ToolLimits = {},
): CapsuleTools {
  const checked = checkToolsOptions(backend, options);
  checkLimits(limits);
  const sessions = new SessionRegistry(
    backend,
    checked.maxSessions,
    checked.sessionIdleMs,
    options.sessionBudget ?? new SessionBudget(checked.maxSessions),
  );
  const sessionsOffered = backend.openSession !== undefined && checked.maxSessions > 0;
  const tools = checked.languages.map((language) =>
    toolDefinition(language, limits, sessionsOffered, checked),
  );
  const offered = new Map(tools.map((tool, i) => [tool.name, checked.languages[i]]));

  async function handle(name: string, input: unknown, call: ToolCallContext = {}) {
    const language = offered.get(name as ToolName);
    if (language === undefined) {
      const known = tools.map((tool) => tool.name).join(", ");
      const python =
        name === TOOL_NAMES.python && !backend.languages.includes("python")
          ? " (Python does not run on this host)"
          : "";
      return refused(`unknown tool ${formatValue(name)}${python}; the tools are ${known}`);
    }
    const problem = inputProblem(input, checked.maxCodeBytes);
    if (problem !== null) return refused(`${name}: ${problem}`);
    const {
      code,
      session_id: sessionId,
      fork_from: forkFrom,
    } = input as { code: string; session_id?: string | null; fork_from?: string | null };
    const tool = name as ToolName;
    const onLog = (level: LogLevel, text: string) => {
      call.onLog?.(level, text);
      options.onLog?.(level, text, sessionId == null ? { tool } : { tool, sessionId });
    };
    try {
      if (sessionId == null) {
        return toolResult(await backend.runCode(language, code, { onLog, signal: call.signal }));
      }
      if (!sessionsOffered) {
        const given = forkFrom == null ? "session_id" : "fork_from";
        const value = forkFrom == null ? sessionId : forkFrom;
        return refused(
          `${name}: ${given} ${formatValue(value)} was given, but ${backend.openSession === undefined ? (backend.noSessionsReason ?? "this host keeps no sessions") : "sessions are turned off here (maxSessions 0)"}; leave session_id and fork_from out and pass what a call needs in its code`,
        );
      }
      const outcome = await sessions.run(language, sessionId, code, onLog, forkFrom ?? undefined);
      if (typeof outcome === "string") return refused(`${name}: ${outcome}`);
      const result = toolResult(outcome);
      // The session's state past the host's budget: say which session it was.
      if (outcome.error?.error_type === "memory_exceeded") {
        result.text = `memory_exceeded: session_id ${formatValue(sessionId)}: ${outcome.error.message}`;
      }
      return result;
    } catch (error) {
      // A session that could not open, or a backend that broke its promise not to throw: still
      // an answer the model can read.
      const failure = asCapsuleError(error);
      return refused(`${failure.errorType}: ${failure.message}`);
    }
  }

  return {
    tools,
    handle,
    close: () => sessions.closeAll(),
    limits,
    get liveSessions() {
      return sessions.size;
    },
  };
}

const TOOLS_KEYS = [
  "languages",
  "maxSessions",
  "sessionIdle",
  "maxCodeBytes",
  "sessionBudget",
  "onLog",
] as const;

/**
 * An adapter's `capsuleTools(options)` options, split into the tools' own and the CodeOptions
 * every call gets (the cell limits and `hostKeys`). Throws ConfigError naming an unknown option.
 */
export function splitToolsOptions(
  options: unknown,
  hostKeys: readonly string[],
): { tools: ToolsOptions; code: Record<string, unknown> } {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new ConfigError(`capsuleTools(): options must be an object, got ${formatValue(options)}`);
  }
  const codeKeys = new Set<string>([...CELL_LIMIT_KEYS, ...hostKeys]);
  const toolsKeys = new Set<string>(TOOLS_KEYS);
  const tools: Record<string, unknown> = {};
  const code: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if (toolsKeys.has(key)) tools[key] = value;
    else if (codeKeys.has(key)) code[key] = value;
    else {
      throw new ConfigError(
        `capsuleTools(): unknown option ${JSON.stringify(key)}; it takes ${[...codeKeys, ...toolsKeys].join(", ")}`,
      );
    }
  }
  return { tools: tools as ToolsOptions, code };
}

/** An adapter's cells: its runCode, its sessions, and the keys of its host options. */
export interface CellHost<Options extends object> {
  hostKeys: readonly string[];
  /** Whether Python cells run on this host now. */
  python: boolean;
  runCode(
    options: Options & { language: AgentLanguage; code: string } & ToolCallContext,
  ): Promise<Envelope<CellResult>>;
  openSession(
    language: AgentLanguage,
    options: Options & { onLog: (level: LogLevel, text: string) => void },
  ): HostSession;
}

/** An adapter's Session, as the tools use it. */
export interface HostSession {
  runCode(code: string): Promise<Envelope<CellResult>>;
  close(): Promise<void>;
  fork(options: { onLog: (level: LogLevel, text: string) => void }): Promise<HostSession>;
}

/** A host's Session as a CodeSession: a copy's console output goes to the copy's own calls. */
function codeSession(session: HostSession): CodeSession {
  return {
    runCode: (code) => session.runCode(code),
    close: () => session.close(),
    fork: async (onLog) => codeSession(await session.fork({ onLog })),
  };
}

/** `capsuleTools(options)` over an adapter's cells: every call gets the options' CodeOptions. */
export function toolsOverCells<Options extends object>(
  host: CellHost<Options>,
  options: unknown,
): CapsuleTools {
  const { tools, code } = splitToolsOptions(options ?? {}, host.hostKeys);
  const codeOptions = code as Options;
  const backend: CodeBackend = {
    languages: host.python ? ["javascript", "python"] : ["javascript"],
    runCode: (language, source, call) =>
      host.runCode({
        ...codeOptions,
        language,
        code: source,
        ...(call.onLog ? { onLog: call.onLog } : {}),
        ...(call.signal ? { signal: call.signal } : {}),
      }),
    openSession: (language, onLog) =>
      codeSession(host.openSession(language, { ...codeOptions, onLog })),
  };
  return createCapsuleTools(backend, tools, codeOptions as ToolLimits);
}

/** The text a model reads for a finished run. */
export function toolResult(envelope: Envelope<CellResult>): ToolResult {
  if (!envelope.success || envelope.result === null) {
    const error = envelope.error ?? { error_type: "internal_error", message: "no result" };
    return { text: `${error.error_type}: ${error.message}`, isError: true, envelope };
  }
  return { text: cellText(envelope.result), isError: false, envelope };
}

/**
 * stdout, then the last value: a string as it is, anything else as JSON (as Capsule's MCP server
 * gives it), since `[object Object]` tells a model nothing. Otherwise the cell's own output.
 */
export function cellText(cell: CellResult): string {
  const { value, stdout, output } = cell;
  if (value === null || value === undefined || typeof value !== "object") return output;
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch {
    return output;
  }
  if (stdout === "") return json;
  return stdout.endsWith("\n") ? `${stdout}${json}` : `${stdout}\n${json}`;
}

function refused(text: string): ToolResult {
  return { text, isError: true };
}

/** What is wrong with a tool input, naming the bad value, or null. */
function inputProblem(input: unknown, maxCodeBytes: number): string | null {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    return `the input must be an object like {"code": "1 + 1"}, got ${shortValue(input)}`;
  }
  for (const key of Object.keys(input)) {
    if (!INPUT_KEYS.has(key)) {
      return `unknown input property ${formatValue(key)}; the input takes "code" and, optionally, "session_id" and "fork_from"`;
    }
  }
  const { code, session_id: sessionId, fork_from: forkFrom } = input as Record<string, unknown>;
  if (typeof code !== "string") {
    return code === undefined
      ? `the input has no "code"; give the code to run as a string`
      : `"code" must be a string of source code, got ${shortValue(code)}`;
  }
  const bytes = utf8Length(code, maxCodeBytes);
  if (bytes > maxCodeBytes) {
    return `"code" is longer than ${maxCodeBytes} bytes (the limit); send less code, or put data in a file the code reads`;
  }
  for (const [key, value] of [
    ["session_id", sessionId],
    ["fork_from", forkFrom],
  ] as const) {
    if (value !== undefined && value !== null) {
      if (typeof value !== "string" || !SESSION_ID.test(value)) {
        return `"${key}" must be 1 to 128 letters, digits, "_", ".", ":" or "-", got ${shortValue(value)}`;
      }
    }
  }
  if (forkFrom !== undefined && forkFrom !== null) {
    if (sessionId === undefined || sessionId === null) {
      return `"fork_from" ${formatValue(forkFrom)} needs a "session_id" too: the name of the new session that starts as a copy of it`;
    }
    if (forkFrom === sessionId) {
      return `"fork_from" and "session_id" are both ${formatValue(sessionId)}; a fork needs a new session_id`;
    }
  }
  return null;
}

/** The UTF-8 length of `text`, counted only until it passes `stop`. */
function utf8Length(text: string, stop: number): number {
  if (text.length * 3 <= stop) return 0;
  let bytes = 0;
  for (let i = 0; i < text.length && bytes <= stop; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit < 0xdc00 && i + 1 < text.length) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** A value in an error message, cut short: a model may have sent a whole program. */
function shortValue(value: unknown): string {
  const text = formatValue(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

interface CheckedToolsOptions {
  languages: AgentLanguage[];
  maxSessions: number;
  sessionIdleMs: number;
  maxCodeBytes: number;
}

function checkToolsOptions(backend: CodeBackend, options: ToolsOptions): CheckedToolsOptions {
  if (typeof options !== "object" || options === null) {
    throw new ConfigError(`capsuleTools(): options must be an object, got ${formatValue(options)}`);
  }
  const languages = options.languages ?? [...backend.languages];
  if (!Array.isArray(languages) || languages.length === 0) {
    throw new ConfigError(
      `languages: ${formatValue(languages)} is not a list of languages; use ["javascript"], ["python"] or both`,
    );
  }
  for (const language of languages) {
    if (language !== "javascript" && language !== "python") {
      throw new ConfigError(
        `languages: ${formatValue(language)} is not a language; use "javascript" or "python"`,
      );
    }
    if (!backend.languages.includes(language)) {
      throw new ConfigError(
        `languages: ${formatValue(language)} does not run on this host; it runs ${backend.languages.join(" and ")}`,
      );
    }
  }
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  if (!Number.isSafeInteger(maxSessions) || maxSessions < 0) {
    throw new ConfigError(
      `maxSessions: ${formatValue(maxSessions)} is not a whole number of sessions (0 or more)`,
    );
  }
  if (options.onLog !== undefined && typeof options.onLog !== "function") {
    throw new ConfigError(`onLog: must be a function, got ${formatValue(options.onLog)}`);
  }
  return {
    languages: [...new Set(languages)],
    maxSessions,
    sessionIdleMs:
      options.sessionIdle === undefined
        ? DEFAULT_SESSION_IDLE_MS
        : parseDuration(options.sessionIdle, "sessionIdle"),
    maxCodeBytes:
      options.maxCodeBytes === undefined
        ? DEFAULT_MAX_CODE_BYTES
        : parseBytes(options.maxCodeBytes, "maxCodeBytes"),
  };
}

/** The limits, checked here too so a bad one fails when the tools are made, not at every call. */
function checkLimits(limits: ToolLimits): void {
  if (limits.compute !== undefined) parseCompute(limits.compute, "compute");
  if (limits.ram !== undefined) parseBytes(limits.ram, "ram");
  if (limits.timeout !== undefined && limits.timeout !== null) {
    parseDuration(limits.timeout, "timeout");
  }
  if (limits.allowedHosts !== undefined) parseAllowedHosts(limits.allowedHosts, "allowedHosts");
}

function toolDefinition(
  language: AgentLanguage,
  limits: ToolLimits,
  sessions: boolean,
  options: CheckedToolsOptions,
): ToolDefinition {
  const { title, output } = LANGUAGE_TEXT[language];
  const state = sessions
    ? ` Without session_id every call starts from a clean sandbox; calls with the same session_id share one session, whose variables, functions, classes and imports live on to the next call (sessions idle for ${minutes(options.sessionIdleMs)} are closed). fork_from copies an open session into a new session_id first. At most ${options.maxSessions} sessions at once, forks included; a session's state counts against the host's memory for sessions, and a call whose state would not fit fails with memory_exceeded, the session keeping its state from before.`
    : " Every call starts from a clean sandbox: pass what a call needs in its code.";
  const python =
    language === "python" ? " Pure Python and its standard library; no packages to install." : "";
  return {
    name: TOOL_NAMES[language],
    description: `Execute ${title} code in a secure isolated WebAssembly sandbox. Both standard output (${output}) and the value of the last expression are returned.${python}${state} ${grantsText(limits)}`,
    inputSchema: {
      type: "object",
      properties: {
        code: {
          type: "string",
          description: `${title} code to execute. Standard output and the final expression are returned.`,
        },
        ...(sessions
          ? {
              session_id: {
                type: "string",
                description:
                  "Optional. Any name (letters, digits, _ . : -) for a session to run in; reuse it to keep state between calls.",
              },
              fork_from: {
                type: "string",
                description:
                  "Optional, with a new session_id: the session_id of an open session to copy. The new session starts with a copy of its state, then runs code; afterwards the two change independently (try something without losing what you have).",
              },
            }
          : {}),
      },
      required: ["code"],
      additionalProperties: false,
    },
  };
}

function sessionCount(n: number): string {
  return n === 1 ? "1 is" : `${n} are`;
}

function minutes(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms} ms`;
}

/** What every call may use, in words a model can act on. */
function grantsText(limits: ToolLimits): string {
  const compute = limits.compute ?? AGENT_DEFAULTS.compute;
  const ram = limits.ram ?? AGENT_DEFAULTS.ram;
  const timeout = limits.timeout ?? AGENT_DEFAULTS.timeout;
  const hosts = limits.allowedHosts ?? [];
  const files = limits.allowedFiles ?? [];
  const env = limits.envVariables ?? [];
  const parts = [
    `Each call gets ${/^\d+$/.test(String(compute)) ? `${compute} fuel` : `${compute} compute`}, ${typeof ram === "number" ? `${ram} bytes` : ram} of memory and ${typeof timeout === "number" ? `${timeout} ms` : timeout}.`,
    hosts.length === 0
      ? "No network access."
      : `Network access (fetch) only to ${hosts.join(", ")}.`,
    files.length === 0
      ? "No file access."
      : `File access only to ${files.map((file) => (typeof file === "string" ? file : formatValue(file))).join(", ")}.`,
  ];
  if (env.length > 0) parts.push(`Environment variables: ${env.join(", ")}.`);
  return parts.join(" ");
}

/** Sessions open across several tool sets, at most `max`. */
export class SessionBudget {
  live = 0;
  constructor(readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new ConfigError(`SessionBudget: ${formatValue(max)} is not a whole number (0 or more)`);
    }
  }
}

interface LiveSession {
  /** Its key in the table (language and session_id). */
  key: string;
  /** The session (a fork's once its copy is made; rejects when the copy failed). */
  session: Promise<CodeSession>;
  /** Console output of the call now running, if any. */
  onLog: ((level: LogLevel, text: string) => void) | null;
  /** Calls on one session run one after another: its state is one chain. */
  queue: Promise<unknown>;
  running: number;
  timer: ReturnType<typeof setTimeout> | null;
}

/** Live sessions by language and id: bounded in number, closed when idle. */
class SessionRegistry {
  private readonly live = new Map<string, LiveSession>();

  constructor(
    private readonly backend: CodeBackend,
    private readonly max: number,
    private readonly idleMs: number,
    private readonly budget: SessionBudget,
  ) {}

  get size(): number {
    return this.live.size;
  }

  /** The call's envelope, or why it was refused. `forkFrom`: first copy that session into `id`. */
  async run(
    language: AgentLanguage,
    id: string,
    code: string,
    onLog: (level: LogLevel, text: string) => void,
    forkFrom?: string,
  ): Promise<Envelope<CellResult> | string> {
    const key = `${language}\u0000${id}`;
    let entry = this.live.get(key);
    if (forkFrom !== undefined) {
      if (entry !== undefined) {
        return `session_id ${formatValue(id)} is already open, and fork_from copies into a new session; give a session_id not in use`;
      }
      const source = this.live.get(`${language}\u0000${forkFrom}`);
      if (source === undefined) {
        return `fork_from ${formatValue(forkFrom)} names no open ${LANGUAGE_TEXT[language].title} session (never opened, or closed after ${minutes(this.idleMs)} idle); give the session_id of a session you have used`;
      }
      const full = this.full(id);
      if (full !== null) return full;
      // The copy is made after the calls already queued on the source, as one of its calls.
      entry = this.open(key, (route) =>
        this.queued(source, async () => {
          const session = await source.session;
          if (session.fork === undefined) {
            throw new ConfigError("sessions on this host cannot be copied; leave fork_from out");
          }
          return session.fork(route);
        }),
      );
      try {
        await entry.session;
      } catch (error) {
        this.drop(key, entry);
        const failure = asCapsuleError(error);
        return `fork_from ${formatValue(forkFrom)}: the copy failed: ${failure.errorType}: ${failure.message}`;
      }
    } else if (entry === undefined) {
      const full = this.full(id);
      if (full !== null) return full;
      const { openSession } = this.backend;
      if (openSession === undefined) throw new ConfigError("this host keeps no sessions");
      entry = this.open(key, (route) => Promise.resolve(openSession(language, route)));
    }
    const current = entry;
    return this.queued(current, async () => {
      current.onLog = onLog;
      try {
        return await (await current.session).runCode(code);
      } finally {
        current.onLog = null;
      }
    });
  }

  /** Why `id` cannot open a new session now, or null. */
  private full(id: string): string | null {
    if (this.live.size < this.max && this.budget.live < this.budget.max) return null;
    const open =
      this.live.size >= this.max
        ? `${sessionCount(this.max)} open (the limit)`
        : `${sessionCount(this.budget.max)} open on this server (the limit)`;
    return `session_id ${formatValue(id)} would open a new session, but ${open}; reuse a session_id you have, or wait until one has been idle for ${minutes(this.idleMs)}`;
  }

  /** Registers a new session at once (so it counts before it exists), made by `make`. */
  private open(
    key: string,
    make: (route: (level: LogLevel, text: string) => void) => Promise<CodeSession>,
  ): LiveSession {
    const entry: LiveSession = {
      key,
      session: Promise.resolve(null as unknown as CodeSession),
      onLog: null,
      queue: Promise.resolve(),
      running: 0,
      timer: null,
    };
    entry.session = make((level, text) => entry.onLog?.(level, text));
    entry.session.catch(() => {});
    entry.queue = entry.session.catch(() => {});
    this.live.set(key, entry);
    this.budget.live++;
    return entry;
  }

  /**
   * Runs `work` after the session's calls before it. The idle time counts again from when a call
   * starts and from when it ends, and a session is never closed while a call runs.
   */
  private async queued<T>(entry: LiveSession, work: () => Promise<T>): Promise<T> {
    entry.running++;
    this.arm(entry);
    const result = entry.queue.then(work);
    entry.queue = result.catch(() => {});
    try {
      return await result;
    } finally {
      entry.running--;
      this.arm(entry);
    }
  }

  private arm(entry: LiveSession): void {
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
    // A session closed meanwhile (by close(), or a fork that failed) needs no timer.
    if (this.live.get(entry.key) !== entry) return;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      // A call still running re-arms the timer when it ends.
      if (entry.running === 0) this.drop(entry.key, entry);
    }, this.idleMs);
    // On Node an idle session does not keep the process alive.
    (entry.timer as { unref?: () => void }).unref?.();
  }

  /** Takes a session out of the table and closes it (after its calls). */
  private drop(key: string, entry: LiveSession): void {
    if (this.live.get(key) !== entry) return;
    this.live.delete(key);
    this.budget.live--;
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
    void entry.queue
      .then(() => entry.session)
      .then(
        (session) => session.close(),
        () => {},
      )
      .catch(() => {});
  }

  async closeAll(): Promise<void> {
    const entries = [...this.live.values()];
    this.budget.live -= entries.length;
    this.live.clear();
    await Promise.all(
      entries.map(async (entry) => {
        if (entry.timer !== null) clearTimeout(entry.timer);
        entry.timer = null;
        await entry.queue;
        await entry.session.then((session) => session.close()).catch(() => {});
      }),
    );
  }
}
