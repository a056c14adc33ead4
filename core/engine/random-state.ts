/**
 * Math.random's seed. QuickJS seeds it from the clock when a context is made, and the sandbox's
 * clock answers in whole milliseconds: two sandboxes made in the same millisecond would draw the
 * same sequence (on Workers the clock stands still while code runs, so every sandbox of a request
 * could), copies of a recorded sandbox would all repeat its sequence, and a task could work out
 * its sequence from the time. Every sandbox gets 8 bytes from crypto.getRandomValues instead.
 *
 * Where the state lies in the context is found once per engine: the one word that holds the
 * clock's reading, in microseconds, from the moment the context was made.
 */
import type { Engine } from "./engine.ts";

/** Bytes of the context searched for the state (it sits a few hundred bytes in). */
const SEARCH_BYTES = 4096;

const offsets = new WeakMap<Engine, number>();

/**
 * Replaces the clock seed of a context made between `fromMs` and `toMs` (Date.now() readings
 * around its making) with a random one. False, and nothing written, when the seed is not found
 * where the engine keeps it: callers that rely on distinct sequences (copies) then refuse.
 */
export function reseedMathRandom(
  engine: Engine,
  memory: WebAssembly.Memory,
  contextPointer: number,
  fromMs: number,
  toMs: number,
): boolean {
  const view = new DataView(memory.buffer);
  const holdsSeed = (offset: number) => {
    const micros = view.getBigUint64(contextPointer + offset, true);
    return (
      micros % 1000n === 0n && micros >= BigInt(fromMs) * 1000n && micros <= BigInt(toMs) * 1000n
    );
  };
  let offset = offsets.get(engine);
  if (offset === undefined || !holdsSeed(offset)) {
    const found: number[] = [];
    for (let at = 0; at < SEARCH_BYTES; at += 8) if (holdsSeed(at)) found.push(at);
    // Two matches would be a guess; a clock at zero (Workers outside a request) tells nothing.
    if (found.length !== 1 || fromMs === 0) return false;
    offset = found[0] as number;
    offsets.set(engine, offset);
  }
  view.setBigUint64(contextPointer + offset, randomSeed(), true);
  return true;
}

/** Where the engine's contexts keep Math.random's state, once a sandbox has been reseeded. */
export function mathRandomOffset(engine: Engine): number | null {
  return offsets.get(engine) ?? null;
}

/** Gives a copy its own seed, at the address of the state in the recorded context. */
export function writeRandomSeed(memory: WebAssembly.Memory, address: number): void {
  new DataView(memory.buffer).setBigUint64(address, randomSeed(), true);
}

/** Seeds drawn 256 at a time: one small getRandomValues per sandbox showed in profiles. */
const seeds = new BigUint64Array(256);
let seedsLeft = 0;

/** A non-zero 64-bit seed (xorshift64* never leaves zero). */
function randomSeed(): bigint {
  for (;;) {
    if (seedsLeft === 0) {
      crypto.getRandomValues(seeds);
      seedsLeft = seeds.length;
    }
    const seed = seeds[--seedsLeft] as bigint;
    if (seed !== 0n) return seed;
  }
}
