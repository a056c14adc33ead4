/**
 * Registers every conformance and adversarial case for one host. Each host's test file calls
 * `defineHostSuite` with a function that starts the host; the cases and their outcomes are the
 * same data for all of them, fuel included (fuel.json).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ADVERSARIAL_CASES } from "./adversarial.ts";
import {
  type Case,
  type ConformanceHost,
  expectationFor,
  type Group,
  type Outcome,
} from "./case.ts";
import { CONFORMANCE_CASES } from "./cases.ts";

const FUEL_FILE = new URL("./fuel.json", import.meta.url);
/** How far a `fuel: "near"` case may count from fuel.json: 1% (the moves seen were under 0.1%). */
const NEAR_FUEL_SHARE = 0.01;
/** Set to record fuel.json from the runs instead of checking against it. */
const RECORD = process.env.CAPSULE_RECORD_FUEL === "1";
const RECORD_COMMAND = "CAPSULE_RECORD_FUEL=1 npx vitest run conformance --no-file-parallelism";

export const ALL_CASES: readonly Case[] = [...CONFORMANCE_CASES, ...ADVERSARIAL_CASES];

function readFuel(): Record<string, number> {
  return existsSync(FUEL_FILE) ? JSON.parse(readFileSync(FUEL_FILE, "utf8")) : {};
}

export function defineHostSuite(name: string, start: () => Promise<ConformanceHost>): void {
  let host: ConformanceHost;
  let server: { origin: string };
  const recorded = readFuel();
  const fresh: Record<string, number> = {};

  beforeAll(async () => {
    const provided = inject("suiteServer");
    if ("error" in provided) throw new Error(provided.error);
    server = provided;
    host = await start();
  }, 120_000);

  afterAll(async () => {
    await host?.close();
    if (RECORD && Object.keys(fresh).length > 0) {
      const merged = { ...readFuel(), ...fresh };
      const sorted = Object.fromEntries(
        Object.entries(merged).sort(([a], [b]) => a.localeCompare(b)),
      );
      writeFileSync(FUEL_FILE, `${JSON.stringify(sorted, null, 2)}\n`);
    }
  });

  const groups = new Map<Group, Case[]>();
  for (const testCase of ALL_CASES) {
    groups.set(testCase.group, [...(groups.get(testCase.group) ?? []), testCase]);
  }

  describe(name, () => {
    for (const [group, cases] of groups) {
      describe(group, () => {
        for (const testCase of cases) {
          it(
            `${testCase.id}: ${testCase.title}`,
            async () => {
              const outcome = await host.run(testCase, server.origin);
              const { expect: expected, fuelKey, why } = expectationFor(testCase, host.features);
              const context = `${testCase.id} on ${host.features.host}${why ? ` (${why})` : ""}: ${describeOutcome(outcome)}`;
              for (const secret of host.secrets) {
                expect(JSON.stringify(outcome), `a host path leaked: ${context}`).not.toContain(
                  secret,
                );
              }
              if (expected.refused) {
                expect(outcome.kind, context).toBe("refused");
                if (outcome.kind === "refused" && expected.message) {
                  expect(outcome.message, context).toMatch(new RegExp(expected.message));
                }
                return;
              }
              expect(outcome.kind, context).toBe("envelope");
              if (outcome.kind !== "envelope") return;
              const { envelope } = outcome;
              expect(envelope.success, context).toBe(expected.success);
              if (expected.success) {
                expect(envelope.error, context).toBeNull();
              } else {
                expect(envelope.error?.error_type, context).toBe(expected.errorType);
                expect(envelope.result, context).toBeNull();
              }
              if (expected.message !== undefined) {
                expect(envelope.error?.message ?? "", context).toMatch(
                  new RegExp(expected.message),
                );
              }
              if ("result" in expected) expect(envelope.result, context).toEqual(expected.result);
              if (expected.resultMatches !== undefined) {
                expect(JSON.stringify(envelope.result), context).toMatch(
                  new RegExp(expected.resultMatches),
                );
              }
              if (expected.retries !== undefined) {
                expect(envelope.execution.retries, context).toBe(expected.retries);
              }
              if (expected.hostRequests !== undefined) {
                const { count, lastReason, longestText } = expected.hostRequests;
                const requests = envelope.execution.host_requests;
                expect(requests.length, context).toBe(count);
                if (lastReason !== undefined) {
                  expect(requests.at(-1)?.reason ?? "", context).toMatch(new RegExp(lastReason));
                }
                if (longestText !== undefined) {
                  const longest = Math.max(
                    ...requests.map((r) => Math.max(r.url.length, r.reason?.length ?? 0)),
                  );
                  expect(longest, context).toBeLessThanOrEqual(longestText);
                }
              }
              for (const [path, content] of Object.entries(expected.files ?? {})) {
                expect(outcome.files[path], `${path} after ${context}`).toBe(content);
              }
              const fuelCheck = expected.fuel ?? "exact";
              if (fuelCheck !== "any") {
                const fuel = envelope.execution.fuel_consumed;
                if (RECORD) {
                  fresh[fuelKey] = fuel;
                } else {
                  const want = recorded[fuelKey];
                  expect(
                    want,
                    `no fuel recorded for ${fuelKey}; record it with ${RECORD_COMMAND}`,
                  ).toBeTypeOf("number");
                  if (fuelCheck === "exact") {
                    expect(fuel, `fuel_consumed differs from fuel.json: ${context}`).toBe(want);
                  } else {
                    expect(
                      Math.abs(fuel - (want as number)),
                      `fuel_consumed ${fuel} is not within ${NEAR_FUEL_SHARE * 100}% of fuel.json's ${want}: ${context}`,
                    ).toBeLessThanOrEqual((want as number) * NEAR_FUEL_SHARE);
                  }
                }
              }
            },
            testCase.testTimeoutMs,
          );
        }
      });
    }

    it("the host is unharmed after every case: its files, its globals, and a fresh task", async () => {
      await host.checkUnharmed();
    });
  });
}

function describeOutcome(outcome: Outcome): string {
  const text =
    outcome.kind === "refused"
      ? `refused ${outcome.status}: ${outcome.message}`
      : JSON.stringify({ ...outcome.envelope, files: outcome.files });
  return text.length > 1500 ? `${text.slice(0, 1500)}...` : text;
}

/** Every path a case's expectations look at after the run. */
export function pathsToRead(testCase: Case): string[] {
  const all = [testCase.expect, ...(testCase.where ?? []).map((entry) => entry.expect)];
  return [...new Set(all.flatMap((expected) => Object.keys(expected.files ?? {})))];
}
