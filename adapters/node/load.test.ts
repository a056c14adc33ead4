import { afterAll, expect, it } from "vitest";
import { kindOf, runLoad } from "../../bench/load.ts";
import type { Envelope } from "./index.ts";
import { shutdown } from "./index.ts";

afterAll(shutdown);

// The small version of `npm run load`: the same mix and checks, few enough tasks for the suite.
// Memory and event-loop delay are left to the script, which runs long enough to measure them.
it("gives every task of a mixed load exactly one envelope of the right kind", async () => {
  const report = await runLoad({ tasks: 400, inFlight: 50, warmUpTasks: 20, settleMs: 0 });
  expect(report.problems).toEqual([]);
  expect({ lost: report.lost, duplicated: report.duplicated, wrong: report.wrong }).toEqual({
    lost: 0,
    duplicated: 0,
    wrong: 0,
  });
  expect(report.mostInFlight).toBe(50);
  expect(report.kinds.reduce((sum, k) => sum + k.tasks, 0)).toBe(400);
  for (const kind of report.kinds) expect(kind.asExpected, kind.kind).toBe(kind.tasks);
  // Every kind of outcome is in the mix, so each check above ran on each kind.
  const kinds = new Set(Array.from({ length: 400 }, (_, i) => kindOf(i)));
  expect(report.kinds.map((k) => k.kind).sort()).toEqual([...kinds].sort());
  for (const kind of report.kinds) expect(kind.tasks, kind.kind).toBeGreaterThan(0);
}, 60_000);

it("counts a dropped, a repeated and a mixed-up envelope", async () => {
  expect([3, 4, 6, 8, 13].map(kindOf)).toEqual([
    "success",
    "busy_timeout",
    "success",
    "stuck_await",
    "success",
  ]);
  const alter = (index: number, envelope: Envelope): Envelope[] => {
    if (index === 3) return [];
    if (index === 4) return [envelope, envelope];
    // Task 6 receives task 13's result: 6 has none of its own, 13 has two.
    if (index === 6) return [{ ...envelope, result: { id: "13", doubled: 26 } }];
    if (index === 8 && envelope.error)
      return [{ ...envelope, error: { ...envelope.error, error_type: "task_error" } }];
    return [envelope];
  };
  const report = await runLoad({ tasks: 20, inFlight: 10, warmUpTasks: 0, settleMs: 0, alter });
  expect({ lost: report.lost, duplicated: report.duplicated, wrong: report.wrong }).toEqual({
    lost: 2,
    duplicated: 2,
    wrong: 2,
  });
  expect(report.problems.join("\n")).toMatch(/task 3: lost/);
  expect(report.problems.join("\n")).toMatch(/task 6: lost/);
  expect(report.problems.join("\n")).toMatch(/task 4: duplicated/);
  expect(report.problems.join("\n")).toMatch(/task 13: duplicated/);
  expect(report.problems.join("\n")).toMatch(/task 6: wrong: the envelope is task 13's/);
  expect(report.problems.join("\n")).toMatch(/task 8: wrong: expected timeout, got task_error/);
});
