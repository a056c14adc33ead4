// ImageBudget with real buffers: what a host's sessions hold together, a shared buffer once.
import { describe, expect, it } from "vitest";
import { ImageBudget } from "./memory-budget.ts";

const KiB = 1024;

describe("ImageBudget", () => {
  it("charges each holder's buffer, refuses past the total without changing anything, and frees on release", () => {
    const budget = new ImageBudget(100 * KiB, "this test");
    const [a, b, c] = [{}, {}, {}];
    expect(budget.hold(a, new Uint8Array(60 * KiB))).toBeNull();
    expect(budget.hold(b, new Uint8Array(30 * KiB))).toBeNull();
    const refusal = budget.hold(c, new Uint8Array(20 * KiB));
    expect(refusal).toBe(
      "its state of 0.0 MiB does not fit in the 0.1 MiB the session images of this test may hold together: 2 other sessions hold 0.1 MiB of it",
    );
    expect([budget.heldBytes, budget.sessions]).toEqual([90 * KiB, 2]);
    // A holder's new image replaces its old one: only the difference must fit.
    expect(budget.hold(a, new Uint8Array(70 * KiB))).toBeNull();
    expect(budget.heldBytes).toBe(100 * KiB);
    budget.release(a);
    expect([budget.heldBytes, budget.sessions]).toEqual([30 * KiB, 1]);
    expect(budget.hold(c, new Uint8Array(20 * KiB))).toBeNull();
  });

  it("counts a buffer several holders share once, until the last lets it go", () => {
    const budget = new ImageBudget(64 * KiB, "this test");
    const shared = new Uint8Array(40 * KiB);
    const [source, fork, other] = [{}, {}, {}];
    expect(budget.hold(source, shared)).toBeNull();
    expect(budget.hold(fork, shared)).toBeNull();
    expect(budget.heldBytes).toBe(40 * KiB);
    // The source changes: the fork still holds the old buffer, so both count.
    expect(budget.hold(source, new Uint8Array(40 * KiB))).not.toBeNull();
    expect(budget.hold(source, new Uint8Array(20 * KiB))).toBeNull();
    expect(budget.heldBytes).toBe(60 * KiB);
    budget.release(fork);
    expect(budget.heldBytes).toBe(20 * KiB);
    // A view counts the whole buffer it keeps alive.
    expect(budget.hold(other, new Uint8Array(new ArrayBuffer(30 * KiB), 0, KiB))).toBeNull();
    expect(budget.heldBytes).toBe(50 * KiB);
  });

  it("takes what it is forced to, and refuses a bad total naming it", () => {
    const budget = new ImageBudget(10 * KiB, "this test");
    expect(budget.hold({}, new Uint8Array(20 * KiB), true)).toBeNull();
    expect(budget.heldBytes).toBe(20 * KiB);
    expect(() => new ImageBudget(0, "x")).toThrow(/session image budget: 0 is not a positive/);
    expect(() => {
      budget.totalBytes = 1.5;
    }).toThrow(/session image budget: 1.5 is not a positive number of bytes/);
    expect(budget.totalBytes).toBe(10 * KiB);
  });
});
