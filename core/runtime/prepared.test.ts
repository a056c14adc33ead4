import { describe, expect, it } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import { SandboxReserve } from "./prepared.ts";

const engine = loadEngine();
const MB = 1024 * 1024;

/** Waits until the reserve's idle-time preparing has stopped changing what is ready. */
async function settled(reserve: SandboxReserve, caps: number[]): Promise<number[]> {
  let last = "";
  for (let i = 0; i < 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = caps.map((cap) => reserve.readyFor(cap));
    if (JSON.stringify(now) === last) return now;
    last = JSON.stringify(now);
  }
  throw new Error("the reserve kept preparing sandboxes");
}

describe("SandboxReserve", () => {
  it("prepares nothing ahead for a lone attempt, and starts with the second", async () => {
    const reserve = new SandboxReserve(engine, 2);
    await reserve.take(64 * MB);
    expect(await settled(reserve, [64 * MB])).toEqual([0]);
    await reserve.take(64 * MB);
    expect(await settled(reserve, [64 * MB])).toEqual([2]);
  });

  it("keeps sandboxes ready for each memory cap used recently, not only the last one", async () => {
    const reserve = new SandboxReserve(engine, 2);
    const parent = await reserve.take(64 * MB);
    expect(parent.sandbox.memory.grow(0)).toBeGreaterThan(0);
    await reserve.take(64 * MB);
    expect(await settled(reserve, [64 * MB])).toEqual([2]);
    // A sub-task with another cap: its own sandboxes are prepared, the parent's stay.
    await reserve.take(16 * MB);
    expect(await settled(reserve, [64 * MB, 16 * MB])).toEqual([2, 2]);
    // The parent's next take finds one ready at once.
    const again = await reserve.take(64 * MB);
    expect(reserve.readyFor(64 * MB)).toBe(1);
    expect(again.sandbox.memory.buffer.byteLength).toBeLessThanOrEqual(64 * MB);
    expect(again.sandbox).not.toBe(parent.sandbox);
  });

  it("holds at most twice its size in all, the least recently used cap giving way", async () => {
    const reserve = new SandboxReserve(engine, 2);
    const caps = [16 * MB, 24 * MB, 32 * MB, 40 * MB];
    await reserve.take(8 * MB);
    for (const cap of caps) {
      await reserve.take(cap);
      await settled(reserve, caps);
    }
    const ready = caps.map((cap) => reserve.readyFor(cap));
    expect(ready.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(4);
    // The first cap was used longest ago and no longer has sandboxes kept for it.
    expect(ready[0]).toBe(0);
    expect(ready[3]).toBe(2);
  });

  it("prepares nothing ahead when its size is 0, and every sandbox serves one attempt", async () => {
    const reserve = new SandboxReserve(engine, 0);
    const a = await reserve.take(16 * MB);
    const b = await reserve.take(16 * MB);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(reserve.readyFor(16 * MB)).toBe(0);
    expect(a.sandbox).not.toBe(b.sandbox);
    expect(a.sandbox.memory).not.toBe(b.sandbox.memory);
  });
});
