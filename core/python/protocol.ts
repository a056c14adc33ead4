/**
 * What the runtime and a Python sandbox say to each other, on every host. The sandbox runs
 * untrusted code, so the runtime checks every request it receives before acting on it
 * (`checkPythonRequest`); the guest can forge any message.
 */

/** What a sandbox runs: discover the file's tasks, or run one of them. */
export interface PythonTaskJob {
  mode: "discover" | "run";
  source: string;
  file_name: string;
  task_name: string;
  args_json: string;
  /** Exactly the variables the task may read. */
  env: Record<string, string>;
  /** Guest directories the task was granted, each mounted where the task sees it. */
  grants: string[];
}

export interface PythonJob {
  task: PythonTaskJob;
  ramBytes: number;
  /** The budget, as a decimal string (it can pass 2^53). */
  fuel: string;
}

/** A job's end as the sandbox reports it; the runtime checks `outcomeJson` before believing it. */
export interface PythonJobResult {
  outcomeJson: string;
  ramUsed: number;
  fuelConsumed: number;
  /**
   * Where the sandbox worked on a copy of the granted directories: its report of what changed
   * (`LoadedTree.changes()`), unchecked until `applyChanges`.
   */
  changes?: unknown;
  /**
   * A session's call whose task succeeded: its state image (core/session/python-image.ts), as
   * the sandbox sent it; unchecked until the host reads its facts.
   */
  image?: Uint8Array;
}

/**
 * Requests from the guest. `fs` carries one file operation of core/runtime/capabilities.ts,
 * with bytes in base64; `fetch` a request as capsule.fetch builds it.
 */
export type PythonRequest =
  | { op: "run_subtask"; name: string; argsJson: string }
  | { op: "fuel_exhausted"; budget: string }
  | { op: "fetch"; requestJson: string }
  | { op: "fs"; call: string; argsJson: string; data?: string };

/** `bytes`: base64 of a binary answer (a file's contents). */
export type PythonReply = { json: string } | { bytes: string } | { error: string };

/** The request the runtime will act on, or an Error naming what was wrong with it. */
export function checkPythonRequest(value: unknown): PythonRequest {
  const request = (typeof value === "object" && value !== null ? value : {}) as Record<
    string,
    unknown
  >;
  const text = (key: string) => typeof request[key] === "string";
  if (request.op === "fuel_exhausted" && text("budget")) {
    return { op: "fuel_exhausted", budget: request.budget as string };
  }
  if (request.op === "run_subtask" && text("name") && text("argsJson")) {
    return {
      op: "run_subtask",
      name: request.name as string,
      argsJson: request.argsJson as string,
    };
  }
  if (request.op === "fetch" && text("requestJson")) {
    return { op: "fetch", requestJson: request.requestJson as string };
  }
  if (
    request.op === "fs" &&
    text("call") &&
    text("argsJson") &&
    (request.data === undefined || text("data"))
  ) {
    return {
      op: "fs",
      call: request.call as string,
      argsJson: request.argsJson as string,
      ...(request.data === undefined ? {} : { data: request.data as string }),
    };
  }
  throw new Error("the runtime does not understand this request");
}
