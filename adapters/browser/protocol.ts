import type { LogLevel } from "../../core/runtime/attempt.ts";
import type { Envelope, ErrorType } from "../../core/runtime/envelope.ts";
import type { LifecycleEvent, SubtaskCall } from "../../core/runtime/events.ts";
import type { JobRequest as SharedJobRequest } from "../../core/runtime/job-tree.ts";
import type { HostReply, ReplyPlace } from "../../core/runtime/replies.ts";
import type { Bundle } from "../../core/runtime/run-task.ts";
import type { SessionImage } from "../../core/session/image.ts";
import type { BrowserProviderConfig } from "./provider.ts";

/** One task (entry or sub-task) for a worker to run. */
export type JobRequest = SharedJobRequest<BrowserProviderConfig>;

export type CompileOutcome =
  | { ok: true; bundle: Bundle }
  | { ok: false; errorType: ErrorType; message: string };

/** What a worker offers the pool, over comlink. */
export interface WorkerApi {
  /** Compiles task source (TypeScript loads its transformer in this worker on first use). */
  compile(code: string, language: "ts" | "js"): Promise<CompileOutcome>;
  run(job: JobRequest, host: JobHost): Promise<Envelope>;
  abort(jobId: number): void;
}

/** What the pool offers a running job, over comlink (a proxied object). */
export interface JobHost {
  onEvent(event: LifecycleEvent): void;
  onLog(level: LogLevel, text: string, task: string): void;
  /** An attempt started under this timeout (null: none); the pool watches it from outside. */
  watch(timeoutMs: number | null): void;
  startSubtask(
    callId: number,
    name: string,
    argsJson: string,
    depth: number,
    parentId: string,
    /** Its place in the parent attempt's calls, which the run journal records and resumes by. */
    call?: SubtaskCall,
  ): Promise<Envelope>;
  cancelSubtask(callId: number): void;
  /**
   * Where the run's write quota cannot be shared: charges what the job wrote since it last
   * settled (all or nothing) and answers with the run's counts (core/files/quota.ts).
   */
  settleWrites(bytes: number, entries: number): { fits: boolean; bytes: number; entries: number };
  /**
   * The task asks for its `ram` before its first attempt: null once reserved in the page's
   * memory budget (freed when the job ends), else why it is refused.
   */
  reserveMemory(ramBytes: number): Promise<{ errorType: string; message: string } | null>;
  /** A session's entry job succeeded: its sandbox's new state image (core/session/image.ts). */
  image(image: SessionImage): void;
  /**
   * A journaled run's fetch, before it is made: the journal's response to answer it with, or
   * null to make it; and once answered (core/runtime/replies.ts).
   */
  replyBefore(place: ReplyPlace): Promise<HostReply | null>;
  replyAfter(place: ReplyPlace, reply: HostReply): void;
}
