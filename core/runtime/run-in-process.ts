import type { Engine } from "../engine/engine.ts";
import { WriteQuota } from "../files/quota.ts";
import type { AttemptState, LogLevel } from "./attempt.ts";
import type { CapabilityProvider } from "./capabilities.ts";
import type { Envelope } from "./envelope.ts";
import type { LifecycleListener } from "./events.ts";
import type { MemoryReserver } from "./memory-budget.ts";
import type { ReplyHook } from "./replies.ts";
import { type Bundle, runTask, type SubtaskStarter } from "./run-task.ts";
import type { RuntimeSettings } from "./settings.ts";
import { hookedSubtask, SubtaskGate, type SubtaskHook } from "./subtasks.ts";

export interface RunTreeRequest {
  engine: Engine;
  bundle: Bundle;
  taskName: string;
  argsJson: string;
  settings: RuntimeSettings;
  onEvent?: LifecycleListener;
  onLog?: (level: LogLevel, text: string, task: string) => void;
  signal?: AbortSignal;
  provider?: CapabilityProvider;
  /** The host's memory budget, which every task of the run reserves its `ram` in. */
  reserveMemory?: MemoryReserver;
  /** The entry task's cell and session state (sub-tasks get neither). */
  cell?: string;
  state?: AttemptState;
  /** Sees every sub-task call (the run journal's record and resume). */
  subtasks?: SubtaskHook;
  /** Sees every fetch of every task of the run (the run journal's record and replay). */
  replies?: ReplyHook;
}

/**
 * Runs a task and all of its sub-tasks on this thread. Sub-tasks started together interleave
 * whenever one awaits; hosts with threads (Node workers, Web Workers) spread them out instead.
 */
export function runTreeInProcess(request: RunTreeRequest): Promise<Envelope> {
  const gate = new SubtaskGate(request.settings);
  const writeQuota = new WriteQuota(request.settings);
  const startSubtask: SubtaskStarter = async (name, argsJson, depth, signal, parentId, call) =>
    gate.admit(name, depth) ??
    hookedSubtask(request.subtasks, call && { ...call, parentId, name, argsJson }, () =>
      runTask({
        ...request,
        cell: undefined,
        state: undefined,
        taskName: name,
        argsJson,
        depth,
        parentId,
        call,
        startSubtask,
        signal,
        writeQuota,
      }),
    );
  return runTask({ ...request, depth: 0, startSubtask, writeQuota });
}
