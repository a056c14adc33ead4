/**
 * What a journal's callers name without reading a journal: the states a run can be in, and the
 * error for a run id that names none. Apart from journal.ts so that a page that runs without a
 * journal fetches neither journal.ts nor SQLite (adapters/browser/runs.ts).
 */

export const RUN_STATES = [
  "created",
  "running",
  "retrying",
  "completed",
  "failed",
  "interrupted",
  "timed_out",
  "cancelled",
] as const;
export type RunState = (typeof RUN_STATES)[number];

/** Thrown for a run id that names no run, or more than one. */
export class RunLookupError extends Error {
  override name = "RunLookupError";
}
