import { appendFileSync } from "node:fs";
import { expect } from "vitest";

/**
 * How many cases a property test generates. In `npm test` it is `runsInTest`. `npm run fuzz`
 * sets CAPSULE_FUZZ_RUNS to a multiplier (a positive integer): every property then runs that
 * many times its test count. A multiplier rather than one count for all, because the properties
 * differ a thousandfold in cost per case (a host-name check against a sandbox round trip), and
 * each keeps the share of the time its test count gives it.
 *
 * When CAPSULE_FUZZ_REPORT names a file, each call appends a line `file<TAB>test<TAB>runs` to
 * it, so the fuzz script can say how many cases each property ran.
 */
export function fuzzRuns(runsInTest: number): number {
  const runs = runsInTest * fuzzMultiplier();
  const report = process.env.CAPSULE_FUZZ_REPORT;
  if (report) {
    const { currentTestName, testPath } = expect.getState();
    const file = (testPath ?? "?").replace(`${process.cwd()}/`, "");
    appendFileSync(report, `${file}\t${currentTestName ?? "?"}\t${runs}\n`);
  }
  return runs;
}

function fuzzMultiplier(): number {
  const text = process.env.CAPSULE_FUZZ_RUNS;
  if (text === undefined || text === "") return 1;
  const multiplier = Number(text);
  if (!Number.isSafeInteger(multiplier) || multiplier < 1) {
    throw new Error(
      `CAPSULE_FUZZ_RUNS=${JSON.stringify(text)} is not a multiplier; use a positive integer like 20`,
    );
  }
  return multiplier;
}
