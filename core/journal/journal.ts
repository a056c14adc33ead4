/**
 * The run journal, platform-neutral: lifecycle events and envelopes in, rows out (schema.ts), and
 * the queries `capsule runs` / `capsule inspect` answer from. Each event is one transaction, so a
 * process killed at any moment loses at most the step in flight. A run still `created` or
 * `running` whose writer process is gone reads as `interrupted` (and is marked so) the next time
 * anyone looks.
 *
 * What a run can make the journal hold is bounded: a result over MAX_RESULT_CHARS of JSON is not
 * kept (`result_json` says so), an error message or URL is cut at MAX_TEXT_CHARS, arguments over
 * MAX_ARGS_CHARS are not kept, at most MAX_HOST_REQUESTS are kept per run, sub-task envelopes
 * and fetch replies are kept up to MAX_ENVELOPE_CHARS each and MAX_RUN_ENVELOPE_CHARS a run, and
 * old runs are pruned (DEFAULT_RETENTION_MS, MAX_RUNS, and the oldest first past
 * MAX_JOURNAL_BYTES).
 */
import { toBase64 } from "../encoding/base64.ts";
import type { Envelope } from "../runtime/envelope.ts";
import type { LifecycleEvent } from "../runtime/events.ts";
import type { HostReply, ReplyPlace } from "../runtime/replies.ts";
import type { SubtaskCallRecord } from "../runtime/subtasks.ts";
import { MAX_ENVELOPE_CHARS } from "./bounds.ts";
import { MIGRATIONS, SCHEMA_SQL, SCHEMA_VERSION } from "./schema.ts";
import { RunLookupError, type RunState } from "./states.ts";
import type { JournalStore, SqlRow, SqlValue } from "./store.ts";

export { RUN_STATES, RunLookupError, type RunState } from "./states.ts";
export type { JournalStore, SqlRow, SqlValue } from "./store.ts";

export const MAX_RESULT_CHARS = 64 * 1024;
export const MAX_ARGS_CHARS = 64 * 1024;
export { MAX_ENVELOPE_CHARS } from "./bounds.ts";
/** Nor are a run's sub-task envelopes past this many characters in all. */
export const MAX_RUN_ENVELOPE_CHARS = 32 * 1024 * 1024;
export const MAX_TEXT_CHARS = 4096;
/** Past this many bytes of rows, the oldest finished runs go (checked as each run ends). */
export const MAX_JOURNAL_BYTES = 256 * 1024 * 1024;
/** Host requests kept per run (a run may make 256 per attempt, each attempt of each task). */
export const MAX_HOST_REQUESTS = 256;
/** Runs older than this are pruned automatically, at most once a day. */
export const DEFAULT_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;
/** And never more than this many runs are kept: the oldest go first. */
export const MAX_RUNS = 10_000;
const PRUNE_EVERY_MS = 24 * 60 * 60 * 1000;

/** Creates the tables (once) and prunes old runs when the last prune is a day old. */
export function prepareJournal(store: JournalStore, now = Date.now()): void {
  // One read where the schema is current (every open but the first): the tables exist, since
  // the version is written only after them. Opening takes two statements fewer, each its own
  // transaction under the journal's lock: in a CLI run this took 8-20 ms of CPU, 17-53 ms before
  // (three runs each at load 10), and every Workers run object opens its journal.
  let meta = readMeta(store);
  if (meta?.get("schema_version") !== String(SCHEMA_VERSION)) {
    store.exec(SCHEMA_SQL);
    meta = readMeta(store) ?? new Map<string, string>();
  }
  const version = meta.get("schema_version") ?? null;
  if (version === null) {
    store.run("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", [
      String(SCHEMA_VERSION),
    ]);
  } else if (Number(version) > SCHEMA_VERSION) {
    throw new Error(
      `the journal's schema version ${version} is newer than this Capsule's (${SCHEMA_VERSION})`,
    );
  } else if (Number(version) < SCHEMA_VERSION) {
    store.transaction(() => {
      // Another process may have migrated it since we read the version.
      const now = Number(metaValue(store, "schema_version"));
      for (let v = now; v < SCHEMA_VERSION; v++) store.exec(MIGRATIONS[v - 1] as string);
      store.run("UPDATE meta SET value = ? WHERE key = 'schema_version'", [String(SCHEMA_VERSION)]);
    });
  }
  const last = Number(meta.get("last_prune") ?? 0);
  if (now - last >= PRUNE_EVERY_MS) {
    pruneRuns(store, { olderThanMs: DEFAULT_RETENTION_MS, now });
    store.run("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_prune', ?)", [String(now)]);
  }
}

/** The journal's version and last prune, or null where there is no meta table yet. */
function readMeta(store: JournalStore): Map<string, string> | null {
  let rows: SqlRow[];
  try {
    rows = store.all("SELECT key, value FROM meta WHERE key IN ('schema_version', 'last_prune')");
  } catch {
    return null;
  }
  return new Map(rows.map((row) => [String(row.key), String(row.value)]));
}

function metaValue(store: JournalStore, key: string): string | null {
  const row = store.all("SELECT value FROM meta WHERE key = ?", [key])[0];
  return row === undefined ? null : String(row.value);
}

export interface RunStart {
  id: string;
  host: string;
  task: string;
  file: string | null;
  language: string | null;
  args: readonly string[];
  limits: unknown;
  at: number;
  /** The run this one resumes (resume.ts), if any. */
  resumedFrom?: string;
}

/** Records one run as it happens. */
export class RunRecorder {
  private seq = 0;
  private rootId: string | null = null;
  private envelopeChars = 0;
  /** Task runs started by a recorded call -> the call's place. */
  private readonly callChildren = new Map<string, string>();
  /** Their end events, held for the envelope that follows (callEnded). */
  private readonly heldEnds = new Map<string, LifecycleEvent>();
  /** Calls about to run, written with their task run's `created` event (one transaction less). */
  private readonly startedCalls = new Map<string, { call: SubtaskCallRecord; key: CallKey }>();
  /**
   * `created` events, written with their task run's next event (`running`, or its end when it
   * never ran): one transaction less per task run. A task run whose process died in between was
   * not running yet, and its call (if any) runs again on resume, as it would have anyway.
   */
  private readonly heldCreated = new Map<string, LifecycleEvent>();
  /** Fetch replies, written with the next transaction (see transaction()). */
  private readonly heldReplies: SqlValue[][] = [];
  /**
   * The entry task's end, written with the next transaction, which is normally the run's envelope
   * (finish) right after it: one transaction less per run. A process killed in between leaves the
   * run as it was a moment before.
   */
  private heldRootEnd: LifecycleEvent | null = null;

  constructor(
    private readonly store: JournalStore,
    private readonly start: RunStart,
  ) {
    const args = JSON.stringify(start.args);
    store.transaction(() =>
      store.run(
        `INSERT INTO runs (id, host, entry_task, file, language, args_json, limits_json, state,
           started_at, writer_pid, writer_token, resumed_from)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?)`,
        [
          start.id,
          start.host,
          start.task,
          start.file,
          start.language,
          args.length <= MAX_ARGS_CHARS ? args : null,
          jsonOrNull(start.limits),
          start.at,
          store.writer.pid,
          store.writer.token,
          start.resumedFrom ?? null,
        ],
      ),
    );
  }

  /** One lifecycle event: its row, its task run's and attempt's, and the run's state. */
  event(event: LifecycleEvent): void {
    if (event.type === "created") {
      this.heldCreated.set(event.id, event);
      return;
    }
    const created = this.heldCreated.get(event.id);
    if (created !== undefined) {
      this.heldCreated.delete(event.id);
      if (!ENDS.has(event.type)) {
        this.transaction(() => {
          this.writeEvent(created);
          this.writeEvent(event);
        });
        return;
      }
      // An end may be held for its call's envelope, which needs its created event written.
      this.transaction(() => this.writeEvent(created));
    }
    // A recorded call's task run ended: its envelope comes next (callEnded), and both are written
    // in one transaction. Until then the step is in flight, as it was a moment before.
    if (ENDS.has(event.type) && this.callChildren.has(event.id)) {
      this.heldEnds.set(event.id, event);
      return;
    }
    if (ENDS.has(event.type) && event.parentId === null && this.heldRootEnd === null) {
      this.heldRootEnd = event;
      return;
    }
    this.transaction(() => this.writeEvent(event));
  }

  private writeEvent(event: LifecycleEvent): void {
    const store = this.store;
    const runId = this.start.id;
    const error = event.error;
    const errorType = error?.error_type ?? null;
    const errorMessage = error === undefined ? null : cut(error.message);
    store.run(
      "INSERT INTO events (run_id, seq, task_run_id, type, attempt, at) VALUES (?, ?, ?, ?, ?, ?)",
      [runId, this.seq++, event.id, event.type, event.attempt, event.at],
    );
    if (event.type === "created") {
      const call = event.call;
      store.run(
        `INSERT OR IGNORE INTO task_runs (run_id, id, parent_id, depth, task, file, state,
             created_at, call_attempt, call_index) VALUES (?, ?, ?, ?, ?, ?, 'created', ?, ?, ?)`,
        [
          runId,
          event.id,
          event.parentId,
          event.depth,
          event.task,
          this.start.file,
          event.at,
          call?.attempt ?? null,
          call?.index ?? null,
        ],
      );
      const place =
        call === undefined || event.parentId === null
          ? undefined
          : `${event.parentId}:${call.attempt}:${call.index}`;
      const started = place === undefined ? undefined : this.startedCalls.get(place);
      if (place !== undefined && started !== undefined) {
        this.startedCalls.delete(place);
        this.callChildren.set(event.id, place);
        this.insertCall(started.call, started.key, event.id, "started", null);
      }
      if (event.parentId === null && this.rootId === null) this.rootId = event.id;
    } else if (event.type === "running") {
      store.run(
        `INSERT OR REPLACE INTO attempts (run_id, task_run_id, attempt, state, started_at)
           VALUES (?, ?, ?, 'running', ?)`,
        [runId, event.id, event.attempt, event.at],
      );
      store.run(
        "UPDATE task_runs SET state = 'running', attempts = ? WHERE run_id = ? AND id = ?",
        [event.attempt, runId, event.id],
      );
    } else {
      // retrying ends an attempt; completed, failed, timed_out and cancelled end the task run.
      const ended = event.type === "retrying" ? "failed" : event.type;
      store.run(
        `UPDATE attempts SET state = ?, ended_at = ?, error_type = ?, error_message = ?
           WHERE run_id = ? AND task_run_id = ? AND attempt = ?`,
        [ended, event.at, errorType, errorMessage, runId, event.id, event.attempt],
      );
      store.run(
        `UPDATE task_runs SET state = ?, error_type = ?, error_message = ?,
             ended_at = CASE WHEN ? = 'retrying' THEN NULL ELSE ? END,
             duration_ms = coalesce(?, duration_ms), fuel_consumed = coalesce(?, fuel_consumed)
           WHERE run_id = ? AND id = ?`,
        [
          event.type,
          errorType,
          errorMessage,
          event.type,
          event.at,
          event.duration_ms ?? null,
          event.fuel_consumed ?? null,
          runId,
          event.id,
        ],
      );
    }
    if (event.parentId === null && (event.type === "running" || event.type === "retrying")) {
      store.run("UPDATE runs SET state = ? WHERE id = ?", [event.type, runId]);
    }
  }

  /**
   * A sub-task call about to run: its place, task, arguments and options, written with the
   * `created` event of the task run it starts (a call that never starts one is not recorded).
   */
  callStarted(call: SubtaskCallRecord, key: CallKey): void {
    this.startedCalls.set(`${call.parentId}:${call.attempt}:${call.index}`, { call, key });
  }

  private insertCall(
    call: SubtaskCallRecord,
    key: CallKey,
    childId: string,
    state: "started" | "completed",
    envelopeJson: string | null,
  ): void {
    this.store.run(
      `INSERT OR REPLACE INTO calls (run_id, parent_id, attempt, seq, task, args_sha256, args_json,
         options_json, child_id, state, envelope_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        this.start.id,
        call.parentId,
        call.attempt,
        call.index,
        call.name,
        key.argsSha256,
        call.argsJson.length <= MAX_ARGS_CHARS ? call.argsJson : null,
        key.optionsJson,
        childId,
        state,
        envelopeJson,
      ],
    );
  }

  /** A sub-task call that ran, with its envelope (kept within the size bounds). */
  callEnded(call: SubtaskCallRecord, envelope: Envelope): void {
    // Its task run never started (refused before it was created): nothing was recorded.
    if (this.startedCalls.delete(`${call.parentId}:${call.attempt}:${call.index}`)) return;
    const json = this.keptEnvelope(envelope);
    const place = `${call.parentId}:${call.attempt}:${call.index}`;
    let held: LifecycleEvent | undefined;
    for (const [childId, childPlace] of this.callChildren) {
      if (childPlace !== place) continue;
      this.callChildren.delete(childId);
      held = this.heldEnds.get(childId);
      this.heldEnds.delete(childId);
      break;
    }
    this.transaction(() => {
      if (held !== undefined) this.writeEvent(held);
      this.store.run(
        `UPDATE calls SET state = ?, envelope_json = ?
         WHERE run_id = ? AND parent_id = ? AND attempt = ? AND seq = ?`,
        [
          envelope.success ? "completed" : "failed",
          json,
          this.start.id,
          call.parentId,
          call.attempt,
          call.index,
        ],
      );
    });
  }

  /**
   * A sub-task call answered from the journal: the call, with the envelope it was answered with,
   * and a task run (`replayed_from` the one that did the work) so that inspect shows it.
   */
  callReplayed(
    call: SubtaskCallRecord,
    key: CallKey,
    envelope: Envelope,
    from: { taskRunId: string | null },
    at = Date.now(),
  ): void {
    const store = this.store;
    const runId = this.start.id;
    const childId = crypto.randomUUID();
    const json = this.keptEnvelope(envelope);
    const { execution } = envelope;
    this.transaction(() => {
      this.insertCall(call, key, childId, "completed", json);
      store.run(
        `INSERT INTO task_runs (run_id, id, parent_id, depth, task, file, state, created_at,
           ended_at, duration_ms, fuel_consumed, call_attempt, call_index, replayed_from)
         SELECT ?, ?, ?, coalesce((SELECT depth + 1 FROM task_runs WHERE run_id = ? AND id = ?), 1),
           ?, ?, 'completed', ?, ?, ?, ?, ?, ?, ?`,
        [
          runId,
          childId,
          call.parentId,
          runId,
          call.parentId,
          call.name,
          this.start.file,
          at,
          at,
          execution.duration_ms,
          execution.fuel_consumed,
          call.attempt,
          call.index,
          from.taskRunId,
        ],
      );
    });
  }

  /**
   * A response one of the run's fetches got (core/runtime/replies.ts), kept within the same
   * bounds as envelopes: one over MAX_ENVELOPE_CHARS, or past the run's total, is not kept, and a
   * resume makes that fetch again.
   */
  reply(place: ReplyPlace, reply: HostReply): void {
    // Base64's length, known before encoding: a reply too large is never encoded.
    if (!this.fits(reply.meta.length + 4 * Math.ceil(reply.body.byteLength / 3))) return;
    this.heldReplies.push([
      this.start.id,
      place.taskRunId,
      place.attempt,
      place.index,
      place.callsBefore,
      place.keySha256,
      reply.meta,
      toBase64(reply.body),
    ]);
  }

  /**
   * Runs one transaction, with the replies held since the last one: a reply is written with the
   * next record, which for a fetch a later step depends on is that step's start, so it is stored
   * before any step that could be answered from it. One a killed process had not written yet was
   * made after the last stored step, and a resume makes it again.
   */
  private transaction(write: () => void): void {
    this.store.transaction(() => {
      for (const params of this.heldReplies.splice(0)) {
        this.store.run(
          `INSERT OR REPLACE INTO replies (run_id, task_run_id, attempt, seq, calls_before,
             key_sha256, meta_json, body_base64) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
          params,
        );
      }
      // Ahead of whatever comes after it, so events keep their order.
      const rootEnd = this.heldRootEnd;
      this.heldRootEnd = null;
      if (rootEnd !== null) this.writeEvent(rootEnd);
      write();
    });
  }

  /** An envelope's JSON, or null past MAX_ENVELOPE_CHARS or the run's MAX_RUN_ENVELOPE_CHARS. */
  private keptEnvelope(envelope: Envelope): string | null {
    let json: string;
    try {
      json = JSON.stringify(envelope);
    } catch {
      return null;
    }
    return this.fits(json.length) ? json : null;
  }

  /** Whether `chars` more fit the run's bounds on envelopes and replies; counted if so. */
  private fits(chars: number): boolean {
    if (chars > MAX_ENVELOPE_CHARS) return false;
    if (this.envelopeChars + chars > MAX_RUN_ENVELOPE_CHARS) return false;
    this.envelopeChars += chars;
    return true;
  }

  /** The run's envelope: its final state, totals, result or error, and host requests. */
  finish(envelope: Envelope, at = Date.now()): void {
    const store = this.store;
    const runId = this.start.id;
    // Task runs that never got further than created, and ends held for an envelope that never came.
    for (const held of this.heldCreated.values()) this.transaction(() => this.writeEvent(held));
    this.heldCreated.clear();
    for (const held of this.heldEnds.values()) this.transaction(() => this.writeEvent(held));
    this.heldEnds.clear();
    const { execution } = envelope;
    const state: RunState = envelope.success
      ? "completed"
      : envelope.error?.error_type === "timeout"
        ? "timed_out"
        : "failed";
    let result: string | null = null;
    if (envelope.success) {
      const json = JSON.stringify(envelope.result ?? null) ?? "null";
      result =
        json.length <= MAX_RESULT_CHARS
          ? json
          : JSON.stringify({ not_kept: `result of ${json.length} characters of JSON` });
    }
    this.transaction(() => {
      store.run(
        `UPDATE runs SET state = ?, ended_at = ?, duration_ms = ?, fuel_consumed = ?, ram_used = ?,
           retries = ?, result_json = ?, error_type = ?, error_message = ? WHERE id = ?`,
        [
          state,
          at,
          execution.duration_ms,
          execution.fuel_consumed,
          execution.ram_used,
          execution.retries,
          result,
          envelope.error?.error_type ?? null,
          envelope.error === null ? null : cut(envelope.error.message),
          runId,
        ],
      );
      execution.host_requests.slice(0, MAX_HOST_REQUESTS).forEach((request, seq) => {
        store.run(
          `INSERT INTO host_requests (run_id, task_run_id, seq, method, url, status, reason, duration_ms)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            runId,
            this.rootId,
            seq,
            cut(request.method),
            cut(request.url),
            request.status,
            request.reason === undefined ? null : cut(request.reason),
            request.duration_ms ?? null,
          ],
        );
      });
      // A sub-task the run never heard end of (its worker died with it) ended with the run.
      store.run(
        `UPDATE task_runs SET state = 'cancelled', ended_at = ?
         WHERE run_id = ? AND state IN ('created', 'running', 'retrying')`,
        [at, runId],
      );
      // In the same transaction: outside one, each read takes and drops the file's lock.
      if (store.onCommit === undefined) trimToSize(store);
      else store.onCommit(trimWithDefaultBound);
    });
  }
}

/** What a sub-task call is matched by on resume, besides its place and task name. */
export interface CallKey {
  /** SHA-256 of the call's arguments as JSON, in hex. */
  argsSha256: string;
  /** The task's options as this run resolved them (JSON), or null when they could not be read. */
  optionsJson: string | null;
}

/** The events that end a task run. */
const ENDS: ReadonlySet<string> = new Set(["completed", "failed", "timed_out", "cancelled"]);

/** A caller's value as JSON, or null when it has none (a cycle, a BigInt) or is too large. */
function jsonOrNull(value: unknown): string | null {
  try {
    const json = JSON.stringify(value ?? null);
    return json !== undefined && json.length <= MAX_ARGS_CHARS ? json : null;
  } catch {
    return null;
  }
}

/** Bytes the journal's rows take (free pages left by deletes are reused, not counted). */
export function journalBytes(store: JournalStore): number {
  if (store.bytes !== undefined) return store.bytes();
  // One statement: outside a transaction, each takes and drops the file's lock.
  const [row] = store.all(
    `SELECT (page_count - freelist_count) * page_size AS bytes
     FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()`,
  );
  return Number(row?.bytes ?? 0);
}

/** One function, so that a host batching commits trims once per batch (JournalStore.onCommit). */
function trimWithDefaultBound(store: JournalStore): void {
  trimToSize(store);
}

/** Deletes the oldest finished runs, a quarter at a time, until the rows fit in `maxBytes`. */
export function trimToSize(store: JournalStore, maxBytes = MAX_JOURNAL_BYTES): number {
  let removed = 0;
  while (journalBytes(store) > maxBytes) {
    const finished = Number(
      store.all(
        "SELECT count(*) AS n FROM runs WHERE state NOT IN ('created', 'running', 'retrying')",
      )[0]?.n ?? 0,
    );
    if (finished === 0) break;
    const keep = Math.floor((finished * 3) / 4);
    const gone = pruneRuns(store, { olderThanMs: Number.MAX_SAFE_INTEGER, keep });
    if (gone === 0) break;
    removed += gone;
  }
  return removed;
}

function cut(text: string): string {
  return text.length <= MAX_TEXT_CHARS ? text : `${text.slice(0, MAX_TEXT_CHARS)}...`;
}

export interface RunSummary {
  id: string;
  task: string;
  file: string | null;
  state: RunState;
  started_at: number;
  ended_at: number | null;
  duration_ms: number | null;
  fuel_consumed: number | null;
  ram_used: number | null;
  retries: number | null;
  error: { error_type: string; message: string } | null;
}

export interface AttemptRecord {
  attempt: number;
  state: string;
  started_at: number;
  ended_at: number | null;
  error: { error_type: string; message: string } | null;
}

export interface HostRequestRecord {
  method: string;
  url: string;
  status: number | null;
  reason?: string;
  duration_ms?: number;
}

export interface TaskRunRecord {
  id: string;
  parent_id: string | null;
  depth: number;
  task: string;
  file: string | null;
  state: string;
  created_at: number;
  ended_at: number | null;
  duration_ms: number | null;
  fuel_consumed: number | null;
  error: { error_type: string; message: string } | null;
  attempts: AttemptRecord[];
  host_requests: HostRequestRecord[];
  /** For a sub-task: which call of its parent's attempt started it. */
  call: { attempt: number; index: number } | null;
  /** Set when a resumed run answered this call from the journal: the task run that did the work. */
  replayed_from: string | null;
  children: TaskRunRecord[];
}

export interface RunDetail extends RunSummary {
  host: string;
  language: string | null;
  args: string[] | null;
  limits: unknown;
  result: unknown;
  /** The entry task run, with its sub-tasks under `children`. */
  tasks: TaskRunRecord[];
  /** The run this one resumed (`capsule run --resume`), or null. */
  resumed_from: string | null;
  /** Runs that resumed this one, oldest first. */
  resumed_by: string[];
}

export interface ListOptions {
  state?: RunState;
  limit?: number;
}

/** Marks runs whose writer died as interrupted, with their unfinished task runs and attempts. */
export function markInterrupted(store: JournalStore, now = Date.now()): void {
  const open = store.all(
    "SELECT id, writer_pid, writer_token FROM runs WHERE state IN ('created', 'running', 'retrying')",
  );
  for (const row of open) {
    if (store.writerAlive(Number(row.writer_pid), String(row.writer_token))) continue;
    const id = String(row.id);
    store.transaction(() => {
      store.run(
        `UPDATE runs SET state = 'interrupted', ended_at = coalesce(ended_at, ?),
           error_type = coalesce(error_type, 'internal_error'),
           error_message = coalesce(error_message, 'the process running it ended before the run did')
         WHERE id = ?`,
        [now, id],
      );
      store.run(
        `UPDATE task_runs SET state = 'interrupted'
         WHERE run_id = ? AND state IN ('created', 'running', 'retrying')`,
        [id],
      );
      store.run(
        "UPDATE attempts SET state = 'interrupted' WHERE run_id = ? AND state = 'running'",
        [id],
      );
    });
  }
}

/** Runs, newest first. */
export function listRuns(store: JournalStore, options: ListOptions = {}): RunSummary[] {
  markInterrupted(store);
  const where = options.state === undefined ? "" : "WHERE state = ?";
  const params: SqlValue[] = options.state === undefined ? [] : [options.state];
  params.push(options.limit ?? -1);
  return store
    .all(`SELECT * FROM runs ${where} ORDER BY started_at DESC, rowid DESC LIMIT ?`, params)
    .map(summary);
}

/** One run by its id or a unique prefix of it, with its tree of task runs. */
export function inspectRun(store: JournalStore, idOrPrefix: string): RunDetail {
  markInterrupted(store);
  const row = findRun(store, idOrPrefix);
  return runDetail(store, row);
}

/** The `runs` row of a run id or a unique prefix of it; throws RunLookupError when none. */
export function findRun(store: JournalStore, idOrPrefix: string): SqlRow {
  const shown = JSON.stringify(idOrPrefix);
  // A UUID on Node (36 characters); a Durable Object's id (64 hex digits) on Workers.
  if (!/^[0-9a-f-]{1,64}$/i.test(idOrPrefix)) {
    throw new RunLookupError(`no run ${shown}: a run id is hexadecimal digits and dashes`);
  }
  const rows = store.all("SELECT * FROM runs WHERE id >= ? AND id < ? LIMIT 2", [
    idOrPrefix.toLowerCase(),
    `${idOrPrefix.toLowerCase()}\u{10ffff}`,
  ]);
  const row = rows[0];
  if (row === undefined) throw new RunLookupError(`no run ${shown} in the journal`);
  if (rows.length > 1 && String(row.id) !== idOrPrefix.toLowerCase()) {
    throw new RunLookupError(`run id ${shown} is ambiguous: more than one run starts with it`);
  }
  return row;
}

function runDetail(store: JournalStore, row: SqlRow): RunDetail {
  const id = String(row.id);
  const attempts = new Map<string, AttemptRecord[]>();
  for (const a of store.all(
    "SELECT * FROM attempts WHERE run_id = ? ORDER BY task_run_id, attempt",
    [id],
  )) {
    const list = attempts.get(String(a.task_run_id)) ?? [];
    list.push({
      attempt: Number(a.attempt),
      state: String(a.state),
      started_at: Number(a.started_at),
      ended_at: numberOrNull(a.ended_at),
      error: errorOf(a),
    });
    attempts.set(String(a.task_run_id), list);
  }
  const requests = new Map<string, HostRequestRecord[]>();
  for (const r of store.all("SELECT * FROM host_requests WHERE run_id = ? ORDER BY seq", [id])) {
    const list = requests.get(String(r.task_run_id)) ?? [];
    list.push({
      method: String(r.method),
      url: String(r.url),
      status: numberOrNull(r.status),
      ...(r.reason === null ? {} : { reason: String(r.reason) }),
      ...(r.duration_ms === null ? {} : { duration_ms: Number(r.duration_ms) }),
    });
    requests.set(String(r.task_run_id), list);
  }
  const byId = new Map<string, TaskRunRecord>();
  const roots: TaskRunRecord[] = [];
  const taskRows = store.all(
    "SELECT * FROM task_runs WHERE run_id = ? ORDER BY created_at, rowid",
    [id],
  );
  for (const t of taskRows) {
    byId.set(String(t.id), {
      id: String(t.id),
      parent_id: t.parent_id === null ? null : String(t.parent_id),
      depth: Number(t.depth),
      task: String(t.task),
      file: t.file === null ? null : String(t.file),
      state: String(t.state),
      created_at: Number(t.created_at),
      ended_at: numberOrNull(t.ended_at),
      duration_ms: numberOrNull(t.duration_ms),
      fuel_consumed: numberOrNull(t.fuel_consumed),
      error: errorOf(t),
      attempts: attempts.get(String(t.id)) ?? [],
      host_requests: requests.get(String(t.id)) ?? [],
      call:
        t.call_index === null || t.call_index === undefined
          ? null
          : { attempt: Number(t.call_attempt), index: Number(t.call_index) },
      replayed_from: t.replayed_from == null ? null : String(t.replayed_from),
      children: [],
    });
  }
  for (const task of byId.values()) {
    const parent = task.parent_id === null ? undefined : byId.get(task.parent_id);
    if (parent === undefined) roots.push(task);
    else parent.children.push(task);
  }
  // Siblings in the order their parent called them: two calls made together (Promise.all) can be
  // created in either order, and a replayed one is written when its answer is found.
  for (const task of byId.values()) task.children.sort(byCallOrder);
  return {
    ...summary(row),
    host: String(row.host),
    language: row.language === null ? null : String(row.language),
    args: row.args_json === null ? null : (JSON.parse(String(row.args_json)) as string[]),
    limits: row.limits_json === null ? null : JSON.parse(String(row.limits_json)),
    result: row.result_json === null ? null : JSON.parse(String(row.result_json)),
    tasks: roots,
    resumed_from: row.resumed_from == null ? null : String(row.resumed_from),
    resumed_by: store
      .all("SELECT id FROM runs WHERE resumed_from = ? ORDER BY started_at, rowid", [id])
      .map((r) => String(r.id)),
  };
}

export interface PruneOptions {
  olderThanMs: number;
  now?: number;
  /** Runs kept at most, newest first; MAX_RUNS unless given. */
  keep?: number;
}

/** Deletes finished runs started before `now - olderThanMs` (and past `keep`); returns how many. */
export function pruneRuns(store: JournalStore, options: PruneOptions): number {
  markInterrupted(store);
  const cutoff = (options.now ?? Date.now()) - options.olderThanMs;
  const keep = options.keep ?? MAX_RUNS;
  let removed = 0;
  store.transaction(() => {
    const doomed = store.all(
      `SELECT id FROM runs WHERE state NOT IN ('created', 'running', 'retrying')
         AND (started_at < ? OR id NOT IN (SELECT id FROM runs ORDER BY started_at DESC LIMIT ?))`,
      [cutoff, keep],
    );
    for (const { id = null } of doomed) {
      for (const table of [
        "events",
        "attempts",
        "task_runs",
        "host_requests",
        "calls",
        "replies",
      ]) {
        store.run(`DELETE FROM ${table} WHERE run_id = ?`, [id]);
      }
      store.run("DELETE FROM runs WHERE id = ?", [id]);
    }
    removed = doomed.length;
  });
  return removed;
}

function summary(row: SqlRow): RunSummary {
  return {
    id: String(row.id),
    task: String(row.entry_task),
    file: row.file === null ? null : String(row.file),
    state: String(row.state) as RunState,
    started_at: Number(row.started_at),
    ended_at: numberOrNull(row.ended_at),
    duration_ms: numberOrNull(row.duration_ms),
    fuel_consumed: numberOrNull(row.fuel_consumed),
    ram_used: numberOrNull(row.ram_used),
    retries: numberOrNull(row.retries),
    error: errorOf(row),
  };
}

function errorOf(row: SqlRow): { error_type: string; message: string } | null {
  return row.error_type === null || row.error_type === undefined
    ? null
    : { error_type: String(row.error_type), message: String(row.error_message ?? "") };
}

/** By the parent's attempt and the call's index in it; by creation where a call was not kept. */
function byCallOrder(a: TaskRunRecord, b: TaskRunRecord): number {
  if (a.call === null || b.call === null) return a.created_at - b.created_at;
  return a.call.attempt - b.call.attempt || a.call.index - b.call.index;
}

function numberOrNull(value: SqlValue | undefined): number | null {
  return value === null || value === undefined ? null : Number(value);
}
