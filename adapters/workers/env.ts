import type { EnvironmentHost } from "../../core/host.ts";

/**
 * The variables a task's `envVariables` may read: exactly those the request sent, never the
 * Worker's own bindings or secrets.
 */
export function createWorkersEnvironment(
  values: Readonly<Record<string, string>>,
): EnvironmentHost {
  return { get: (name) => (Object.hasOwn(values, name) ? values[name] : undefined) };
}
