import type { TaskFailure } from "../bridge.ts";
import type { ChunkContext, ChunkInstaller } from "../chunk.ts";

export interface TasksExports {
  /** The error `__capsule.register` throws for bad arguments or a duplicate name. */
  registrationError(options: unknown, fn: unknown): Error;
  call(name: string, args: unknown[]): Promise<unknown>;
  listTasks(): string;
  start(name: string, argsJson: string): Promise<string>;
}

const messageOf = (error: unknown): string => {
  try {
    return error instanceof Error ? error.message : String(error);
  } catch {
    return "unknown error";
  }
};

/** JSON.stringify silently drops functions and symbols; a sub-task would get different args. */
function rejectNonJson(key: string, value: unknown): unknown {
  const type = typeof value;
  if (type === "function" || type === "symbol") {
    throw new TypeError(`a ${type} cannot be sent${key ? ` (at key "${key}")` : ""}`);
  }
  return value;
}

/** The mark the runtime's own modules put on errors that are capability refusals. */
export const DENIED = Symbol.for("capsule.denied");

function readDenied(error: object): boolean {
  try {
    return (error as Record<symbol, unknown>)[DENIED] === true;
  } catch {
    return false;
  }
}

function describeFailure(ctx: ChunkContext, error: unknown): TaskFailure {
  const read = (key: "name" | "message" | "stack"): unknown => {
    try {
      return (error as Record<string, unknown>)[key];
    } catch {
      return undefined;
    }
  };
  if (error !== null && typeof error === "object" && typeof read("message") === "string") {
    const name = read("name");
    const message = read("message") as string;
    const failure: TaskFailure = { name: typeof name === "string" ? name : "Error", message };
    // Marked by the fs and fetch modules on a policy refusal: uncaught, it is permission_denied.
    if (readDenied(error)) failure.denied = true;
    const frames = read("stack");
    if (typeof frames === "string") {
      // QuickJS stacks hold only the frames; Node's start with the "Name: message" line.
      const header = message ? `${failure.name}: ${message}` : failure.name;
      // Frames from the first one in runtime code (chunks are evaluated as "<input>") down
      // belong to the runtime, not to the task.
      const lines = frames.replace(/\n$/, "").split("\n");
      const runtimeFrame = lines.findIndex((line) => line.includes("(<input>:"));
      const body = (runtimeFrame < 0 ? lines : lines.slice(0, runtimeFrame)).join("\n");
      failure.stack = body.startsWith(header) ? body : body ? `${header}\n${body}` : header;
    }
    return failure;
  }
  let message: string;
  try {
    message = typeof error === "string" ? error : ctx.load("inspect").inspect(error);
  } catch {
    message = messageOf(error);
  }
  return { name: "Error", message };
}

/** The task registry's slower paths: sub-task calls, listing, starting, and error shapes. */
const install: ChunkInstaller<TasksExports> = (ctx) => {
  const { registry } = ctx;
  const { callTask } = ctx.host;
  // The prelude's JSON, not the global one: a task may replace JSON.stringify, and what this
  // chunk hands the runtime (its failure, its tasks, its result) must stay well-formed.
  const { parse, stringify } = ctx.json;
  const failure = (error: TaskFailure) => stringify({ ok: false, error });

  return {
    registrationError(options, fn) {
      if (options === null || typeof options !== "object") {
        return new TypeError(
          `task options must be an object, got ${options === null ? "null" : typeof options}`,
        );
      }
      const { name } = options as { name?: unknown };
      if (typeof name !== "string" || name === "") {
        return new TypeError(
          `task options.name must be a non-empty string, got ${stringify(name) ?? typeof name}`,
        );
      }
      if (typeof fn !== "function") {
        return new TypeError(`task "${name}" must be given a function, got ${typeof fn}`);
      }
      return new Error(`task "${name}" is already registered; each task needs a unique name`);
    },

    async call(name, args) {
      if (!Array.isArray(args)) {
        throw new TypeError(`arguments for task "${name}" must be an array, got ${typeof args}`);
      }
      let argsJson: string;
      try {
        argsJson = stringify(args, rejectNonJson);
      } catch (error) {
        throw new TypeError(
          `arguments for task "${name}" are not JSON-serializable: ${messageOf(error)}`,
        );
      }
      // Parsed on the host: the envelope carries timings (duration_ms), and the fuel a task spends
      // must not depend on how long its sub-tasks happened to take.
      return await callTask(name, argsJson);
    },

    listTasks() {
      const parts: string[] = [];
      for (const [name, task] of registry) {
        const nameJson = stringify(name);
        parts.push(
          task.optionsJson === undefined
            ? `{"name":${nameJson},"optionsError":${stringify(messageOf(task.optionsError))}}`
            : `{"name":${nameJson},"options":${task.optionsJson}}`,
        );
      }
      return `[${parts.join(",")}]`;
    },

    async start(name, argsJson) {
      const task = registry.get(name);
      if (!task) {
        const known = [...registry.keys()].join(", ") || "(none)";
        return failure({
          name: "Error",
          message: `no task named ${stringify(name)}; registered tasks: ${known}`,
        });
      }
      let result: unknown;
      try {
        const args: unknown = parse(argsJson);
        if (!Array.isArray(args)) {
          throw new TypeError(`task arguments must be a JSON array, got ${argsJson}`);
        }
        result = await task.fn(...args);
      } catch (error) {
        return failure(describeFailure(ctx, error));
      }
      let valueJson: string | undefined;
      try {
        valueJson = stringify(result);
      } catch (error) {
        return failure({
          name: "TypeError",
          message: `task result is not JSON-serializable: ${messageOf(error)}`,
        });
      }
      return `{"ok":true,"value":${valueJson ?? "null"}}`;
    },
  };
};
export default install;
