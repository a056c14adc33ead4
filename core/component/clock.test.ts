import { describe, expect, it } from "vitest";
import { FUEL_PER_CLOCK_MS } from "../engine/fuel-clock.ts";
import { meteredClocks } from "./clock.ts";

describe("a component's clocks", () => {
  it("read the fuel spent, whatever the real time", () => {
    let fuel = 0;
    const clocks = meteredClocks(
      () => fuel,
      { subscribeDuration: () => "timer" },
      1_700_000_000_123,
    );
    expect(clocks.monotonicClock.now()).toBe(1_000_000_000n);
    fuel = FUEL_PER_CLOCK_MS * 2.5;
    expect(clocks.monotonicClock.now()).toBe(1_002_500_000n);
    const start = performance.now();
    while (performance.now() - start < 5) {}
    expect(clocks.monotonicClock.now()).toBe(1_002_500_000n);
    expect(clocks.wallClock.now()).toEqual({ seconds: 1_700_000_000n, nanoseconds: 125_500_000 });
  });

  it("reach a timer's time once it has fired in real time, and no sooner", async () => {
    const fuel = 0;
    const set: bigint[] = [];
    const clocks = meteredClocks(() => fuel, {
      subscribeDuration: (ns) => {
        set.push(ns);
        return "timer";
      },
    });
    clocks.monotonicClock.subscribeDuration(20_000_000n);
    expect(set).toEqual([20_000_000n]);
    expect(clocks.monotonicClock.now()).toBe(1_000_000_000n);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(clocks.monotonicClock.now()).toBe(1_020_000_000n);
    // An instant in the past waits for nothing; one ahead waits for the difference.
    clocks.monotonicClock.subscribeInstant(5n);
    clocks.monotonicClock.subscribeInstant(1_030_000_000n);
    expect(set).toEqual([20_000_000n, 0n, 10_000_000n]);
  });
});
