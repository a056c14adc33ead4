/**
 * The run journal in a web page: the same SQLite schema as on Node (core/journal/schema.ts),
 * written by core's recorder as a run happens, kept in the origin's private file system (OPFS).
 *
 * core's `JournalStore` is synchronous, and OPFS files open synchronously only in Workers. So the
 * page holds an in-memory SQLite database (sqlite-wasm, the official build) as the synchronous
 * front, loaded at open from the durable copy, and forwards each transaction's statements, in
 * order, to a dedicated Worker (journal-worker.ts) that applies them as one transaction to the
 * database in OPFS (sqlite-wasm's `opfs-sahpool` VFS, under JOURNAL_DIRECTORY).
 *
 * Crash safety: a transaction is durable once the Worker has applied it (well under a millisecond
 * to a few ms here); a page that reloads loses the ones posted but not yet applied, which is the
 * step in flight: before a sub-task call starts, the run waits until everything it recorded so
 * far is durable (`flushed`), so a finished step is never lost to a reload. What the Worker was
 * applying when the page went is rolled back whole at the next open (SQLite's rollback journal).
 *
 * Writers: each page load has its own token (`writer.token`), and a run recorded under another
 * token that is still `running` reads as `interrupted`: only one page of an origin holds the
 * journal at a time (the Worker's Web Lock), so a run of another token has no live page.
 *
 * A page's runs record `file` as `code:<sha256 of the source>`; the source itself is kept in the
 * page journal's own `sources` table (up to MAX_SOURCE_CHARS), which is what `run({ resume })`
 * runs again. Sources no run names any more go when the journal opens.
 *
 * A journal that cannot be opened (no OPFS sync access handles, another tab holding it) or
 * written never fails a run: the run goes on unrecorded and the page gets one console warning.
 */

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
  trimToSize,
} from "../../core/journal/journal.ts";
import { journalReplyHook, ReplyMatcher } from "../../core/journal/replies.ts";
import { CallMatcher, journalSubtaskHook, resumeTarget } from "../../core/journal/resume.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import type { LifecycleEvent, LifecycleListener } from "../../core/runtime/events.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import type { RuntimeSettings } from "../../core/runtime/settings.ts";
import type { SubtaskHook } from "../../core/runtime/subtasks.ts";
import type { JournalReply, JournalRequest, Statement } from "./journal-protocol.ts";

export type { RunDetail, RunState, RunSummary, TaskRunRecord } from "../../core/journal/journal.ts";
export { RUN_STATES, RunLookupError };

/** SQLite's wasm, beside the built modules (dist/browser), as the engine's is. */
const SQLITE_WASM_URL = new URL("./sqlite3.wasm", import.meta.url);
/** A source over this many characters is not kept: its run cannot resume. */
export const MAX_SOURCE_CHARS = 1024 * 1024;
/** A page keeps less than a Node project: past this many bytes of rows the oldest runs go. */
export const MAX_PAGE_JOURNAL_BYTES = 32 * 1024 * 1024;
/** How long opening may take (the Worker waits up to LOCK_WAIT_MS for another page's). */
const OPEN_WITHIN_MS = 30_000;
const SOURCE_PREFIX = "code:";

/**
 * The page's sources, beside the shared schema: a source goes with the last run that names it
 * (pruned by age, count or size), so what the journal's size counts is what pruning frees.
 */
export const SOURCES_SQL = `CREATE TABLE IF NOT EXISTS sources (
  sha256 TEXT PRIMARY KEY,
  language TEXT,
  code TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_file ON runs (file);
CREATE TRIGGER IF NOT EXISTS sources_unused AFTER DELETE ON runs
WHEN old.file LIKE '${SOURCE_PREFIX}%' BEGIN
  DELETE FROM sources WHERE '${SOURCE_PREFIX}' || sha256 = old.file
    AND NOT EXISTS (SELECT 1 FROM runs WHERE file = old.file);
END;`;

/** This page load, as `runs.writer_token` records it. */
const writer = { pid: 0, token: `page:${crypto.randomUUID()}` };

type Sqlite = Awaited<ReturnType<typeof import("@sqlite.org/sqlite-wasm")["default"]>>;
type Database = InstanceType<Sqlite["oo1"]["DB"]>;

/** The page's journal: the in-memory front and the Worker that keeps it durable. */
export class PageJournal implements JournalStore {
  readonly writer = writer;
  #depth = 0;
  #collected: Statement[] = [];
  #posted = 0;
  #applied = 0;
  #waiters: { seq: number; resolve: () => void }[] = [];
  #warned = false;

  constructor(
    private readonly db: Database,
    private readonly worker: Worker,
  ) {
    worker.addEventListener("message", (event: MessageEvent<JournalReply>) => {
      const reply = event.data;
      if (reply.type !== "applied" && reply.type !== "tx-failed") return;
      if (reply.type === "tx-failed") this.warn(`a write failed (${reply.message})`);
      this.#applied = Math.max(this.#applied, reply.seq);
      this.#release();
    });
    worker.addEventListener("error", () => {
      this.warn("its Worker stopped");
      this.#applied = this.#posted;
      this.#release();
    });
  }

  writerAlive(_pid: number, token: string): boolean {
    return token === writer.token;
  }

  exec(sql: string): void {
    this.db.exec(sql);
    this.#forward([sql, null]);
  }

  run(sql: string, params: readonly SqlValue[] = []): void {
    this.db.exec({ sql, bind: [...params] as never });
    this.#forward([sql, [...params]]);
  }

  all(sql: string, params: readonly SqlValue[] = []): SqlRow[] {
    const rows = this.db.selectObjects(sql, [...params] as never) as Record<string, unknown>[];
    for (const row of rows) {
      for (const [key, value] of Object.entries(row)) {
        if (typeof value === "bigint") row[key] = Number(value);
      }
    }
    return rows as SqlRow[];
  }

  transaction(fn: () => void): void {
    if (this.#depth > 0) {
      fn();
      return;
    }
    this.db.exec("BEGIN IMMEDIATE");
    this.#depth++;
    this.#collected = [];
    try {
      fn();
      this.db.exec("COMMIT");
      this.#post(this.#collected);
    } catch (error) {
      try {
        this.db.exec("ROLLBACK");
      } catch {
        // Nothing was left open.
      }
      throw error;
    } finally {
      this.#depth--;
      this.#collected = [];
    }
  }

  /** Resolves once every transaction recorded so far is in OPFS (or its write failed). */
  flushed(): Promise<void> {
    if (this.#applied >= this.#posted) return Promise.resolve();
    const seq = this.#posted;
    return new Promise((resolve) => this.#waiters.push({ seq, resolve }));
  }

  /** Transactions posted to the Worker and not yet applied (tests, measurements). */
  get inFlight(): number {
    return this.#posted - this.#applied;
  }

  #forward(statement: Statement): void {
    if (this.#depth > 0) this.#collected.push(statement);
    else this.#post([statement]);
  }

  #post(statements: Statement[]): void {
    if (statements.length === 0) return;
    const seq = ++this.#posted;
    this.worker.postMessage({ type: "tx", seq, statements } satisfies JournalRequest);
  }

  #release(): void {
    const ready = this.#waiters.filter((w) => w.seq <= this.#applied);
    this.#waiters = this.#waiters.filter((w) => w.seq > this.#applied);
    for (const waiter of ready) waiter.resolve();
  }

  warn(what: string): void {
    if (this.#warned) return;
    this.#warned = true;
    console.warn(`capsule: the run journal in OPFS: ${what}; runs go on unrecorded there`);
  }
}

let opening: Promise<PageJournal | null> | undefined;
let openFailure: string | null = null;

/** The page's journal, opened once per page load; null (after one warning) when it cannot be. */
export function pageJournal(): Promise<PageJournal | null> {
  opening ??= openPageJournal().catch((error: unknown) => {
    openFailure = String(error instanceof Error ? error.message : error);
    console.warn(`capsule: the run journal cannot be opened (${openFailure}); runs go unrecorded`);
    return null;
  });
  return opening;
}

/** Why the journal could not be opened, once pageJournal() has said null. */
export function journalFailure(): string | null {
  return openFailure;
}

async function openPageJournal(): Promise<PageJournal> {
  if (typeof navigator === "undefined" || navigator.storage?.getDirectory === undefined) {
    throw new Error("this browser has no origin private file system (OPFS)");
  }
  // One expression with a literal path, as the pool's worker: bundlers emit it with its imports.
  const worker = new Worker(new URL("./capsule-journal.js", import.meta.url), {
    type: "module",
    name: "capsule-journal",
  });
  try {
    const [bytes, sqlite] = await Promise.all([durableCopy(worker), loadSqlite()]);
    const db = new sqlite.oo1.DB(":memory:");
    if (bytes.length > 0) {
      const pointer = sqlite.wasm.allocFromTypedArray(bytes);
      const rc = sqlite.capi.sqlite3_deserialize(
        db.pointer as never,
        "main",
        pointer,
        bytes.length,
        bytes.length,
        sqlite.capi.SQLITE_DESERIALIZE_FREEONCLOSE | sqlite.capi.SQLITE_DESERIALIZE_RESIZEABLE,
      );
      db.checkRc(rc);
    }
    const journal = new PageJournal(db, worker);
    prepareJournal(journal);
    journal.exec(SOURCES_SQL);
    journal.transaction(() =>
      journal.run(
        `DELETE FROM sources WHERE ? || sha256 NOT IN (SELECT file FROM runs WHERE file IS NOT NULL)`,
        [SOURCE_PREFIX],
      ),
    );
    return journal;
  } catch (error) {
    worker.terminate();
    throw error;
  }
}

function durableCopy(worker: Worker): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`its Worker did not open it within ${OPEN_WITHIN_MS} ms`)),
      OPEN_WITHIN_MS,
    );
    const done = () => {
      clearTimeout(timer);
      worker.removeEventListener("message", onMessage);
    };
    const onMessage = (event: MessageEvent<JournalReply>) => {
      const reply = event.data;
      if (reply.type === "opened") {
        done();
        resolve(reply.bytes);
      } else if (reply.type === "open-failed") {
        done();
        reject(new Error(reply.message));
      }
    };
    worker.addEventListener("message", onMessage);
    worker.addEventListener(
      "error",
      (event) => {
        event.preventDefault();
        done();
        reject(new Error(`its Worker failed: ${event.message || "it could not load"}`));
      },
      { once: true },
    );
    worker.postMessage({ type: "open" } satisfies JournalRequest);
  });
}

async function loadSqlite(): Promise<Sqlite> {
  const { default: factory } = await import("@sqlite.org/sqlite-wasm");
  // The emscripten factory takes its module options; the package's types leave them out.
  const init = factory as unknown as (options: object) => Promise<Sqlite>;
  return init({
    locateFile: () => SQLITE_WASM_URL.href,
    print: () => {},
    printErr: () => {},
  });
}

/** The `file` a page run records: its source's SHA-256. */
export async function sourceFile(code: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(code));
  const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${SOURCE_PREFIX}${hex}`;
}

export interface PageRunStart {
  runId: string;
  task: string;
  code: string;
  language: "ts" | "js" | "py";
  args: readonly string[];
  limits: unknown;
  /** When the run started; default now. */
  at?: number;
  /** Set for a resumed run: the journaled run's calls, which this run's are matched with. */
  resume?: CallMatcher;
  /** Set for a resumed run: the journaled run's fetch responses (core/journal/replies.ts). */
  replies?: ReplyMatcher;
}

/** What run() wraps a run in: events, sub-task calls and the final envelope go to the journal. */
export interface PageRunJournal {
  onEvent(event: LifecycleEvent): void;
  subtasks(onDiverged: (message: string) => void): SubtaskHook;
  /** The hook the run's fetches go through: recorded, and replayed in a resumed run. */
  replies(): ReplyHook;
  /** Records the run's end; resolves once its record is in OPFS. */
  finish(envelope: Envelope): Promise<void>;
}

/** Starts recording a run in the page's journal. */
export async function startPageRunJournal(
  journal: PageJournal,
  start: PageRunStart,
  listener?: LifecycleListener,
): Promise<PageRunJournal> {
  const file = await sourceFile(start.code);
  let recorder: RunRecorder | null = null;
  const guard = (write: () => void) => {
    if (recorder === null) return;
    try {
      write();
    } catch (error) {
      journal.warn(`a write failed (${String(error)})`);
    }
  };
  try {
    if (start.code.length <= MAX_SOURCE_CHARS) {
      journal.transaction(() =>
        journal.run("INSERT OR IGNORE INTO sources (sha256, language, code) VALUES (?, ?, ?)", [
          file.slice(SOURCE_PREFIX.length),
          start.language,
          start.code,
        ]),
      );
    }
    recorder = new RunRecorder(journal, {
      id: start.runId,
      host: "browser",
      task: start.task,
      file,
      language: start.language,
      args: start.args,
      limits: start.limits,
      at: start.at ?? Date.now(),
      ...(start.resume === undefined ? {} : { resumedFrom: start.resume.fromRunId }),
    });
  } catch (error) {
    journal.warn(`a write failed (${String(error)})`);
  }
  return {
    onEvent(event) {
      start.resume?.onEvent(event);
      guard(() => recorder?.event(event));
      listener?.(event);
    },
    subtasks(onDiverged) {
      // The source is the recorded one, and so are the limits: a task's options cannot differ.
      const hook = journalSubtaskHook({
        recorder,
        ...(start.resume === undefined ? {} : { matcher: start.resume }),
        optionsOf: async () => null,
        guard,
        onDiverged,
      });
      return {
        // A step starts only once everything before it (the last step's end) is durable.
        before: async (call) => {
          await journal.flushed();
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
      guard(() => trimToSize(journal, MAX_PAGE_JOURNAL_BYTES));
      return journal.flushed();
    },
  };
}

/** What a resume runs again, from the page's journal. */
export interface PageResume {
  fromRunId: string;
  /** Set when the run completed: its recorded envelope, which the resume returns. */
  completed: Envelope | null;
  code: string;
  language: "ts" | "js";
  task: string;
  args: string[];
  limits: Partial<RuntimeSettings> | null;
  matcher: CallMatcher;
  replies: ReplyMatcher;
}

/** The run `id` names in this page's journal, ready to run again; a ConfigError naming it if not. */
export function openPageResume(journal: PageJournal, id: unknown): PageResume {
  const target = resumeTarget(journal, id);
  const hash = target.file.startsWith(SOURCE_PREFIX)
    ? target.file.slice(SOURCE_PREFIX.length)
    : null;
  const row =
    hash === null ? undefined : journal.all("SELECT * FROM sources WHERE sha256 = ?", [hash])[0];
  if (row === undefined) {
    throw new ConfigError(
      `resume: run ${target.id}'s source is not in this page's journal (it keeps sources up to ${MAX_SOURCE_CHARS} characters), so it cannot run again`,
    );
  }
  const language = target.language === "js" ? "js" : "ts";
  const matcher = new CallMatcher(journal, target.id);
  return {
    fromRunId: target.id,
    completed: target.completed,
    code: String(row.code),
    language,
    task: target.task,
    args: target.args,
    limits: target.limits as Partial<RuntimeSettings> | null,
    matcher,
    replies: new ReplyMatcher(journal, matcher),
  };
}

/** Runs in the page's journal, newest first; none when it cannot be opened. */
export async function listRuns(options: ListOptions = {}): Promise<RunSummary[]> {
  const { state, limit } = options ?? {};
  if (state !== undefined && !(RUN_STATES as readonly string[]).includes(state)) {
    throw new RangeError(
      `listRuns(): state ${JSON.stringify(state)} is not one of ${RUN_STATES.join(", ")}`,
    );
  }
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new RangeError(`listRuns(): limit ${String(limit)} is not a positive integer`);
  }
  const journal = await pageJournal();
  return journal === null ? [] : listJournalRuns(journal, { state, limit });
}

/** One run by id (or a unique prefix), with its tree of task runs; throws RunLookupError if none. */
export async function inspectRun(id: string): Promise<RunDetail> {
  if (typeof id !== "string") {
    throw new RunLookupError(`inspectRun(): a run id is a string, got ${typeof id}`);
  }
  const journal = await pageJournal();
  if (journal === null) {
    throw new RunLookupError(
      `no run ${JSON.stringify(id)}: this page has no journal (${journalFailure()})`,
    );
  }
  return inspectJournalRun(journal, id);
}

/** Deletes runs older than `olderThanMs`; returns how many went. */
export async function pruneRuns(options: PruneOptions): Promise<number> {
  const journal = await pageJournal();
  return journal === null ? 0 : pruneJournalRuns(journal, options);
}
