/**
 * Messages between the runtime and a Python child process over IPC, around the requests of
 * core/python/protocol.ts. The child runs untrusted code: the runtime checks every message.
 */
import type { PythonRunSteps } from "../../../core/python/engine.ts";
import type { PythonJob, PythonReply, PythonRequest } from "../../../core/python/protocol.ts";

export type ParentMessage =
  | { type: "job"; job: PythonJob }
  /** The answer to the child's `call` with the same id. */
  | { type: "reply"; id: number; reply: PythonReply };

export type ChildMessage =
  | { type: "ready" }
  | { type: "log"; level: "log" | "error"; text: string }
  | {
      type: "done";
      outcomeJson: string;
      ramUsed: number;
      fuelConsumed: number;
      /** Where the run's time went (engine.ts PythonRunSteps, and the whole job in the child). */
      steps?: PythonRunSteps & { childMs: number };
    }
  | { type: "call"; id: number; request: PythonRequest }
  | { type: "failed"; message: string }
  | { type: "crashed"; message: string };
