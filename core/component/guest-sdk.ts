/**
 * The guest SDK inside a component made by `capsule build --export`: what
 * `import { task } from "@capsule-run/sdk"` resolves to there. It keeps Capsule's component
 * contract: tasks register by name, the host calls `task-runner.run(args-json)`, which answers
 * `{"result": ...}` or `{"error_type", "message"}`, and calling a task from inside a task asks the
 * host through `capsule:host/api.schedule-task`, which answers the sub-task's envelope as JSON.
 */

interface HostApi {
  scheduleTask(name: string, argsJson: string, configJson: string): string;
}

type TaskFunction = (...args: unknown[]) => unknown;

const registry = new Map<string, { fn: TaskFunction; config: Record<string, unknown> }>();

function hostApi(): HostApi | undefined {
  const api = (globalThis as Record<string, unknown>)["capsule:host/api"] as HostApi | undefined;
  return typeof api?.scheduleTask === "function" ? api : undefined;
}

export function task(options: Record<string, unknown> & { name: string }, fn: TaskFunction) {
  const config = { ...options };
  registry.set(options.name, { fn, config });
  return (...args: unknown[]) => {
    const api = hostApi();
    if (api === undefined) return Promise.resolve(fn(...args));
    const answer = api.scheduleTask(options.name, JSON.stringify(args), JSON.stringify(config));
    try {
      return Promise.resolve(JSON.parse(answer));
    } catch {
      return Promise.resolve(answer);
    }
  };
}

export const taskRunner = {
  async run(argsJson: string): Promise<string> {
    try {
      const request = JSON.parse(argsJson) as { task_name?: string; args?: unknown[] };
      const name = request.task_name ?? "main";
      const entry =
        registry.get(name) ?? (name === "main" ? registry.values().next().value : undefined);
      if (entry === undefined) {
        throw new Error(
          `no task named '${name}'; tasks: ${[...registry.keys()].join(", ") || "none"}`,
        );
      }
      const result = await entry.fn(...(request.args ?? []));
      return JSON.stringify({ result: result ?? null });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return JSON.stringify({ error_type: "task_error", message });
    }
  },
};
