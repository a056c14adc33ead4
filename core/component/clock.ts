/**
 * The clocks a component reads. The shim's are the host's real ones, and the engine inside a
 * component reads its monotonic clock dozens of times a run (its own timers and scheduling): on a
 * loaded machine it took another branch, and the same run spent 129 more fuel. So, as a Python
 * task's clock does (core/python/engine.ts), the time a component sees is its work, the fuel it
 * spent at FUEL_PER_CLOCK_MS, plus what it waited on timers, from the wall time its attempt
 * started. A run that waits on no timer takes the same steps on any machine at any load.
 */
import { FUEL_PER_CLOCK_MS } from "../engine/fuel-clock.ts";

const NS_PER_MS = 1_000_000n;
/** No clock reads zero: the task's time starts at one second, as a Python task's does. */
const START_NS = 1_000n * NS_PER_MS;

/** The real monotonic clock's timers (the shim's `subscribeDuration`), which do the waiting. */
export interface RealTimers<Pollable> {
  subscribeDuration(duration: bigint): Pollable;
}

export interface ComponentClocks<Pollable> {
  monotonicClock: {
    resolution(): bigint;
    now(): bigint;
    subscribeInstant(instant: bigint): Pollable;
    subscribeDuration(duration: bigint): Pollable;
  };
  wallClock: {
    resolution(): { seconds: bigint; nanoseconds: number };
    now(): { seconds: bigint; nanoseconds: number };
  };
}

/**
 * Clocks driven by `fuelSpent` (the attempt's fuel so far). A timer waits in real time; once its
 * real deadline has passed, the clock reads at least the time it was set for.
 */
export function meteredClocks<Pollable>(
  fuelSpent: () => number,
  timers: RealTimers<Pollable>,
  startWallMs = Date.now(),
): ComponentClocks<Pollable> {
  let waited = 0n;
  /** Timers set and not yet seen to fire: when they fire in real time, and the time they meant. */
  let pending: { realDeadline: number; target: bigint }[] = [];
  const worked = () =>
    START_NS + (BigInt(Math.floor(fuelSpent())) * NS_PER_MS) / BigInt(FUEL_PER_CLOCK_MS);
  const now = (): bigint => {
    if (pending.length > 0) {
      const realNow = performance.now();
      pending = pending.filter(({ realDeadline, target }) => {
        if (realDeadline > realNow) return true;
        const behind = target - (worked() + waited);
        if (behind > 0n) waited += behind;
        return false;
      });
    }
    return worked() + waited;
  };
  const subscribeDuration = (duration: bigint): Pollable => {
    const wait = BigInt(duration) > 0n ? BigInt(duration) : 0n;
    pending.push({
      realDeadline: performance.now() + Number(wait / NS_PER_MS),
      target: now() + wait,
    });
    return timers.subscribeDuration(wait);
  };
  return {
    monotonicClock: {
      resolution: () => 1n,
      now,
      subscribeDuration,
      subscribeInstant: (instant) => subscribeDuration(BigInt(instant) - now()),
    },
    wallClock: {
      resolution: () => ({ seconds: 0n, nanoseconds: 1_000_000 }),
      now: () => {
        const ns = BigInt(startWallMs) * NS_PER_MS + now() - START_NS;
        return { seconds: ns / 1_000_000_000n, nanoseconds: Number(ns % 1_000_000_000n) };
      },
    },
  };
}
