import { describe, expect, test } from "vitest";
import { parseTaskOptions } from "../config/options.ts";
import { MemoryBudget } from "../runtime/memory-budget.ts";
import { holdRunMemory } from "./memory.ts";
import { componentDefaults, MAX_COMPONENT_TASKS } from "./run.ts";

const MiB = 2 ** 20;

describe("holdRunMemory", () => {
  test("holds the entry task's ram, each sub-task's at once, at most 64 sub-tasks, and frees all", async () => {
    const budget = new MemoryBudget(1024 * MiB, "this process");
    const limits = parseTaskOptions(
      { name: "main", ram: "64MB" },
      componentDefaults({ memoryMinPages: 16 }),
    );
    const memory = await holdRunMemory(budget, limits);
    expect(budget.heldBytes).toBe(64 * MiB);
    const releases = Array.from({ length: MAX_COMPONENT_TASKS }, () =>
      memory.holdMemory(MiB, { name: "sub", depth: 1 }),
    );
    expect(budget.heldBytes).toBe(128 * MiB);
    expect(() => memory.holdMemory(MiB, { name: "one-more", depth: 1 })).toThrow(
      'sub-task "one-more" refused: the run already holds memory for 64 sub-tasks',
    );
    releases[0]?.();
    releases[0]?.();
    expect(budget.heldBytes).toBe(127 * MiB);
    expect(() => memory.holdMemory(2048 * MiB, { name: "huge", depth: 1 })).toThrow(
      /asks for ram of 2048 MiB, more than the 1024 MiB/,
    );
    memory.release();
    expect(budget.heldBytes).toBe(0);
  });

  test("an entry task that can never fit is refused with the budget's error", async () => {
    const budget = new MemoryBudget(32 * MiB, "this page");
    const limits = parseTaskOptions(
      { name: "main", ram: "64MB" },
      componentDefaults({ memoryMinPages: 16 }),
    );
    await expect(holdRunMemory(budget, limits)).rejects.toThrow(
      /task "main" asks for ram of 64 MiB, more than the 32 MiB all sandboxes of this page/,
    );
  });
});
