// SECURITY.md reports how many cases each group has; this keeps the numbers true to the data.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ADVERSARIAL_CASES } from "./adversarial.ts";
import { CONFORMANCE_CASES } from "./cases.ts";

const doc = readFileSync(new URL("../SECURITY.md", import.meta.url), "utf8");

/** The rows of the case table: "| suite | `group` | cases | ...". */
function documentedCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const match of doc.matchAll(/^\| (conformance|adversarial) \| `([a-z-]+)` \| (\d+) \|/gm)) {
    counts.set(`${match[1]}:${match[2]}`, Number(match[3]));
  }
  return counts;
}

function actualCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const [suite, cases] of [
    ["conformance", CONFORMANCE_CASES],
    ["adversarial", ADVERSARIAL_CASES],
  ] as const) {
    for (const testCase of cases) {
      const key = `${suite}:${testCase.group}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

describe("SECURITY.md", () => {
  it("states the number of cases in every group", () => {
    expect(Object.fromEntries(documentedCounts())).toEqual(Object.fromEntries(actualCounts()));
  });

  it("states the totals", () => {
    const all = [...CONFORMANCE_CASES, ...ADVERSARIAL_CASES];
    const exact = all.filter((testCase) => (testCase.expect.fuel ?? "exact") === "exact").length;
    const declared = all.filter((testCase) => testCase.where !== undefined).length;
    expect(doc).toContain(
      `${CONFORMANCE_CASES.length} conformance and ${ADVERSARIAL_CASES.length} adversarial cases; ${exact} of the ${all.length} check the exact fuel, and ${declared} state a`,
    );
    expect(doc).toContain(`3 hosts x ${all.length + 1} tests`);
  });
});
