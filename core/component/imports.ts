/**
 * The imports one attempt of a component gets, the same map on every host: each host supplies
 * preview2-shim's modules for its platform, the filesystem of the task's grants, the outgoing
 * handler behind its policy, and the clocks metered by fuel (clock.ts); this file puts them
 * under the WASI 0.2 names the component imports and adds `capsule:host/api`.
 */
import type { TaskLimits } from "../config/options.ts";

/** The parts of preview2-shim a component's imports take as they are. */
export interface ShimParts {
  cli: Record<string, unknown>;
  io: { error: unknown; poll: unknown; streams: unknown };
  random: { random: unknown; insecure: unknown; insecureSeed: unknown };
  httpTypes: unknown;
}

export interface AttemptImports {
  /** `capsule:host/api`: sub-tasks and http-request (run.ts). */
  api: Record<string, unknown>;
  /** The variables the task may read: only the names its envVariables list. */
  environment: [string, string][];
  shim: ShimParts;
  clocks: { monotonicClock: unknown; wallClock: unknown };
  fs: { types: unknown; preopens: unknown };
  outgoingHandler: unknown;
}

/** The environment a task sees: the listed names that `lookup` has a value for. */
export function taskEnvironment(
  limits: Pick<TaskLimits, "envVariables">,
  lookup: (name: string) => string | undefined,
): [string, string][] {
  return limits.envVariables.flatMap((name) => {
    const value = lookup(name);
    return typeof value === "string" ? [[name, value] as [string, string]] : [];
  });
}

export function componentImportMap(parts: AttemptImports): Record<string, unknown> {
  const { cli, io, random } = parts.shim;
  return {
    "capsule:host/api": parts.api,
    "wasi:cli/environment": {
      getEnvironment: () => parts.environment,
      getArguments: () => [],
      initialCwd: () => undefined,
    },
    "wasi:cli/exit": cli.exit,
    "wasi:cli/stderr": cli.stderr,
    "wasi:cli/stdin": cli.stdin,
    "wasi:cli/stdout": cli.stdout,
    "wasi:cli/terminal-input": cli.terminalInput,
    "wasi:cli/terminal-output": cli.terminalOutput,
    "wasi:cli/terminal-stderr": cli.terminalStderr,
    "wasi:cli/terminal-stdin": cli.terminalStdin,
    "wasi:cli/terminal-stdout": cli.terminalStdout,
    "wasi:clocks/monotonic-clock": parts.clocks.monotonicClock,
    "wasi:clocks/wall-clock": parts.clocks.wallClock,
    "wasi:filesystem/preopens": parts.fs.preopens,
    "wasi:filesystem/types": parts.fs.types,
    "wasi:http/outgoing-handler": parts.outgoingHandler,
    "wasi:http/types": parts.shim.httpTypes,
    "wasi:io/error": io.error,
    "wasi:io/poll": io.poll,
    "wasi:io/streams": io.streams,
    "wasi:random/random": random.random,
    "wasi:random/insecure": random.insecure,
    "wasi:random/insecure-seed": random.insecureSeed,
  };
}
