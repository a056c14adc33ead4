/**
 * The run journal on Workers: a Durable Object's SQLite storage (`ctx.storage.sql`) as core's
 * JournalStore (core/journal/store.ts), so a run's object holds the same tables as Node's
 * `.capsule/journal.db`, written by the same recorder.
 *
 * `exec`, `run` and `all` are synchronous there, and a transaction is
 * `ctx.storage.transactionSync` (SQL `BEGIN` is refused). The writer token is made once per object
 * instance: an object that restarted (a redeploy, a restart of the runtime, an eviction) has a new
 * one, so a run it left `running` reads as `interrupted` the next time anyone looks.
 */
import type { JournalStore, SqlRow, SqlValue } from "../../core/journal/store.ts";

/** The part of Workers' `SqlStorage` the journal uses. */
export interface SqlStorageLike {
  exec(query: string, ...bindings: unknown[]): { toArray(): Record<string, unknown>[] };
  readonly databaseSize: number;
}

/** The part of a Durable Object's storage the journal uses. */
export interface DurableObjectStorageLike {
  readonly sql: SqlStorageLike;
  transactionSync<T>(fn: () => T): T;
  setAlarm(at: number): Promise<void>;
  getAlarm(): Promise<number | null>;
  deleteAll(): Promise<void>;
}

export class DurableObjectJournalStore implements JournalStore {
  /** No process id on Workers; the token alone tells this instance from an earlier one. */
  readonly writer = { pid: 0, token: crypto.randomUUID() };
  #depth = 0;

  constructor(private readonly storage: DurableObjectStorageLike) {}

  exec(sql: string): void {
    this.storage.sql.exec(sql);
  }
  run(sql: string, params: readonly SqlValue[] = []): void {
    this.storage.sql.exec(sql, ...params);
  }
  all(sql: string, params: readonly SqlValue[] = []): SqlRow[] {
    return this.storage.sql.exec(sql, ...params).toArray() as SqlRow[];
  }
  transaction(fn: () => void): void {
    if (this.#depth > 0) {
      fn();
      return;
    }
    this.#depth++;
    try {
      this.storage.transactionSync(fn);
    } finally {
      this.#depth--;
    }
  }
  writerAlive(_pid: number, token: string): boolean {
    return token === this.writer.token;
  }
  bytes(): number {
    return this.storage.sql.databaseSize;
  }
  /** Whether the journal's tables exist (a read never creates them). */
  hasJournal(): boolean {
    return (
      this.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'runs'").length > 0
    );
  }
}

/** Largest piece of a long text per row: SQLite values in a Durable Object hold at most 2 MB. */
const CHUNK_CHARS = 512 * 1024;

/** Keeps a text (a run's request, its response) in rows of at most CHUNK_CHARS. */
export function putText(store: JournalStore, name: string, text: string): void {
  store.exec(
    "CREATE TABLE IF NOT EXISTS texts (name TEXT NOT NULL, seq INTEGER NOT NULL, chunk TEXT NOT NULL, PRIMARY KEY (name, seq))",
  );
  store.transaction(() => {
    store.run("DELETE FROM texts WHERE name = ?", [name]);
    let at = 0;
    let seq = 0;
    do {
      let end = Math.min(text.length, at + CHUNK_CHARS);
      // Never split a surrogate pair.
      const last = text.charCodeAt(end - 1);
      if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
      store.run("INSERT INTO texts (name, seq, chunk) VALUES (?, ?, ?)", [
        name,
        seq++,
        text.slice(at, end),
      ]);
      at = end;
    } while (at < text.length);
  });
}

/** A text putText kept, or null. */
export function getText(store: JournalStore, name: string): string | null {
  if (
    store.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'texts'").length === 0
  ) {
    return null;
  }
  const rows = store.all("SELECT chunk FROM texts WHERE name = ? ORDER BY seq", [name]);
  return rows.length === 0 ? null : rows.map((r) => String(r.chunk)).join("");
}
