import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import binaryen from "binaryen";
import { beforeAll, describe, expect, it } from "vitest";
import { instrumentFuel } from "./instrument.ts";

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

function instantiate(wasm: Uint8Array<ArrayBuffer>): Guest {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm));
  return instance.exports as unknown as Guest;
}

/** Fuel `run` spends starting from a full budget; throws what the guest threw. */
function fuelSpent(guest: Guest, run: () => void, budget = BUDGET): bigint {
  guest.fuel.value = budget;
  run();
  return budget - (guest.fuel.value as bigint);
}

describe("instrumentFuel on small modules", () => {
  const source = watToWasm(GUEST_WAT);
  const optimised = instrumentFuel(binaryen, source, {}).wasm;
  const plain = instrumentFuel(binaryen, source, { optimize: false }).wasm;

  it("exports a mutable i64 global named fuel", () => {
    const exports = WebAssembly.Module.exports(new WebAssembly.Module(optimised));
    expect(exports).toContainEqual({ name: "fuel", kind: "global" });
    const guest = instantiate(optimised);
    expect(guest.fuel).toBeInstanceOf(WebAssembly.Global);
    expect(typeof guest.fuel.value).toBe("bigint");
    guest.fuel.value = 123n;
    expect(guest.fuel.value).toBe(123n);
  });

  it("charges the same fuel every time, optimised or not", () => {
    const guest = instantiate(optimised);
    const first = fuelSpent(guest, () => guest.spin(1000));
    const second = fuelSpent(guest, () => guest.spin(1000));
    const fresh = instantiate(optimised);
    expect(first).toBeGreaterThan(1000n);
    expect(second).toBe(first);
    expect(fuelSpent(fresh, () => fresh.spin(1000))).toBe(first);
    const unoptimised = instantiate(plain);
    expect(fuelSpent(unoptimised, () => unoptimised.spin(1000))).toBe(first);
    expect(fuelSpent(unoptimised, () => unoptimised.down(50))).toBe(
      fuelSpent(guest, () => guest.down(50)),
    );
  });

  it("traps a loop exactly when fuel runs out, and not before", () => {
    const guest = instantiate(optimised);
    const cost = fuelSpent(guest, () => guest.spin(500));
    expect(fuelSpent(guest, () => guest.spin(500), cost)).toBe(cost);
    expect(guest.fuel.value).toBe(0n);
    expect(() => fuelSpent(guest, () => guest.spin(500), cost - 1n)).toThrow(
      WebAssembly.RuntimeError,
    );
    // The counter is stored before the trap, so the host can tell why the guest stopped.
    expect(guest.fuel.value as bigint).toBeLessThan(0n);
  });

  it("stops an endless loop and endless recursion", () => {
    const guest = instantiate(optimised);
    expect(() => fuelSpent(guest, () => guest.forever(), 10_000n)).toThrow(/unreachable/);
    expect(() => fuelSpent(guest, () => guest.down(1_000_000), 10_000n)).toThrow(/unreachable/);
  });

  it("charges memory.fill and memory.copy per byte of their size", () => {
    const guest = instantiate(optimised);
    const fillBase = fuelSpent(guest, () => guest.fill(0));
    expect(fuelSpent(guest, () => guest.fill(10_000))).toBe(fillBase + 10_000n);
    const copyBase = fuelSpent(guest, () => guest.copy(0));
    expect(fuelSpent(guest, () => guest.copy(30_000))).toBe(copyBase + 30_000n);
  });

  it("refuses a bulk operation it cannot pay for before doing it", () => {
    const guest = instantiate(optimised);
    expect(() => fuelSpent(guest, () => guest.fill(60_000), 1_000n)).toThrow(/unreachable/);
    expect(guest.peek(0)).toBe(0);
  });

  it("sets the declared memory minimum and refuses one below the floor", () => {
    const { wasm, stats } = instrumentFuel(binaryen, source, { memoryMinPages: 3 });
    expect(stats.memoryMinPages).toBe(3);
    const memory = new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports;
    expect(memory).toBeDefined();
    expect(() => instrumentFuel(binaryen, source, { memoryMinPages: 0 })).toThrow(
      /floor of 1 pages/,
    );
  });
});

describe("instrumentFuel on the QuickJS engine", () => {
  const require = createRequire(import.meta.url);
  const input = readFileSync(require.resolve("@jitl/quickjs-wasmfile-release-sync/wasm"));
  let first: ReturnType<typeof instrumentFuel>;

  beforeAll(() => {
    first = instrumentFuel(binaryen, input, {});
  }, 180_000);

  it("produces the same bytes every time", () => {
    const second = instrumentFuel(binaryen, input, {});
    expect(Buffer.from(second.wasm).equals(Buffer.from(first.wasm))).toBe(true);
  }, 180_000);

  it("still validates and compiles in this Node, with the stock imports plus fuel", () => {
    expect(WebAssembly.validate(first.wasm)).toBe(true);
    const metered = new WebAssembly.Module(first.wasm);
    const stock = new WebAssembly.Module(input);
    // binaryen may reorder imports; the glue supplies them by name.
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect(WebAssembly.Module.imports(metered).sort(byName)).toEqual(
      WebAssembly.Module.imports(stock).sort(byName),
    );
    expect(WebAssembly.Module.exports(metered).sort(byName)).toEqual(
      [...WebAssembly.Module.exports(stock), { name: "fuel", kind: "global" }].sort(byName),
    );
  });

  it("lowers the imported memory's minimum to the floor of static data plus stack", () => {
    const { memoryFloorPages, memoryMinPages } = first.stats;
    // The stack pointer starts at 5,333,088 in this build: data, then a 5 MiB stack.
    expect(memoryFloorPages).toBe(82);
    expect(memoryMinPages).toBe(memoryFloorPages);
    const metered = new WebAssembly.Module(first.wasm);
    const imports = {
      a: Object.fromEntries(
        WebAssembly.Module.imports(metered).map(({ name, kind }) => [
          name,
          kind === "memory"
            ? new WebAssembly.Memory({ initial: memoryFloorPages, maximum: 100 })
            : () => 0,
        ]),
      ),
    };
    expect(() => new WebAssembly.Instance(metered, imports)).not.toThrow();
  });
});
