/**
 * The page journal's durable copy: a dedicated Worker (OPFS sync access handles exist only in
 * Workers) that holds the journal in SQLite on the origin's private file system, through
 * sqlite-wasm's `opfs-sahpool` VFS, in the OPFS directory JOURNAL_DIRECTORY (files.ts keeps every
 * task's view out of it). The page keeps a synchronous in-memory copy (journal.ts): at open this
 * Worker hands it the database's bytes, and then applies each of the page's transactions, in the
 * order they were posted, as one SQLite transaction (rollback journal: a Worker terminated mid-way
 * leaves a hot journal that the next open rolls back).
 *
 * One Worker at a time holds the files (the VFS's access handles are exclusive): it takes the Web
 * Lock JOURNAL_LOCK for its whole life, so the Worker of a page that reloads waits for the old
 * page's to be gone. A second tab waits up to LOCK_WAIT_MS and then has no journal.
 */
import sqlite3InitModule from "@sqlite.org/sqlite-wasm";
import {
  JOURNAL_DB_NAME,
  JOURNAL_DIRECTORY,
  JOURNAL_LOCK,
  type JournalReply,
  type JournalRequest,
  LOCK_WAIT_MS,
} from "./journal-protocol.ts";

/** SQLite's wasm, beside the built modules (dist/browser), as the engine's is. */
const SQLITE_WASM_URL = new URL("./sqlite3.wasm", import.meta.url);

type Sqlite = Awaited<ReturnType<typeof sqlite3InitModule>>;
type Database = InstanceType<Sqlite["oo1"]["DB"]>;

const scope = self as unknown as {
  postMessage(message: JournalReply, transfer?: Transferable[]): void;
  addEventListener(type: "message", listener: (event: MessageEvent<JournalRequest>) => void): void;
};

let opened: Promise<{ sqlite: Sqlite; db: Database }> | undefined;

function reply(message: JournalReply, transfer: Transferable[] = []) {
  scope.postMessage(message, transfer);
}

/** Waits for the journal's lock (held until this Worker ends), then opens the database. */
async function open(): Promise<{ sqlite: Sqlite; db: Database }> {
  await new Promise<void>((resolve, reject) => {
    navigator.locks
      .request(JOURNAL_LOCK, { signal: AbortSignal.timeout(LOCK_WAIT_MS) }, () => {
        resolve();
        // Held for this Worker's life: the browser releases it when the Worker ends.
        return new Promise<never>(() => {});
      })
      .catch((error: unknown) => {
        reject(
          new Error(
            `another page of this origin holds the run journal (waited ${LOCK_WAIT_MS} ms): ${String(error)}`,
          ),
        );
      });
  });
  // The emscripten factory takes its module options; the package's types leave them out.
  const init = sqlite3InitModule as unknown as (options: object) => Promise<Sqlite>;
  const sqlite = await init({
    locateFile: () => SQLITE_WASM_URL.href,
    print: () => {},
    printErr: () => {},
  });
  const pool = await sqlite.installOpfsSAHPoolVfs({
    name: "capsule-journal",
    directory: JOURNAL_DIRECTORY,
    initialCapacity: 4,
  });
  const db = new pool.OpfsSAHPoolDb(JOURNAL_DB_NAME);
  // A rollback journal (this VFS has no WAL): each transaction lands whole or not at all. The
  // files are this Worker's alone (the Web Lock), so SQLite keeps its lock and page cache between
  // transactions. No flush per transaction (`synchronous=OFF`), as on Node: what was written
  // survives a reload or a crashed tab, and only an OS crash or power cut may lose the latest
  // writes. Measured in Chromium (a profile on disk): 0.2-1 ms a transaction; a flush per commit
  // made a hello run 30-40 ms slower instead of 8-18, and a 20-step workflow 450-560 ms instead
  // of 75-180.
  db.exec("PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=PERSIST; PRAGMA synchronous=OFF;");
  return { sqlite, db };
}

scope.addEventListener("message", (event) => {
  const message = event.data;
  if (message.type === "open") {
    opened ??= open();
    opened.then(
      ({ sqlite, db }) => {
        const bytes = sqlite.capi.sqlite3_js_db_export(db);
        reply({ type: "opened", bytes }, [bytes.buffer]);
      },
      (error: unknown) => reply({ type: "open-failed", message: String(error) }),
    );
    return;
  }
  if (message.type === "tx") {
    if (opened === undefined) {
      reply({ type: "tx-failed", seq: message.seq, message: "the journal is not open" });
      return;
    }
    opened.then(
      ({ db }) => {
        try {
          db.transaction("IMMEDIATE", () => {
            for (const [sql, params] of message.statements) {
              if (params === null) db.exec(sql);
              else db.exec({ sql, bind: params as never });
            }
          });
          reply({ type: "applied", seq: message.seq });
        } catch (error) {
          reply({ type: "tx-failed", seq: message.seq, message: String(error) });
        }
      },
      (error: unknown) => reply({ type: "tx-failed", seq: message.seq, message: String(error) }),
    );
  }
});
