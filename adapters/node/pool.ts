import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { Engine } from "../../core/engine/engine.ts";
import { ConfigError } from "../../core/errors.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import type { SubtaskCall } from "../../core/runtime/events.ts";
import {
  closedPoolEnvelope,
  JobTable,
  type PoolJob,
  type PoolThread,
  pickWorker,
  runJobTree,
  type TreeRequest as SharedTreeRequest,
} from "../../core/runtime/job-tree.ts";
import { MemoryBudget } from "../../core/runtime/memory-budget.ts";
import { features } from "./features.ts";
import { workerEntry } from "./paths.ts";
import type { FromWorker, ToWorker, WorkerData } from "./protocol.ts";
import type { NodeProviderConfig } from "./provider.ts";

export type TreeRequest = SharedTreeRequest<NodeProviderConfig>;
interface Job extends PoolJob<NodeProviderConfig, Thread> {
  /** Index into the thread's cancel flags, or -1. */
  cancelSlot: number;
  depth: number;
}

/**
 * What the sandboxes of every pool in this process may hold together: each task reserves its
 * `ram` here before its first attempt, whichever thread runs it.
 */
export const processMemory = new MemoryBudget(features.memoryBudgetBytes, "this process");

interface Thread extends PoolThread {
  worker: Worker;
  cancelFlags: Int32Array;
  freeCancelSlots: number[];
}

/** Jobs one thread can hold with a cancel flag; more still run, cancelled by message only. */
const CANCEL_SLOTS = 1024;

/**
 * Worker threads that run tasks so a busy guest never blocks the caller's event loop. A task and
 * its sub-tasks may land on different threads; the pool counts sub-tasks per run.
 */
export class WorkerPool {
  readonly size: number;
  readonly #engine: Engine;
  #threads: Thread[] = [];
  readonly #jobs = new JobTable<NodeProviderConfig, Thread, Job>();
  #nextThreadId = 1;
  #closed = false;

  constructor(engine: Engine, threads = availableParallelism()) {
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256) {
      throw new ConfigError(`threads: ${JSON.stringify(threads)} is not an integer from 1 to 256`);
    }
    this.#engine = engine;
    this.size = threads;
  }

  runTree(request: TreeRequest): Promise<Envelope> {
    return runJobTree(
      request,
      (tree) => this.#dispatch(tree, request.taskName, request.argsJson, 0, null),
      (jobId) => this.#abortJob(jobId),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    const threads = this.#threads;
    this.#threads = [];
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  #dispatch(
    tree: Job["tree"],
    taskName: string,
    argsJson: string,
    depth: number,
    parentId: string | null,
    id = this.#jobs.newJobId(),
    call?: SubtaskCall,
  ): Promise<Envelope> {
    if (this.#closed) return Promise.resolve(closedPoolEnvelope(taskName));
    const thread = this.#pickThread();
    const cancelSlot = thread.freeCancelSlots.pop() ?? -1;
    if (cancelSlot >= 0) Atomics.store(thread.cancelFlags, cancelSlot, 0);
    return new Promise<Envelope>((resolve) => {
      const job: Job = { id, taskName, tree, thread, resolve, cancelSlot, depth };
      const request = this.#jobs.open(job, argsJson, depth, parentId, call);
      if (thread.inFlight === 1) thread.worker.ref();
      thread.worker.postMessage({ type: "run", ...request, cancelSlot } satisfies ToWorker);
    });
  }

  #pickThread(): Thread {
    return pickWorker(this.#threads, this.size, () => this.#spawn());
  }

  #spawn(): Thread {
    const cancelFlags = new SharedArrayBuffer(CANCEL_SLOTS * Int32Array.BYTES_PER_ELEMENT);
    const data: WorkerData = {
      engineModule: this.#engine.module,
      memoryFloorPages: this.#engine.memoryFloorPages,
      stackBytes: this.#engine.stackBytes,
      cancelFlags,
    };
    // Not the parent's flags: `--input-type`, `--eval` and the like do not apply to a worker file.
    const worker = new Worker(workerEntry, { workerData: data, execArgv: [] });
    const thread: Thread = {
      id: this.#nextThreadId++,
      worker,
      inFlight: 0,
      bundles: new Set(),
      cancelFlags: new Int32Array(cancelFlags),
      freeCancelSlots: Array.from({ length: CANCEL_SLOTS }, (_, i) => CANCEL_SLOTS - 1 - i),
    };
    worker.unref();
    worker.on("message", (message: FromWorker) => this.#onMessage(thread, message));
    worker.on("error", (error) => this.#onThreadLost(thread, error));
    worker.on("exit", (code) => {
      if (!this.#closed)
        this.#onThreadLost(thread, new Error(`worker thread exited with code ${code}`));
    });
    this.#threads.push(thread);
    return thread;
  }

  #onMessage(thread: Thread, message: FromWorker) {
    switch (message.type) {
      case "event":
        this.#jobs.get(message.jobId)?.tree.request.onEvent?.(message.event);
        break;
      case "log":
        this.#jobs
          .get(message.jobId)
          ?.tree.request.onLog?.(message.level, message.text, message.task);
        break;
      case "subtask":
        this.#startSubtask(thread, message);
        break;
      case "cancel-subtask": {
        const jobId = this.#jobs.subtaskJob(thread, message.callId);
        if (jobId !== undefined) this.#abortJob(jobId);
        break;
      }
      case "reserve-memory":
        this.#reserveMemory(thread, message);
        break;
      case "reply-before": {
        const hook = this.#jobs.get(message.jobId)?.tree.request.replies;
        void (hook?.before(message.place) ?? Promise.resolve(null)).then((reply) =>
          thread.worker.postMessage({
            type: "reply",
            callId: message.callId,
            reply,
          } satisfies ToWorker),
        );
        break;
      }
      case "reply-after":
        this.#jobs.get(message.jobId)?.tree.request.replies?.after(message.place, message.reply);
        break;
      case "done":
        this.#finish(message.jobId, message.envelope);
        break;
    }
  }

  #startSubtask(thread: Thread, message: Extract<FromWorker, { type: "subtask" }>) {
    const parent = this.#jobs.get(message.jobId);
    if (parent === undefined) return;
    const { callId, name, argsJson, depth, parentId, call } = message;
    void this.#jobs
      .startSubtask(
        parent,
        callId,
        name,
        depth,
        (childId) => this.#dispatch(parent.tree, name, argsJson, depth, parentId, childId, call),
        { argsJson, parentId, call },
      )
      .then((envelope) => {
        thread.worker.postMessage({ type: "subtask-result", callId, envelope } satisfies ToWorker);
      });
  }

  #reserveMemory(thread: Thread, message: Extract<FromWorker, { type: "reserve-memory" }>) {
    const job = this.#jobs.get(message.jobId);
    const reply = (refusal: { errorType: string; message: string } | null) =>
      thread.worker.postMessage({
        type: "memory-reserved",
        callId: message.callId,
        refusal,
      } satisfies ToWorker);
    if (job === undefined) {
      reply({
        errorType: "permission_denied",
        message: "the task ended before its memory was reserved",
      });
      return;
    }
    void processMemory
      .reserve(job, message.ramBytes, { name: job.taskName, depth: job.depth, run: job.tree })
      .then((refusal) =>
        reply(refusal && { errorType: refusal.errorType, message: refusal.message }),
      );
  }

  #abortJob(jobId: number) {
    const job = this.#jobs.get(jobId);
    if (job === undefined) return;
    // The flag reaches a guest that keeps the worker busy; the message, one that is waiting.
    if (job.cancelSlot >= 0) Atomics.store(job.thread.cancelFlags, job.cancelSlot, 1);
    job.thread.worker.postMessage({ type: "abort", jobId } satisfies ToWorker);
    // A task still waiting for memory ends now rather than when its wait would.
    processMemory.stopWaiting(job);
  }

  #finish(jobId: number, envelope: Envelope) {
    const job = this.#jobs.finish(jobId, envelope);
    if (job === undefined) return;
    processMemory.release(job);
    if (job.cancelSlot >= 0) job.thread.freeCancelSlots.push(job.cancelSlot);
    if (job.thread.inFlight === 0) job.thread.worker.unref();
  }

  #onThreadLost(thread: Thread, error: Error) {
    const index = this.#threads.indexOf(thread);
    if (index === -1) return;
    this.#threads.splice(index, 1);
    this.#jobs.failThread(
      thread,
      `the worker thread running this task failed: ${error.message}`,
      (jobId, envelope) => this.#finish(jobId, envelope),
    );
  }
}
