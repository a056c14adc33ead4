import type { HostBridge } from "./bridge.ts";

type TimerCallback = (...args: unknown[]) => void;

interface Timer {
  callback: TimerCallback;
  args: unknown[];
  /** Re-arm delay for intervals; -1 for one-shot timeouts. */
  interval: number;
}

/**
 * setTimeout/setInterval over the host's one-shot timers. Ids are numbers, as in browsers; the
 * host calls `fire(id)` when a timer is due.
 */
export function createTimers(
  host: Pick<HostBridge, "setTimer" | "clearTimer">,
  reportUncaught: (error: unknown) => void,
) {
  const { setTimer, clearTimer } = host;
  const active = new Map<number, Timer>();
  let lastId = 0;

  function schedule(
    kind: string,
    callback: TimerCallback,
    delay: unknown,
    args: unknown[],
    repeat: boolean,
  ): number {
    if (typeof callback !== "function") {
      throw new TypeError(`${kind}: callback must be a function, got ${typeof callback}`);
    }
    // WebIDL `long` conversion, as browsers do: NaN and Infinity become 0, large values wrap.
    let ms = Number(delay) | 0;
    if (ms < 0) ms = 0;
    // An interval of 0 would re-arm in a hot loop; Node uses 1 ms as the floor too.
    if (repeat && ms < 1) ms = 1;
    const id = ++lastId;
    active.set(id, { callback, args, interval: repeat ? ms : -1 });
    setTimer(id, ms);
    return id;
  }

  function clear(id: unknown): void {
    const key = Number(id);
    if (active.delete(key)) clearTimer(key);
  }

  return {
    setTimeout(callback: TimerCallback, delay?: unknown, ...args: unknown[]): number {
      return schedule("setTimeout", callback, delay, args, false);
    },
    setInterval(callback: TimerCallback, delay?: unknown, ...args: unknown[]): number {
      return schedule("setInterval", callback, delay, args, true);
    },
    clearTimeout: clear,
    clearInterval: clear,
    fire(id: number): void {
      const timer = active.get(id);
      if (!timer) return;
      // Re-arm before the callback runs, so clearInterval inside it cancels the next run.
      if (timer.interval >= 0) setTimer(id, timer.interval);
      else active.delete(id);
      try {
        timer.callback.apply(globalThis, timer.args);
      } catch (error) {
        reportUncaught(error);
      }
    },
  };
}
