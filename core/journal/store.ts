/** What a host gives the journal: a synchronous SQLite connection and a way to tell live writers. */

export type SqlValue = string | number | null;
export type SqlRow = Record<string, SqlValue>;

export interface JournalStore {
  /** Runs statements that return nothing (the schema). */
  exec(sql: string): void;
  /** Runs one statement with positional parameters. */
  run(sql: string, params?: readonly SqlValue[]): void;
  /** The rows one query returns. */
  all(sql: string, params?: readonly SqlValue[]): SqlRow[];
  /** Runs `fn` as one transaction: all of its writes land, or none do. */
  transaction(fn: () => void): void;
  /** This process, as `runs.writer_pid` / `runs.writer_token` record it. */
  readonly writer: { pid: number; token: string };
  /** Whether the process that recorded (pid, token) is still alive; false after a reboot. */
  writerAlive(pid: number, token: string): boolean;
  /**
   * Bytes the journal's rows take, where the host reports it itself (a Durable Object's SQL
   * storage has `databaseSize` and refuses the page PRAGMAs); page counts are read otherwise.
   */
  bytes?(): number;
  /**
   * Where the host batches commits (Node: one transaction per turn of the event loop), `work`
   * runs once inside the transaction that makes what was written so far durable, however many
   * times it was asked for in between. Without it, the recorder runs such work in its own
   * transaction.
   */
  onCommit?(work: (store: JournalStore) => void): void;
}
