/**
 * Resume: run a journaled run's entry task again, answering each sub-task call that already
 * completed from the journal instead of running it again.
 *
 * A resumed run is a NEW run (its own id) whose `resumed_from` names the run it resumes, rather
 * than the old run continued under its id. A run's row then keeps one writer process from start to
 * end, which is what tells an interrupted run from a live one; the old run's record stays exactly
 * as it happened (`capsule inspect` of it shows where it stopped, and `resumed_by` who took over);
 * the same run can be resumed twice without one resume rewriting the other; and the new run's
 * record is whole: a call answered from the journal is recorded in it again (a task run with
 * `replayed_from`, its envelope in `calls`), so a resumed run that is interrupted in turn resumes
 * from its own record alone.
 *
 * Matching. A task run's sub-task calls are numbered per attempt, in the order the task makes
 * them (0, 1, ...). A call of the resumed run is matched with the journaled call at the same place
 * (the same index, under the journaled counterpart of its parent) when the task name, a hash of
 * the arguments' JSON and the task's resolved options (its declared options with capsule.toml's
 * defaults, as fuel, ram, timeout, retries and grants) are all equal:
 *   - the journaled call completed, and its envelope was kept: the call returns that envelope,
 *     and nothing runs;
 *   - it failed, was interrupted, or its envelope was not kept: the call runs normally; its task
 *     run's own sub-task calls are matched in turn against the journaled task run's;
 *   - there is no journaled call at that place: the call runs normally.
 * A journaled call at the same place that differs (another task, other arguments, other options)
 * means the task file changed in a way that moves the call sequence: the resume stops the whole
 * run with a config_error naming the call (its index, its parent, what differs), rather than
 * answering calls with results that belong to other calls. Calls of a retried parent: its
 * journaled attempts are all searched at that index, a completed match first.
 *
 * Where replay cannot hold, and what we do:
 *   - Once a call that ran anew has ended, its parent may take another path than the journaled
 *     one (a step that failed before may succeed now). From then on, that parent attempt's later
 *     calls run normally and are not compared. Calls made before any fresh result came back
 *     (all the calls of a `Promise.all`) are still matched.
 *   - The entry task itself (and every task that runs anew) runs again: whatever it did directly
 *     (a file write, a fetch) happens again. Only sub-task calls are answered from the journal.
 *   - Fetch responses a finished step depended on are replayed (replies.ts); other host replies
 *     are not: a file read, an environment variable, or a fetch made after the last finished
 *     step may differ from the journaled run and send the task down another path (a divergence
 *     error if that moves its calls, else a different result). Fuel and the guest's clock are
 *     deterministic, so a task that reads nothing else from its hosts takes the same path.
 *   - A race between sub-tasks (`Promise.race`, calls made as others settle) can order calls
 *     differently from run to run: such calls may not match and then run again, or diverge.
 *   - A sub-task envelope over MAX_ENVELOPE_CHARS (or past the run's MAX_RUN_ENVELOPE_CHARS) is
 *     not kept, and a sub-task whose call is recorded but whose end is not (the process died
 *     between them) counts as interrupted: both run again.
 *   - A run of code given to run() (not a task file) cannot resume: the journal keeps no code.
 */
import { ConfigError } from "../errors.ts";
import { type Envelope, failureEnvelope } from "../runtime/envelope.ts";
import type { LifecycleEvent } from "../runtime/events.ts";
import type { SubtaskCallRecord, SubtaskHook } from "../runtime/subtasks.ts";
import {
  type CallKey,
  findRun,
  type JournalStore,
  markInterrupted,
  RunLookupError,
  type RunRecorder,
  type RunState,
  type SqlRow,
} from "./journal.ts";

export { resumeFailure, resumeOptionsError } from "./resume-request.ts";

/** The run a resume starts from, as the journal recorded it. */
export interface ResumeTarget {
  id: string;
  state: RunState;
  task: string;
  /** The task file, relative to the project. */
  file: string;
  language: string | null;
  args: string[];
  /** run()'s `limits` for that run, or null. */
  limits: unknown;
  /** Set for a completed run whose result was kept: its envelope, which a resume returns. */
  completed: Envelope | null;
}

const OPEN_STATES = new Set(["created", "running", "retrying"]);

/**
 * The run `idOrPrefix` names in this journal, checked to be one a resume can take. Throws a
 * ConfigError naming the id when it names no run, or a run that cannot resume.
 */
export function resumeTarget(store: JournalStore, idOrPrefix: unknown): ResumeTarget {
  if (typeof idOrPrefix !== "string" || idOrPrefix === "") {
    throw new ConfigError(
      `resume: a run id is a string of hexadecimal digits and dashes (see capsule runs), got ${describeId(idOrPrefix)}`,
    );
  }
  markInterrupted(store);
  let row: SqlRow;
  try {
    row = findRun(store, idOrPrefix);
  } catch (error) {
    if (error instanceof RunLookupError) throw new ConfigError(`resume: ${error.message}`);
    throw error;
  }
  const id = String(row.id);
  const state = String(row.state) as RunState;
  if (OPEN_STATES.has(state)) {
    throw new ConfigError(
      `resume: run ${id} is still ${state} (process ${String(row.writer_pid)}); resume it once it has ended or been interrupted`,
    );
  }
  const file = row.file === null ? null : String(row.file);
  if (file === null) {
    throw new ConfigError(
      `resume: run ${id} ran code given to run(), which the journal does not keep; only a run of a task file can resume`,
    );
  }
  if (row.language === "py" || /\.py$/i.test(file)) {
    throw new ConfigError(
      `resume: run ${id} is a Python task (${file}); resume runs JavaScript and TypeScript task files for now`,
    );
  }
  if (row.args_json === null) {
    throw new ConfigError(
      `resume: run ${id}'s arguments were too large for the journal to keep, so it cannot run again as it was`,
    );
  }
  return {
    id,
    state,
    task: String(row.entry_task),
    file,
    language: row.language === null ? null : String(row.language),
    args: JSON.parse(String(row.args_json)) as string[],
    limits: row.limits_json === null ? null : JSON.parse(String(row.limits_json)),
    completed: state === "completed" ? completedEnvelope(store, row) : null,
  };
}

/** A completed run's envelope as the journal kept it; null when its result was not kept. */
function completedEnvelope(store: JournalStore, row: SqlRow): Envelope | null {
  if (row.result_json === null) return null;
  const result = JSON.parse(String(row.result_json)) as unknown;
  if (isNotKept(result)) return null;
  const id = String(row.id);
  const requests = store.all("SELECT * FROM host_requests WHERE run_id = ? ORDER BY seq", [id]);
  return {
    success: true,
    result,
    error: null,
    execution: {
      task_name: String(row.entry_task),
      duration_ms: Number(row.duration_ms ?? 0),
      retries: Number(row.retries ?? 0),
      fuel_consumed: Number(row.fuel_consumed ?? 0),
      ram_used: Number(row.ram_used ?? 0),
      host_requests: requests.map((r) => ({
        method: String(r.method),
        url: String(r.url),
        status: r.status === null ? null : Number(r.status),
        ...(r.reason === null ? {} : { reason: String(r.reason) }),
        ...(r.duration_ms === null ? {} : { duration_ms: Number(r.duration_ms) }),
      })),
      run_id: id,
    },
  };
}

/** The placeholder RunRecorder.finish keeps for a result over MAX_RESULT_CHARS. */
function isNotKept(result: unknown): boolean {
  return (
    typeof result === "object" &&
    result !== null &&
    Object.keys(result).length === 1 &&
    typeof (result as { not_kept?: unknown }).not_kept === "string" &&
    /^result of \d+ characters of JSON$/.test((result as { not_kept: string }).not_kept)
  );
}

function describeId(value: unknown): string {
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}

/** A call's match key: a hash of its arguments and its task's options. */
export async function callKey(argsJson: string, optionsJson: string | null): Promise<CallKey> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(argsJson));
  const argsSha256 = [...new Uint8Array(digest)]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
  return { argsSha256, optionsJson };
}

interface JournaledCall {
  attempt: number;
  task: string;
  argsSha256: string;
  argsJson: string | null;
  optionsJson: string | null;
  childId: string | null;
  envelope: Envelope | null;
}

export type CallAnswer =
  | { kind: "replay"; envelope: Envelope; taskRunId: string | null }
  | { kind: "run" }
  | { kind: "diverged"; message: string };

/** Matches a resumed run's sub-task calls with the journaled run's (see the top of this file). */
export class CallMatcher {
  readonly fromRunId: string;
  /** A task run of the resumed run -> its counterpart in the journaled run. */
  readonly #journaledOf = new Map<string, string>();
  /** `${journaled parent}:${index}` -> that place's calls, latest attempt first. */
  readonly #calls = new Map<string, JournaledCall[]>();
  /** Journaled task run ids -> task names, for messages. */
  readonly #taskNames = new Map<string, string>();
  /** `${parent}:${attempt}:${index}` of a call that runs anew -> its journaled task run. */
  readonly #pending = new Map<string, string>();
  /** `${parent}:${attempt}` of attempts that have had a call run anew and end. */
  readonly #fresh = new Set<string>();
  readonly #journaledRoot: string | null;
  #rootMapped = false;

  constructor(store: JournalStore, fromRunId: string) {
    this.fromRunId = fromRunId;
    let root: string | null = null;
    for (const t of store.all(
      "SELECT id, parent_id, task FROM task_runs WHERE run_id = ? ORDER BY created_at, rowid",
      [fromRunId],
    )) {
      this.#taskNames.set(String(t.id), String(t.task));
      if (t.parent_id === null && root === null) root = String(t.id);
    }
    this.#journaledRoot = root;
    for (const c of store.all(
      "SELECT * FROM calls WHERE run_id = ? ORDER BY parent_id, seq, attempt DESC",
      [fromRunId],
    )) {
      const key = `${String(c.parent_id)}:${Number(c.seq)}`;
      const list = this.#calls.get(key) ?? [];
      let envelope: Envelope | null = null;
      if (c.state === "completed" && c.envelope_json !== null) {
        const parsed = JSON.parse(String(c.envelope_json)) as Envelope;
        if (parsed?.success === true) envelope = parsed;
      }
      list.push({
        attempt: Number(c.attempt),
        task: String(c.task),
        argsSha256: String(c.args_sha256),
        argsJson: c.args_json === null ? null : String(c.args_json),
        optionsJson: c.options_json === null ? null : String(c.options_json),
        childId: c.child_id === null ? null : String(c.child_id),
        envelope,
      });
      this.#calls.set(key, list);
    }
  }

  /** Learns which task runs of the resumed run stand for which journaled ones. */
  onEvent(event: LifecycleEvent): void {
    if (event.type !== "created") return;
    if (event.parentId === null) {
      if (!this.#rootMapped && this.#journaledRoot !== null) {
        this.#journaledOf.set(event.id, this.#journaledRoot);
      }
      this.#rootMapped = true;
      return;
    }
    if (event.call === undefined) return;
    const place = `${event.parentId}:${event.call.attempt}:${event.call.index}`;
    const journaled = this.#pending.get(place);
    if (journaled === undefined) return;
    this.#pending.delete(place);
    this.#journaledOf.set(event.id, journaled);
  }

  /**
   * What to do with one call of the resumed run. `fresh` is isFresh(...) as it was when the call
   * was made: a call of a `Promise.all` whose key is still being computed while a sibling that
   * ran anew ends was made before that result came back, and is still matched.
   */
  match(
    call: SubtaskCallRecord,
    key: CallKey,
    fresh = this.isFresh(call.parentId, call.attempt),
  ): CallAnswer {
    const parent = this.#journaledOf.get(call.parentId);
    if (parent === undefined) return { kind: "run" };
    if (fresh) return { kind: "run" };
    const journaled = this.#calls.get(`${parent}:${call.index}`);
    if (journaled === undefined || journaled.length === 0) return { kind: "run" };
    const same = journaled.filter(
      (c) =>
        c.task === call.name &&
        c.argsSha256 === key.argsSha256 &&
        c.optionsJson === key.optionsJson,
    );
    if (same.length === 0) {
      return {
        kind: "diverged",
        message: this.#divergence(call, key, parent, journaled[0] as JournaledCall),
      };
    }
    const done = same.find((c) => c.envelope !== null);
    if (done?.envelope) return { kind: "replay", envelope: done.envelope, taskRunId: done.childId };
    const redo = same[0] as JournaledCall;
    if (redo.childId !== null) {
      this.#pending.set(`${call.parentId}:${call.attempt}:${call.index}`, redo.childId);
    }
    return { kind: "run" };
  }

  /** The journaled task run a task run of the resumed run stands for, if any. */
  counterpart(taskRunId: string): string | undefined {
    return this.#journaledOf.get(taskRunId);
  }

  /** Whether a call of this attempt ran anew and ended: from then on it may take another path. */
  isFresh(taskRunId: string, attempt: number): boolean {
    return this.#fresh.has(`${taskRunId}:${attempt}`);
  }

  /** A call that ran anew has ended: its parent's later calls are no longer compared. */
  settled(call: SubtaskCallRecord): void {
    this.#pending.delete(`${call.parentId}:${call.attempt}:${call.index}`);
    if (this.#journaledOf.has(call.parentId)) this.#fresh.add(`${call.parentId}:${call.attempt}`);
  }

  #divergence(
    call: SubtaskCallRecord,
    key: CallKey,
    parent: string,
    journaled: JournaledCall,
  ): string {
    const differs: string[] = [];
    if (journaled.task !== call.name) {
      differs.push(
        `the journal has task ${JSON.stringify(journaled.task)} there, this run called ${JSON.stringify(call.name)}`,
      );
    } else {
      if (journaled.argsSha256 !== key.argsSha256) {
        differs.push(
          `its arguments differ (journal: ${shorten(journaled.argsJson ?? "(too large to keep)")}, now: ${shorten(call.argsJson)})`,
        );
      }
      if (journaled.optionsJson !== key.optionsJson) {
        differs.push(
          `its options differ (journal: ${shorten(journaled.optionsJson ?? "(unknown)")}, now: ${shorten(key.optionsJson ?? "(unknown)")})`,
        );
      }
    }
    const parentTask = this.#taskNames.get(parent) ?? "?";
    return `resume of run ${this.fromRunId} diverged at sub-task call ${call.index} (counting from 0) of task ${JSON.stringify(parentTask)}: ${differs.join("; ")}. The task file changed since that run in a way that moves its sub-task calls, so the journal's results no longer fit; run the file anew instead`;
  }
}

function shorten(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}...`;
}

export interface JournalHookOptions {
  /** Records the run's calls; null when the journal cannot be written (a resume still matches). */
  recorder: RunRecorder | null;
  /** Set for a resumed run. */
  matcher?: CallMatcher;
  /** A task's resolved options as JSON (null when they cannot be read): part of a call's key. */
  optionsOf: (task: string) => Promise<string | null>;
  /** Runs one journal write, so that a failed write never fails the run. */
  guard: (write: () => void) => void;
  /** The resume diverged: end the run (its envelope becomes this config_error). */
  onDiverged: (message: string) => void;
}

/** The SubtaskHook a journaled run runs with: it records each call and answers resumed ones. */
export function journalSubtaskHook(options: JournalHookOptions): SubtaskHook {
  const { recorder, matcher, guard } = options;
  return {
    async before(call) {
      // Whether the call is made after a fresh result came back: known now, not after the awaits.
      const fresh = matcher?.isFresh(call.parentId, call.attempt) ?? false;
      const key = await callKey(call.argsJson, await options.optionsOf(call.name));
      const answer = matcher?.match(call, key, fresh) ?? { kind: "run" };
      if (answer.kind === "diverged") {
        options.onDiverged(answer.message);
        return failureEnvelope(call.name, { error_type: "config_error", message: answer.message });
      }
      if (answer.kind === "replay") {
        guard(() =>
          recorder?.callReplayed(call, key, answer.envelope, { taskRunId: answer.taskRunId }),
        );
        return answer.envelope;
      }
      guard(() => recorder?.callStarted(call, key));
      return null;
    },
    after(call, envelope) {
      matcher?.settled(call);
      guard(() => recorder?.callEnded(call, envelope));
    },
  };
}
