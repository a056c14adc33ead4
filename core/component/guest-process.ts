/**
 * `process` inside a component made by `capsule build --export`: ComponentizeJS has no such
 * global, and tasks read `process.env`. The environment comes from the component's
 * `wasi:cli/environment` import, which the host fills with the task's `envVariables` only, so
 * this object can show nothing the grant leaves out. It is read on each access: a variable is
 * what the host gives this attempt, not what an earlier one saw.
 */

interface Environment {
  getEnvironment(): [string, string][];
  getArguments?(): string[];
  initialCwd?(): string | undefined | null;
}

function environment(): Environment | undefined {
  const api = (globalThis as Record<string, unknown>)["wasi:cli/environment"] as
    | Environment
    | undefined;
  return typeof api?.getEnvironment === "function" ? api : undefined;
}

function variables(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of environment()?.getEnvironment() ?? []) env[name] = value;
  return env;
}

export const process = {
  get env(): Record<string, string> {
    return variables();
  },
  get argv(): string[] {
    return ["capsule", "/task.wasm", ...(environment()?.getArguments?.() ?? [])];
  },
  cwd(): string {
    return environment()?.initialCwd?.() || "/";
  },
  platform: "wasi",
  version: "",
  versions: {} as Record<string, string>,
  exitCode: undefined as number | undefined,
  exit(code?: number): never {
    throw new Error(`process.exit(${code ?? 0}) is not available inside a task`);
  },
  nextTick(callback: (...args: unknown[]) => void, ...args: unknown[]): void {
    queueMicrotask(() => callback(...args));
  },
};

export default process;
