import { afterEach, describe, expect, test } from "vitest";
import { CHUNK_GLOBALS } from "./chunk.ts";
import {
  createSandbox,
  type GuestSandbox,
  guestSources,
  installHost,
  quickJSModule,
} from "./test-context.ts";

let sandbox: GuestSandbox | undefined;
const open = async (options?: Parameters<typeof createSandbox>[0]) => {
  sandbox = await createSandbox(options);
  return sandbox;
};
afterEach(() => {
  sandbox?.dispose();
  sandbox = undefined;
});

describe("bridge", () => {
  test("hides the raw host functions and exposes a locked __capsule", async () => {
    const s = await open();
    expect(
      s.run(`({
        host: typeof __capsule_host,
        hostKey: "__capsule_host" in globalThis,
        capsule: typeof __capsule,
        enumerable: Object.keys(globalThis).includes("__capsule"),
        descriptor: (({ writable, configurable, enumerable }) => ({ writable, configurable, enumerable }))(
          Object.getOwnPropertyDescriptor(globalThis, "__capsule")),
        frozen: Object.isFrozen(__capsule),
        methods: Object.keys(__capsule).sort(),
      })`),
    ).toEqual({
      host: "undefined",
      hostKey: false,
      capsule: "object",
      enumerable: false,
      descriptor: { writable: false, configurable: false, enumerable: false },
      frozen: true,
      methods: ["call", "register", "require"],
    });
    expect(
      s.run(
        `__capsule = 1; try { "use strict"; globalThis.__capsule = 2 } catch {}; typeof __capsule`,
      ),
    ).toBe("object");
  });

  test("lazy globals load their chunk on first access, once, and then are plain data", async () => {
    const s = await open();
    expect(s.loadedChunks).toEqual([]);
    expect(
      s.run(`Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith("__capsule"))`),
    ).toEqual(["__capsule"]);
    expect(s.run(`typeof URL`)).toBe("function");
    expect(s.loadedChunks).toEqual(["url"]);
    expect(
      s.run(`const d = Object.getOwnPropertyDescriptor(globalThis, "URL");
        [URL === URL, "value" in d, d.writable, d.configurable, d.enumerable, new URL("http://x/").href]`),
    ).toEqual([true, true, true, true, false, "http://x/"]);
    // The sibling global of an already loaded chunk reuses it.
    s.run(`URLSearchParams`);
    expect(s.loadedChunks).toEqual(["url"]);
  });

  test("every lazy global is non-enumerable, typeof-able and assignable before first use", async () => {
    const s = await open();
    const names = Object.values(CHUNK_GLOBALS).flat();
    const result = s.run(`
      const names = ${JSON.stringify(names)};
      const enumerable = names.filter((n) => Object.keys(globalThis).includes(n));
      const types = Object.fromEntries(names.map((n) => [n, typeof globalThis[n]]));
      globalThis.TextEncoder = 42;
      var atob = "mine";
      ({ enumerable, types, assigned: [TextEncoder, atob] })`) as {
      enumerable: string[];
      types: Record<string, string>;
      assigned: unknown[];
    };
    expect(result.enumerable).toEqual([]);
    for (const name of names) {
      expect(result.types[name], name).toBe(
        ["console", "crypto", "performance", "process"].includes(name) ? "object" : "function",
      );
    }
    expect(result.assigned).toEqual([42, "mine"]);
  });

  test("assigning a lazy global before it loads never evaluates its chunk", async () => {
    const s = await open();
    s.run(`globalThis.structuredClone = (v) => v; structuredClone(1)`);
    expect(s.loadedChunks).toEqual([]);
  });

  test("queueMicrotask runs in order, after the current job, and reports errors", async () => {
    const s = await open();
    expect(
      await s.runAsync(`new Promise((resolve) => {
        const order = [];
        queueMicrotask(() => order.push("a"));
        queueMicrotask(() => { throw new RangeError("micro"); });
        Promise.resolve().then(() => order.push("p"));
        queueMicrotask(() => { order.push("b"); resolve(order); });
        order.push("sync");
      })`),
    ).toEqual(["sync", "a", "p", "b"]);
    expect(s.output("error")[0]).toMatch(/^Uncaught RangeError: micro\n {4}at /);
    expect(() => s.run(`queueMicrotask(1)`)).toThrow(/queueMicrotask: callback must be a function/);
  });
});

describe("timers", () => {
  test("fire in delay order, pass extra arguments and honour clearTimeout", async () => {
    const s = await open();
    expect(
      await s.runAsync(`new Promise((resolve) => {
        const seen = [];
        const ids = [];
        ids.push(setTimeout((a, b) => seen.push("30:" + a + b), 30, "x", "y"));
        ids.push(setTimeout(() => seen.push("10"), 10));
        const cancelled = setTimeout(() => seen.push("cancelled"), 5);
        ids.push(setTimeout(() => seen.push("0"), "junk"));
        ids.push(setTimeout(() => seen.push("neg"), -50));
        clearTimeout(cancelled);
        clearTimeout(999); clearTimeout(undefined); clearTimeout("nope");
        setTimeout(() => resolve({ seen, ids, types: ids.map((id) => typeof id), cancelled }), 50);
      })`),
    ).toEqual({
      seen: ["0", "neg", "10", "30:xy"],
      ids: [1, 2, 4, 5],
      types: ["number", "number", "number", "number"],
      cancelled: 3,
    });
  });

  test("setInterval repeats until cleared, also from inside its callback", async () => {
    const s = await open();
    expect(
      await s.runAsync(`new Promise((resolve) => {
        let count = 0;
        const id = setInterval((step) => {
          count += step;
          if (count === 3) { clearInterval(id); setTimeout(() => resolve(count), 30); }
        }, 2, 1);
      })`),
    ).toBe(3);
  });

  test("a throwing callback is reported and other timers still run", async () => {
    const s = await open();
    expect(
      await s.runAsync(`new Promise((resolve) => {
        setTimeout(() => { throw new TypeError("tick failed"); }, 1);
        setTimeout(() => { throw "plain"; }, 2);
        setTimeout(() => resolve("still running"), 5);
      })`),
    ).toBe("still running");
    const errors = s.output("error");
    expect(errors[0]).toMatch(/^Uncaught TypeError: tick failed\n {4}at /);
    expect(errors[1]).toBe("Uncaught 'plain'");
  });

  test("refuses a non-function callback, like Node", async () => {
    const s = await open();
    expect(() => s.run(`setTimeout("alert(1)", 1)`)).toThrow(
      /setTimeout: callback must be a function, got string/,
    );
    expect(() => s.run(`setInterval(null)`)).toThrow(/setInterval: callback must be a function/);
  });
});

describe("tasks", () => {
  test("register, list and start with positional JSON arguments", async () => {
    const s = await open();
    s.run(`
      __capsule.register({ name: "main", compute: "LOW", ram: "64MB", allowedHosts: ["a.com"] },
        async (a, b) => { await null; return { sum: a + b, args: [a, b] }; });
      __capsule.register({ name: "nothing" }, () => undefined);
      const opts = { name: "mutated", timeout: "1s" };
      __capsule.register(opts, () => 1);
      opts.timeout = "9s";
    `);
    expect(s.listTasks()).toEqual([
      {
        name: "main",
        options: { name: "main", compute: "LOW", ram: "64MB", allowedHosts: ["a.com"] },
      },
      { name: "nothing", options: { name: "nothing" } },
      { name: "mutated", options: { name: "mutated", timeout: "1s" } },
    ]);
    expect(await s.start("main", [2, 3])).toEqual({ ok: true, value: { sum: 5, args: [2, 3] } });
    expect(await s.start("nothing")).toEqual({ ok: true, value: null });
  });

  test("options that cannot be JSON-encoded are listed with optionsError", async () => {
    const s = await open();
    s.run(`
      const cyclic = { name: "cyclic" }; cyclic.self = cyclic;
      __capsule.register(cyclic, () => 1);
      __capsule.register({ name: "big", n: 1n }, () => 1);
    `);
    const listed = s.listTasks() as { name: string; optionsError: string }[];
    expect(listed.map((task) => task.name)).toEqual(["cyclic", "big"]);
    expect(listed[0]?.optionsError).toMatch(/circular|cycl/i);
    expect(listed[1]?.optionsError).toMatch(/bigint/i);
  });

  test("register refuses bad arguments and duplicate names", async () => {
    const s = await open();
    s.run(`__capsule.register({ name: "main" }, () => 1)`);
    expect(() => s.run(`__capsule.register({ name: "main" }, () => 2)`)).toThrow(
      /task \\"main\\" is already registered/,
    );
    expect(() => s.run(`__capsule.register(null, () => 2)`)).toThrow(
      /task options must be an object, got null/,
    );
    expect(() => s.run(`__capsule.register({ name: "" }, () => 2)`)).toThrow(
      /options.name must be a non-empty string/,
    );
    expect(() => s.run(`__capsule.register({}, () => 2)`)).toThrow(
      /non-empty string, got undefined/,
    );
    expect(() => s.run(`__capsule.register({ name: "x" }, 5)`)).toThrow(
      /must be given a function, got number/,
    );
  });

  test("failures: Error, non-Error throws, rejections, bad results, unknown names", async () => {
    const s = await open();
    s.run(`
      class QuotaError extends Error { name = "QuotaError"; }
      __capsule.register({ name: "throws" }, function inner() { throw new QuotaError("too much"); });
      __capsule.register({ name: "rejects" }, async () => { throw new TypeError("async bad"); });
      __capsule.register({ name: "string" }, () => { throw "just a string"; });
      __capsule.register({ name: "object" }, () => { throw { code: 42, why: "nope" }; });
      __capsule.register({ name: "undef" }, () => { throw undefined; });
      __capsule.register({ name: "bigint" }, () => ({ n: 1n }));
      __capsule.register({ name: "cycle" }, () => { const a = {}; a.a = a; return a; });
      __capsule.register({ name: "fn" }, () => () => 1);
    `);
    const thrown = (await s.start("throws")) as { ok: boolean; error: Record<string, string> };
    expect(thrown.ok).toBe(false);
    expect(thrown.error.name).toBe("QuotaError");
    expect(thrown.error.message).toBe("too much");
    // Runtime frames below the task function are cut off.
    expect(thrown.error.stack).toMatch(
      /^QuotaError: too much\n {4}at QuotaError \(task\.js:\d+:\d+\)\n {4}at inner \(task\.js:\d+:\d+\)$/,
    );
    expect(await s.start("rejects")).toMatchObject({
      ok: false,
      error: {
        name: "TypeError",
        message: "async bad",
        stack: expect.stringMatching(/^TypeError: async bad\n/),
      },
    });
    expect(await s.start("string")).toEqual({
      ok: false,
      error: { name: "Error", message: "just a string" },
    });
    expect(await s.start("object")).toEqual({
      ok: false,
      error: { name: "Error", message: "{ code: 42, why: 'nope' }" },
    });
    expect(await s.start("undef")).toEqual({
      ok: false,
      error: { name: "Error", message: "undefined" },
    });
    expect(await s.start("bigint")).toEqual({
      ok: false,
      error: {
        name: "TypeError",
        message: expect.stringMatching(/^task result is not JSON-serializable: .*bigint/i),
      },
    });
    expect(await s.start("cycle")).toEqual({
      ok: false,
      error: {
        name: "TypeError",
        message: expect.stringMatching(/^task result is not JSON-serializable: /),
      },
    });
    expect(await s.start("fn")).toEqual({ ok: true, value: null });
    expect(await s.start("missing")).toEqual({
      ok: false,
      error: {
        name: "Error",
        message:
          'no task named "missing"; registered tasks: throws, rejects, string, object, undef, bigint, cycle, fn',
      },
    });
  });

  test("start refuses arguments that are not a JSON array", async () => {
    const s = await open();
    s.run(`__capsule.register({ name: "main" }, (...args) => args)`);
    const control = await s.start("main", ["a", 1]);
    expect(control).toEqual({ ok: true, value: ["a", 1] });
  });

  test("__capsule.call sends JSON arguments and parses the envelope", async () => {
    const calls: [string, string][] = [];
    const s = await open({
      callTask: async (name, argsJson) => {
        calls.push([name, argsJson]);
        return JSON.stringify({ success: true, result: `${name} done`, error: null });
      },
    });
    expect(
      await s.runAsync(`Promise.all([
        __capsule.call("child", [1, "two", { three: [3] }, undefined]),
        __capsule.call("other", []),
      ])`),
    ).toEqual([
      { success: true, result: "child done", error: null },
      { success: true, result: "other done", error: null },
    ]);
    expect(calls).toEqual([
      ["child", '[1,"two",{"three":[3]},null]'],
      ["other", "[]"],
    ]);
  });

  test("__capsule.call rejects non-JSON arguments with a TypeError naming the task", async () => {
    const s = await open();
    const outcome = (code: string) =>
      s.runAsync(`${code}.then(() => "resolved", (e) => e.constructor.name + ": " + e.message)`);
    expect(await outcome(`__capsule.call("child", [() => 1])`)).toMatch(
      /^TypeError: arguments for task "child" are not JSON-serializable: a function cannot be sent/,
    );
    expect(await outcome(`__capsule.call("child", [{ cb() {} }])`)).toMatch(
      /a function cannot be sent \(at key "cb"\)/,
    );
    expect(await outcome(`__capsule.call("child", [1n])`)).toMatch(
      /^TypeError: arguments for task "child".*bigint/i,
    );
    expect(
      await outcome(`(() => { const a = []; a.push(a); return __capsule.call("loop", a); })()`),
    ).toMatch(/^TypeError: arguments for task "loop" are not JSON-serializable/);
    expect(await outcome(`__capsule.call("child", "x")`)).toMatch(/must be an array, got string/);
  });
});

test("prelude size and evaluation time in a fresh context", async () => {
  const [module, sources] = await Promise.all([quickJSModule(), guestSources()]);
  const samples: number[] = [];
  for (let i = 0; i < 240; i++) {
    const vm = module.newContext();
    installHost(vm, sources, {
      start: 0,
      log() {},
      setTimer() {},
      clearTimer() {},
      callTask: () => vm.undefined,
    });
    const before = performance.now();
    const result = vm.evalCode(sources.prelude, "capsule:prelude");
    const after = performance.now();
    vm.unwrapResult(result).dispose();
    vm.dispose();
    if (i >= 40) samples.push(after - before); // the first runs warm up the wasm tiers
  }
  samples.sort((a, b) => a - b);
  const median = samples[samples.length >> 1] as number;
  const chunkMedian = (source: string) => {
    const times: number[] = [];
    for (let i = 0; i < 30; i++) {
      const vm = module.newContext();
      const before = performance.now();
      const result = vm.evalCode(source);
      times.push(performance.now() - before);
      vm.unwrapResult(result).dispose();
      vm.dispose();
    }
    return (times.sort((a, b) => a - b)[15] as number).toFixed(2);
  };
  const chunks = Object.entries(sources.polyfills).map(
    ([name, source]) => `${name} ${source.length} B / ${chunkMedian(source)} ms`,
  );
  console.log(
    `prelude: ${sources.prelude.length} B, eval median ${median.toFixed(3)} ms over ${samples.length} fresh contexts; chunks (evaluation only): ${chunks.join(", ")}`,
  );
  expect(sources.prelude.length).toBeLessThan(2000);
});
