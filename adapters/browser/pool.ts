import * as Comlink from "comlink";
import { ConfigError } from "../../core/errors.ts";
import { WriteQuota } from "../../core/files/quota.ts";
import { type Envelope, failureEnvelope } from "../../core/runtime/envelope.ts";
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
import type { CompileOutcome, JobHost, WorkerApi } from "./protocol.ts";
import type { BrowserProviderConfig } from "./provider.ts";

export type TreeRequest = SharedTreeRequest<BrowserProviderConfig>;
interface Job extends PoolJob<BrowserProviderConfig, Thread> {
  started: number;
  depth: number;
  /** Fires when the job overran its timeout (or an abort) by the grace period. */
  watchdog?: ReturnType<typeof setTimeout>;
  /** Aborted by the caller: its watchdog stays armed whatever the worker reports later. */
  aborted?: boolean;
}

interface Thread extends PoolThread {
  worker: Worker;
  api: Comlink.Remote<WorkerApi>;
  /** Compiles waiting on this worker: failed if the worker is terminated under them. */
  compiles: Set<(reason: string) => void>;
}

export interface WorkerPoolOptions {
  /** Workers to run on; default `navigator.hardwareConcurrency`, at most 8. */
  size?: number;
  /**
   * How long past its timeout (or an abort) a task may keep its worker before the worker is
   * terminated and replaced. The engine normally stops a task at its deadline by itself.
   */
  graceMs?: number;
  /** The worker script; default `capsule-worker.js` beside this module. */
  workerUrl?: URL;
  /**
   * What the sandboxes of the pool's runs may hold together (the sum of their `ram`); default
   * 1 GiB, or a quarter of the device's memory where the browser reports less than 4 GB.
   */
  memoryBudgetBytes?: number;
}

export const DEFAULT_GRACE_MS = 1000;

/** 1 GiB, or a quarter of the device's memory where the browser reports less than 4 GB. */
function pageMemoryBytes(): number {
  const deviceGiB = (navigator as { deviceMemory?: number }).deviceMemory;
  const quarter =
    typeof deviceGiB === "number" && deviceGiB > 0 ? Math.floor((deviceGiB * 2 ** 30) / 4) : null;
  return Math.min(features.memoryBudgetBytes, quarter ?? features.memoryBudgetBytes);
}

/**
 * Module Web Workers that run tasks, so a busy guest never blocks the page. A task and its
 * sub-tasks may land on different workers; the pool counts sub-tasks per run.
 */
export class WorkerPool {
  readonly size: number;
  readonly graceMs: number;
  readonly #workerUrl: URL | undefined;
  /** Each task reserves its `ram` here before its first attempt (core/runtime/memory-budget.ts). */
  readonly #memory: MemoryBudget;
  #threads: Thread[] = [];
  readonly #jobs = new JobTable<BrowserProviderConfig, Thread, Job>();
  #nextThreadId = 1;
  #closed = false;

  constructor(options: WorkerPoolOptions = {}) {
    const size = options.size ?? Math.min(8, Math.max(1, navigator.hardwareConcurrency || 2));
    if (!Number.isSafeInteger(size) || size < 1 || size > 64) {
      throw new ConfigError(`workers: ${JSON.stringify(size)} is not an integer from 1 to 64`);
    }
    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
      throw new ConfigError(`graceMs: ${JSON.stringify(graceMs)} is not a non-negative integer`);
    }
    this.size = size;
    this.graceMs = graceMs;
    this.#memory = new MemoryBudget(options.memoryBudgetBytes ?? pageMemoryBytes(), "this page");
    this.#workerUrl = options.workerUrl;
  }

  /** What all sandboxes of the page may hold together; component runs hold theirs here too. */
  get memory(): MemoryBudget {
    return this.#memory;
  }

  /** Compiles on one worker, so only that worker ever loads the TypeScript transformer. */
  async compile(code: string, language: "ts" | "js"): Promise<CompileOutcome> {
    const thread = this.#threads[0] ?? this.#spawn();
    let onLost: (reason: string) => void = () => {};
    const lost = new Promise<CompileOutcome>((resolve) => {
      onLost = (reason) => resolve({ ok: false, errorType: "internal_error", message: reason });
    });
    thread.compiles.add(onLost);
    try {
      const outcome = await Promise.race([thread.api.compile(code, language), lost]);
      if (outcome.ok) thread.bundles.add(outcome.bundle.hash);
      return outcome;
    } finally {
      thread.compiles.delete(onLost);
    }
  }

  runTree(request: TreeRequest): Promise<Envelope> {
    return runJobTree(
      request,
      (tree) => this.#dispatch(tree, request.taskName, request.argsJson, 0, null),
      (jobId) => this.#abortJob(jobId),
    );
  }

  close(): void {
    this.#closed = true;
    const threads = this.#threads;
    this.#threads = [];
    for (const thread of threads) this.#lose(thread, "the worker pool was closed");
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
    return new Promise<Envelope>((resolve) => {
      const job: Job = {
        id,
        taskName,
        tree,
        thread,
        resolve,
        started: performance.now(),
        depth,
      };
      const request = this.#jobs.open(job, argsJson, depth, parentId, call);
      thread.api.run(request, Comlink.proxy(this.#jobHost(job))).then(
        (envelope) => this.#finish(id, envelope),
        (error: unknown) =>
          this.#finish(
            id,
            failureEnvelope(taskName, {
              error_type: "internal_error",
              message: `the worker running this task failed: ${String(error)}`,
            }),
          ),
      );
    });
  }

  #jobHost(job: Job): JobHost {
    const { request } = job.tree;
    return {
      onEvent: (event) => request.onEvent?.(event),
      onLog: (level, text, task) => request.onLog?.(level, text, task),
      image: (image) => request.onImage?.(image),
      watch: (timeoutMs) => {
        if (job.aborted) return;
        clearTimeout(job.watchdog);
        job.watchdog = undefined;
        if (timeoutMs !== null) this.#watch(job, timeoutMs + this.graceMs, timeoutMs);
      },
      startSubtask: (callId, name, argsJson, depth, parentId, call) =>
        this.#jobs.startSubtask(
          job,
          callId,
          name,
          depth,
          (childId) => this.#dispatch(job.tree, name, argsJson, depth, parentId, childId, call),
          { argsJson, parentId, call },
        ),
      reserveMemory: async (ramBytes) => {
        const refusal = await this.#memory.reserve(job, ramBytes, {
          name: job.taskName,
          depth: job.depth,
          run: job.tree,
        });
        return refusal && { errorType: refusal.errorType, message: refusal.message };
      },
      settleWrites: (bytes, entries) =>
        new WriteQuota(request.settings, job.tree.writeCounts).settle(bytes, entries),
      cancelSubtask: (callId) => {
        const jobId = this.#jobs.subtaskJob(job.thread, callId);
        if (jobId !== undefined) this.#abortJob(jobId);
      },
      replyBefore: async (place) => (await request.replies?.before(place)) ?? null,
      replyAfter: (place, reply) => request.replies?.after(place, reply),
    };
  }

  /** The job must end within `afterMs`, or its worker is terminated and replaced. */
  #watch(job: Job, afterMs: number, timeoutMs: number | null) {
    job.watchdog = setTimeout(() => {
      if (this.#jobs.get(job.id) === undefined) return;
      const overran =
        timeoutMs === null ? "was aborted" : `exceeded its timeout of ${timeoutMs} ms`;
      this.#finish(
        job.id,
        failureEnvelope(
          job.taskName,
          {
            error_type: "timeout",
            message: `the task ${overran} and did not stop within ${this.graceMs} ms; its worker was terminated`,
          },
          Math.round(performance.now() - job.started),
        ),
      );
      this.#replace(
        job.thread,
        `another task on its worker (${JSON.stringify(job.taskName)}) did not stop`,
      );
    }, afterMs);
  }

  #pickThread(): Thread {
    return pickWorker(this.#threads, this.size, () => this.#spawn());
  }

  #spawn(): Thread {
    // One expression with a literal path, the shape bundlers (Vite, webpack, Parcel) recognise:
    // an app's build then bundles the worker with its imports and the engine files they name.
    const worker =
      this.#workerUrl === undefined
        ? new Worker(new URL("./capsule-worker.js", import.meta.url), {
            type: "module",
            name: "capsule",
          })
        : new Worker(this.#workerUrl, { type: "module", name: "capsule" });
    const thread: Thread = {
      id: this.#nextThreadId++,
      worker,
      api: Comlink.wrap<WorkerApi>(worker),
      inFlight: 0,
      bundles: new Set(),
      compiles: new Set(),
    };
    worker.addEventListener("error", (event) => {
      event.preventDefault();
      this.#replace(thread, `the worker script failed: ${event.message || "it could not load"}`);
    });
    this.#threads.push(thread);
    return thread;
  }

  #abortJob(jobId: number) {
    const job = this.#jobs.get(jobId);
    if (job === undefined) return;
    // The message may arrive before the worker knows the job, or while its guest keeps it busy:
    // the watchdog ends the job either way.
    void job.thread.api.abort(jobId);
    // A task still waiting for memory ends now rather than when its wait would.
    this.#memory.stopWaiting(job);
    if (job.aborted) return;
    job.aborted = true;
    clearTimeout(job.watchdog);
    this.#watch(job, this.graceMs, null);
  }

  #finish(jobId: number, envelope: Envelope) {
    const job = this.#jobs.finish(jobId, envelope);
    if (job === undefined) return;
    clearTimeout(job.watchdog);
    this.#memory.release(job);
  }

  /** Terminates a worker; the next task spawns a fresh one in its place. */
  #replace(thread: Thread, reason: string) {
    const index = this.#threads.indexOf(thread);
    if (index !== -1) this.#threads.splice(index, 1);
    this.#lose(thread, reason);
  }

  #lose(thread: Thread, reason: string) {
    thread.worker.terminate();
    for (const fail of thread.compiles)
      fail(`the worker compiling this task was stopped: ${reason}`);
    this.#jobs.failThread(
      thread,
      `the worker running this task was stopped: ${reason}`,
      (jobId, envelope) => this.#finish(jobId, envelope),
    );
  }
}
