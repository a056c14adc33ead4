// One suite server for the whole test run, on the fixed port every host's fuel was recorded
// against. The host suites run in parallel files, and all of them must see the same origin.
import type { TestProject } from "vitest/node";
import { startSuiteServer } from "./server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** The suite server's origin, or why it could not start (thrown by the suites that need it). */
    suiteServer: { origin: string } | { error: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // A run limited to files none of which is a conformance suite leaves the port alone, so that
  // such runs can go on beside one that needs it. (vitest keeps the command line's file filters
  // there; without filters every file runs.)
  const filters = (project.vitest as { filenamePattern?: string[] }).filenamePattern;
  if (filters !== undefined && !filters.some((filter) => /conformance|^\.?\/?$/.test(filter))) {
    project.provide("suiteServer", { error: "this run's file filters name no conformance suite" });
    return async () => {};
  }
  try {
    const server = await startSuiteServer();
    project.provide("suiteServer", { origin: server.origin });
    return () => server.close();
  } catch (error) {
    // Runs without a conformance file must not fail because the port is busy.
    project.provide("suiteServer", { error: (error as Error).message });
    return async () => {};
  }
}
