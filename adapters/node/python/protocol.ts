/**
 * Messages between the runtime and a Python child process. The child runs untrusted code, so the
 * runtime checks every message it receives before acting on it (see runner.ts).
 */

/** What a child runs: discover the file's tasks, or run one of them. */
export interface PythonTaskJob {
  mode: "discover" | "run";
  source: string;
  file_name: string;
  task_name: string;
  args_json: string;
  /** Exactly the variables the task may read. */
  env: Record<string, string>;
}

export interface ChildJob {
  task: PythonTaskJob;
  ramBytes: number;
  /** The budget, as a decimal string (it can pass 2^53). */
  fuel: string;
  sdkSource: string;
  runnerSource: string;
}

export type ChildMessage =
  | { type: "ready" }
  | { type: "log"; level: "log" | "error"; text: string }
  | { type: "done"; outcomeJson: string; ramUsed: number; fuelConsumed: number }
  | { type: "failed"; message: string }
  | { type: "crashed"; message: string };

export type SyncRequest =
  | { op: "run_subtask"; name: string; argsJson: string }
  | { op: "fuel_exhausted"; budget: string }
  | { op: "fetch"; requestJson: string };

export type SyncReply = { json: string } | { error: string };
