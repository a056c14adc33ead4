/**
 * Attacks on fuel accounting: guest code that tries to run while the counter is paused or its cost
 * is given back. Every case runs under LOW (1e8 fuel) with no timeout, so fuel is the only stop,
 * as on Workers; each does about ten times that much work and must end at the budget.
 */
import { type Case, mainTask, taskFile } from "../case.ts";

/** About 2.5M fuel of plain guest work. */
const BURN = `const burn = () => { let s = 0; for (let i = 0; i < 300_000; i++) s += i; return s; };`;
const LOW = `{ name: "main", compute: "LOW" }`;
const exhausted = { success: false, errorType: "fuel_exhausted" } as const;

/** A task under LOW that runs `body` after defining `burn`. */
const lowTask = (body: string, options = LOW): string => mainTask(`${BURN}\n${body}`, options);

/**
 * Touches lazy global `name` 400 times while `replace` (statements) has swapped a built-in the
 * global's loading touches for one that burns and then throws, so the global never gets cached and
 * every touch loads it again.
 */
const retryLoad = (name: string, replace: string): string =>
  lowTask(`${replace}
    let failures = 0;
    for (let k = 0; k < 400; k++) { try { void (globalThis as any).${name}; } catch { failures++; } }
    return failures;`);

/** Map.prototype.set is what records a loaded chunk: every lazy global's load reaches it. */
const BURNING_MAP_SET = `Map.prototype.set = function () { burn(); throw 0; };`;

const LAZY_GLOBALS = [
  "URL",
  "TextEncoder",
  "fetch",
  "Buffer",
  "process",
  "console",
  "structuredClone",
  "setTimeout",
];

const retryCases: Case[] = LAZY_GLOBALS.map((name) => ({
  id: `fuel-lazy-retry-${name}`,
  group: "denial-of-service",
  title: `a load of ${name} that burns fuel and throws, retried, is charged every time`,
  code: retryLoad(name, BURNING_MAP_SET),
  expect: exhausted,
}));

/**
 * A replacement that burns only while `armed` (the task's own code keeps working), so the burn
 * happens inside the runtime's code that calls it.
 */
const armedReplacement = (target: string, key: string) => `
  const original = ${target}[${key}]; const apply = Reflect.apply; let armed = false;
  ${target}[${key}] = function (this: unknown, ...args: unknown[]) {
    if (armed) { armed = false; burn(); throw 0; }
    return apply(original, this, args);
  };`;

/** Touches `name` 400 times with the replacement armed. */
const armedRetry = (name: string, target: string, key: string): string =>
  lowTask(`${armedReplacement(target, key)}
    let failures = 0;
    for (let k = 0; k < 400; k++) {
      armed = true;
      try { void (globalThis as any).${name}; } catch { failures++; }
      armed = false;
    }
    return failures;`);

export const FUEL_ATTACKS: Case[] = [
  ...retryCases,
  {
    id: "fuel-lazy-retry-define-property",
    group: "denial-of-service",
    title:
      "Object.defineProperty replaced by one that burns and throws, with Buffer touched in a loop, is charged",
    code: retryLoad("Buffer", `(Object as any).defineProperty = function () { burn(); throw 0; };`),
    expect: exhausted,
  },
  {
    id: "fuel-lazy-function-call",
    group: "denial-of-service",
    title: "a replaced Function.prototype.call that the runtime's set-up reaches is charged",
    code: armedRetry("Buffer", "Function.prototype", `"call"`),
    expect: exhausted,
  },
  {
    id: "fuel-lazy-function-bind",
    group: "denial-of-service",
    title: "a replaced Function.prototype.bind that the runtime's set-up reaches is charged",
    code: armedRetry("URL", "Function.prototype", `"bind"`),
    expect: exhausted,
  },
  {
    id: "fuel-lazy-array-iterator",
    group: "denial-of-service",
    title:
      "a replaced Array.prototype[Symbol.iterator] that the runtime's set-up reaches is charged",
    code: armedRetry("fetch", "Array.prototype", "Symbol.iterator"),
    expect: exhausted,
  },
  {
    id: "fuel-lazy-object-prototype-getter",
    group: "denial-of-service",
    title:
      "a getter on Object.prototype that property descriptors in the runtime's set-up read is charged",
    code: lowTask(`let armed = false;
      Object.defineProperty(Object.prototype, "get", {
        configurable: true,
        get() { if (armed) { armed = false; burn(); throw 0; } return undefined; },
      });
      let failures = 0;
      for (let k = 0; k < 400; k++) {
        armed = true;
        try { void (globalThis as any).Buffer; } catch { failures++; }
        armed = false;
      }
      return failures;`),
    expect: exhausted,
  },
  {
    id: "fuel-host-error-message-setter",
    group: "denial-of-service",
    title:
      "a setter on Error.prototype.message that the host's refusal of a fetch reaches is charged",
    code: lowTask(`Object.defineProperty(Error.prototype, "message", {
        configurable: true,
        get() { return "refused"; },
        set() { for (let k = 0; k < 400; k++) burn(); },
      });
      try { await fetch("http://127.0.0.1:1/"); } catch {}
      return "done";`),
    expect: exhausted,
  },
  {
    id: "fuel-host-error-flag-setter",
    group: "denial-of-service",
    title:
      "a setter on Error.prototype that the host's marking of a refused fetch reaches is charged",
    code: lowTask(`Object.defineProperty(Error.prototype, "denied", {
        configurable: true,
        get() { return true; },
        set() { for (let k = 0; k < 400; k++) burn(); },
      });
      try { await fetch("http://127.0.0.1:1/"); } catch {}
      return "done";`),
    expect: exhausted,
  },
  {
    id: "fuel-host-call-to-string",
    group: "denial-of-service",
    title:
      "a value with a burning toString that a polyfill hands to a host call is refused, not read",
    code: lowTask(`(Buffer.prototype as any).toString = function () {
        return { length: 1, endsWith: () => false, toString() { for (let k = 0; k < 400; k++) burn(); return "x"; } };
      };
      try { process.stdout.write(new Uint8Array([65])); return "written"; }
      catch (e) { return String((e as Error).message); }`),
    expect: { success: true, result: "log text must be a string, got object" },
  },
  {
    id: "fuel-stopped-guest-keeps-calling-host",
    group: "denial-of-service",
    title:
      "a guest stopped inside a host call's error setter, that catches and calls the host again, stays stopped",
    code: lowTask(`Object.defineProperty(Error.prototype, "message", {
        configurable: true,
        get() { return "refused"; },
        set() { for (;;) {} },
      });
      (Buffer.prototype as any).toString = () => ({ length: 1, endsWith: () => false });
      for (;;) { try { process.stdout.write(new Uint8Array([65])); } catch {} }`),
    expect: exhausted,
  },
  {
    id: "fuel-reply-to-string",
    group: "denial-of-service",
    title:
      "a task that bends the runtime's reply into an object with a burning toString gets a task_error, not a free read",
    code: taskFile(`${BURN}
      export const main = task(${LOW}, () => 1);
      const get = Map.prototype.get;
      Map.prototype.get = function (this: Map<unknown, unknown>, key: unknown) {
        const found = get.call(this, key) as { start?: unknown } | undefined;
        if (!found || typeof found.start !== "function") return found;
        return { ...found, start: () => ({ toString() { for (let k = 0; k < 400; k++) burn(); return '{"ok":true,"value":1}'; } }) };
      };`),
    expect: { success: false, errorType: "task_error", message: "malformed" },
  },
  {
    id: "fuel-thrown-getters",
    group: "denial-of-service",
    title: "getters on a value thrown from a task file's top level, read to report it, are charged",
    code: taskFile(`${BURN}
      export const main = task(${LOW}, () => "unreachable");
      throw {
        get name() { for (let k = 0; k < 400; k++) burn(); return "Error"; },
        get message() { for (let k = 0; k < 400; k++) burn(); return "thrown"; },
      };`),
    expect: exhausted,
  },
  {
    id: "fuel-thrown-to-json",
    group: "denial-of-service",
    title: "a toJSON on a value rejected at a task file's top level, read to report it, is charged",
    code: taskFile(`${BURN}
      export const main = task(${LOW}, () => "unreachable");
      await Promise.resolve();
      throw { toJSON() { for (let k = 0; k < 400; k++) burn(); return { message: "thrown" }; } };`),
    expect: exhausted,
  },
  {
    id: "fuel-thrown-proxy",
    group: "denial-of-service",
    title: "a Proxy thrown from a task file's top level, whose traps burn, is charged",
    code: taskFile(`${BURN}
      export const main = task(${LOW}, () => "unreachable");
      throw new Proxy({}, {
        get() { for (let k = 0; k < 400; k++) burn(); return "trapped"; },
        has() { for (let k = 0; k < 400; k++) burn(); return true; },
        ownKeys() { for (let k = 0; k < 400; k++) burn(); return []; },
      });`),
    expect: exhausted,
  },
];
