import type { LogLevel } from "./attempt.ts";
import type { Envelope } from "./envelope.ts";
import type { LifecycleListener } from "./events.ts";
import type { Bundle } from "./run-task.ts";
import type { RuntimeSettings } from "./settings.ts";
import { SubtaskGate } from "./subtasks.ts";

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
}

export interface JobTree<ProviderConfig> {
  request: TreeRequest<ProviderConfig>;
  gate: SubtaskGate;
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
