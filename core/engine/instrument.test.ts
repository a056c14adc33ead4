import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import binaryen from "binaryen";
import { beforeAll, describe, expect, it } from "vitest";
import {
  evalMetered,
  instantiateQuickJS,
  type QuickJSInstance,
  UNLIMITED_FUEL,
} from "../../bench/quickjs-instance.ts";
import { DEFAULT_STACK_BYTES, instrumentFuel, REFUEL_IMPORT } from "./instrument.ts";

const BUDGET = 1_000_000n;

const GUEST_WAT = `
(module
  (memory 1)
  (func $spin (export "spin") (param $n i32) (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  (func (export "forever") (loop $again (br $again)))
  (func $down (export "down") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $down (i32.sub (local.get $n) (i32.const 1)))))))
  (func (export "fill") (param $n i32) (memory.fill (i32.const 0) (i32.const 7) (local.get $n)))
  (func (export "copy") (param $n i32) (memory.copy (i32.const 4096) (i32.const 0) (local.get $n)))
  (func (export "peek") (param $at i32) (result i32) (i32.load8_u (local.get $at))))
`;

interface Guest {
  spin(n: number): void;
  forever(): void;
  down(n: number): number;
  fill(n: number): void;
  copy(n: number): void;
  peek(at: number): number;
  fuel: WebAssembly.Global;
}

type Refuel = (counter: bigint) => bigint;

function watToWasm(wat: string): Uint8Array<ArrayBuffer> {
  const module = binaryen.parseText(wat);
  try {
    module.setFeatures(
      binaryen.Features.MVP | binaryen.Features.BulkMemory | binaryen.Features.BulkMemoryOpt,
    );
    return Uint8Array.from(module.emitBinary());
  } finally {
    module.dispose();
  }
}

/** What a host that never hands out more fuel does: stop the guest. */
class OutOfFuel extends Error {}

const refuse: Refuel = (counter) => {
  throw new OutOfFuel(`counter ${counter}`);
};

/** A guest whose refuel calls go to whatever `host.refuel` is at the time. */
function instantiate(wasm: Uint8Array<ArrayBuffer>): { guest: Guest; host: { refuel: Refuel } } {
  const host = { refuel: refuse };
  const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
    capsule: { refuel: (counter: bigint) => host.refuel(counter) },
  });
  return { guest: instance.exports as unknown as Guest, host };
}

/** Fuel `run` spends starting from a full budget; throws what the guest threw. */
function fuelSpent(guest: Guest, run: () => void, budget = BUDGET): bigint {
  guest.fuel.value = budget;
  run();
  return budget - (guest.fuel.value as bigint);
}

/** A host that hands out `slice` at a time, counting what it granted. */
function slicer(slice: bigint) {
  const state = {
    granted: 0n,
    calls: 0,
    refuel: (counter: bigint): bigint => {
      state.calls++;
      let next = counter + slice;
      while (next < 0n) next += slice;
      state.granted += next - counter;
      return next;
    },
  };
  return state;
}

/** Fuel `run` spends when the counter starts at zero and every unit comes from `slice`s. */
function fuelSpentInSlices(
  instance: { guest: Guest; host: { refuel: Refuel } },
  slice: bigint,
  run: () => void,
) {
  const host = slicer(slice);
  instance.host.refuel = host.refuel;
  instance.guest.fuel.value = 0n;
  run();
  return {
    consumed: host.granted - (instance.guest.fuel.value as bigint),
    calls: host.calls,
  };
}

describe("instrumentFuel on small modules", () => {
  const source = watToWasm(GUEST_WAT);
  const optimised = instrumentFuel(binaryen, source, {}).wasm;
  const plain = instrumentFuel(binaryen, source, { optimize: false }).wasm;

  it("exports a mutable i64 global named fuel and imports capsule.refuel", () => {
    const module = new WebAssembly.Module(optimised);
    expect(WebAssembly.Module.exports(module)).toContainEqual({ name: "fuel", kind: "global" });
    expect(WebAssembly.Module.imports(module)).toContainEqual({
      module: REFUEL_IMPORT.module,
      name: REFUEL_IMPORT.name,
      kind: "function",
    });
    const { guest } = instantiate(optimised);
    expect(guest.fuel).toBeInstanceOf(WebAssembly.Global);
    expect(typeof guest.fuel.value).toBe("bigint");
    guest.fuel.value = 123n;
    expect(guest.fuel.value).toBe(123n);
  });

  it("adds no unreachable: checks call refuel instead", () => {
    const unreachables = (wasm: Uint8Array) => {
      const module = binaryen.readBinary(wasm);
      try {
        return module.emitText().split("unreachable").length - 1;
      } finally {
        module.dispose();
      }
    };
    expect(unreachables(plain)).toBe(unreachables(source));
    expect(unreachables(optimised)).toBeLessThanOrEqual(unreachables(source));
  });

  it("charges the same fuel every time, optimised or not", () => {
    const { guest } = instantiate(optimised);
    const first = fuelSpent(guest, () => guest.spin(1000));
    const second = fuelSpent(guest, () => guest.spin(1000));
    const fresh = instantiate(optimised).guest;
    expect(first).toBeGreaterThan(1000n);
    expect(second).toBe(first);
    expect(fuelSpent(fresh, () => fresh.spin(1000))).toBe(first);
    const unoptimised = instantiate(plain).guest;
    expect(fuelSpent(unoptimised, () => unoptimised.spin(1000))).toBe(first);
    expect(fuelSpent(unoptimised, () => unoptimised.down(50))).toBe(
      fuelSpent(guest, () => guest.down(50)),
    );
  });

  it("calls refuel exactly when the counter goes negative, after storing it in fuel", () => {
    const instance = instantiate(optimised);
    const { guest } = instance;
    const cost = fuelSpent(guest, () => guest.spin(500));
    expect(fuelSpent(guest, () => guest.spin(500), cost)).toBe(cost);
    expect(guest.fuel.value).toBe(0n);
    const seen: Array<{ counter: bigint; stored: bigint }> = [];
    instance.host.refuel = (counter) => {
      seen.push({ counter, stored: guest.fuel.value as bigint });
      return counter + 1_000_000n;
    };
    guest.fuel.value = cost - 1n;
    guest.spin(500);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.counter).toBeLessThan(0n);
    expect(seen[0]?.stored).toBe(seen[0]?.counter);
    expect(1_000_000n + cost - 1n - (guest.fuel.value as bigint)).toBe(cost);
  });

  it("charges the same total whatever the slice size", () => {
    const instance = instantiate(optimised);
    const { guest } = instance;
    for (const run of [
      () => guest.spin(20_000),
      () => guest.down(500),
      () => {
        guest.copy(50_000);
        guest.spin(1000);
      },
    ]) {
      const whole = fuelSpentInSlices(instance, 10n ** 12n, run);
      const sliced = fuelSpentInSlices(instance, 100n, run);
      expect(sliced.consumed).toBe(whole.consumed);
      expect(whole.calls).toBe(1);
      expect(sliced.calls).toBeGreaterThan(10);
    }
  });

  it("stops an endless loop and endless recursion with the host's own exception", () => {
    const instance = instantiate(optimised);
    const { guest } = instance;
    const stop = new OutOfFuel("budget used up");
    let calls = 0;
    instance.host.refuel = (counter) => {
      if (++calls > 3) throw stop;
      return counter + 10_000n;
    };
    guest.fuel.value = 10_000n;
    expect(() => guest.forever()).toThrow(stop);
    expect(calls).toBe(4);
    instance.host.refuel = refuse;
    expect(() => fuelSpent(guest, () => guest.down(1_000_000), 10_000n)).toThrow(OutOfFuel);
  });

  it("charges memory.fill and memory.copy per byte of their size", () => {
    const { guest } = instantiate(optimised);
    const fillBase = fuelSpent(guest, () => guest.fill(0));
    expect(fuelSpent(guest, () => guest.fill(10_000))).toBe(fillBase + 10_000n);
    const copyBase = fuelSpent(guest, () => guest.copy(0));
    expect(fuelSpent(guest, () => guest.copy(30_000))).toBe(copyBase + 30_000n);
  });

  it("asks for fuel for a bulk operation before doing it", () => {
    const { guest } = instantiate(optimised);
    expect(() => fuelSpent(guest, () => guest.fill(60_000), 1_000n)).toThrow(OutOfFuel);
    expect(guest.peek(0)).toBe(0);
  });

  it("sets the declared memory minimum and refuses one below the floor", () => {
    const { wasm, stats } = instrumentFuel(binaryen, source, { memoryMinPages: 3 });
    expect(stats.memoryMinPages).toBe(3);
    expect(stats.stack).toBeNull();
    expect(instantiate(wasm).guest.peek(0)).toBe(0);
    expect(() => instrumentFuel(binaryen, source, { memoryMinPages: 0 })).toThrow(
      /floor of 1 pages/,
    );
  });

  it("refuses a stack size that is not a multiple of 16", () => {
    expect(() => instrumentFuel(binaryen, source, { stackBytes: 1000 })).toThrow(/stackBytes 1000/);
  });
});

describe("instrumentFuel on the QuickJS engine", () => {
  const require = createRequire(import.meta.url);
  const input = readFileSync(require.resolve("@jitl/quickjs-wasmfile-release-sync/wasm"));
  let first: ReturnType<typeof instrumentFuel>;
  let engine: WebAssembly.Module;

  beforeAll(() => {
    first = instrumentFuel(binaryen, input, {});
    engine = new WebAssembly.Module(first.wasm);
  }, 180_000);

  /** A fresh engine in the smallest memory it accepts, capped like a `ram: "5MB"` task. */
  function fresh(refuel?: Refuel): Promise<QuickJSInstance> {
    return instantiateQuickJS(engine, {
      initialPages: first.stats.memoryFloorPages,
      maximumPages: 80,
      refuel,
    });
  }

  /** Evaluates `code` with the counter starting at zero, so every unit comes from refuel. */
  function runFromZero(instance: QuickJSInstance, code: string): bigint {
    const fuel = instance.fuel as WebAssembly.Global;
    const runtime = instance.quickjs.newRuntime();
    const context = runtime.newContext();
    const granted = instance.granted;
    fuel.value = 0n;
    let result: ReturnType<typeof context.evalCode>;
    let left = 0n;
    try {
      result = context.evalCode(code);
    } finally {
      // After a throw from refuel the instance is dropped, never disposed: its state is torn.
      left = fuel.value as bigint;
      fuel.value = UNLIMITED_FUEL;
    }
    const consumed = instance.granted - granted - left;
    context.unwrapResult(result).dispose();
    context.dispose();
    runtime.dispose();
    return consumed;
  }

  it("produces the same bytes every time", () => {
    const second = instrumentFuel(binaryen, input, {});
    expect(Buffer.from(second.wasm).equals(Buffer.from(first.wasm))).toBe(true);
  }, 180_000);

  it("still validates and compiles in this Node, with the stock imports plus refuel", () => {
    expect(WebAssembly.validate(first.wasm)).toBe(true);
    const stock = new WebAssembly.Module(input);
    // binaryen may reorder imports; the glue supplies them by name.
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect(WebAssembly.Module.imports(engine).sort(byName)).toEqual(
      [
        ...WebAssembly.Module.imports(stock),
        { module: "capsule", name: "refuel", kind: "function" },
      ].sort(byName),
    );
    expect(WebAssembly.Module.exports(engine).sort(byName)).toEqual(
      [...WebAssembly.Module.exports(stock), { name: "fuel", kind: "global" }].sort(byName),
    );
  });

  it("shrinks the C stack to 1 MiB and the memory floor with it", () => {
    const { memoryFloorPages, memoryMinPages, stack } = first.stats;
    // Stock: data up to 90,208, then a 5 MiB stack (floor 82 pages). Now the stack ends where it
    // did and the heap starts 1 MiB above.
    expect(stack).toEqual({
      top: 90_208 + DEFAULT_STACK_BYTES,
      end: 90_208,
      bytes: DEFAULT_STACK_BYTES,
      originalBytes: 5 * 1024 * 1024,
      rewrittenConstants: 1,
      rewrittenDataWords: 1,
    });
    expect(memoryFloorPages).toBe(18);
    expect(memoryMinPages).toBe(memoryFloorPages);
  });

  it("runs in a 5 MB memory: heap growth, deep recursion, static data intact", async () => {
    const instance = await fresh();
    expect(instance.memory.buffer.byteLength).toBe(first.stats.memoryFloorPages * 65536);
    const marker = Buffer.from("cannot mix ?? with && or ||");
    const at = Buffer.from(instance.memory.buffer).indexOf(marker);
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(first.stats.stack?.end ?? 0);

    const allocate =
      "const parts = []; for (let i = 0; i < 25; i++) parts.push('x'.repeat(100000) + i); parts.reduce((n, s) => n + s.length, 0)";
    expect(evalMetered(instance, allocate).result).toBe("2500040");
    expect(instance.memory.buffer.byteLength).toBeGreaterThan(3 * 1024 * 1024);
    const recurse = "function depth(n) { return n === 0 ? 0 : 1 + depth(n - 1); } depth(2000)";
    expect(evalMetered(instance, recurse).result).toBe("2000");
    expect(Buffer.from(instance.memory.buffer).indexOf(marker)).toBe(at);
    // A second workload in the same instance: the allocator's state below the heap is sound.
    expect(evalMetered(instance, allocate).result).toBe("2500040");
    expect(evalMetered(instance, "JSON.stringify({ a: [1, 2, 3] })").result).toBe(
      JSON.stringify('{"a":[1,2,3]}'),
    );
  });

  it("stops runaway recursion at QuickJS's limit, inside the stack", async () => {
    const instance = await fresh();
    const runtime = instance.quickjs.newRuntime();
    runtime.setMaxStackSize(256 * 1024);
    const context = runtime.newContext();
    const result = context.evalCode("function down(n) { return 1 + down(n + 1); } down(0)");
    expect(result.error && context.dump(result.error)).toMatchObject({
      name: "InternalError",
      message: "stack overflow",
    });
    result.error?.dispose();
    context.dispose();
    runtime.dispose();
    const { end = 0, top = 0 } = first.stats.stack ?? {};
    const memory = new Uint8Array(instance.memory.buffer);
    let lowest = end;
    while (lowest < top && memory[lowest] === 0) lowest++;
    expect(top - lowest).toBeLessThan(300 * 1024);
  });

  it("charges the same fuel whatever the slice size", async () => {
    const fib = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(20)";
    const builtins = "let n = 0; for (let i = 0; i < 200; i++) n += 'x'.repeat(1e5).length; n";
    for (const code of [fib, builtins]) {
      const whole = slicer(10n ** 12n);
      const sliced = slicer(100_000n);
      const consumedWhole = runFromZero(await fresh(whole.refuel), code);
      const consumedSliced = runFromZero(await fresh(sliced.refuel), code);
      expect(consumedSliced).toBe(consumedWhole);
      expect(whole.calls).toBe(1);
      expect(sliced.calls).toBeGreaterThan(100);
    }
  });

  it("lets the host stop the guest by throwing from refuel", async () => {
    const stop = new Error("deadline passed");
    let calls = 0;
    const instance = await fresh((counter) => {
      if (++calls > 5) throw stop;
      return counter + 100_000n;
    });
    let thrown: unknown;
    try {
      runFromZero(instance, "let n = 0; for (;;) n += 'x'.repeat(1e5).length;");
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBe(stop);
    expect(calls).toBe(6);
  });
});
