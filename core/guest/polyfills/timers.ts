import type { ChunkInstaller } from "../chunk.ts";

type TimerCallback = (...args: unknown[]) => void;

interface Timer {
  callback: TimerCallback;
  args: unknown[];
  /** Re-arm delay for intervals; -1 for one-shot timeouts. */
  interval: number;
}

export interface TimersExports {
  setTimeout(callback: TimerCallback, delay?: unknown, ...args: unknown[]): number;
  setInterval(callback: TimerCallback, delay?: unknown, ...args: unknown[]): number;
  clearTimeout(id: unknown): void;
  clearInterval(id: unknown): void;
  queueMicrotask(callback: () => void): void;
  /** Called by the host (through the prelude's control object) when timer `id` is due. */
  fire(id: number): void;
}

/**
 * setTimeout/setInterval over the host's one-shot timers (ids are numbers, as in browsers), and
 * queueMicrotask. Errors from callbacks are reported like uncaught exceptions.
 */
const install: ChunkInstaller<TimersExports> = (ctx) => {
  const { setTimer, clearTimer } = ctx.host;
  const reportUncaught = (error: unknown) => ctx.load("console").reportUncaught(error);
  const promiseThen = Promise.prototype.then;
  const resolved = Promise.resolve();
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
    queueMicrotask(callback: () => void): void {
      if (typeof callback !== "function") {
        throw new TypeError(`queueMicrotask: callback must be a function, got ${typeof callback}`);
      }
      promiseThen.call(resolved, () => {
        try {
          callback();
        } catch (error) {
          reportUncaught(error);
        }
      });
    },
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
};
export default install;
