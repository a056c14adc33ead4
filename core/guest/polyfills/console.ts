import type { ChunkInstaller, LogLevel } from "../chunk.ts";

export interface ConsoleExports {
  console: Console;
  /** Prints an error nobody caught (timer callbacks, microtasks) the way a runtime would. */
  reportUncaught(error: unknown): void;
}

type Method = (...args: unknown[]) => void;

interface Console {
  log: Method;
  info: Method;
  warn: Method;
  error: Method;
  debug: Method;
  trace: Method;
  dir(value: unknown, options?: { depth?: number | null }): void;
  dirxml: Method;
  table(data: unknown, columns?: readonly string[]): void;
  assert(condition?: unknown, ...args: unknown[]): void;
  count(label?: unknown): void;
  countReset(label?: unknown): void;
  time(label?: unknown): void;
  timeEnd(label?: unknown): void;
  timeLog(label?: unknown, ...args: unknown[]): void;
  group: Method;
  groupCollapsed: Method;
  groupEnd(): void;
}

function formatDuration(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(3)}s` : `${ms.toFixed(3)}ms`;
}

const install: ChunkInstaller<ConsoleExports> = (ctx) => {
  const { log, monotonic } = ctx.host;
  const inspector = () => ctx.load("inspect");
  const counts = new Map<string, number>();
  const timers = new Map<string, number>();
  let groupIndent = "";

  /** Plain strings and numbers need no inspector; most console calls stop here. */
  function formatArgs(args: readonly unknown[]): string {
    const first = args[0];
    if (typeof first === "string" && args.length > 1 && first.includes("%")) {
      return inspector().format(args);
    }
    let text = "";
    for (let i = 0; i < args.length; i++) {
      const arg = args[i];
      const type = typeof arg;
      if (type === "number") text += Object.is(arg, -0) ? "-0" : String(arg);
      else if (type === "string" || type === "boolean" || type === "undefined" || arg === null) {
        text += String(arg);
      } else return inspector().format(args);
      if (i < args.length - 1) text += " ";
    }
    return text;
  }

  function emit(level: LogLevel, text: string): void {
    log(level, groupIndent ? groupIndent + text.replaceAll("\n", `\n${groupIndent}`) : text);
  }

  const method =
    (level: LogLevel): Method =>
    (...args) =>
      emit(level, formatArgs(args));

  const label = (value: unknown) => (value === undefined ? "default" : String(value));

  const console: Console = {
    log: method("log"),
    info: method("info"),
    warn: method("warn"),
    error: method("error"),
    debug: method("debug"),
    trace(...args) {
      // Drop the frame of trace itself, as Node does.
      const frames = (new Error().stack ?? "").split("\n").slice(1).join("\n").replace(/\n$/, "");
      emit("error", `Trace${args.length ? `: ${formatArgs(args)}` : ""}\n${frames}`);
    },
    dir(value, options) {
      emit("log", inspector().inspect(value, options));
    },
    dirxml: method("log"),
    table(data, columns) {
      if (data === null || typeof data !== "object") return console.log(data);
      emit("log", inspector().table(data, columns));
    },
    assert(condition, ...args) {
      if (condition) return;
      if (typeof args[0] === "string") args[0] = `Assertion failed: ${args[0]}`;
      else args.unshift("Assertion failed");
      emit("warn", formatArgs(args));
    },
    count(value) {
      const name = label(value);
      const count = (counts.get(name) ?? 0) + 1;
      counts.set(name, count);
      emit("log", `${name}: ${count}`);
    },
    countReset(value) {
      const name = label(value);
      if (!counts.delete(name)) emit("warn", `Count for '${name}' does not exist`);
    },
    time(value) {
      const name = label(value);
      if (timers.has(name)) emit("warn", `Label '${name}' already exists for console.time()`);
      else timers.set(name, monotonic());
    },
    timeEnd(value) {
      const name = label(value);
      const started = timers.get(name);
      if (started === undefined)
        return emit("warn", `No such label '${name}' for console.timeEnd()`);
      timers.delete(name);
      emit("log", `${name}: ${formatDuration(monotonic() - started)}`);
    },
    timeLog(value, ...args) {
      const name = label(value);
      const started = timers.get(name);
      if (started === undefined)
        return emit("warn", `No such label '${name}' for console.timeLog()`);
      const extra = args.length ? ` ${formatArgs(args)}` : "";
      emit("log", `${name}: ${formatDuration(monotonic() - started)}${extra}`);
    },
    group(...args) {
      if (args.length) emit("log", formatArgs(args));
      groupIndent += "  ";
    },
    groupCollapsed(...args) {
      console.group(...args);
    },
    groupEnd() {
      groupIndent = groupIndent.slice(2);
    },
  };
  Object.defineProperty(console, Symbol.toStringTag, { value: "console", configurable: true });

  return {
    console,
    reportUncaught(error) {
      let text: string;
      try {
        text = inspector().inspect(error);
      } catch {
        text = "(an error that could not be inspected)";
      }
      log("error", `Uncaught ${text}`);
    },
  };
};
export default install;
