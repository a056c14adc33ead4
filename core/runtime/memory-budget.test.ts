import { describe, expect, it } from "vitest";
import { MemoryBudget } from "./memory-budget.ts";

const MiB = 2 ** 20;
const FAST = { entryMs: 300, subtaskMs: 150 };
const claim = (name: string, depth: number, run: object) => ({ name, depth, run });
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("MemoryBudget", () => {
  it("refuses a task asking for more than the whole budget as a config_error", async () => {
    const budget = new MemoryBudget(96 * MiB, "this Worker's isolate");
    const refusal = await budget.reserve({}, 1024 * MiB, claim("main", 0, {}));
    expect(refusal?.errorType).toBe("config_error");
    expect(refusal?.message).toBe(
      'task "main" asks for ram of 1024 MiB, more than the 96 MiB all sandboxes of this Worker\'s isolate may hold together; ask for at most "96MB"',
    );
    expect(budget.heldBytes).toBe(0);
  });

  it("refuses at once a sub-task that cannot fit beside its run's entry task", async () => {
    const budget = new MemoryBudget(96 * MiB, "this page", FAST);
    const run = {};
    expect(await budget.reserve({}, 64 * MiB, claim("main", 0, run))).toBeNull();
    const started = Date.now();
    const refusal = await budget.reserve({}, 48 * MiB, claim("child", 1, run));
    expect(Date.now() - started).toBeLessThan(FAST.subtaskMs);
    expect(refusal?.errorType).toBe("permission_denied");
    expect(refusal?.message).toBe(
      'sub-task "child" refused: it asks for ram of 48 MiB, and the 1 task of its run above it (which keep theirs while they await it) hold at least 64 MiB of the 96 MiB all sandboxes of this page may hold together; nest sub-tasks less deeply or give them less ram',
    );
    // Another run's entry task is no ancestor: the same sub-task of a fresh run waits instead.
    const other = budget.reserve({}, 48 * MiB, claim("child", 1, {}));
    expect((await other)?.message).toMatch(
      /it waited \d+ ms for ram of 48 MiB, 150 ms of them with no memory freed/,
    );
  });

  it("tryReserve holds at once or refuses at once, and never jumps the line", async () => {
    const budget = new MemoryBudget(96 * MiB, "this process", FAST);
    const run = {};
    const entry = {};
    expect(budget.tryReserve(entry, 64 * MiB, claim("main", 0, run))).toBeNull();
    const child = {};
    expect(budget.tryReserve(child, 16 * MiB, claim("child", 1, run))).toBeNull();
    expect(budget.heldBytes).toBe(80 * MiB);
    const refusal = budget.tryReserve({}, 32 * MiB, claim("big", 1, {}));
    expect(refusal?.errorType).toBe("permission_denied");
    expect(refusal?.message).toBe(
      'sub-task "big" refused: it asks for ram of 32 MiB, and running tasks hold 80 MiB of the 96 MiB all sandboxes of this process may hold together; it runs inside its caller and cannot wait: give it less ram or run fewer at once',
    );
    expect(budget.tryReserve({}, 200 * MiB, claim("huge", 1, run))?.errorType).toBe("config_error");
    // A task waiting in line keeps its place: what fits is still refused to a newcomer.
    const waiting = budget.reserve({}, 32 * MiB, claim("next", 0, {}));
    expect(budget.tryReserve({}, 8 * MiB, claim("small", 1, {}))?.message).toMatch(
      /with 1 waiting/,
    );
    budget.release(child);
    expect(await waiting).toBeNull();
    budget.release(entry);
    expect(budget.heldBytes).toBe(32 * MiB);
  });

  it("refuses at once a sub-task that cannot fit beside the least its ancestors can hold", async () => {
    // A fork bomb: each task holds 16 MiB while it awaits two children.
    const budget = new MemoryBudget(96 * MiB, "this Worker's isolate", FAST);
    const run = {};
    for (let depth = 0; depth < 6; depth++) {
      expect(await budget.reserve({}, 16 * MiB, claim(`d${depth}`, depth, run))).toBeNull();
    }
    const started = Date.now();
    const refusal = await budget.reserve({}, 16 * MiB, claim("d6", 6, run));
    expect(Date.now() - started).toBeLessThan(FAST.subtaskMs);
    expect(refusal?.errorType).toBe("permission_denied");
    expect(refusal?.message).toContain("the 6 tasks of its run above it");
    expect(refusal?.message).toContain("hold at least 96 MiB");
    // A sibling of the deepest task waits instead: its ancestors leave 16 MiB that can free up.
    const sibling = {};
    const waiting = budget.reserve(sibling, 16 * MiB, claim("d5b", 5, run));
    await tick(30);
    expect(budget.heldBytes).toBe(96 * MiB);
    // Counted from the smallest holder at each depth: a larger sibling does not raise the floor,
    // so a grandchild that fits once the large sibling ends waits rather than being refused.
    const floorRun = {};
    const small = new MemoryBudget(96 * MiB, "this page", FAST);
    const large = {};
    expect(await small.reserve({}, 8 * MiB, claim("main", 0, floorRun))).toBeNull();
    expect(await small.reserve({}, 8 * MiB, claim("a", 1, floorRun))).toBeNull();
    expect(await small.reserve(large, 64 * MiB, claim("b", 1, floorRun))).toBeNull();
    const grandchild = small.reserve({}, 32 * MiB, claim("a1", 2, floorRun));
    await tick(30);
    small.release(large);
    expect(await grandchild).toBeNull();
    expect(small.heldBytes).toBe(48 * MiB);
    budget.stopWaiting(sibling);
    expect((await waiting)?.errorType).toBe("timeout");
  });

  it("lets sub-tasks wait their turn and run as memory frees up", async () => {
    const budget = new MemoryBudget(64 * MiB, "this process", FAST);
    const run = {};
    const parent = {};
    expect(await budget.reserve(parent, 16 * MiB, claim("main", 0, run))).toBeNull();
    const children = Array.from({ length: 6 }, () => ({}));
    const reserved = children.map((child) => budget.reserve(child, 16 * MiB, claim("c", 1, run)));
    await tick(30);
    expect(budget.heldBytes).toBe(64 * MiB);
    for (const child of children.slice(0, 3)) budget.release(child);
    expect((await Promise.all(reserved)).every((refusal) => refusal === null)).toBe(true);
    expect(budget.heldBytes).toBe(64 * MiB);
  });

  it("serves deeper sub-tasks before shallower ones and entry tasks last", async () => {
    const budget = new MemoryBudget(100 * MiB, "this process", { entryMs: 2000, subtaskMs: 2000 });
    const running = {};
    expect(await budget.reserve(running, 100 * MiB, claim("main", 0, {}))).toBeNull();
    const order: string[] = [];
    const ask = (name: string, depth: number) =>
      budget.reserve({}, 60 * MiB, claim(name, depth, {})).then(() => order.push(name));
    const asked = [ask("entry", 0), ask("child", 1), ask("grandchild", 2)];
    await tick(30);
    budget.release(running);
    await asked[2];
    expect(order).toEqual(["grandchild"]);
    expect(budget.heldBytes).toBe(60 * MiB);
  });

  it("keeps a task waiting while memory is being freed, past its bound", async () => {
    // A bound well above the 100 ms between releases, so a timer firing late on a loaded machine
    // does not look like a wait with nothing freed.
    const budget = new MemoryBudget(10 * MiB, "this page", { entryMs: 450, subtaskMs: 450 });
    const holders = Array.from({ length: 8 }, () => ({}));
    for (const holder of holders) {
      expect(await budget.reserve(holder, MiB, claim("small", 0, {}))).toBeNull();
    }
    expect(await budget.reserve({}, 2 * MiB, claim("rest", 0, {}))).toBeNull();
    const big = budget.reserve({}, 5 * MiB, claim("big", 1, {}));
    // One holder ends every 100 ms: 500 ms in all, more than the 450 ms bound, but never idle.
    for (const holder of holders.slice(0, 5)) {
      await tick(100);
      budget.release(holder);
    }
    expect(await big).toBeNull();
  });

  it("refuses a task that waited its bound, and one that ended while waiting", async () => {
    const budget = new MemoryBudget(10 * MiB, "this page", FAST);
    expect(await budget.reserve({}, 10 * MiB, claim("main", 0, {}))).toBeNull();
    const refusal = await budget.reserve({}, MiB, claim("late", 0, {}));
    expect(refusal?.errorType).toBe("permission_denied");
    expect(refusal?.message).toMatch(
      /^task "late" refused: it waited \d+ ms for ram of 1 MiB, 300 ms of them with no memory freed, while running tasks held 10 MiB of the 10 MiB/,
    );
    const gone = {};
    const waiting = budget.reserve(gone, MiB, claim("gone", 0, {}));
    budget.release(gone);
    expect((await waiting)?.message).toContain("ended while it waited");
    const aborted = {};
    const stopped = budget.reserve(aborted, MiB, claim("aborted", 1, {}));
    budget.stopWaiting(aborted);
    expect(await stopped).toMatchObject({
      errorType: "timeout",
      message: "the task was cancelled by its caller while it waited for memory",
    });
    expect(budget.heldBytes).toBe(10 * MiB);
  });

  it("never holds more than its total, whatever order reservations and releases come in", async () => {
    const budget = new MemoryBudget(64 * MiB, "this page", { entryMs: 20, subtaskMs: 20 });
    const holders: object[] = [];
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pending: Promise<unknown>[] = [];
    for (let step = 0; step < 300; step++) {
      if (random() < 0.6 || holders.length === 0) {
        const holder = {};
        const asked = budget.reserve(holder, Math.ceil(random() * 40) * MiB, claim("t", 1, {}));
        pending.push(asked.then((refusal) => refusal === null && holders.push(holder)));
      } else {
        budget.release(holders.splice(Math.floor(random() * holders.length), 1)[0] as object);
      }
      if (step % 10 === 0) await tick(1);
      expect(budget.heldBytes).toBeLessThanOrEqual(64 * MiB);
    }
    await Promise.all(pending);
    expect(budget.heldBytes).toBeLessThanOrEqual(64 * MiB);
  });
});
