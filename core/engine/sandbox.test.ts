import { afterEach, describe, expect, it } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import { FuelExhaustedError, InternalError } from "../errors.ts";
import { prepareSandbox } from "../runtime/prepared.ts";
import { PINNED_IMPORT_NAMES } from "./pinned-imports.ts";
import { Sandbox } from "./sandbox.ts";

const engine = loadEngine();
const MB = 1024 * 1024;

function lease(sandbox: Sandbox, fuel = 1e9) {
  sandbox.lease({ fuel, clock: { now: () => Date.now() }, shouldInterrupt: () => false });
}

function evaluate(sandbox: Sandbox, code: string): unknown {
  const { context } = sandbox;
  const result = sandbox.metered(() => context.evalCode(code));
  const handle = context.unwrapResult(result);
  const value = context.dump(handle);
  handle.dispose();
  return value;
}

describe("engine", () => {
  const savedTz = process.env.TZ;
  afterEach(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });

  it("is the metered build, and its imports are the ones the runtime pins", () => {
    expect(engine.metered).toBe(true);
    const names = WebAssembly.Module.imports(engine.module).map((i) => `${i.module}.${i.name}`);
    for (const name of Object.values(PINNED_IMPORT_NAMES)) expect(names).toContain(`a.${name}`);
  });

  it("shows every guest the same time zone and environment, whatever the host's", async () => {
    process.env.TZ = "Asia/Tokyo";
    const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
    lease(sandbox);
    expect(evaluate(sandbox, "new Date(0).getTimezoneOffset()")).toBe(0);
    expect(evaluate(sandbox, "String(new Date(86400000 * 180))")).toContain("GMT+0000");
  });

  it("counts identical fuel for identical work in separate instances", async () => {
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
      lease(sandbox);
      evaluate(sandbox, "let s = 0; for (let i = 0; i < 10000; i++) s += String(i).length; s");
      counts.push(sandbox.fuelConsumed);
    }
    expect(new Set(counts).size).toBe(1);
    expect(counts[0]).toBeGreaterThan(10000);
  });

  it("kills the sandbox on fuel exhaustion and refuses further use", async () => {
    const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
    lease(sandbox, 1e6);
    expect(() => evaluate(sandbox, "for (;;) {}")).toThrow(FuelExhaustedError);
    expect(sandbox.alive).toBe(false);
    expect(() => evaluate(sandbox, "1")).toThrow(FuelExhaustedError);
  });

  it("never lets linear memory pass the cap", async () => {
    const sandbox = await Sandbox.create({ engine, memoryBytes: 16 * MB });
    lease(sandbox, 1e12);
    sandbox.runtime.setMemoryLimit(-1);
    let failed = false;
    try {
      evaluate(sandbox, "const a = []; for (;;) a.push(new ArrayBuffer(1 << 20));");
    } catch {
      failed = true;
    }
    expect(failed).toBe(true);
    expect(sandbox.memoryBytes).toBeLessThanOrEqual(16 * MB);
  });

  it("runs guest code only once leased, for one attempt", async () => {
    const prepared = await prepareSandbox(engine, 64 * MB);
    expect(() => evaluate(prepared.sandbox, "1")).toThrow(InternalError);
    lease(prepared.sandbox);
    expect(() => lease(prepared.sandbox)).toThrow(InternalError);
  });

  it("charges the guest for setters a failed host call's error runs", async () => {
    const burned = async (setter: string) => {
      const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
      lease(sandbox);
      const failing = sandbox.newHostFunction("failing", () => {
        throw new TypeError("refused by the host");
      });
      sandbox.context.setProp(sandbox.context.global, "failing", failing);
      failing.dispose();
      const caught = evaluate(
        sandbox,
        `${setter}; try { failing(); "returned" } catch (e) { String(e.message) }`,
      );
      return { caught, fuel: sandbox.fuelConsumed };
    };
    const plain = await burned("");
    const withSetter = await burned(
      `Object.defineProperty(Error.prototype, "message", { configurable: true,
        set(v) { let s = 0; for (let i = 0; i < 100000; i++) s += i; this.text = v; },
        get() { return this.text; } })`,
    );
    expect(plain.caught).toBe("refused by the host");
    expect(withSetter.caught).toBe("refused by the host");
    // 100,000 loop iterations are several million fuel; all of it is the task's.
    expect(withSetter.fuel - plain.fuel).toBeGreaterThan(2_000_000);
  });

  it("ends at the budget when such a setter never returns", async () => {
    const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
    lease(sandbox, 5e6);
    const failing = sandbox.newHostFunction("failing", () => {
      throw new TypeError("refused by the host");
    });
    sandbox.context.setProp(sandbox.context.global, "failing", failing);
    failing.dispose();
    expect(() =>
      evaluate(
        sandbox,
        `Object.defineProperty(Error.prototype, "message", { set() { for (;;) {} } });
         for (;;) { try { failing(); } catch {} }`,
      ),
    ).toThrow(FuelExhaustedError);
    expect(sandbox.fuelConsumed).toBe(5e6);
  });

  it("parses host JSON with the engine's own JSON.parse, running no guest code", async () => {
    const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
    lease(sandbox);
    evaluate(
      sandbox,
      `globalThis.ran = [];
       JSON.parse = () => { ran.push("JSON.parse"); return {}; };
       Object.defineProperty(Object.prototype, "result", { set() { ran.push("setter"); } });
       Object.defineProperty(Object.prototype, "__proto__", { set() { ran.push("proto"); } });`,
    );
    const before = sandbox.fuelConsumed;
    const value = sandbox.parseHostJson(
      `{"success":true,"result":{"n":1},"__proto__":{"x":1},"execution":{"duration_ms":12}}`,
    );
    expect(sandbox.fuelConsumed).toBe(before);
    sandbox.context.setProp(sandbox.context.global, "parsed", value);
    value.dispose();
    expect(
      evaluate(
        sandbox,
        `[ran.length, parsed.result.n, Object.hasOwn(parsed, "__proto__"), Object.getPrototypeOf(parsed) === Object.prototype]`,
      ),
    ).toEqual([0, 1, true, true]);
  });
});
