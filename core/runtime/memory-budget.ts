import { type CapsuleError, ConfigError, PermissionDeniedError } from "../errors.ts";

/**
 * What the sandboxes of every run on one host may hold together: each task's `ram` is reserved
 * before its first attempt and held until its last one ends, so the host never hands out more
 * memory than it has (a Workers isolate has 128 MB in all; a page shares its device).
 *
 * - A task asking for more than the whole budget can never run: `config_error`.
 * - A sub-task that does not fit in what is left is refused at once (`permission_denied`). It
 *   never waits: its parent keeps its own memory while it awaits the sub-task, so parents of two
 *   runs waiting on sub-tasks that wait on each other's memory would never wake.
 * - An entry task holds nothing yet, so it waits its turn (first come, first served) for up to
 *   `entryWaitMs`, then is refused (`permission_denied`). What it waits for always ends: every
 *   holder is a running task with its own limits, whose sub-tasks never wait.
 */
export class MemoryBudget {
  readonly totalBytes: number;
  /** Whose memory it is, for messages: "this Worker's isolate", "this page", "this process". */
  readonly owner: string;
  readonly entryWaitMs: number;
  #heldBytes = 0;
  readonly #held = new Map<object, number>();
  readonly #waiting: Waiter[] = [];

  constructor(totalBytes: number, owner: string, entryWaitMs = DEFAULT_ENTRY_WAIT_MS) {
    if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) {
      throw new ConfigError(
        `memory budget: ${JSON.stringify(totalBytes)} is not a positive number of bytes`,
      );
    }
    this.totalBytes = totalBytes;
    this.owner = owner;
    this.entryWaitMs = entryWaitMs;
  }

  /** Bytes reserved by running tasks now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /**
   * Reserves `ramBytes` for `holder` (one task, until `release(holder)`). Resolves to null once
   * reserved, or to the error that refuses the task; never rejects.
   */
  reserve(
    holder: object,
    ramBytes: number,
    task: { name: string; depth: number },
  ): Promise<CapsuleError | null> {
    if (this.#held.has(holder)) return Promise.resolve(null);
    if (ramBytes > this.totalBytes) {
      const subject = task.depth > 0 ? "sub-task" : "task";
      return Promise.resolve(
        new ConfigError(
          `${subject} ${JSON.stringify(task.name)} asks for ram of ${mib(ramBytes)}, more than the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together; ask for at most "${Math.floor(this.totalBytes / 2 ** 20)}MB"`,
        ),
      );
    }
    if (this.#waiting.length === 0 && this.#fits(ramBytes)) {
      this.#take(holder, ramBytes);
      return Promise.resolve(null);
    }
    if (task.depth > 0) {
      return Promise.resolve(
        new PermissionDeniedError(
          `sub-task ${JSON.stringify(task.name)} refused: it asks for ram of ${mib(ramBytes)}, but running tasks hold ${mib(this.#heldBytes)} of the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together (a task awaiting sub-tasks keeps its own); start fewer at once or give them less ram`,
        ),
      );
    }
    // Each waiter checks on its own timer rather than being woken by `release`: on Workers the
    // release may come from another request, which must not settle this request's promises.
    return new Promise((resolve) => {
      const started = Date.now();
      const waiter: Waiter = {
        holder,
        ramBytes,
        cancel: () =>
          resolve(new PermissionDeniedError("the task ended while it waited for memory")),
        timer: undefined,
      };
      const check = () => {
        if (this.#waiting[0] === waiter && this.#fits(ramBytes)) {
          this.#drop(waiter);
          this.#take(holder, ramBytes);
          resolve(null);
        } else if (Date.now() - started >= this.entryWaitMs) {
          this.#drop(waiter);
          resolve(
            new PermissionDeniedError(
              `task ${JSON.stringify(task.name)} refused: it waited ${this.entryWaitMs} ms for ram of ${mib(ramBytes)}, but running tasks held ${mib(this.#heldBytes)} of the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together`,
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

  /** Reserves for one task at a time, each its own holder (for runs on this thread). */
  readonly reserver: MemoryReserver = async (ramBytes, task) => {
    const holder = {};
    const refusal = await this.reserve(holder, ramBytes, task);
    if (refusal !== null) throw refusal;
    return () => this.release(holder);
  };

  /** Frees what `holder` reserved, or gives up its place in line. */
  release(holder: object): void {
    const bytes = this.#held.get(holder);
    if (bytes !== undefined) {
      this.#held.delete(holder);
      this.#heldBytes -= bytes;
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

  #take(holder: object, ramBytes: number): void {
    this.#held.set(holder, ramBytes);
    this.#heldBytes += ramBytes;
  }

  #drop(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    const index = this.#waiting.indexOf(waiter);
    if (index !== -1) this.#waiting.splice(index, 1);
  }
}

/** How long an entry task waits for memory other runs hold before it is refused. */
export const DEFAULT_ENTRY_WAIT_MS = 30_000;

/** How often a waiting entry task looks whether its memory is free. */
const WAIT_CHECK_MS = 10;

interface Waiter {
  holder: object;
  ramBytes: number;
  cancel: () => void;
  timer: ReturnType<typeof setTimeout> | undefined;
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
  return refusal.errorType === "config_error"
    ? new ConfigError(refusal.message)
    : new PermissionDeniedError(refusal.message);
}

function mib(bytes: number): string {
  const value = bytes / 2 ** 20;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MiB`;
}
