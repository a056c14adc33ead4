/** What the page's journal (journal.ts) and its Worker (journal-worker.ts) say to each other. */
import type { SqlValue } from "../../core/journal/store.ts";

/**
 * The OPFS directory (at the origin's root) that holds the journal's files. A task's files live
 * under the app's `opfsRoot`, which may not be this directory or lie in it (files.ts).
 */
export const JOURNAL_DIRECTORY = ".capsule-journal";
/** The database's name inside the VFS's directory. */
export const JOURNAL_DB_NAME = "/journal.db";
/** The Web Lock the Worker that holds the journal's files takes for its life. */
export const JOURNAL_LOCK = "capsule-portable-journal";
/** How long a page's journal Worker waits for another page's to let go of the files. */
export const LOCK_WAIT_MS = 3_000;

/** One statement: its SQL and positional parameters (null: run as a script, no parameters). */
export type Statement = [sql: string, params: SqlValue[] | null];

export type JournalRequest =
  | { type: "open" }
  | { type: "tx"; seq: number; statements: Statement[] };

export type JournalReply =
  | { type: "opened"; bytes: Uint8Array }
  | { type: "open-failed"; message: string }
  | { type: "applied"; seq: number }
  | { type: "tx-failed"; seq: number; message: string };
