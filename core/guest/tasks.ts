import type { CapsuleGlobal, HostBridge, TaskFailure } from "./bridge.ts";

type TaskFunction = (...args: unknown[]) => unknown;

interface RegisteredTask {
  fn: TaskFunction;
  /** The options as JSON, taken at registration so later mutation cannot change them. */
  optionsJson?: string;
  optionsError?: string;
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
    throw new TypeError(`a ${type} cannot be sent${key ? ` (at key ${JSON.stringify(key)})` : ""}`);
  }
  return value;
}

/** The task registry behind `__capsule` and the host's listTasks/start. */
export function createTasks(
  host: Pick<HostBridge, "callTask">,
  inspector: () => (value: unknown) => string,
) {
  const { callTask } = host;
  const tasks = new Map<string, RegisteredTask>();

  function describeFailure(error: unknown): TaskFailure {
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
      const frames = read("stack");
      if (typeof frames === "string") {
        // QuickJS stacks hold only the frames; Node's start with the "Name: message" line.
        const header = message ? `${failure.name}: ${message}` : failure.name;
        const body = frames.replace(/\n$/, "");
        failure.stack = body.startsWith(header) ? body : body ? `${header}\n${body}` : header;
      }
      return failure;
    }
    let message: string;
    try {
      message = typeof error === "string" ? error : inspector()(error);
    } catch {
      message = messageOf(error);
    }
    return { name: "Error", message };
  }

  const failure = (error: TaskFailure) => JSON.stringify({ ok: false, error });

  const capsule: CapsuleGlobal = Object.freeze({
    register(options: { name: string }, fn: TaskFunction): void {
      if (options === null || typeof options !== "object") {
        throw new TypeError(`task options must be an object, got ${options === null ? "null" : typeof options}`);
      }
      const { name } = options;
      if (typeof name !== "string" || name === "") {
        throw new TypeError(`task options.name must be a non-empty string, got ${JSON.stringify(name) ?? typeof name}`);
      }
      if (typeof fn !== "function") {
        throw new TypeError(`task "${name}" must be given a function, got ${typeof fn}`);
      }
      if (tasks.has(name)) {
        throw new Error(`task "${name}" is already registered; each task needs a unique name`);
      }
      const task: RegisteredTask = { fn };
      try {
        task.optionsJson = JSON.stringify(options);
      } catch (error) {
        task.optionsError = messageOf(error);
      }
      tasks.set(name, task);
    },

    async call(name: string, args: unknown[]): Promise<unknown> {
      if (!Array.isArray(args)) {
        throw new TypeError(`arguments for task "${name}" must be an array, got ${typeof args}`);
      }
      let argsJson: string;
      try {
        argsJson = JSON.stringify(args, rejectNonJson);
      } catch (error) {
        throw new TypeError(`arguments for task "${name}" are not JSON-serializable: ${messageOf(error)}`);
      }
      return JSON.parse(await callTask(name, argsJson));
    },
  });

  return {
    capsule,

    listTasks(): string {
      const parts: string[] = [];
      for (const [name, task] of tasks) {
        const nameJson = JSON.stringify(name);
        parts.push(
          task.optionsJson === undefined
            ? `{"name":${nameJson},"optionsError":${JSON.stringify(task.optionsError)}}`
            : `{"name":${nameJson},"options":${task.optionsJson}}`,
        );
      }
      return `[${parts.join(",")}]`;
    },

    async start(name: string, argsJson: string): Promise<string> {
      const task = tasks.get(name);
      if (!task) {
        const known = [...tasks.keys()].join(", ") || "(none)";
        return failure({
          name: "Error",
          message: `no task named ${JSON.stringify(name)}; registered tasks: ${known}`,
        });
      }
      let result: unknown;
      try {
        const args: unknown = JSON.parse(argsJson);
        if (!Array.isArray(args)) {
          throw new TypeError(`task arguments must be a JSON array, got ${argsJson}`);
        }
        result = await task.fn(...args);
      } catch (error) {
        return failure(describeFailure(error));
      }
      let valueJson: string | undefined;
      try {
        valueJson = JSON.stringify(result);
      } catch (error) {
        return failure({
          name: "TypeError",
          message: `task result is not JSON-serializable: ${messageOf(error)}`,
        });
      }
      return `{"ok":true,"value":${valueJson ?? "null"}}`;
    },
  };
}
