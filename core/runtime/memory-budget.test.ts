import { describe, expect, it } from "vitest";
import { MemoryBudget } from "./memory-budget.ts";

const MiB = 2 ** 20;
const task = (name: string, depth = 1) => ({ name, depth });

describe("MemoryBudget", () => {
  it("refuses a task asking for more than the whole budget as a config_error", async () => {
    const budget = new MemoryBudget(96 * MiB, "this Worker's isolate");
    const refusal = await budget.reserve({}, 1024 * MiB, task("main", 0));
    expect(refusal?.errorType).toBe("config_error");
    expect(refusal?.message).toBe(
      'task "main" asks for ram of 1024 MiB, more than the 96 MiB all sandboxes of this Worker\'s isolate may hold together; ask for at most "96MB"',
    );
    expect(budget.heldBytes).toBe(0);
  });

  it("refuses a sub-task past what is left at once, and takes it again once memory is freed", async () => {
    const budget = new MemoryBudget(96 * MiB, "this page");
    const parent = {};
    expect(await budget.reserve(parent, 64 * MiB, task("main", 0))).toBeNull();
    const child = {};
    const refusal = await budget.reserve(child, 48 * MiB, task("child"));
    expect(refusal?.errorType).toBe("permission_denied");
    expect(refusal?.message).toContain("running tasks hold 64 MiB of the 96 MiB");
    expect(await budget.reserve(child, 32 * MiB, task("child"))).toBeNull();
    expect(budget.heldBytes).toBe(96 * MiB);
    budget.release(parent);
    budget.release(child);
    budget.release(child);
    expect(budget.heldBytes).toBe(0);
  });

  it("lets an entry task wait in line for memory other runs hold, first come first served", async () => {
    const budget = new MemoryBudget(100 * MiB, "this process");
    const running = {};
    expect(await budget.reserve(running, 80 * MiB, task("main", 0))).toBeNull();
    const order: string[] = [];
    const big = budget.reserve({}, 60 * MiB, task("big", 0)).then((r) => order.push(`big ${r}`));
    const small = budget
      .reserve({}, 10 * MiB, task("small", 0))
      .then((r) => order.push(`small ${r}`));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The small one would fit, but it came second: it waits behind the big one.
    expect(order).toEqual([]);
    budget.release(running);
    await Promise.all([big, small]);
    expect(order).toEqual(["big null", "small null"]);
    expect(budget.heldBytes).toBe(70 * MiB);
  });

  it("refuses an entry task that waited its bound, and one that ended while waiting", async () => {
    const budget = new MemoryBudget(10 * MiB, "this page", 60);
    expect(await budget.reserve({}, 10 * MiB, task("main", 0))).toBeNull();
    const refusal = await budget.reserve({}, MiB, task("late", 0));
    expect(refusal?.errorType).toBe("permission_denied");
    expect(refusal?.message).toContain('task "late" refused: it waited 60 ms');
    const gone = {};
    const waiting = budget.reserve(gone, MiB, task("gone", 0));
    budget.release(gone);
    expect((await waiting)?.message).toContain("ended while it waited");
    expect(budget.heldBytes).toBe(10 * MiB);
  });

  it("never holds more than its total, whatever order reservations and releases come in", async () => {
    const budget = new MemoryBudget(64 * MiB, "this page", 20);
    const holders: object[] = [];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let step = 0; step < 400; step++) {
      if (random() < 0.6 || holders.length === 0) {
        const holder = {};
        const refusal = await budget.reserve(holder, Math.ceil(random() * 40) * MiB, task("t"));
        if (refusal === null) holders.push(holder);
      } else {
        budget.release(holders.splice(Math.floor(random() * holders.length), 1)[0] as object);
      }
      expect(budget.heldBytes).toBeLessThanOrEqual(64 * MiB);
    }
  });
});
