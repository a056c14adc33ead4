/**
 * The shape of a conformance case: one task run, described as data, with the outcome every host
 * must produce. Where a host's declared features change the outcome, the case says so with a
 * `where` entry; the suite then checks that host against it, so the declaration is tested too.
 */
import type { HostFeatures } from "../core/features.ts";
import type { Envelope, ErrorType } from "../core/runtime/envelope.ts";

export type Group =
  | "basics"
  | "files"
  | "network"
  | "limits"
  | "escape"
  | "denial-of-service"
  | "bad-input";

/** What a run must end with. Strings in `message` and `resultMatches` are regular expressions. */
export interface Expectation {
  success: boolean;
  errorType?: ErrorType;
  /** The error message matches this. */
  message?: string;
  /** The result equals this exactly. */
  result?: unknown;
  /** The result, as JSON, matches this. */
  resultMatches?: string;
  /** `execution.retries`. */
  retries?: number;
  /**
   * Exact `fuel_consumed`, recorded in fuel.json and the same on every host. Off for outcomes that
   * depend on wall time (timeouts) or on bytes from the network. `near`: recorded the same way,
   * and within NEAR_FUEL_SHARE of it, for a case whose count moved by a few thousand in rare
   * whole runs for a cause not found (python-escape-js): a free path or a broken meter would
   * still show.
   */
  fuel?: "exact" | "near" | "any";
  /** Files after the run, by path in the project: text, or null for "does not exist". */
  files?: Record<string, string | null>;
  /** The run is refused before it starts (HTTP 400 on Workers); `message` applies to the refusal. */
  refused?: boolean;
  /**
   * `execution.host_requests`: how many entries, what the last one's reason matches, and the
   * longest URL or reason any entry holds.
   */
  hostRequests?: { count: number; lastReason?: string; longestText?: number };
}

export interface Case {
  /** Stable key (fuel.json). */
  id: string;
  group: Group;
  /** What it shows, as a sentence. */
  title: string;
  /** Task source. `{{SERVER}}` becomes the origin of the suite's HTTP server. */
  code: string;
  language?: "ts" | "js" | "py";
  /** Passed as given, so bad values reach the host's own checks. */
  args?: unknown;
  task?: unknown;
  /** Files in the project before the run (text). */
  files?: Record<string, string>;
  /** The variables the host offers `envVariables`. */
  env?: Record<string, string>;
  /** The run's write quota, passed as `limits` (a field of the request on Workers). */
  limits?: { writeBytes?: number; writeFiles?: number };
  expect: Expectation;
  /**
   * A longer bound than the suite's 30 s, for a case that waits out a limit by design (a fork bomb
   * fills the memory budget, and its waiting sub-tasks are refused after 10 s without progress).
   */
  testTimeoutMs?: number;
  /** Outcomes that differ by declared host feature; the first entry whose features all match wins. */
  where?: { features: Partial<HostFeatures>; expect: Expectation; why: string }[];
}

/** How a host answered one run. */
export type Outcome =
  | { kind: "envelope"; envelope: Envelope; files: Record<string, string | null> }
  | { kind: "refused"; status: number; message: string };

/** A host the suite runs on: its declared features and a way to run one case. */
export interface ConformanceHost {
  features: HostFeatures;
  /** `server` is the origin of the suite's HTTP server on 127.0.0.1. */
  run(testCase: Case, server: string): Promise<Outcome>;
  /** Text that must never appear in anything the task or its caller sees (host paths). */
  secrets: string[];
  /** Checks the host itself after hostile runs; throws when it was harmed. */
  checkUnharmed(): Promise<void>;
  close(): Promise<void>;
}

/** The expectation that applies on a host with these features, and its key in fuel.json. */
export function expectationFor(
  testCase: Case,
  features: HostFeatures,
): { expect: Expectation; fuelKey: string; why?: string } {
  const entries = testCase.where ?? [];
  for (const [index, entry] of entries.entries()) {
    const matches = Object.entries(entry.features).every(
      ([name, value]) => features[name as keyof HostFeatures] === value,
    );
    if (matches)
      return { expect: entry.expect, fuelKey: `${testCase.id}#${index}`, why: entry.why };
  }
  return { expect: testCase.expect, fuelKey: testCase.id };
}

/**
 * What every host is asked to run, in the option names all of them share: the source with the
 * suite's server origin filled in, and args and task only when the case gives them, as given.
 */
export function runRequestOf(testCase: Case, server: string): Record<string, unknown> {
  const request: Record<string, unknown> = {
    code: testCase.code.replaceAll("{{SERVER}}", server),
    language: testCase.language ?? "ts",
    env: testCase.env ?? {},
  };
  if (testCase.args !== undefined) request.args = testCase.args;
  if (testCase.task !== undefined) request.task = testCase.task;
  if (testCase.limits !== undefined) request.limits = testCase.limits;
  return request;
}

/** A task file: the SDK import, then `body`. */
export const taskFile = (body: string): string =>
  `import { task } from "@capsule-run/sdk";\n${body}`;

/** A task file whose `main` runs `body` (a function body) with `options`. */
export const mainTask = (body: string, options = `{ name: "main" }`): string =>
  taskFile(`export const main = task(${options}, async (...args: string[]) => {\n${body}\n});\n`);
