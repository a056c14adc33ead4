import type { EnvironmentHost } from "../../core/host.ts";

/**
 * The variables a task's `envVariables` may read: a page has no process environment, so they are
 * exactly what the page passed to `run({ env })`.
 */
export function createBrowserEnvironment(
  values: Readonly<Record<string, string | undefined>>,
): EnvironmentHost {
  return { get: (name) => (Object.hasOwn(values, name) ? values[name] : undefined) };
}
