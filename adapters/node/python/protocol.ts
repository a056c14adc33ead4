/**
 * Messages between the runtime and a Python child process over IPC, around the requests of
 * core/python/protocol.ts. The child runs untrusted code: the runtime checks every message.
 */
import type { PythonJob, PythonReply, PythonRequest } from "../../../core/python/protocol.ts";

export type ParentMessage =
  | { type: "job"; job: PythonJob }
  /** The answer to the child's `call` with the same id. */
  | { type: "reply"; id: number; reply: PythonReply };

export type ChildMessage =
  | { type: "ready" }
  | { type: "log"; level: "log" | "error"; text: string }
  | { type: "done"; outcomeJson: string; ramUsed: number; fuelConsumed: number }
  | { type: "call"; id: number; request: PythonRequest }
  | { type: "failed"; message: string }
  | { type: "crashed"; message: string };
