/**
 * Linear memories of ended sandboxes, kept for the next sandbox of the same shape: a new
 * `WebAssembly.Memory` costs a reservation and then a page fault for every page the engine touches
 * (~25-30 us each on this VM), a kept one only a pass of zeros over pages already mapped.
 *
 * Reuse is invisible only if nothing of the last tenant survives and nothing of it can reach the
 * next one:
 * - a memory is shelved only at its starting size (never grown, so `memory.size` is a fresh one's)
 *   and only when nobody else holds a view of it (a session's captured image is such a view);
 * - it is zeroed when taken, before the new instance writes its data segments, so the new sandbox
 *   starts from the bytes a new memory has; globals, tables and the fuel counter belong to the
 *   instance, which is always new;
 * - the old instance is fenced first: every export the engine glue calls goes through
 *   `fencedExports`, which throws once its sandbox ended, so a late call through the dead
 *   sandbox's handles (a `dispose()` in a `finally`, a fetch settling after the end) cannot
 *   write into the next tenant's heap or read from it.
 */

import { InternalError } from "../errors.ts";

/** Memories kept per thread, all shapes together: each holds the pages its tenant touched. */
const MAX_SHELVED = 4;

export class MemoryShelf {
  readonly #shelved: Array<{ pages: number; maximum: number; memory: WebAssembly.Memory }> = [];
  readonly #capacity: number;
  #kept = 0;

  constructor(capacity = MAX_SHELVED) {
    this.#capacity = capacity;
  }

  /** A kept memory of `pages` pages and this maximum, zeroed; null when none is kept. */
  take(pages: number, maximum: number): WebAssembly.Memory | null {
    const index = this.#shelved.findIndex((m) => m.pages === pages && m.maximum === maximum);
    if (index < 0) return null;
    const { memory } = this.#shelved.splice(index, 1)[0] as { memory: WebAssembly.Memory };
    new Uint8Array(memory.buffer).fill(0);
    return memory;
  }

  /**
   * Keeps `memory` for a later sandbox of the same shape, if it is still at `pages`; the oldest
   * kept one gives way past the capacity. Only for a memory whose instance is fenced.
   */
  put(memory: WebAssembly.Memory, pages: number, maximum: number): void {
    if (this.#capacity === 0) return;
    if (memory.buffer.byteLength !== pages * 65536) return;
    if (this.#shelved.some((m) => m.memory === memory)) return;
    this.#shelved.push({ pages, maximum, memory });
    this.#kept++;
    if (this.#shelved.length > this.#capacity) this.#shelved.shift();
  }

  /** Memories kept so far, whether taken since or not (tests, measurements). */
  get keptSoFar(): number {
    return this.#kept;
  }

  /** Memories kept now (tests). */
  get size(): number {
    return this.#shelved.length;
  }

  /** Drops every kept memory (tests, and hosts that want the pages back). */
  clear(): void {
    this.#shelved.length = 0;
  }
}

/** This thread's shelf. */
export const memoryShelf = new MemoryShelf();

/** Thrown by a fenced export: the sandbox it belonged to has ended. */
export class FencedSandboxError extends InternalError {
  override name = "FencedSandboxError";
  constructor() {
    super("the engine was called after its sandbox ended");
  }
}

/**
 * `exports` with every function wrapped to throw once `ended()` is true; other exports (globals,
 * the table) pass through. What the engine glue is given in place of the instance's own exports.
 */
export function fencedExports(
  exports: WebAssembly.Exports,
  ended: () => boolean,
): WebAssembly.Exports {
  const fenced: Record<string, WebAssembly.ExportValue> = {};
  for (const [name, value] of Object.entries(exports)) {
    if (typeof value !== "function") {
      fenced[name] = value;
      continue;
    }
    const call = value as (...args: unknown[]) => unknown;
    fenced[name] = ((...args: unknown[]) => {
      if (ended()) throw new FencedSandboxError();
      return call(...args);
    }) as WebAssembly.ExportValue;
  }
  return fenced;
}
