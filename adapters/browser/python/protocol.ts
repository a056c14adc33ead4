/**
 * Messages between the page and a Python sandbox: a Worker inside an opaque-origin iframe, which
 * talks to the page over one MessagePort. Everything the sandbox sends may be forged by the task,
 * so the page checks each message (`checkSandboxMessage`) before it believes any of it.
 */
import type { PythonJob, PythonReply } from "../../../core/python/protocol.ts";
import type { SandboxFileCopy } from "../../../core/python/tasks.ts";

/**
 * What the page hands a new sandbox: the bytes of every file Pyodide needs, since the sandbox
 * cannot fetch. Blobs, so that each sandbox gets a handle instead of a 45 MB copy through the
 * frame; reading a Blob is not a request, and the policy has nothing to refuse.
 */
export interface SandboxFiles {
  /** dist/pyodide-metered.wasm; the Worker compiles it (a compiled module cannot be posted in). */
  engine: Blob;
  /** Pyodide's python_stdlib.zip. */
  stdlib: Blob;
  /** Pyodide's pyodide-lock.json. */
  lock: Blob;
  /** A loaded interpreter's memory made by the build on the same engine; absent: load from scratch. */
  snapshot?: Blob;
}

/** Page to Worker, on the port. */
export type PageMessage =
  | {
      type: "run";
      job: PythonJob;
      files?: SandboxFileCopy;
      /** A session's call: the image to restore before the job (null: a fresh state). */
      session?: { image: Uint8Array | null };
    }
  | { type: "reply"; id: number; reply: PythonReply };

/**
 * Worker to page, on the port. `call` carries a guest request: anything at all, until checked.
 * Each also carries `seal`, the page's secret for the sandbox (sandbox.ts), which the page
 * checks before anything else.
 */
export type SandboxMessage =
  | { type: "ready"; loadMs: number; fromSnapshot: boolean }
  | { type: "log"; level: "log" | "error"; text: string }
  | { type: "call"; id: number; request: unknown }
  | {
      type: "done";
      outcomeJson: string;
      ramUsed: number;
      fuelConsumed: number;
      /** What the task changed in its copy of the granted files; checked when it is applied. */
      changes?: unknown;
      /** A session's call whose task succeeded: its new image, or why it cannot carry over. */
      session?: { image: Uint8Array } | { refused: string };
    }
  | { type: "failed"; message: string }
  | { type: "crashed"; message: string };

const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

/** The message, if it has one of the shapes above; null for anything else. */
export function checkSandboxMessage(value: unknown): SandboxMessage | null {
  if (typeof value !== "object" || value === null) return null;
  const message = value as Record<string, unknown>;
  const text = (key: string) => typeof message[key] === "string";
  switch (message.type) {
    case "ready":
      return isCount(message.loadMs)
        ? { type: "ready", loadMs: message.loadMs, fromSnapshot: message.fromSnapshot === true }
        : null;
    case "log":
      return text("text")
        ? {
            type: "log",
            level: message.level === "error" ? "error" : "log",
            text: message.text as string,
          }
        : null;
    case "call":
      return isCount(message.id)
        ? { type: "call", id: message.id, request: message.request }
        : null;
    case "done":
      return text("outcomeJson") && isCount(message.ramUsed) && isCount(message.fuelConsumed)
        ? {
            type: "done",
            outcomeJson: message.outcomeJson as string,
            ramUsed: message.ramUsed,
            fuelConsumed: message.fuelConsumed,
            changes: message.changes,
            ...(message.session !== undefined && { session: checkSession(message.session) }),
          }
        : null;
    case "failed":
    case "crashed":
      return text("message") ? { type: message.type, message: message.message as string } : null;
    default:
      return null;
  }
}

/** The most text of a refusal the page passes on (the sandbox's realm may have written it). */
const MAX_REFUSAL_CHARS = 2_000;

/** A session's part of a `done` message; anything else reads as a refusal that says so. */
function checkSession(value: unknown): { image: Uint8Array } | { refused: string } {
  const session = (value ?? {}) as { image?: unknown; refused?: unknown };
  if (session.image instanceof Uint8Array) return { image: session.image };
  if (typeof session.refused === "string") {
    return { refused: session.refused.slice(0, MAX_REFUSAL_CHARS) };
  }
  return { refused: "the Python sandbox sent a malformed state image" };
}
