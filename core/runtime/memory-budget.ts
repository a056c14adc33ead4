import { type CapsuleError, ConfigError, PermissionDeniedError, TimeoutError } from "../errors.ts";

/**
 * What the sandboxes of every run on one host may hold together: each task's `ram` is reserved
 * before its first attempt and held until its last one ends, so the host never hands out more
 * memory than it has (a Workers isolate has 128 MB in all; a page shares its device).
 *
 * - A task asking for more than the whole budget can never run: `config_error`.
 * - A sub-task that cannot fit even beside its ancestors (each holds its memory while it awaits
 *   the sub-task) is refused at once: `permission_denied`. The ancestors are counted from below:
 *   the least that any task of the run holds at each depth above the sub-task's. Without this,
 *   a fork bomb would fill the budget with parents that each wait out the bound below.
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
  readonly #claims = new Map<object, MemoryClaim>();
  /** What each run's tasks hold, by depth: the floor of what a sub-task's ancestors hold. */
  readonly #runDepths = new WeakMap<object, Map<number, Map<object, number>>>();
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
    const subject = subjectOf(task);
    const never = this.#neverFits(ramBytes, task);
    if (never !== null) return Promise.resolve(never);
    const waiter = this.#waiter(holder, ramBytes, task);
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

  /**
   * Reserves at once or refuses at once, for a task that cannot wait: a component's sub-task runs
   * inside its parent's synchronous import call. It takes no place before tasks already in line.
   */
  tryReserve(holder: object, ramBytes: number, task: MemoryClaim): CapsuleError | null {
    if (this.#held.has(holder)) return null;
    const never = this.#neverFits(ramBytes, task);
    if (never !== null) return never;
    if (this.#fits(ramBytes) && this.#waiting.length === 0) {
      this.#take(this.#waiter(holder, ramBytes, task));
      return null;
    }
    return new PermissionDeniedError(
      `${subjectOf(task)} refused: it asks for ram of ${mib(ramBytes)}, and running tasks hold ${mib(this.#heldBytes)} of the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together${this.#waiting.length > 0 ? `, with ${this.#waiting.length} waiting` : ""}; it runs inside its caller and cannot wait: give it less ram or run fewer at once`,
    );
  }

  /** A claim in line order; it waits only where `reserve` sets its timer. */
  #waiter(holder: object, ramBytes: number, claim: MemoryClaim): Waiter {
    return { holder, ramBytes, claim, seq: this.#nextSeq++, cancel: () => {}, timer: undefined };
  }

  /** The refusal of a task that could not fit even with nothing else running, or null. */
  #neverFits(ramBytes: number, task: MemoryClaim): CapsuleError | null {
    const subject = subjectOf(task);
    if (ramBytes > this.totalBytes) {
      return new ConfigError(
        `${subject} asks for ram of ${mib(ramBytes)}, more than the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together; ask for at most "${Math.floor(this.totalBytes / 2 ** 20)}MB"`,
      );
    }
    const ancestors = this.#ancestorsFloor(task);
    if (ancestors + ramBytes > this.totalBytes) {
      return new PermissionDeniedError(
        `${subject} refused: it asks for ram of ${mib(ramBytes)}, and the ${task.depth} task${task.depth === 1 ? "" : "s"} of its run above it (which keep theirs while they await it) hold at least ${mib(ancestors)} of the ${mib(this.totalBytes)} all sandboxes of ${this.owner} may hold together; nest sub-tasks less deeply or give them less ram`,
      );
    }
    return null;
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
      const claim = this.#claims.get(holder);
      this.#claims.delete(holder);
      if (claim) this.#runDepths.get(claim.run)?.get(claim.depth)?.delete(holder);
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
    const { holder, ramBytes, claim } = waiter;
    this.#held.set(holder, ramBytes);
    this.#heldBytes += ramBytes;
    this.#claims.set(holder, claim);
    let depths = this.#runDepths.get(claim.run);
    if (depths === undefined) {
      depths = new Map();
      this.#runDepths.set(claim.run, depths);
    }
    let atDepth = depths.get(claim.depth);
    if (atDepth === undefined) {
      atDepth = new Map();
      depths.set(claim.depth, atDepth);
    }
    atDepth.set(holder, ramBytes);
  }

  /**
   * The least that a task's ancestors can hold: at each depth above it, the smallest reservation
   * any task of its run holds there (its ancestor at that depth is one of them). Zero for a depth
   * this budget holds nothing at (the ancestor's memory is counted elsewhere).
   */
  #ancestorsFloor(task: MemoryClaim): number {
    const depths = this.#runDepths.get(task.run);
    if (depths === undefined) return 0;
    let floor = 0;
    for (let depth = 0; depth < task.depth; depth++) {
      const atDepth = depths.get(depth);
      if (atDepth === undefined || atDepth.size === 0) continue;
      floor += Math.min(...atDepth.values());
    }
    return floor;
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

function subjectOf(task: MemoryClaim): string {
  return `${task.depth > 0 ? "sub-task" : "task"} ${JSON.stringify(task.name)}`;
}

function mib(bytes: number): string {
  const value = bytes / 2 ** 20;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MiB`;
}

/**
 * Memory a host keeps between runs for the sessions of every caller: each session's state image
 * (core/session/session.ts). One per host (a Node process, a page), shared by every session in it
 * (`new Session` and the tools' sessions alike). A session's image is charged here when it is
 * taken (a call that succeeded, or a store read back) and given back when the session is reset,
 * closed or collected. An image that does not fit is refused at once (the session's call fails
 * with `memory_exceeded`), and the session keeps the image it had.
 *
 * A budget of its own rather than a share of MemoryBudget: that one bounds what running
 * sandboxes may reserve for as long as a run lasts (its timeout), and a task that does not fit
 * waits for runs to end. An image is held for as long as its session lives, which a caller
 * decides (an idle MCP session lives 10 min; a `new Session` until it is closed). Charged there,
 * images would fill the budget that runs wait on, so a caller who keeps large sessions would make
 * every other caller's stateless runs wait, then be refused; nothing frees them in time. Kept
 * apart, runs keep their budget, sessions are refused (not queued) past theirs, and the host
 * holds at most the two budgets together. The bytes counted are the buffers held (an image may
 * be a view of a larger memory); a buffer shared by several sessions (a fork, until either
 * changes) is counted once, as it is held once.
 */
export class ImageBudget {
  /** Whose memory it is, for messages: "this process", "this page". */
  owner: string;
  #totalBytes: number;
  #heldBytes = 0;
  /** What each holder (one session) holds now. */
  readonly #holders = new Map<object, ArrayBufferLike>();
  /** How many holders hold each buffer. */
  readonly #buffers = new Map<ArrayBufferLike, number>();

  constructor(totalBytes: number, owner: string) {
    this.#totalBytes = checkedTotal(totalBytes);
    this.owner = owner;
  }

  /** Bytes all session images together may take. Lowering it refuses new images until enough are freed. */
  get totalBytes(): number {
    return this.#totalBytes;
  }

  set totalBytes(value: number) {
    this.#totalBytes = checkedTotal(value);
  }

  /** Bytes held by session images now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Sessions holding an image now. */
  get sessions(): number {
    return this.#holders.size;
  }

  /**
   * Makes `holder` hold `image` (null: nothing) instead of what it held. Returns null, or why it
   * does not fit (then nothing changes): a sentence naming the sizes and this budget. `force`
   * takes it anyway (putting back what a holder held a moment ago, or sharing a buffer already
   * held).
   */
  hold(holder: object, image: Uint8Array | null, force = false): string | null {
    const before = this.#holders.get(holder) ?? null;
    const buffer = image?.buffer ?? null;
    if (buffer === before) return null;
    const adds = buffer !== null && !this.#buffers.has(buffer) ? buffer.byteLength : 0;
    const frees = before !== null && this.#buffers.get(before) === 1 ? before.byteLength : 0;
    const after = this.#heldBytes - frees + adds;
    if (!force && adds > 0 && after > this.#totalBytes) {
      const others = this.#holders.size - (frees > 0 ? 1 : 0);
      return `its state of ${mib(adds)} does not fit in the ${mib(this.#totalBytes)} the session images of ${this.owner} may hold together: ${others} other session${others === 1 ? "" : "s"} hold ${mib(this.#heldBytes - frees)} of it`;
    }
    if (before !== null) {
      const count = (this.#buffers.get(before) ?? 1) - 1;
      if (count === 0) this.#buffers.delete(before);
      else this.#buffers.set(before, count);
    }
    if (buffer === null) this.#holders.delete(holder);
    else {
      this.#holders.set(holder, buffer);
      this.#buffers.set(buffer, (this.#buffers.get(buffer) ?? 0) + 1);
    }
    this.#heldBytes = after;
    return null;
  }

  /** Gives back what `holder` holds. */
  release(holder: object): void {
    this.hold(holder, null, true);
  }
}

function checkedTotal(totalBytes: number): number {
  if (!Number.isSafeInteger(totalBytes) || totalBytes <= 0) {
    throw new ConfigError(
      `session image budget: ${JSON.stringify(totalBytes)} is not a positive number of bytes`,
    );
  }
  return totalBytes;
}
