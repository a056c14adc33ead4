import type { TaskLimits } from "../config/options.ts";
import { PermissionDeniedError } from "../errors.ts";
import type { MemoryBudget } from "../runtime/memory-budget.ts";
import { MAX_COMPONENT_TASKS } from "./run.ts";

/** A component run's place in its host's memory budget (what all its sandboxes may hold). */
export interface RunMemory {
  /**
   * Holds one sub-task's ram until the returned function is called, or throws the CapsuleError
   * that refuses it. It never waits: a sub-task runs inside its parent's import call.
   */
  holdMemory(ramBytes: number, task: { name: string; depth: number }): () => void;
  /** Frees everything the run holds: its entry task's ram and any sub-task's left held. */
  release(): void;
}

/**
 * Holds a component run's entry task's ram in `budget`, waiting in line as an entry task of our
 * own does, and rejects with the CapsuleError that refuses it. A run holds at most
 * MAX_COMPONENT_TASKS sub-tasks at once: more would be a sandbox asking without bound.
 */
export async function holdRunMemory(budget: MemoryBudget, limits: TaskLimits): Promise<RunMemory> {
  const run = {};
  const entry = {};
  const refusal = await budget.reserve(entry, limits.ramBytes, {
    name: limits.name,
    depth: 0,
    run,
  });
  if (refusal !== null) throw refusal;
  const held = new Set<object>([entry]);
  return {
    holdMemory(ramBytes, task) {
      if (held.size > MAX_COMPONENT_TASKS) {
        throw new PermissionDeniedError(
          `sub-task ${JSON.stringify(task.name)} refused: the run already holds memory for ${MAX_COMPONENT_TASKS} sub-tasks`,
        );
      }
      const holder = {};
      const refused = budget.tryReserve(holder, ramBytes, { ...task, run });
      if (refused !== null) throw refused;
      held.add(holder);
      return () => {
        if (held.delete(holder)) budget.release(holder);
      };
    },
    release() {
      for (const holder of held) budget.release(holder);
      held.clear();
    },
  };
}
