import type { ChunkInstaller, LogLevel } from "../chunk.ts";
import { invalidArgType, notAvailable } from "./node-errors.ts";

type Listener = (...args: unknown[]) => void;

export interface OutputStream {
  readonly fd: number;
  readonly isTTY: false;
  write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean;
  on(): OutputStream;
  once(): OutputStream;
  off(): OutputStream;
  end(): void;
}

export interface Hrtime {
  (previous?: [number, number]): [number, number];
  bigint(): bigint;
}

export interface GuestProcess {
  env: Record<string, string>;
  argv: string[];
  argv0: string;
  execArgv: string[];
  title: string;
  /**
   * "wasi": the task runs in a WebAssembly sandbox, not on the host's OS, and the value must not
   * differ between hosts. Checks like `platform === "win32"` take the POSIX branch, which matches
   * the sandbox's "/"-separated paths.
   */
  platform: string;
  arch: string;
  /** Not Node: "v0.0.0" parses as a version yet satisfies no Node version range. */
  version: string;
  /** No `node` key, so code that detects Node does not take Node-only paths. */
  versions: Record<string, string>;
  release: { name: string };
  pid: number;
  ppid: number;
  exitCode: number | undefined;
  stdout: OutputStream;
  stderr: OutputStream;
  cwd(): string;
  chdir(directory: string): never;
  exit(code?: unknown): never;
  abort(): never;
  nextTick(callback: Listener, ...args: unknown[]): void;
  hrtime: Hrtime;
  uptime(): number;
  umask(): number;
  emitWarning(warning: unknown, type?: unknown): void;
  on(event: string, listener: Listener): GuestProcess;
  addListener(event: string, listener: Listener): GuestProcess;
  once(event: string, listener: Listener): GuestProcess;
  off(event: string, listener: Listener): GuestProcess;
  removeListener(event: string, listener: Listener): GuestProcess;
  removeAllListeners(event?: string): GuestProcess;
  emit(event: string, ...args: unknown[]): boolean;
  listeners(event: string): Listener[];
  listenerCount(event: string): number;
}

export interface ProcessExports {
  process: GuestProcess;
  module: GuestProcess;
}

interface ProcessInfo {
  env?: Record<string, string>;
  cwd?: string;
}

const install: ChunkInstaller<ProcessExports> = (ctx) => {
  const { host } = ctx;
  const info: ProcessInfo =
    typeof host.processInfo === "function" ? JSON.parse(host.processInfo()) : {};
  const workingDirectory = typeof info.cwd === "string" ? info.cwd : "/";
  const env: Record<string, string> = Object.assign({}, info.env);
  const listeners = new Map<string, Listener[]>();
  const microtask = (fn: () => void) => ctx.load("timers").queueMicrotask(fn);

  function text(chunk: unknown, encoding: unknown): string {
    if (typeof chunk === "string") return chunk;
    if (chunk instanceof Uint8Array) {
      const { Buffer } = ctx.load("buffer");
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const name = typeof encoding === "string" ? encoding : "utf8";
      return bytes.toString(name as Parameters<typeof bytes.toString>[0]);
    }
    throw invalidArgType("chunk", "of type string or an instance of Buffer or Uint8Array", chunk);
  }

  function outputStream(fd: number, level: LogLevel): OutputStream {
    const stream: OutputStream = {
      fd,
      isTTY: false,
      // Each write becomes one log entry; its final newline is the entry's own end.
      write(chunk, encoding, callback) {
        const written = text(chunk, encoding);
        if (written.length > 0) {
          host.log(level, written.endsWith("\n") ? written.slice(0, -1) : written);
        }
        const done = typeof encoding === "function" ? encoding : callback;
        if (typeof done === "function") microtask(() => done());
        return true;
      },
      on: () => stream,
      once: () => stream,
      off: () => stream,
      end() {},
    };
    return stream;
  }

  const hrtime = ((previous?: [number, number]) => {
    const now = host.monotonic();
    let seconds = Math.floor(now / 1000);
    let nanoseconds = Math.floor((now - seconds * 1000) * 1e6);
    if (previous !== undefined) {
      if (!Array.isArray(previous)) throw invalidArgType("time", "an instance of Array", previous);
      seconds -= previous[0];
      nanoseconds -= previous[1];
      if (nanoseconds < 0) {
        seconds--;
        nanoseconds += 1e9;
      }
    }
    return [seconds, nanoseconds];
  }) as Hrtime;
  hrtime.bigint = () => BigInt(Math.floor(host.monotonic() * 1e6));

  const addListener = (event: string, listener: Listener) => {
    if (typeof listener !== "function")
      throw invalidArgType("listener", "of type function", listener);
    listeners.set(event, [...(listeners.get(event) ?? []), listener]);
    return process;
  };
  const removeListener = (event: string, listener: Listener) => {
    const list = listeners.get(event) ?? [];
    const index = list.lastIndexOf(listener);
    if (index !== -1) listeners.set(event, [...list.slice(0, index), ...list.slice(index + 1)]);
    return process;
  };

  const process: GuestProcess = {
    env,
    argv: ["capsule", "task"],
    argv0: "capsule",
    execArgv: [],
    title: "capsule",
    platform: "wasi",
    arch: "wasm32",
    version: "v0.0.0",
    versions: {},
    release: { name: "capsule" },
    pid: 1,
    ppid: 0,
    exitCode: undefined,
    stdout: outputStream(1, "log"),
    stderr: outputStream(2, "error"),
    cwd: () => workingDirectory,
    chdir() {
      throw notAvailable("process.chdir()", `the working directory stays ${workingDirectory}`);
    },
    exit(code) {
      const shown = code === undefined ? "" : String(code);
      throw notAvailable(
        `process.exit(${shown})`,
        "a task ends by returning a value (success) or throwing an error (failure)",
      );
    },
    abort() {
      throw notAvailable("process.abort()", "throw an error to fail the task");
    },
    nextTick(callback, ...args) {
      if (typeof callback !== "function") {
        throw invalidArgType("callback", "of type function", callback);
      }
      microtask(() => callback(...args));
    },
    hrtime,
    uptime: () => host.monotonic() / 1000,
    umask: () => 0o22,
    emitWarning(warning, type) {
      const message =
        warning instanceof Error
          ? `${warning.name}: ${warning.message}`
          : `${typeof type === "string" ? type : "Warning"}: ${String(warning)}`;
      host.log("warn", `(capsule) ${message}`);
    },
    on: addListener,
    addListener,
    once(event, listener) {
      const once: Listener = (...args) => {
        removeListener(event, once);
        listener(...args);
      };
      return addListener(event, once);
    },
    off: removeListener,
    removeListener,
    removeAllListeners(event) {
      if (event === undefined) listeners.clear();
      else listeners.delete(event);
      return process;
    },
    emit(event, ...args) {
      const list = listeners.get(event);
      if (!list?.length) return false;
      for (const listener of list) listener.apply(process, args);
      return true;
    },
    listeners: (event) => [...(listeners.get(event) ?? [])],
    listenerCount: (event) => listeners.get(event)?.length ?? 0,
  };
  Object.defineProperty(process, Symbol.toStringTag, { value: "process", configurable: true });
  return { process, module: process };
};
export default install;
