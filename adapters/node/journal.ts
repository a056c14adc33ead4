/**
 * The run journal on Node: `<cwd>/.capsule/journal.db`, a SQLite database (schema in
 * core/journal/schema.ts) that run() writes as a run happens, one transaction per lifecycle
 * event, and that `capsule runs` / `capsule inspect`, listRuns() and inspectRun() read.
 *
 * SQLite comes from node-sqlite3-wasm (SQLite compiled to wasm, with a VFS on Node's fs): one
 * implementation on every Node line we support. `node:sqlite` is missing on Node 20 (and warns as
 * experimental on 22), and better-sqlite3 is a native build every consumer would have to compile.
 * Measured here (Node 20, 2 cores, loaded): loading it costs about 70 ms once per process; a
 * transaction 7-18 ms with an fsync (`synchronous=NORMAL` or `FULL`), 2.5-4 ms without; a trivial
 * run (five transactions) went from 9 to about 70 ms with fsyncs.
 *
 * Crash safety: the rollback journal (`journal_mode=PERSIST`; this VFS has no shared memory, so no
 * WAL) makes each transaction all-or-nothing: a process killed at any moment, even mid-write,
 * leaves a hot journal that the next open rolls back. Writes are not fsynced
 * (`synchronous=OFF`): what a killed process wrote is in the OS's hands and survives it; a power
 * cut or kernel crash may lose or damage the latest writes, which for a record of runs is the
 * better trade than an fsync per event. This VFS locks with a `journal.db.lock`
 * directory: a lock left by a killed process (older than STALE_LOCK_MS, when no transaction takes
 * that long) is removed; a live one is waited for (up to BUSY_WAIT_MS).
 *
 * Resume (`capsule run --resume <id>`, `run({ resume })`, core/journal/resume.ts) reads only the
 * journal of the project it runs in: a run id is looked up in `<cwd>/.capsule/journal.db` and
 * nowhere else, and it is digits and dashes, never a path.
 *
 * The journal sits in `.capsule`, which no grant, mount or guest path reaches
 * (core/policy/runtime-state.ts). A journal that cannot be opened or written never fails a run:
 * the run goes on unrecorded, and the process gets one warning (`process.emitWarning`, code
 * CAPSULE_JOURNAL) per journal file.
 */
import { mkdirSync, readFileSync, rmdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { ConfigError } from "../../core/errors.ts";
import {
  inspectRun as inspectJournalRun,
  type JournalStore,
  type ListOptions,
  listRuns as listJournalRuns,
  type PruneOptions,
  prepareJournal,
  pruneRuns as pruneJournalRuns,
  RUN_STATES,
  type RunDetail,
  RunLookupError,
  RunRecorder,
  type RunSummary,
  type SqlRow,
  type SqlValue,
} from "../../core/journal/journal.ts";
import { journalReplyHook, ReplyMatcher } from "../../core/journal/replies.ts";
import {
  CallMatcher,
  journalSubtaskHook,
  type ResumeTarget,
  resumeTarget,
} from "../../core/journal/resume.ts";
import { RUNTIME_STATE_DIR } from "../../core/policy/runtime-state.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import type { LifecycleEvent, LifecycleListener } from "../../core/runtime/events.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import type { SubtaskHook } from "../../core/runtime/subtasks.ts";

export type { RunDetail, RunState, RunSummary, TaskRunRecord } from "../../core/journal/journal.ts";
export { RUN_STATES, RunLookupError };

export const JOURNAL_FILE = "journal.db";
const STALE_LOCK_MS = 3_000;
const BUSY_WAIT_MS = 8_000;

interface SqliteDatabase {
  exec(sql: string): void;
  run(sql: string, values?: SqlValue[]): unknown;
  all(sql: string, values?: SqlValue[]): SqlRow[];
  close(): void;
}

let sqlite: { Database: new (path: string) => SqliteDatabase } | undefined;
function loadSqlite() {
  // Kept out of the bundle (scripts/build.mjs): its glue finds its wasm beside itself.
  sqlite ??= createRequire(import.meta.url)("node-sqlite3-wasm");
  return sqlite as { Database: new (path: string) => SqliteDatabase };
}

/** The journal of the project at `cwd`. */
export function journalPath(cwd: string): string {
  return join(resolve(cwd), RUNTIME_STATE_DIR, JOURNAL_FILE);
}

const writer = { pid: process.pid, token: startToken(process.pid) };

/** This boot and the process's start time: a pid reused after a crash gets a different token. */
function startToken(pid: number): string {
  let boot = "";
  try {
    boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    // Not Linux: the pid alone, checked for life.
  }
  return `${boot}:${processStart(pid) ?? ""}`;
}

function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start after its closing parenthesis.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function writerAlive(pid: number, token: string): boolean {
  if (pid === writer.pid && token === writer.token) return true;
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  const [boot = "", start = ""] = token.split(":");
  const [ourBoot = ""] = writer.token.split(":");
  if (boot !== ourBoot) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  return start === "" || processStart(pid) === start;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

class NodeJournalStore implements JournalStore {
  readonly writer = writer;
  readonly writerAlive = writerAlive;
  private depth = 0;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly path: string,
  ) {}

  exec(sql: string): void {
    this.retry(() => this.db.exec(sql));
  }
  run(sql: string, params: readonly SqlValue[] = []): void {
    this.retry(() => this.db.run(sql, [...params]));
  }
  all(sql: string, params: readonly SqlValue[] = []): SqlRow[] {
    return this.retry(() => this.db.all(sql, [...params]));
  }
  transaction(fn: () => void): void {
    if (this.depth > 0) {
      fn();
      return;
    }
    this.exec("BEGIN IMMEDIATE");
    this.depth++;
    try {
      fn();
      this.db.exec("COMMIT");
    } catch (error) {
      try {
        this.db.exec("ROLLBACK");
      } catch {
        // Nothing was left open.
      }
      throw error;
    } finally {
      this.depth--;
    }
  }
  close(): void {
    this.db.close();
  }

  /** Waits out another process's lock; removes one its dead holder left. */
  private retry<T>(fn: () => T): T {
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (;;) {
      try {
        return fn();
      } catch (error) {
        if (this.depth > 0 || !/locked|busy/i.test(String((error as Error).message))) throw error;
        const lock = `${this.path}.lock`;
        const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
        if (age > STALE_LOCK_MS) {
          try {
            rmdirSync(lock);
          } catch {
            // Another reader removed it first.
          }
          continue;
        }
        if (Date.now() > deadline) throw error;
        Atomics.wait(sleeper, 0, 0, 5);
      }
    }
  }
}

const open = new Map<string, NodeJournalStore>();
const warned = new Set<string>();

function warnOnce(path: string, error: unknown): void {
  if (warned.has(path)) return;
  warned.add(path);
  process.emitWarning(
    `the run journal ${path} cannot be written (${(error as Error).message}); runs go on unrecorded`,
    { code: "CAPSULE_JOURNAL" },
  );
}

/** The project's journal, opened once per process and kept open. Throws when it cannot be. */
export function openJournal(cwd: string, create = true): NodeJournalStore | null {
  const path = journalPath(cwd);
  const known = open.get(path);
  if (known !== undefined) return known;
  if (!create && statSync(path, { throwIfNoEntry: false }) === undefined) return null;
  mkdirSync(join(resolve(cwd), RUNTIME_STATE_DIR), { recursive: true, mode: 0o700 });
  const { Database } = loadSqlite();
  const db = new Database(path);
  const store = new NodeJournalStore(db, path);
  try {
    store.exec("PRAGMA journal_mode=PERSIST; PRAGMA synchronous=OFF;");
    prepareJournal(store);
  } catch (error) {
    db.close();
    throw error;
  }
  open.set(path, store);
  return store;
}

/** Closes every journal this process opened (tests). */
export function closeJournals(): void {
  for (const store of open.values()) store.close();
  open.clear();
}

export interface RunJournalStart {
  runId: string;
  cwd: string;
  task: string;
  file: string | null;
  language: string | null;
  args: readonly string[];
  limits: unknown;
  /** Set for a resumed run: the journaled run's calls, which this run's are matched with. */
  resume?: CallMatcher;
  /** Set for a resumed run: the journaled run's fetch responses (core/journal/replies.ts). */
  replies?: ReplyMatcher;
}

/** What run() wraps a run in: events, sub-task calls and the final envelope go to the journal. */
export interface RunJournal {
  onEvent(event: LifecycleEvent): void;
  /**
   * The hook the run's sub-task calls go through: it records each call and its envelope, and in
   * a resumed run answers completed ones from the journal. `optionsOf` gives a task's resolved
   * options as JSON; `onDiverged` ends the run when a resume's calls no longer match.
   */
  subtasks(
    optionsOf: (task: string) => Promise<string | null>,
    onDiverged: (message: string) => void,
  ): SubtaskHook;
  /** The hook the run's fetches go through: recorded, and replayed in a resumed run. */
  replies(): ReplyHook;
  finish(envelope: Envelope): void;
}

/**
 * A run a resume can start from, and the matchers of its calls and fetch responses. Throws a
 * ConfigError if none.
 */
export function openResume(
  cwd: string,
  id: unknown,
): { target: ResumeTarget; matcher: CallMatcher; replies: ReplyMatcher } {
  const store = openJournal(cwd, false);
  if (store === null) {
    throw new ConfigError(
      `resume: no run ${JSON.stringify(id)}: this project has no journal yet (${journalPath(cwd)})`,
    );
  }
  const target = resumeTarget(store, id);
  const matcher = new CallMatcher(store, target.id);
  return { target, matcher, replies: new ReplyMatcher(store, matcher) };
}

/**
 * Starts recording a run; null (after one warning) when the journal cannot be opened. A write
 * that fails later warns once too, and the run goes on.
 */
export function startRunJournal(start: RunJournalStart, listener?: LifecycleListener): RunJournal {
  const path = journalPath(start.cwd);
  let recorder: RunRecorder | null = null;
  try {
    const store = openJournal(start.cwd);
    if (store !== null) {
      recorder = new RunRecorder(store, {
        id: start.runId,
        host: "node",
        task: start.task,
        file: start.file,
        language: start.language,
        args: start.args,
        limits: start.limits,
        at: Date.now(),
        ...(start.resume === undefined ? {} : { resumedFrom: start.resume.fromRunId }),
      });
    }
  } catch (error) {
    warnOnce(path, error);
  }
  const guard = (write: () => void) => {
    if (recorder === null) return;
    try {
      write();
    } catch (error) {
      warnOnce(path, error);
    }
  };
  return {
    onEvent(event) {
      start.resume?.onEvent(event);
      guard(() => recorder?.event(event));
      listener?.(event);
    },
    subtasks(optionsOf, onDiverged) {
      return journalSubtaskHook({
        recorder,
        ...(start.resume === undefined ? {} : { matcher: start.resume }),
        optionsOf,
        guard,
        onDiverged,
      });
    },
    replies() {
      return journalReplyHook({
        recorder,
        ...(start.replies === undefined ? {} : { matcher: start.replies }),
        guard,
      });
    },
    finish(envelope) {
      guard(() => recorder?.finish(envelope));
    },
  };
}

export interface JournalQueryOptions {
  /** The project whose journal to read; defaults to `process.cwd()`. */
  cwd?: string;
}

/** Runs in the project's journal, newest first; none when it has no journal yet. */
export function listRuns(options: JournalQueryOptions & ListOptions = {}): RunSummary[] {
  const { state, limit } = options;
  if (state !== undefined && !(RUN_STATES as readonly string[]).includes(state)) {
    throw new RangeError(
      `listRuns(): state ${JSON.stringify(state)} is not one of ${RUN_STATES.join(", ")}`,
    );
  }
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new RangeError(`listRuns(): limit ${String(limit)} is not a positive integer`);
  }
  const store = openJournal(options.cwd ?? process.cwd(), false);
  return store === null ? [] : listJournalRuns(store, { state, limit });
}

/** One run by id (or a unique prefix), with its tree of task runs; throws RunLookupError if none. */
export function inspectRun(id: string, options: JournalQueryOptions = {}): RunDetail {
  if (typeof id !== "string") {
    throw new RunLookupError(`inspectRun(): a run id is a string, got ${typeof id}`);
  }
  const store = openJournal(options.cwd ?? process.cwd(), false);
  if (store === null) throw new RunLookupError(`no run ${JSON.stringify(id)}: no journal yet`);
  return inspectJournalRun(store, id);
}

/** Deletes runs older than `olderThanMs`; returns how many went. */
export function pruneRuns(options: JournalQueryOptions & PruneOptions): number {
  const store = openJournal(options.cwd ?? process.cwd(), false);
  return store === null ? 0 : pruneJournalRuns(store, options);
}
