/**
 * The run journal on Node: `<cwd>/.capsule/journal.db`, a SQLite database (schema in
 * core/journal/schema.ts) that run() writes as a run happens, and that `capsule runs` /
 * `capsule inspect`, listRuns() and inspectRun() read. What one turn of the event loop records is
 * written as one transaction (group commit, NodeJournalStore below); a task's start is written
 * at once.
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

interface SqliteStatement {
  run(values?: SqlValue[]): unknown;
  all(values?: SqlValue[]): SqlRow[];
  finalize(): void;
}

interface SqliteDatabase {
  exec(sql: string): void;
  prepare(sql: string): SqliteStatement;
  close(): void;
}

/** Prepared statements kept per connection: the recorder's dozen, and a few queries' variants. */
const MAX_KEPT_STATEMENTS = 64;

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

type Statement = [sql: string, params: SqlValue[]];
type CommitWork = (store: JournalStore) => void;

/**
 * Group commit: a transaction's writes are collected, not executed, and every transaction of one
 * turn of the event loop is written as one SQLite transaction when the turn ends (setImmediate),
 * or sooner when something reads (a read sees every write before it) or asks (`flush`). A commit
 * costs ~0.45 ms here whatever it holds (the lock directory, the journal file, ~19 system calls),
 * and a hello run made three. Order is kept, and each batch lands whole or not at all, so a killed
 * process leaves a prefix of what it recorded, as before, short of at most its last turn.
 */
class NodeJournalStore implements JournalStore {
  readonly writer = writer;
  readonly writerAlive = writerAlive;
  /** SQLite transactions committed (tests, measurements). */
  commits = 0;
  private depth = 0;
  /** Inside a transaction that has read: its writes, and the batch before them, run directly. */
  private live = false;
  private pending: Statement[] = [];
  private readonly onCommitWork = new Set<CommitWork>();
  private scheduled: NodeJS.Immediate | null = null;
  private waiters: Array<() => void> = [];
  private readonly statements = new Map<string, SqliteStatement>();

  constructor(
    private readonly db: SqliteDatabase,
    private readonly path: string,
    private readonly onError: (error: unknown) => void,
  ) {}

  exec(sql: string): void {
    this.beforeDirectAccess();
    this.retry(() => this.db.exec(sql));
  }
  run(sql: string, params: readonly SqlValue[] = []): void {
    if (this.live) {
      this.withStatement(sql, (statement) => statement.run([...params]));
      return;
    }
    this.pending.push([sql, [...params]]);
    if (this.depth === 0) this.schedule();
  }
  all(sql: string, params: readonly SqlValue[] = []): SqlRow[] {
    this.beforeDirectAccess();
    return this.retry(() => this.withStatement(sql, (statement) => statement.all([...params])));
  }
  transaction(fn: () => void): void {
    if (this.depth > 0) {
      fn();
      return;
    }
    const mark = this.pending.length;
    this.depth++;
    try {
      fn();
      if (this.live) this.commit();
      else this.schedule();
    } catch (error) {
      if (this.live) this.rollback();
      // This transaction's writes go; the batch before it stays, to be written.
      this.pending.length = Math.min(mark, this.pending.length);
      if (this.pending.length > 0) this.schedule();
      throw error;
    } finally {
      this.depth--;
      this.live = false;
    }
  }
  onCommit(work: CommitWork): void {
    this.onCommitWork.add(work);
    if (this.depth === 0) this.schedule();
  }

  /** Writes everything recorded so far, now. Throws what the write threw (the batch is dropped). */
  flush(): void {
    if (this.depth > 0 || (this.pending.length === 0 && this.onCommitWork.size === 0)) {
      this.release();
      return;
    }
    this.depth++;
    try {
      this.begin();
      this.commit();
    } catch (error) {
      this.rollback();
      this.pending = [];
      this.onCommitWork.clear();
      throw error;
    } finally {
      this.depth--;
      this.live = false;
      this.release();
    }
  }

  /** Resolves once everything recorded so far is written (or its write failed and warned). */
  flushed(): Promise<void> {
    if (this.pending.length === 0 && this.onCommitWork.size === 0 && this.depth === 0) {
      return Promise.resolve();
    }
    this.schedule();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    this.flushQuietly();
    this.forgetStatements();
    this.db.close();
  }

  /**
   * Runs `use` on the statement for `sql`, prepared once: preparing parses the SQL in wasm,
   * ~45 us a time here, against ~15 us to run one (a hello run writes about a dozen).
   */
  private withStatement<T>(sql: string, use: (statement: SqliteStatement) => T): T {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      if (this.statements.size >= MAX_KEPT_STATEMENTS) this.forgetStatements();
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    try {
      return use(statement);
    } catch (error) {
      // A statement whose last step failed (busy, say) refuses its next reset: prepare it again.
      this.statements.delete(sql);
      try {
        statement.finalize();
      } catch {
        // Finalizing reports the same failure.
      }
      throw error;
    }
  }

  private forgetStatements(): void {
    for (const statement of this.statements.values()) statement.finalize();
    this.statements.clear();
  }

  /** A flush whose failure is the journal's one warning, not the caller's error. */
  flushQuietly(): void {
    try {
      this.flush();
    } catch (error) {
      this.onError(error);
    }
  }

  /** A read, or a statement run directly, sees every write recorded before it. */
  private beforeDirectAccess(): void {
    if (this.live) return;
    if (this.depth > 0) this.begin();
    else this.flushQuietly();
  }

  /** Opens the SQLite transaction and writes the batch into it; later writes go directly. */
  private begin(): void {
    this.retry(() => this.db.exec("BEGIN IMMEDIATE"), true);
    this.live = true;
    for (const [sql, params] of this.pending) {
      this.withStatement(sql, (statement) => statement.run(params));
    }
  }

  private commit(): void {
    for (const work of this.onCommitWork) {
      this.onCommitWork.delete(work);
      work(this);
    }
    this.db.exec("COMMIT");
    this.commits++;
    this.pending = [];
  }

  private rollback(): void {
    if (!this.live) return;
    try {
      this.db.exec("ROLLBACK");
    } catch {
      // Nothing was left open.
    }
  }

  private schedule(): void {
    if (this.scheduled !== null) return;
    // Kept referenced: it runs at the end of this turn, and run() waits for it. What a
    // process.exit() in this turn leaves is written at `exit` (flushAtExit).
    this.scheduled = setImmediate(() => {
      this.scheduled = null;
      this.flushQuietly();
    });
  }

  private release(): void {
    if (this.pending.length > 0 || this.onCommitWork.size > 0) return;
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  /** Waits out another process's lock; removes one its dead holder left. */
  private retry<T>(fn: () => T, opening = false): T {
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (;;) {
      try {
        return fn();
      } catch (error) {
        if ((this.depth > 0 && !opening) || !/locked|busy/i.test(String((error as Error).message)))
          throw error;
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
  const store = new NodeJournalStore(db, path, (error) => warnOnce(path, error));
  try {
    store.exec("PRAGMA journal_mode=PERSIST; PRAGMA synchronous=OFF;");
    prepareJournal(store);
  } catch (error) {
    db.close();
    throw error;
  }
  if (open.size === 0) process.once("exit", flushAtExit);
  open.set(path, store);
  return store;
}

/** What the last turn recorded, when the process ends before its batch is written. */
function flushAtExit(): void {
  for (const store of open.values()) store.flushQuietly();
}

/** Closes every journal this process opened (tests). */
export function closeJournals(): void {
  for (const store of open.values()) store.close();
  open.clear();
  process.off("exit", flushAtExit);
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
  /** Records the envelope; resolves once the run's whole record is written. */
  finish(envelope: Envelope): Promise<void>;
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
  let store: NodeJournalStore | null = null;
  try {
    store = openJournal(start.cwd);
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
      // A task's start is written as soon as it is known, before anything it asks of the host
      // (a file written, a fetch): a process killed while a step runs shows that step as
      // interrupted. Ends and envelopes wait for the turn's batch.
      if (event.type === "running" && recorder !== null) store?.flushQuietly();
      listener?.(event);
    },
    subtasks(optionsOf, onDiverged) {
      const hook = journalSubtaskHook({
        recorder,
        ...(start.resume === undefined ? {} : { matcher: start.resume }),
        optionsOf,
        guard,
        onDiverged,
      });
      return {
        // A step starts only once everything before it (the last step's end) is written.
        before: (call) => {
          if (recorder !== null) store?.flushQuietly();
          return hook.before(call);
        },
        after: (call, envelope) => hook.after(call, envelope),
      };
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
      return recorder === null || store === null ? Promise.resolve() : store.flushed();
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
