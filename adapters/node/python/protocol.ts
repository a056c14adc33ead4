/**
 * Messages between the runtime and a Python child process, around the requests of
 * core/python/protocol.ts. The child runs untrusted code: the runtime checks every message, and
 * bounds each one by its size before it parses it.
 *
 * Channels (no Node IPC: Node parses an IPC message, however large, before anyone sees it):
 * - fd 3, child to runtime: one message a line, `D` + JSON for the job's outcome, `M` + JSON for
 *   every other message, read by `MessageReader` with a byte cap per line.
 * - fd 0, runtime to child: the job, the replies to `call`s and the answer to a blocking
 *   `request`, one JSON line each (the child reads it without a thread, so it can always exit).
 * - fd 4, both ways, a session's call only: its state image (core/session/python-image.ts) as
 *   raw bytes, to the child right after the job, and back after a successful task.
 */
import type { PythonRunSteps } from "../../../core/python/engine.ts";
import type { PythonJob, PythonReply, PythonRequest } from "../../../core/python/protocol.ts";

export type ParentMessage =
  /**
   * With `session`, the job is a session's call: `imageBytes` of its image (none: a fresh
   * state) follow on fd 4, and after a successful task the child sends the new image there.
   */
  | { type: "job"; job: PythonJob; session?: { imageBytes: number } }
  /** The answer to the child's `call` with the same id. */
  | { type: "reply"; id: number; reply: PythonReply }
  /** The answer to the child's blocking `request` (at most one is pending). */
  | { type: "answer"; reply: PythonReply };

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
      /**
       * A session's call whose task succeeded: the bytes of its image, sent on fd 4 before this
       * line, or why its state cannot carry over.
       */
      image?: { bytes: number } | { refused: string };
    }
  /** A request the guest awaits; the reply comes back on fd 0. */
  | { type: "call"; id: number; request: PythonRequest }
  /** A request the guest blocks on; the reply comes back on fd 0. */
  | { type: "request"; request: PythonRequest }
  | { type: "failed"; message: string }
  | { type: "crashed"; message: string };

const MiB = 1024 * 1024;

/**
 * The largest message other than the outcome: file writes go in pieces of `FILE_WRITE_CHUNK`
 * bytes (base64 in JSON), print() output in pieces of `LOG_CHUNK_CHARS` characters.
 */
export const MAX_MESSAGE_BYTES = 8 * MiB;
/**
 * The outcome carries the task's result (at most 16 MiB of JSON) as a JSON string, where each
 * quote or backslash doubles: twice that, and room for the rest.
 */
export const MAX_OUTCOME_MESSAGE_BYTES = 33 * MiB;
/** print() text is sent in pieces of at most this many characters (6 bytes each at worst). */
export const LOG_CHUNK_CHARS = MiB;

/** First byte of a line on fd 3: the outcome, or any other message. */
export const OUTCOME_TAG = "D";
export const MESSAGE_TAG = "M";

/** One line on fd 3, as the child writes it. */
export function encodeChildMessage(message: ChildMessage): string {
  return `${message.type === "done" ? OUTCOME_TAG : MESSAGE_TAG}${JSON.stringify(message)}\n`;
}

/**
 * Splits the child's byte stream into lines without keeping more than one line's cap: a line
 * longer than its cap (by its first byte's tag) stops the reader before anything is parsed,
 * and `onTooLarge` says so once.
 */
export class MessageReader {
  #chunks: Buffer[] = [];
  #size = 0;
  #tag = 0;
  #stopped = false;
  readonly #onLine: (tag: string, body: Buffer) => void;
  readonly #onTooLarge: (tag: string, limit: number) => void;

  constructor(
    onLine: (tag: string, body: Buffer) => void,
    onTooLarge: (tag: string, limit: number) => void,
  ) {
    this.#onLine = onLine;
    this.#onTooLarge = onTooLarge;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Ends reading: later bytes are dropped unread. */
  stop() {
    this.#stopped = true;
    this.#chunks = [];
    this.#size = 0;
  }

  push(chunk: Buffer) {
    let start = 0;
    while (!this.#stopped) {
      const newline = chunk.indexOf(10, start);
      if (!this.#append(newline < 0 ? chunk.subarray(start) : chunk.subarray(start, newline))) {
        return;
      }
      if (newline < 0) return;
      const line =
        this.#chunks.length === 1
          ? (this.#chunks[0] as Buffer)
          : Buffer.concat(this.#chunks, this.#size);
      this.#chunks = [];
      this.#size = 0;
      start = newline + 1;
      if (line.length > 0) {
        this.#onLine(String.fromCharCode(line[0] as number), line.subarray(1));
      }
    }
  }

  #append(part: Buffer): boolean {
    if (part.length === 0) return true;
    if (this.#size === 0) this.#tag = part[0] as number;
    this.#size += part.length;
    const tag = String.fromCharCode(this.#tag);
    const limit = tag === OUTCOME_TAG ? MAX_OUTCOME_MESSAGE_BYTES : MAX_MESSAGE_BYTES;
    if (this.#size > limit + 1) {
      this.stop();
      this.#onTooLarge(tag, limit);
      return false;
    }
    this.#chunks.push(part);
    return true;
  }
}
