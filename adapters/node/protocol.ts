import type { LogLevel } from "../../core/runtime/attempt.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import type { LifecycleEvent, SubtaskCall } from "../../core/runtime/events.ts";
import type { JobRequest } from "../../core/runtime/job-tree.ts";
import type { HostReply, ReplyPlace } from "../../core/runtime/replies.ts";
import type { NodeProviderConfig } from "./provider.ts";

/** Messages between the pool (main thread) and its worker threads. */
export type ToWorker =
  | (JobRequest<NodeProviderConfig> & {
      type: "run";
      /** This job's slot in `WorkerData.cancelFlags`, or -1 when none was free. */
      cancelSlot: number;
    })
  | { type: "abort"; jobId: number }
  | { type: "subtask-result"; callId: number; envelope: Envelope }
  /** The answer to "reserve-memory": null when reserved, else why not. */
  | { type: "memory-reserved"; callId: number; refusal: MemoryRefusal | null }
  /** The answer to "reply-before": the journal's response to a fetch, or null to make it. */
  | { type: "reply"; callId: number; reply: HostReply | null };

/** A task refused its `ram` by the pool's memory budget (core/runtime/memory-budget.ts). */
export interface MemoryRefusal {
  errorType: string;
  message: string;
}

export type FromWorker =
  | { type: "event"; jobId: number; event: LifecycleEvent }
  | { type: "log"; jobId: number; level: LogLevel; text: string; task: string }
  | {
      type: "subtask";
      jobId: number;
      callId: number;
      name: string;
      argsJson: string;
      depth: number;
      parentId: string;
      call?: SubtaskCall;
    }
  | { type: "cancel-subtask"; callId: number }
  /** A job's task asks for its `ram` before its first attempt; it holds it until it ends. */
  | { type: "reserve-memory"; jobId: number; callId: number; ramBytes: number }
  /** A journaled run's fetch, before it is made and once answered (core/runtime/replies.ts). */
  | { type: "reply-before"; jobId: number; callId: number; place: ReplyPlace }
  | { type: "reply-after"; jobId: number; place: ReplyPlace; reply: HostReply }
  | { type: "done"; jobId: number; envelope: Envelope };

export interface WorkerData {
  engineModule: WebAssembly.Module;
  memoryFloorPages: number;
  stackBytes: number | null;
  /**
   * One Int32 per job slot, set to 1 by the pool to cancel: a busy guest keeps the worker's event
   * loop from reading an abort message, but its fuel checks read this flag every ~1 ms.
   */
  cancelFlags: SharedArrayBuffer;
}
