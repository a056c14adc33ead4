import { type CapsuleError, ConfigError, PermissionDeniedError, TimeoutError } from "../errors.ts";

/**
 * What the sandboxes of every run on one host may hold together: each task's `ram` is reserved
 * before its first attempt and held until its last one ends, so the host never hands out more
 * memory than it has (a Workers isolate has 128 MB in all; a page shares its device).
 *
 * - A task asking for more than the whole budget can never run: `config_error`.
 * - A sub-task that cannot fit even beside its own run's entry task (which holds its memory for
 *   as long as the run lasts) is refused at once: `permission_denied`.
 * - Otherwise a task that does not fit in what is left waits for memory to free up, in line:
 *   deeper sub-tasks first (they are the ones their ancestors wait for), then in the order they
 *   came; entry tasks last, since they hold nothing yet. It waits as long as memory keeps being
 *   freed; once none has been for 10 s (a sub-task) or 30 s (an entry task) it is refused
 *   (`permission_denied`). That bound is what breaks a cycle in which every holder awaits a
 *   sub-task that waits for memory: it ends refused, never hung.
 */
export class MemoryBudget {
  readonly totalBytes: number;
  /** Whose memory it is, for messages: "this Worker's isolate", "this page", "this process". */
  readonly owner: string;
  readonly waits: MemoryWaits;
  #heldBytes = 0;
  readonly #held = new Map<object, number>();
  /** What each run's entry task holds, by run: no sub-task of the run can use that memory. */
  readonly #entryBytes = new WeakMap<object, number>();
  readonly #waiting: Waiter[] = [];
  #nextSeq = 0;
  /** When memory was last freed: a waiter's bound counts from then. */
  #lastFreed = 0;

  constructor(totalBytes: number, owner: string, waits: MemoryWaits = DEFAULT_WAITS) {
    if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) {
      throw new ConfigError(
        `memory budget: ${JSON.stringify(totalBytes)} is not a positive number of bytes`,
      );
    }
    this.totalBytes = totalBytes;
    this.owner = owner;
    this.waits = waits;
  }

  /** Bytes reserved by running tasks now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /**
   * Reserves `ramBytes` for `holder` (one task, until `release(holder)`); `task.run` is any
   * object that stands for the task's run (the same for the entry task and all its sub-tasks).
   * Resolves to null once reserved, or to the error that refuses the task; never rejects.
   */
  reserve(holder: object, ramBytes: number, task: MemoryClaim): Promise<CapsuleError | null> {
    if (this.#held.has(holder)) return Promise.resolve(null);
    const subject = `${task.depth > 0 ? "sub-task" : "task"} ${JSON.stringify(task.name)}`;
    if (ramBytes > this.totalBytes) {
      return Promise.resolve(
        new ConfigError(
          `${subject} asks for ram of ${mib(ramBytes)}, more than the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together; ask for at most "${Math.floor(this.totalBytes / 2 ** 20)}MB"`,
        ),
      );
    }
    const entry = task.depth > 0 ? (this.#entryBytes.get(task.run) ?? 0) : 0;
    if (entry + ramBytes > this.totalBytes) {
      return Promise.resolve(
        new PermissionDeniedError(
          `${subject} refused: it asks for ram of ${mib(ramBytes)}, and its run's entry task holds ${mib(entry)} of the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together; give it at most "${Math.floor((this.totalBytes - entry) / 2 ** 20)}MB"`,
        ),
      );
    }
    const waiter: Waiter = {
      holder,
      ramBytes,
      claim: task,
      seq: this.#nextSeq++,
      cancel: () => {},
      timer: undefined,
    };
    if (this.#fits(ramBytes) && !this.#waiting.some((other) => goesBefore(other, waiter))) {
      this.#take(waiter);
      return Promise.resolve(null);
    }
    // Each waiter checks on its own timer rather than being woken by `release`: on Workers the
    // release may come from another request, which must not settle this request's promises.
    const boundMs = task.depth > 0 ? this.waits.subtaskMs : this.waits.entryMs;
    return new Promise((resolve) => {
      const started = Date.now();
      waiter.cancel = (error) =>
        resolve(error ?? new PermissionDeniedError(`${subject} ended while it waited for memory`));
      const check = () => {
        if (this.#first() === waiter && this.#fits(ramBytes)) {
          this.#drop(waiter);
          this.#take(waiter);
          resolve(null);
        } else if (Date.now() - Math.max(started, this.#lastFreed) >= boundMs) {
          this.#drop(waiter);
          resolve(
            new PermissionDeniedError(
              `${subject} refused: it waited ${Date.now() - started} ms for ram of ${mib(ramBytes)}, ${boundMs} ms of them with no memory freed, while running tasks held ${mib(this.#heldBytes)} of the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together (a task awaiting sub-tasks keeps its own); start fewer at once or give them less ram`,
            ),
          );
        } else {
          waiter.timer = setTimeout(check, WAIT_CHECK_MS);
        }
      };
      this.#waiting.push(waiter);
      waiter.timer = setTimeout(check, WAIT_CHECK_MS);
    });
  }

  /** Reserves for one task at a time of one run (in this thread); each task its own holder. */
  reserverFor(run: object): MemoryReserver {
    return async (ramBytes, task) => {
      const holder = {};
      const refusal = await this.reserve(holder, ramBytes, { ...task, run });
      if (refusal !== null) throw refusal;
      return () => this.release(holder);
    };
  }

  /** Gives up `holder`'s place in line, if it waits (its task was aborted); keeps what it holds. */
  stopWaiting(holder: object): void {
    const waiter = this.#waiting.find((w) => w.holder === holder);
    if (waiter === undefined) return;
    this.#drop(waiter);
    waiter.cancel(
      new TimeoutError("the task was cancelled by its caller while it waited for memory"),
    );
  }

  /** Frees what `holder` reserved, or gives up its place in line. */
  release(holder: object): void {
    const bytes = this.#held.get(holder);
    if (bytes !== undefined) {
      this.#held.delete(holder);
      this.#heldBytes -= bytes;
      this.#lastFreed = Date.now();
    }
    const waiter = this.#waiting.find((w) => w.holder === holder);
    if (waiter !== undefined) {
      this.#drop(waiter);
      waiter.cancel();
    }
  }

  #fits(ramBytes: number): boolean {
    return this.#heldBytes + ramBytes <= this.totalBytes;
  }

  #first(): Waiter | undefined {
    let first: Waiter | undefined;
    for (const waiter of this.#waiting) if (!first || goesBefore(waiter, first)) first = waiter;
    return first;
  }

  #take(waiter: Waiter): void {
    this.#held.set(waiter.holder, waiter.ramBytes);
    this.#heldBytes += waiter.ramBytes;
    if (waiter.claim.depth === 0) this.#entryBytes.set(waiter.claim.run, waiter.ramBytes);
  }

  #drop(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    const index = this.#waiting.indexOf(waiter);
    if (index !== -1) this.#waiting.splice(index, 1);
  }
}

/** A task asking for memory: its name (for messages), depth (0: entry) and run. */
export interface MemoryClaim {
  name: string;
  depth: number;
  run: object;
}

/** How long a task waits in line for memory before it is refused. */
export interface MemoryWaits {
  entryMs: number;
  subtaskMs: number;
}

export const DEFAULT_WAITS: MemoryWaits = { entryMs: 30_000, subtaskMs: 10_000 };

/** How often a waiting task looks whether its memory is free. */
const WAIT_CHECK_MS = 10;

interface Waiter {
  holder: object;
  ramBytes: number;
  claim: MemoryClaim;
  seq: number;
  cancel: (error?: CapsuleError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** Deeper tasks first (their ancestors wait for them), then first come, first served. */
function goesBefore(a: Waiter, b: Waiter): boolean {
  return a.claim.depth !== b.claim.depth ? a.claim.depth > b.claim.depth : a.seq < b.seq;
}

/**
 * Reserves a task's `ram` (in a budget here or in another thread's pool): resolves to the
 * function that frees it, or rejects with the CapsuleError that refuses the task.
 */
export type MemoryReserver = (
  ramBytes: number,
  task: { name: string; depth: number },
) => Promise<() => void>;

/** The error a refusal sent between threads stood for, so it keeps its type. */
export function memoryRefusal(refusal: { errorType: string; message: string }): CapsuleError {
  if (refusal.errorType === "config_error") return new ConfigError(refusal.message);
  if (refusal.errorType === "timeout") return new TimeoutError(refusal.message);
  return new PermissionDeniedError(refusal.message);
}

function mib(bytes: number): string {
  const value = bytes / 2 ** 20;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MiB`;
}
