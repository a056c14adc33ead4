/**
 * The page's run journal as run() and the page's API reach it: loaded on first use. A page that
 * runs with `journal: false` fetches neither the journal's code nor SQLite, and a recorded run
 * starts its task while both load (`recordRun`).
 */
import type { ListOptions, PruneOptions } from "../../core/journal/journal.ts";
import { RUN_STATES, RunLookupError } from "../../core/journal/states.ts";
import type { LifecycleEvent, LifecycleListener } from "../../core/runtime/events.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import type { SubtaskHook } from "../../core/runtime/subtasks.ts";
import type { PageRunJournal, PageRunStart, RunDetail, RunSummary } from "./journal.ts";

export type { RunDetail, RunState, RunSummary, TaskRunRecord } from "./journal.ts";
export { RUN_STATES, RunLookupError };

/** journal.ts and what it imports (core's journal, the SQLite loader), as a chunk of their own. */
export const journalModule = () => import("./journal.ts");

/** Runs in the page's journal, newest first; none when it cannot be opened. */
export async function listRuns(options: ListOptions = {}): Promise<RunSummary[]> {
  return (await journalModule()).listRuns(options);
}

/** One run by id (or a unique prefix), with its tree of task runs; throws RunLookupError if none. */
export async function inspectRun(id: string): Promise<RunDetail> {
  return (await journalModule()).inspectRun(id);
}

/** Deletes runs older than `olderThanMs`; returns how many went. */
export async function pruneRuns(options: PruneOptions): Promise<number> {
  return (await journalModule()).pruneRuns(options);
}

/**
 * A run's journal that records from the start while the journal's code loads and the page's
 * journal opens (the first run of a page): events wait in order until it is open, a sub-task
 * call waits for it, and so does the end. `listener` hears every event at once.
 */
export function recordRun(start: PageRunStart, listener?: LifecycleListener): PageRunJournal {
  const waiting: LifecycleEvent[] = [];
  let inner: PageRunJournal | null | undefined;
  const at = Date.now();
  const ready = journalModule()
    .then(async ({ pageJournal, startPageRunJournal }) => {
      const journal = await pageJournal();
      return journal === null ? null : startPageRunJournal(journal, { at, ...start });
    })
    .catch(() => null)
    .then((journal) => {
      inner = journal;
      for (const event of waiting.splice(0)) journal?.onEvent(event);
      return journal;
    });
  return {
    onEvent(event) {
      if (inner === undefined) waiting.push(event);
      else inner?.onEvent(event);
      listener?.(event);
    },
    subtasks(onDiverged) {
      let hook: SubtaskHook | null | undefined;
      const hookOf = async () => {
        const journal = await ready;
        hook ??= journal?.subtasks(onDiverged) ?? null;
        return hook;
      };
      return {
        before: async (call) => (await hookOf())?.before(call) ?? null,
        // A call ends after its before() has waited for the hook.
        after: (call, envelope) => hook?.after(call, envelope),
      };
    },
    replies() {
      let hook: ReplyHook | null | undefined;
      const hookOf = async () => {
        hook ??= (await ready)?.replies() ?? null;
        return hook;
      };
      return {
        before: async (place) => (await hookOf())?.before(place) ?? null,
        // A fetch is answered after its before() has waited for the hook.
        after: (place, reply) => hook?.after(place, reply),
      };
    },
    async finish(envelope) {
      await (await ready)?.finish(envelope);
    },
  };
}
