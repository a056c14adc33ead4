/**
 * The run journal's schema: one SQLite database per project, the same on every host (a Node file
 * today; OPFS in a page and a Durable Object's SQL storage are meant to hold the same tables).
 *
 * - `runs`: one row per run() call: its entry task, file, arguments, limits, final state, fuel,
 *   memory, duration, result or error, and the writer (pid + start token) that tells a run whose
 *   process died from one still going.
 * - `task_runs`: the entry task and every sub-task (`id`, `parent_id`, `depth`, task name, file),
 *   with its latest state and totals.
 * - `attempts`: each attempt of a task run (1 = first), its state, times and error.
 * - `events`: every lifecycle event in the order it happened (the raw record resume can replay).
 * - `host_requests`: each network request the run's entry task made, refused ones too.
 * - `calls`: each sub-task call, by the task run that made it, its attempt and its place in that
 *   attempt's calls (`seq`), with the task name, a hash of its arguments, its options, the task
 *   run it started and, once it ended, its envelope: what a resumed run answers a call from
 *   (resume.ts).
 * - `replies`: each response a task run's attempt got to a fetch, by its place in the attempt's
 *   fetches (`seq`) and the number of sub-task calls made before it, with a hash of the request:
 *   what a resumed run answers the same fetch from (replies.ts).
 * - `meta`: the schema version and the time of the last automatic prune.
 *
 * A resumed run is a new run whose `runs.resumed_from` names the run it resumed; a sub-task it
 * answered from the journal is a task run with `replayed_from` naming the task run that did the
 * work. Older journals gain these columns and the `calls` and `replies` tables when first opened
 * (MIGRATIONS).
 *
 * States are Capsule's (`created`, `running`, `completed`, `failed`, `interrupted`, `timed_out`)
 * plus our lifecycle's `retrying` and `cancelled`.
 */
export const SCHEMA_VERSION = 3;

const REPLIES_SQL = `
CREATE TABLE IF NOT EXISTS replies (
  run_id TEXT NOT NULL,
  task_run_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  calls_before INTEGER NOT NULL,
  key_sha256 TEXT NOT NULL,
  meta_json TEXT NOT NULL,
  body_base64 TEXT NOT NULL,
  PRIMARY KEY (run_id, task_run_id, attempt, seq)
);
`;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  entry_task TEXT NOT NULL,
  file TEXT,
  language TEXT,
  args_json TEXT,
  limits_json TEXT,
  state TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  duration_ms INTEGER,
  fuel_consumed INTEGER,
  ram_used INTEGER,
  retries INTEGER,
  result_json TEXT,
  error_type TEXT,
  error_message TEXT,
  writer_pid INTEGER,
  writer_token TEXT,
  resumed_from TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS task_runs (
  run_id TEXT NOT NULL,
  id TEXT NOT NULL,
  parent_id TEXT,
  depth INTEGER NOT NULL,
  task TEXT NOT NULL,
  file TEXT,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  ended_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  duration_ms INTEGER,
  fuel_consumed INTEGER,
  error_type TEXT,
  error_message TEXT,
  call_attempt INTEGER,
  call_index INTEGER,
  replayed_from TEXT,
  PRIMARY KEY (run_id, id)
);
CREATE TABLE IF NOT EXISTS attempts (
  run_id TEXT NOT NULL,
  task_run_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  state TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  error_type TEXT,
  error_message TEXT,
  PRIMARY KEY (run_id, task_run_id, attempt)
);
CREATE TABLE IF NOT EXISTS events (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  task_run_id TEXT NOT NULL,
  type TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS host_requests (
  run_id TEXT NOT NULL,
  task_run_id TEXT,
  seq INTEGER NOT NULL,
  method TEXT NOT NULL,
  url TEXT NOT NULL,
  status INTEGER,
  reason TEXT,
  duration_ms INTEGER,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS calls (
  run_id TEXT NOT NULL,
  parent_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  task TEXT NOT NULL,
  args_sha256 TEXT NOT NULL,
  args_json TEXT,
  options_json TEXT,
  child_id TEXT,
  state TEXT NOT NULL,
  envelope_json TEXT,
  PRIMARY KEY (run_id, parent_id, attempt, seq)
);
${REPLIES_SQL}`;

/** What brings a journal of version N-1 to version N (index N - 2). */
export const MIGRATIONS: readonly string[] = [
  `ALTER TABLE runs ADD COLUMN resumed_from TEXT;
ALTER TABLE task_runs ADD COLUMN call_attempt INTEGER;
ALTER TABLE task_runs ADD COLUMN call_index INTEGER;
ALTER TABLE task_runs ADD COLUMN replayed_from TEXT;`,
  REPLIES_SQL,
];
