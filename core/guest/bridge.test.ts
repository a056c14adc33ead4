import fc from "fast-check";
import type { QuickJSHandle } from "quickjs-emscripten-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import type { Sandbox } from "../engine/sandbox.ts";
import { type PreparedSandbox, prepareSandbox } from "../runtime/prepared.ts";
import { fuzzRuns } from "../testing/fuzz.ts";

/**
 * Values cross the sandbox boundary as JSON text: the host writes a task's arguments with
 * JSON.stringify, the guest's task registry parses them, calls the task and stringifies its result,
 * and the host reads that string out of the sandbox's memory and parses it (core/runtime/attempt.ts);
 * a sub-task's arguments and envelope make the same trip the other way. These properties drive that
 * path in one real metered sandbox, reused for every case so a case costs under a millisecond.
 */

const TASKS = `
import { task } from "@capsule-run/sdk";
export const echo = task({ name: "echo" }, (...args) => args);
export const codeUnits = task({ name: "codeUnits" }, (text) => {
  const units = [];
  for (let i = 0; i < text.length; i++) units.push(text.charCodeAt(i));
  return { text, units };
});
const target = task({ name: "target" }, (value) => value);
export const relay = task({ name: "relay" }, async (value) => (await target(value)).result);
`;

let prepared: PreparedSandbox;
let sandbox: Sandbox;
/** Host work the guest is waiting for (sub-task replies), run between pumps as an attempt does. */
const queue: (() => void)[] = [];
/** The arguments of the last sub-task call, as the host received them. */
let subtaskArgsJson: string | null = null;

beforeAll(async () => {
  prepared = await prepareSandbox(loadEngine(), 64 * 2 ** 20);
  sandbox = prepared.sandbox;
  const { context } = sandbox;
  prepared.setTenant({
    log: () => {},
    monotonic: () => 0,
    setTimer: () => {
      throw new Error("these tasks set no timers");
    },
    clearTimer: () => {},
    callTask(_name, argsJson) {
      subtaskArgsJson = argsJson;
      const deferred = context.newPromise();
      const [value] = JSON.parse(argsJson) as unknown[];
      const envelope = JSON.stringify({ success: true, result: value ?? null, error: null });
      queue.push(() => {
        const reply = sandbox.parseHostJson(envelope);
        sandbox.metered(() => deferred.resolve(reply));
        reply.dispose();
        deferred.dispose();
      });
      return deferred.handle;
    },
    fsCall: () => {
      throw new Error("these tasks use no files");
    },
    fetch: () => {
      throw new Error("these tasks use no network");
    },
    abortFetch: () => {},
    processInfo: () => JSON.stringify({ env: {}, cwd: "/" }),
  });
  sandbox.lease({
    fuel: Number.MAX_SAFE_INTEGER,
    clock: { now: () => Date.now() },
    shouldInterrupt: () => false,
  });
  const module = context.unwrapResult(
    sandbox.metered(() => context.evalCode(TASKS, "tasks.js", { type: "module" })),
  );
  settle(module).dispose();
});

afterAll(() => {
  prepared?.control.dispose();
});

/** Runs the guest's jobs and the queued host work until `promise` settles; consumes `promise`. */
function settle(promise: QuickJSHandle): QuickJSHandle {
  const { context, runtime } = sandbox;
  const first = context.getPromiseState(promise);
  // A module without top-level await may evaluate to its value rather than a promise.
  if (first.type === "fulfilled" && first.notAPromise) return promise;
  try {
    for (;;) {
      while (runtime.hasPendingJob()) {
        const jobs = sandbox.metered(() => runtime.executePendingJobs());
        if (jobs.error) {
          const error = context.dump(jobs.error);
          jobs.error.dispose();
          throw new Error(`a guest job threw: ${JSON.stringify(error)}`);
        }
      }
      const state = context.getPromiseState(promise);
      if (state.type === "fulfilled") return state.value;
      if (state.type === "rejected") {
        const error = context.dump(state.error);
        state.error.dispose();
        throw new Error(`guest promise rejected: ${JSON.stringify(error)}`);
      }
      const next = queue.shift();
      if (next === undefined) throw new Error("the guest waits for nothing the host will do");
      next();
    }
  } finally {
    promise.dispose();
  }
}

/** Starts a task the way an attempt does and returns what the host reads back. */
function start(taskName: string, args: unknown[]): unknown {
  const { context } = sandbox;
  const name = context.newString(taskName);
  const argsJson = context.newString(JSON.stringify(args));
  const promise = context.unwrapResult(
    sandbox.metered(() => context.callMethod(prepared.control, "start", [name, argsJson])),
  );
  name.dispose();
  argsJson.dispose();
  const settled = settle(promise);
  const text = context.getString(settled);
  settled.dispose();
  const outcome = JSON.parse(text) as { ok: boolean; value?: unknown; error?: unknown };
  if (!outcome.ok) throw new Error(`task ${taskName} failed: ${JSON.stringify(outcome.error)}`);
  return outcome.value;
}

/** Any UTF-16 code unit sequence: every code point, lone surrogates, and the characters JSON escapes. */
const anyCodeUnits = fc.oneof(
  fc.integer({ min: 0, max: 0x10ffff }).map((codePoint) => String.fromCodePoint(codePoint)),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)),
  fc.integer({ min: 0, max: 0x7f }).map((unit) => String.fromCharCode(unit)),
  fc.constantFrom('"', "\\", "\0", "\u2028", "\u2029", "\ufeff", "\ud83d\ude00", "</script>"),
);
const anyString = fc.string({ unit: anyCodeUnits, maxLength: 24 });

/** Keys that mean something to JavaScript objects, so a careless copy would treat them specially. */
const specialKey = fc.constantFrom(
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
  "then",
  "toJSON",
  "length",
  "",
  "0",
  "-0",
  "01",
  "4294967294",
  "4294967295",
  "1e3",
);

/** An object holding exactly these entries as own properties, "__proto__" included. */
function objectOf(entries: [string, unknown][]): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (const [key, value] of entries) {
    Object.defineProperty(object, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return object;
}

const number = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(-0, 5e-324, Number.MAX_VALUE, 2 ** 53 + 2, 1e21, 1e-7, 0.1 + 0.2, 123456789.125),
);

const { value: nestedValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(null, true, false),
    number,
    anyString,
    tie("array"),
    tie("object"),
  ),
  array: fc.array(tie("value"), { maxLength: 4 }),
  object: fc
    .array(fc.tuple(fc.oneof(specialKey, anyString), tie("value")), { maxLength: 4 })
    .map(objectOf),
}));

/** JSON values from fast-check, and values with hostile keys and strings of any code units. */
const jsonLike = fc.oneof(fc.jsonValue({ stringUnit: anyCodeUnits }), nestedValue);

/** What a JSON round trip on the host makes of a value: the most any boundary may promise. */
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value) ?? "null");

/**
 * Where two JSON values differ ("$[0].__proto__"), or null when they are equal: the same own keys,
 * numbers by Object.is. (toStrictEqual compares objects' `constructor` properties, which breaks on
 * an own "constructor" key.)
 */
function jsonDifference(actual: unknown, expected: unknown, at = "$"): string | null {
  if (actual === null || expected === null || typeof expected !== "object") {
    return Object.is(actual, expected) ? null : at;
  }
  if (typeof actual !== "object" || Array.isArray(actual) !== Array.isArray(expected)) return at;
  const actualKeys = Object.keys(actual).sort();
  const expectedKeys = Object.keys(expected).sort();
  if (JSON.stringify(actualKeys) !== JSON.stringify(expectedKeys)) return `${at} (keys)`;
  for (const key of expectedKeys) {
    const difference = jsonDifference(
      Object.getOwnPropertyDescriptor(actual, key)?.value,
      Object.getOwnPropertyDescriptor(expected, key)?.value,
      `${at}[${JSON.stringify(key)}]`,
    );
    if (difference !== null) return difference;
  }
  return null;
}

/** Every object in `value` is a plain object or array whose properties are plain data. */
function expectPlainData(value: unknown): void {
  if (value === null || typeof value !== "object") return;
  const prototype = Array.isArray(value) ? Array.prototype : Object.prototype;
  expect(Object.getPrototypeOf(value)).toBe(prototype);
  for (const key of Object.keys(value)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key);
    expect(descriptor && "value" in descriptor).toBe(true);
    expectPlainData(descriptor?.value);
  }
}

const objectPrototypeKeys = Reflect.ownKeys(Object.prototype);

/** Object.prototype has exactly the properties it had when the tests began. */
function expectUnpolluted(): void {
  expect(Reflect.ownKeys(Object.prototype)).toEqual(objectPrototypeKeys);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
}

describe("values crossing the sandbox boundary", () => {
  it("a JSON value a task returns arrives on the host deep-equal to its JSON round trip", () => {
    fc.assert(
      fc.property(jsonLike, (value) => {
        const received = start("echo", [value]);
        expect(jsonDifference(received, [viaJson(value)])).toBeNull();
        expectPlainData(received);
        expectUnpolluted();
      }),
      { numRuns: fuzzRuns(150) },
    );
  });

  it("any string, lone surrogates included, reaches the task unchanged and comes back unchanged", () => {
    fc.assert(
      fc.property(anyString, (text) => {
        const units = Array.from({ length: text.length }, (_, i) => text.charCodeAt(i));
        expect(jsonDifference(start("codeUnits", [text]), { text, units })).toBeNull();
      }),
      { numRuns: fuzzRuns(150) },
    );
  });

  it("a sub-task's arguments reach the host as sent and its result reaches the caller, deep-equal", () => {
    fc.assert(
      fc.property(jsonLike, (value) => {
        subtaskArgsJson = null;
        const received = start("relay", [value]);
        expect(jsonDifference(JSON.parse(subtaskArgsJson ?? "null"), [viaJson(value)])).toBeNull();
        expect(jsonDifference(received, viaJson(value))).toBeNull();
        expectPlainData(received);
        expectUnpolluted();
      }),
      { numRuns: fuzzRuns(100) },
    );
  });

  it('"__proto__" keys arrive as own properties and never change a prototype', () => {
    const hostile = objectOf([
      ["__proto__", { polluted: true }],
      ["constructor", { prototype: { polluted: true } }],
    ]);
    const [received] = start("echo", [hostile]) as [Record<string, unknown>];
    expect(Object.hasOwn(received, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(received)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(received, "__proto__")?.value).toEqual({
      polluted: true,
    });
    expect(jsonDifference(start("relay", [hostile]), viaJson(hostile))).toBeNull();
    expectUnpolluted();
  });
});
