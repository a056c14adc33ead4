import { newWriteCounts } from "../files/quota.ts";
import type { SessionImage } from "../session/image.ts";
import type { LogLevel } from "./attempt.ts";
import { type Envelope, failureEnvelope } from "./envelope.ts";
import type { LifecycleListener, SubtaskCall } from "./events.ts";
import type { ReplyHook } from "./replies.ts";
import type { Bundle } from "./run-task.ts";
import type { RuntimeSettings } from "./settings.ts";
import { hookedSubtask, SubtaskGate, type SubtaskHook } from "./subtasks.ts";

/**
 * What the worker pools of every host share: a run's tree of jobs (the entry task and all its
 * sub-tasks, wherever they run), its sub-task limits, and the caller's abort reaching every job.
 */
export interface TreeRequest<ProviderConfig> {
  bundle: Bundle;
  providerConfig: ProviderConfig;
  taskName: string;
  argsJson: string;
  settings: RuntimeSettings;
  onEvent?: LifecycleListener;
  onLog?: (level: LogLevel, text: string, task: string) => void;
  signal?: AbortSignal;
  /** A cell the entry task evaluates first (AttemptMode "cell"); sub-tasks get none. */
  cell?: string;
  /**
   * A session's state for the entry task (core/session/image.ts): null starts from a fresh
   * sandbox. Given (even null), the worker hands back the image of a successful attempt.
   */
  image?: SessionImage | null;
  onImage?: (image: SessionImage) => void;
  /** Sees every sub-task call (the run journal's record and resume). */
  subtasks?: SubtaskHook;
  /** Sees every fetch of every task of the run (the run journal's record and replay). */
  replies?: ReplyHook;
}

export interface JobTree<ProviderConfig> {
  request: TreeRequest<ProviderConfig>;
  gate: SubtaskGate;
  /** The run's write quota counts (core/files/quota.ts), shared by every job of the tree. */
  writeCounts: ArrayBufferLike;
  /** Ids of the tree's jobs still running. */
  jobs: Set<number>;
}

/** Opens a tree, dispatches its entry job, and aborts all its jobs when the caller aborts. */
export function runJobTree<ProviderConfig>(
  request: TreeRequest<ProviderConfig>,
  dispatchEntry: (tree: JobTree<ProviderConfig>) => Promise<Envelope>,
  abortJob: (jobId: number) => void,
): Promise<Envelope> {
  const tree: JobTree<ProviderConfig> = {
    request,
    gate: new SubtaskGate(request.settings),
    writeCounts: newWriteCounts(),
    jobs: new Set(),
  };
  const done = dispatchEntry(tree);
  const onAbort = () => {
    for (const jobId of tree.jobs) abortJob(jobId);
  };
  request.signal?.addEventListener("abort", onAbort, { once: true });
  // Aborted while the task was still compiling: the event has already fired.
  if (request.signal?.aborted) onAbort();
  return done.finally(() => request.signal?.removeEventListener("abort", onAbort));
}

/** An idle worker, a new one while under `size`, else the one with the fewest jobs. */
export function pickWorker<Worker extends { inFlight: number }>(
  workers: readonly Worker[],
  size: number,
  spawn: () => Worker,
): Worker {
  if (workers.length < size) return workers.find((w) => w.inFlight === 0) ?? spawn();
  let best = workers[0] as Worker;
  for (const worker of workers) if (worker.inFlight < best.inFlight) best = worker;
  return best;
}

/** One task (the entry or a sub-task) as a pool hands it to one of its workers. */
export interface JobRequest<ProviderConfig> {
  jobId: number;
  hash: string;
  /** Left out when the thread already holds the bundle with this hash. */
  bundle?: Bundle;
  taskName: string;
  argsJson: string;
  depth: number;
  parentId: string | null;
  /** Set for a sub-task: which call of its parent started it. */
  call?: SubtaskCall;
  settings: RuntimeSettings;
  providerConfig: ProviderConfig;
  /** The run's write quota counts: shared where the host has shared memory, else a copy. */
  writeCounts: ArrayBufferLike;
  /** The entry job's cell and session state (TreeRequest.cell, .image). */
  cell?: string;
  image?: SessionImage | null;
  /** Whether the run journals its fetches: the thread then asks the pool about each one. */
  replies?: true;
}

/** A pool's worker (a thread, a Web Worker), as far as the job table needs to know it. */
export interface PoolThread {
  id: number;
  inFlight: number;
  /** Hashes of the bundles this thread holds. */
  bundles: Set<string>;
}

/** A job running on one of a pool's threads. */
export interface PoolJob<ProviderConfig, Thread extends PoolThread> {
  id: number;
  taskName: string;
  tree: JobTree<ProviderConfig>;
  thread: Thread;
  resolve: (envelope: Envelope) => void;
}

/** A sub-task call whose job has not started yet (its SubtaskHook is answering). */
const PENDING_CALL = -1;

/**
 * The running jobs of a pool, whatever its workers are (threads, Web Workers): which worker runs
 * each, which sub-task call started it, and the end of each exactly once.
 */
export class JobTable<
  ProviderConfig,
  Thread extends PoolThread,
  Job extends PoolJob<ProviderConfig, Thread>,
> {
  readonly #jobs = new Map<number, Job>();
  /** Sub-task calls waiting for a job: `${thread}:${callId}` -> job id. */
  readonly #subtaskJobs = new Map<string, number>();
  /** Calls cancelled before their job started (PENDING_CALL). */
  readonly #cancelledCalls = new Set<string>();
  #nextJobId = 1;

  newJobId(): number {
    return this.#nextJobId++;
  }

  get(jobId: number): Job | undefined {
    return this.#jobs.get(jobId);
  }

  /** Registers a job on its thread and builds the request that thread needs to run it. */
  open(
    job: Job,
    argsJson: string,
    depth: number,
    parentId: string | null,
    call?: SubtaskCall,
  ): JobRequest<ProviderConfig> {
    const { bundle, settings, providerConfig, cell, image } = job.tree.request;
    const entry = parentId === null;
    this.#jobs.set(job.id, job);
    job.tree.jobs.add(job.id);
    job.thread.inFlight++;
    const known = job.thread.bundles.has(bundle.hash);
    job.thread.bundles.add(bundle.hash);
    return {
      jobId: job.id,
      hash: bundle.hash,
      bundle: known ? undefined : bundle,
      taskName: job.taskName,
      argsJson,
      depth,
      parentId,
      ...(call === undefined ? {} : { call }),
      settings,
      providerConfig,
      writeCounts: job.tree.writeCounts,
      ...(entry && cell !== undefined ? { cell } : {}),
      ...(entry && image !== undefined ? { image } : {}),
      ...(job.tree.request.replies === undefined ? {} : { replies: true as const }),
    };
  }

  /** Ends a job with its envelope; undefined when it had ended already (a late or lost report). */
  finish(jobId: number, envelope: Envelope): Job | undefined {
    const job = this.#jobs.get(jobId);
    if (job === undefined) return undefined;
    this.#jobs.delete(jobId);
    job.tree.jobs.delete(jobId);
    job.thread.inFlight--;
    job.resolve(envelope);
    return job;
  }

  /** Ends every job still running on a thread that is gone, as an internal error. */
  failThread(thread: Thread, message: string, finish: (jobId: number, envelope: Envelope) => void) {
    for (const job of [...this.#jobs.values()]) {
      if (job.thread !== thread) continue;
      finish(job.id, failureEnvelope(job.taskName, { error_type: "internal_error", message }));
    }
  }

  /**
   * A sub-task call from a running job: refused by the tree's limits, or dispatched as a new job
   * that `cancelSubtask` can reach by the same call id until it ends.
   */
  startSubtask(
    parent: Job,
    callId: number,
    name: string,
    depth: number,
    dispatch: (childId: number) => Promise<Envelope>,
    /** The call as the run's SubtaskHook sees it (hosts that pass it on). */
    call?: { argsJson: string; parentId: string; call?: SubtaskCall },
  ): Promise<Envelope> {
    const refused = parent.tree.gate.admit(name, depth);
    if (refused) return Promise.resolve(refused);
    const key = `${parent.thread.id}:${callId}`;
    const record =
      call?.call === undefined
        ? undefined
        : { ...call.call, parentId: call.parentId, name, argsJson: call.argsJson };
    // While the hook answers, the call has no job yet: a cancel in that time is kept for it.
    this.#subtaskJobs.set(key, PENDING_CALL);
    return hookedSubtask(parent.tree.request.subtasks, record, () => {
      if (this.#cancelledCalls.delete(key)) {
        this.#subtaskJobs.delete(key);
        return Promise.resolve(closedPoolEnvelope(name));
      }
      const childId = this.newJobId();
      this.#subtaskJobs.set(key, childId);
      return dispatch(childId);
    }).finally(() => {
      this.#subtaskJobs.delete(key);
      this.#cancelledCalls.delete(key);
    });
  }

  /** The job a thread's sub-task call started, while it runs. */
  subtaskJob(thread: Thread, callId: number): number | undefined {
    const key = `${thread.id}:${callId}`;
    const jobId = this.#subtaskJobs.get(key);
    if (jobId !== PENDING_CALL) return jobId;
    // Asked for to cancel it: it will not start.
    this.#cancelledCalls.add(key);
    return undefined;
  }
}

/** What a closed pool answers to every new job. */
export function closedPoolEnvelope(taskName: string): Envelope {
  return failureEnvelope(taskName, {
    error_type: "internal_error",
    message: "the worker pool is closed",
  });
}
