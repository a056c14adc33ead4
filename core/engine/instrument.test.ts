import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import binaryen from "binaryen";
import { beforeAll, describe, expect, it } from "vitest";
import {
  evalMetered,
  instantiateQuickJS,
  type RefuelGlobals,
  UNLIMITED_FUEL,
} from "../../bench/quickjs-instance.ts";
import {
  DEFAULT_STACK_BYTES,
  emitFeatures,
  INTERPRETER_MIN_SWITCH_TARGETS,
  instrumentFuel,
  REFUEL_IMPORT,
} from "./instrument.ts";

const BUDGET = 1_000_000n;

/**
 * A bytecode interpreter in miniature: a dispatch loop over a br_table with `targets` cases, one
 * of which calls the built-in `spin`. Opcodes come from memory, one byte each, until a zero.
 */
function interpreterWat(targets: number): string {
  const labels = Array.from({ length: targets }, (_, i) => `$op${i}`);
  let cases = `(br_table ${labels.join(" ")} $done (i32.load8_u (local.get $pc)))`;
  for (const [i, label] of labels.entries()) {
    const work =
      i === 0
        ? "(br $done)"
        : i === 1
          ? "(call $spin (i32.const 200))"
          : `(local.set $acc (i32.add (local.get $acc) (i32.const ${i})))`;
    cases = `(block ${label} ${cases}) ${work} (br $next)`;
  }
  return `
  (func $interp (export "interp") (param $pc i32) (result i32) (local $acc i32)
    (block $done
      (loop $next
        (local.set $pc (i32.add (local.get $pc) (i32.const 1)))
        ${cases}))
    (local.get $acc))`;
}

const GUEST_WAT = `
(module
  (memory (export "memory") 1)
  ${interpreterWat(INTERPRETER_MIN_SWITCH_TARGETS + 1)}
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
  /** Runs the opcodes from byte `pc + 1` on until a zero; opcode 1 calls `spin(200)`. */
  interp(pc: number): number;
  memory?: WebAssembly.Memory;
  fuel: WebAssembly.Global;
  tick: WebAssembly.Global;
}

type Refuel = (counter: bigint) => bigint;

function watToWasm(wat: string, extraFeatures = 0): Uint8Array<ArrayBuffer> {
  const module = binaryen.parseText(wat);
  try {
    module.setFeatures(
      binaryen.Features.MVP |
        binaryen.Features.BulkMemory |
        binaryen.Features.BulkMemoryOpt |
        extraFeatures,
    );
    return Uint8Array.from(module.emitBinary());
  } finally {
    module.dispose();
  }
}

/** What a host does once the budget is spent: stop the guest. */
class OutOfFuel extends Error {}

/** What a host does at its deadline. */
class DeadlinePassed extends Error {}

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

/** Fuel `run` spends starting from a full budget, with refuel never due; throws what the guest threw. */
function fuelSpent(guest: Guest, run: () => void, budget = BUDGET): bigint {
  guest.fuel.value = budget;
  guest.tick.value = 0n;
  run();
  return budget - (guest.fuel.value as bigint);
}

/**
 * The host contract: the counter holds the whole budget, `tick` sits one slice below it, and
 * each refuel call stops the guest (budget spent, or `stopAfter` calls made, standing in for a
 * deadline) or moves `tick` a slice below the counter and returns the counter unchanged.
 */
function tickHost(tick: WebAssembly.Global, slice: bigint, stopAfter = Number.POSITIVE_INFINITY) {
  const state = {
    calls: 0,
    /** The counter each call saw. */
    counters: [] as bigint[],
    start(fuel: WebAssembly.Global, budget: bigint) {
      fuel.value = budget;
      tick.value = budget > slice ? budget - slice : 0n;
    },
    refuel: (counter: bigint): bigint => {
      state.calls++;
      state.counters.push(counter);
      if (counter < 0n) throw new OutOfFuel(`counter ${counter}`);
      if (state.calls > stopAfter) throw new DeadlinePassed(`after ${stopAfter} calls`);
      tick.value = counter > slice ? counter - slice : 0n;
      return counter;
    },
  };
  return state;
}

/** Runs `run` from `budget` under a tick host with `slice`; what it spent, or how it stopped. */
function runUnderTicks(
  instance: { guest: Guest; host: { refuel: Refuel } },
  slice: bigint,
  run: () => void,
  budget = 10n ** 12n,
) {
  const host = tickHost(instance.guest.tick, slice);
  instance.host.refuel = host.refuel;
  host.start(instance.guest.fuel, budget);
  let stop: unknown = null;
  try {
    run();
  } catch (error) {
    stop = error;
  }
  const left = instance.guest.fuel.value as bigint;
  return { consumed: budget - left, left, calls: host.calls, stop };
}

describe("instrumentFuel on small modules", () => {
  const source = watToWasm(GUEST_WAT);
  const built = instrumentFuel(binaryen, source, {});
  const optimised = built.wasm;
  const plain = instrumentFuel(binaryen, source, { optimize: false }).wasm;

  /** Writes opcodes after byte 0 (the interpreter starts at pc + 1), then a zero. */
  function program(guest: Guest, opcodes: number[]): void {
    const memory = new Uint8Array((guest.memory as WebAssembly.Memory).buffer);
    memory.set([0, ...opcodes, 0], 0);
  }

  it("exports mutable i64 globals fuel and tick and imports capsule.refuel", () => {
    const module = new WebAssembly.Module(optimised);
    expect(WebAssembly.Module.exports(module)).toContainEqual({ name: "fuel", kind: "global" });
    expect(WebAssembly.Module.exports(module)).toContainEqual({ name: "tick", kind: "global" });
    expect(WebAssembly.Module.imports(module)).toContainEqual({
      module: REFUEL_IMPORT.module,
      name: REFUEL_IMPORT.name,
      kind: "function",
    });
    const { guest } = instantiate(optimised);
    for (const global of [guest.fuel, guest.tick]) {
      expect(global).toBeInstanceOf(WebAssembly.Global);
      expect(typeof global.value).toBe("bigint");
      global.value = 123n;
      expect(global.value).toBe(123n);
    }
  });

  it("takes the biggest function with an opcode-sized br_table for the interpreter", () => {
    expect(built.stats.interpreter).toEqual({
      name: "0", // the first function; the name section is not kept
      cost: expect.any(Number),
      switchTargets: INTERPRETER_MIN_SWITCH_TARGETS + 1,
      candidates: 1,
    });
    // Its entry (it calls) and its loop check by trapping.
    expect(built.stats.trappingChecks).toBe(2);
    const smaller = watToWasm(
      `(module (memory (export "memory") 1) ${interpreterWat(INTERPRETER_MIN_SWITCH_TARGETS - 1)} (func $spin (param i32)))`,
    );
    const none = instrumentFuel(binaryen, smaller, {}).stats;
    expect(none.interpreter).toBeNull();
    expect(none.trappingChecks).toBe(0);
  });

  it("adds unreachable only to the interpreter's checks", () => {
    const unreachables = (wasm: Uint8Array) => {
      const module = binaryen.readBinary(wasm);
      try {
        return module.emitText().split("unreachable").length - 1;
      } finally {
        module.dispose();
      }
    };
    expect(unreachables(plain)).toBe(unreachables(source) + built.stats.trappingChecks);
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
    program(guest, [5, 1, 7, 1, 9]);
    program(unoptimised, [5, 1, 7, 1, 9]);
    expect(fuelSpent(unoptimised, () => unoptimised.interp(0))).toBe(
      fuelSpent(guest, () => guest.interp(0)),
    );
  });

  it("calls refuel once the counter is below tick, after storing it in fuel", () => {
    const instance = instantiate(optimised);
    const { guest } = instance;
    const cost = fuelSpent(guest, () => guest.spin(500));
    const seen: Array<{ counter: bigint; stored: bigint; tick: bigint }> = [];
    instance.host.refuel = (counter) => {
      seen.push({ counter, stored: guest.fuel.value as bigint, tick: guest.tick.value as bigint });
      guest.tick.value = 0n;
      return counter;
    };
    guest.fuel.value = BUDGET;
    guest.tick.value = BUDGET - cost / 2n;
    guest.spin(500);
    expect(seen).toHaveLength(1);
    const [call] = seen;
    expect(call?.counter).toBeLessThan(BUDGET - cost / 2n);
    expect(call?.counter).toBeGreaterThan(0n);
    expect(call?.stored).toBe(call?.counter);
    expect(BUDGET - (guest.fuel.value as bigint)).toBe(cost);
  });

  it("charges the same total and stops at the same fuel whatever the slice size", () => {
    for (const optimise of [optimised, plain]) {
      const instance = instantiate(optimise);
      const { guest } = instance;
      program(guest, [3, 1, 1, 4, 1, 5, 1, 9, 2, 6]);
      for (const run of [
        () => guest.spin(20_000),
        () => guest.down(500),
        () => {
          guest.copy(50_000);
          guest.spin(1000);
        },
        () => guest.interp(0),
      ]) {
        const whole = runUnderTicks(instance, 10n ** 15n, run);
        const sliced = runUnderTicks(instance, 100n, run);
        expect(whole.stop).toBeNull();
        expect(sliced.stop).toBeNull();
        expect(sliced.consumed).toBe(whole.consumed);
        expect(whole.calls).toBe(0);
        expect(sliced.calls).toBeGreaterThan(10);
        // Any budget short of the whole: the stop comes at the same point for every slice size.
        for (const budget of [whole.consumed / 3n, whole.consumed - 1n]) {
          const stopWhole = runUnderTicks(instance, 10n ** 15n, run, budget);
          const stopSliced = runUnderTicks(instance, 100n, run, budget);
          expect(stopWhole.left).toBeLessThan(0n);
          expect(stopSliced.left).toBe(stopWhole.left);
          expect(stopSliced.stop?.constructor).toBe(stopWhole.stop?.constructor);
        }
      }
    }
  });

  it("traps in the interpreter and throws from refuel elsewhere once the budget is spent", () => {
    const instance = instantiate(optimised);
    const { guest } = instance;
    // Opcodes that stay in the interpreter: it runs out there, at a trapping check.
    program(guest, new Array(5000).fill(7));
    const inInterpreter = runUnderTicks(instance, 100n, () => guest.interp(0), 2_000n);
    expect(inInterpreter.stop).toBeInstanceOf(WebAssembly.RuntimeError);
    expect(inInterpreter.left).toBeLessThan(0n);
    // Opcode 1 calls the built-in spin, which spends far more than the interpreter around it.
    program(guest, new Array(50).fill(1));
    const inBuiltin = runUnderTicks(instance, 10n ** 15n, () => guest.interp(0), 20_000n);
    expect(inBuiltin.stop).toBeInstanceOf(OutOfFuel);
    expect(inBuiltin.left).toBeLessThan(0n);
    expect(inBuiltin.calls).toBe(1);
    // The stop comes at the first check after the counter went negative: a few units over.
    expect(inBuiltin.left).toBeGreaterThan(-20n);
    expect(inInterpreter.left).toBeGreaterThan(-20n);
  });

  it("lets the host stop an endless loop and endless recursion by throwing", () => {
    const instance = instantiate(optimised);
    const { guest } = instance;
    const host = tickHost(guest.tick, 10_000n, 3);
    instance.host.refuel = host.refuel;
    host.start(guest.fuel, 10n ** 15n);
    expect(() => guest.forever()).toThrow(DeadlinePassed);
    expect(host.calls).toBe(4);
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

  it("calls refuel in the interpreter too when interpreterTraps is off", () => {
    const { wasm, stats } = instrumentFuel(binaryen, source, { interpreterTraps: false });
    expect(stats.interpreter).toBeNull();
    expect(stats.trappingChecks).toBe(0);
    expect(stats.entryChecks + stats.loopChecks).toBe(
      built.stats.entryChecks + built.stats.loopChecks,
    );
    const instance = instantiate(wasm);
    program(instance.guest, new Array(5000).fill(7));
    const stopped = runUnderTicks(instance, 100n, () => instance.guest.interp(0), 2_000n);
    expect(stopped.stop).toBeInstanceOf(OutOfFuel);
    // The same charges as with traps: only the way of stopping differs.
    const trapping = instantiate(optimised);
    program(trapping.guest, new Array(5000).fill(7));
    expect(stopped.left).toBe(
      runUnderTicks(trapping, 100n, () => trapping.guest.interp(0), 2_000n).left,
    );
  });
});

/**
 * Exceptions with the legacy instructions Pyodide is built with. Fuel counts below are worked
 * out by hand from the pass's rules: one unit per instruction (blocks are free), a region's cost
 * subtracted when it starts, a try body part of the region around it, each catch body a region.
 */
const EXCEPTIONS_WAT = `
(module
  (import "host" "fail" (func $fail))
  (memory (export "memory") 1)
  (tag $e (param i32))
  (tag $other)
  ;; 5 units, 7 when n is odd: then it throws $e carrying n. Small enough to be a leaf, but
  ;; a leaf's caller would not store the counter before calling it.
  (func $check (export "check") (param $n i32) (result i32)
    (if (i32.and (local.get $n) (i32.const 1))
      (then (throw $e (local.get $n))))
    (local.get $n))
  (func $raise (throw $other))
  ;; 3 + check + 3 in the catch: 8 for even n, 13 for odd n (then n + 100).
  (func (export "caught") (param $n i32) (result i32)
    (try (result i32)
      (do (call $check (local.get $n)))
      (catch $e (i32.add (pop i32) (i32.const 100)))
      (catch_all (i32.const -1))))
  ;; 3 + raise 1 + catch_all 1 = 5.
  (func (export "caughtAll") (result i32)
    (try (result i32)
      (do (call $raise) (i32.const 0))
      (catch $e (drop (pop i32)) (i32.const 1))
      (catch_all (i32.const -1))))
  ;; Thrown and caught in one function: 3 + 3 = 6 (2n).
  (func (export "local") (param $n i32) (result i32)
    (try (result i32)
      (do (throw $e (local.get $n)))
      (catch $e (i32.mul (pop i32) (i32.const 2)))))
  ;; 4 + check, and for odd n 3 in the inner catch (which rethrows) + 3 in the outer: 9 or 17.
  (func (export "rethrows") (param $n i32) (result i32)
    (try (result i32)
      (do
        (try $inner (result i32)
          (do (call $check (local.get $n)))
          (catch $e (drop (pop i32)) (rethrow $inner))))
      (catch $e (i32.add (pop i32) (i32.const 1000)))))
  ;; The innermost try hands its exception past the catch_all to the outer catch:
  ;; 5 + check, and for odd n 3 in the outer catch: 10 or 15 (then n - 1).
  (func (export "delegates") (param $n i32) (result i32)
    (try $outer (result i32)
      (do
        (try (result i32)
          (do
            (try (result i32)
              (do (call $check (local.get $n)))
              (delegate $outer)))
          (catch_all (i32.const -1))))
      (catch $e (i32.sub (pop i32) (i32.const 1)))))
  ;; A catch body that calls: it must not store the counter before reloading it.
  ;; 3 + check, and for odd n 4 + check(n + 1) = 5: 8 or 19 (then n + 1).
  (func (export "catchCalls") (param $n i32) (result i32)
    (try (result i32)
      (do (call $check (local.get $n)))
      (catch $e (call $check (i32.add (pop i32) (i32.const 1))))))
  ;; The host's exception lands in catch_all: 3 + 1 = 4.
  (func (export "hostThrow") (result i32)
    (try (result i32)
      (do (call $fail) (i32.const 0))
      (catch_all (i32.const 7))))
  ;; Throws and catches n times (at least once): entry 2, each pass 10 and its catch 4:
  ;; 2 + 14n, returning the sum of 0..n-1.
  (func (export "raiseLoop") (param $n i32) (result i32) (local $i i32) (local $sum i32)
    (loop $next
      (try
        (do (throw $e (local.get $i)))
        (catch $e (local.set $sum (i32.add (pop i32) (local.get $sum)))))
      (br_if $next
        (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))
    (local.get $sum))
  ;; Swallows every exception, the host's stop included, and goes round again.
  (func (export "swallowForever")
    (loop $again
      (try (do (loop $inner (br $inner))) (catch_all))
      (br $again))))
`;

interface ExceptionsGuest {
  check(n: number): number;
  caught(n: number): number;
  caughtAll(): number;
  local(n: number): number;
  rethrows(n: number): number;
  delegates(n: number): number;
  catchCalls(n: number): number;
  hostThrow(): number;
  raiseLoop(n: number): number;
  swallowForever(): void;
  fuel: WebAssembly.Global;
  tick: WebAssembly.Global;
}

describe("instrumentFuel on exception handling (try, catch, catch_all, delegate, throw, rethrow)", () => {
  const source = watToWasm(EXCEPTIONS_WAT, binaryen.Features.ExceptionHandling);
  const built = instrumentFuel(binaryen, source, {});
  const plain = instrumentFuel(binaryen, source, { optimize: false });

  function instantiateExceptions(wasm: Uint8Array<ArrayBuffer>) {
    const host = { refuel: refuse };
    const instance = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
      capsule: { refuel: (counter: bigint) => host.refuel(counter) },
      host: {
        fail: () => {
          throw new Error("host failure");
        },
      },
    });
    const guest = instance.exports as unknown as ExceptionsGuest;
    // fuelSpent and runUnderTicks only touch the counters.
    return { guest, host, counters: guest as unknown as Guest };
  }

  it("validates, optimised or not", () => {
    for (const { wasm } of [built, plain]) {
      expect(WebAssembly.validate(wasm)).toBe(true);
      const module = binaryen.readBinary(wasm);
      try {
        module.setFeatures(emitFeatures(binaryen));
        expect(module.validate()).toBeTruthy();
      } finally {
        module.dispose();
      }
    }
    // Every throw and rethrow stores the counter; every catch body is charged.
    expect(built.stats.flushedThrows).toBe(5);
    expect(built.stats.catchCharges).toBe(13);
    // $check and $raise would be leaves by size; a throw keeps them metered.
    expect(built.stats.leafFunctions).toBe(0);
  });

  it("charges exactly the work on each path, thrown or not, optimised or not", () => {
    for (const { wasm } of [built, plain]) {
      const { guest, counters } = instantiateExceptions(wasm);
      /** What `run` returns and the fuel it spent. */
      const measure = (run: () => number) => {
        let result = Number.NaN;
        const fuel = fuelSpent(counters, () => {
          result = run();
        });
        return { fuel: Number(fuel), result };
      };
      expect(measure(() => guest.check(4))).toEqual({ fuel: 5, result: 4 });
      expect(measure(() => guest.caught(4))).toEqual({ fuel: 8, result: 4 });
      expect(measure(() => guest.caught(5))).toEqual({ fuel: 13, result: 105 });
      expect(measure(() => guest.caughtAll())).toEqual({ fuel: 5, result: -1 });
      expect(measure(() => guest.local(21))).toEqual({ fuel: 6, result: 42 });
      expect(measure(() => guest.rethrows(4))).toEqual({ fuel: 9, result: 4 });
      expect(measure(() => guest.rethrows(5))).toEqual({ fuel: 17, result: 1005 });
      expect(measure(() => guest.delegates(4))).toEqual({ fuel: 10, result: 4 });
      expect(measure(() => guest.delegates(5))).toEqual({ fuel: 15, result: 4 });
      expect(measure(() => guest.catchCalls(4))).toEqual({ fuel: 8, result: 4 });
      expect(measure(() => guest.catchCalls(5))).toEqual({ fuel: 19, result: 6 });
      expect(measure(() => guest.hostThrow())).toEqual({ fuel: 4, result: 7 });
      expect(measure(() => guest.raiseLoop(1))).toEqual({ fuel: 2 + 14, result: 0 });
      expect(measure(() => guest.raiseLoop(10))).toEqual({ fuel: 2 + 14 * 10, result: 45 });
    }
  });

  it("stops a loop that throws at the budget, at the same point for any slice size", () => {
    for (const { wasm } of [built, plain]) {
      const instance = instantiateExceptions(wasm);
      const run = () => void instance.guest.raiseLoop(20_000);
      const whole = runUnderTicks(
        { guest: instance.counters, host: instance.host },
        10n ** 15n,
        run,
      );
      expect(whole.stop).toBeNull();
      expect(whole.consumed).toBe(2n + 14n * 20_000n);
      // The last pass's catch ends the run without a check after it: run out before that pass.
      for (const budget of [whole.consumed / 3n, whole.consumed - 16n]) {
        const stopWhole = runUnderTicks(
          { guest: instance.counters, host: instance.host },
          10n ** 15n,
          run,
          budget,
        );
        const stopSliced = runUnderTicks(
          { guest: instance.counters, host: instance.host },
          100n,
          run,
          budget,
        );
        expect(stopWhole.stop).toBeInstanceOf(OutOfFuel);
        expect(stopSliced.stop).toBeInstanceOf(OutOfFuel);
        expect(stopWhole.left).toBeLessThan(0n);
        expect(stopWhole.left).toBeGreaterThan(-20n);
        expect(stopSliced.left).toBe(stopWhole.left);
      }
    }
  });

  it("stops a guest whose catch_all swallows the host's throw at its next check", () => {
    const instance = instantiateExceptions(built.wasm);
    const counters = { guest: instance.counters, host: instance.host };
    const exhausted = runUnderTicks(
      counters,
      10n ** 15n,
      () => instance.guest.swallowForever(),
      5_000n,
    );
    expect(exhausted.stop).toBeInstanceOf(OutOfFuel);
    // The inner loop's refuel threw into the catch_all; the outer loop's check threw again.
    expect(exhausted.calls).toBe(2);
    expect(exhausted.left).toBeLessThan(0n);
    expect(exhausted.left).toBeGreaterThan(-20n);
    // A deadline: the host keeps refusing once it has refused.
    const host = tickHost(instance.guest.tick, 1_000n, 3);
    instance.host.refuel = host.refuel;
    host.start(instance.guest.fuel, 10n ** 15n);
    expect(() => instance.guest.swallowForever()).toThrow(DeadlinePassed);
    expect(host.calls).toBe(5);
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
  function fresh(refuel?: (counter: bigint, globals: RefuelGlobals) => bigint) {
    return instantiateQuickJS(engine, {
      initialPages: first.stats.memoryFloorPages,
      maximumPages: 80,
      refuel,
    });
  }

  /**
   * Evaluates `code` as a sandbox host would (`tickHost`): the counter starts at `budget` and
   * `tick` a slice below. Returns the fuel spent, the refuel calls and what stopped the guest.
   */
  async function runMetered(code: string, slice: bigint, budget = 10n ** 15n, stopAfter?: number) {
    let host: ReturnType<typeof tickHost> | undefined;
    const instance = await fresh((counter) =>
      (host as ReturnType<typeof tickHost>).refuel(counter),
    );
    const fuel = instance.fuel as WebAssembly.Global;
    const tick = instance.tick as WebAssembly.Global;
    host = tickHost(tick, slice, stopAfter);
    const runtime = instance.quickjs.newRuntime();
    const context = runtime.newContext();
    host.start(fuel, budget);
    let stop: unknown = null;
    let left = 0n;
    try {
      context.unwrapResult(context.evalCode(code)).dispose();
    } catch (error) {
      // After a stop the instance is dropped, never disposed: its state is torn.
      stop = error;
    } finally {
      left = fuel.value as bigint;
      fuel.value = UNLIMITED_FUEL;
      tick.value = 0n;
    }
    if (stop === null) {
      context.dispose();
      runtime.dispose();
    }
    return { consumed: budget - left, left, calls: host.calls, stop, instance };
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
      [
        ...WebAssembly.Module.exports(stock),
        { name: "fuel", kind: "global" },
        { name: "tick", kind: "global" },
      ].sort(byName),
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

  it("finds one interpreter: QuickJS's bytecode dispatch", () => {
    // A QuickJS upgrade that splits or renames the dispatch fails here, not silently slower.
    const { interpreter } = first.stats;
    expect(interpreter?.candidates).toBe(1);
    expect(interpreter?.switchTargets).toBeGreaterThanOrEqual(INTERPRETER_MIN_SWITCH_TARGETS);
    expect(interpreter?.switchTargets).toBeLessThan(300);
    expect(interpreter?.cost).toBeGreaterThan(10_000);
    expect(first.stats.trappingChecks).toBeGreaterThan(10);
    expect(first.stats.trappingChecks).toBeLessThan(100);
  });

  const fib = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(20)";
  const builtins =
    "let s = ''; for (let i = 0; i < 200; i++) s = 'x'.repeat(1e5).slice(1); s.length";

  it("charges the same fuel whatever the slice size", async () => {
    for (const code of [fib, builtins]) {
      const whole = await runMetered(code, 10n ** 18n);
      const sliced = await runMetered(code, 100_000n);
      expect(whole.stop).toBeNull();
      expect(sliced.stop).toBeNull();
      expect(sliced.consumed).toBe(whole.consumed);
      expect(whole.calls).toBe(0);
      expect(sliced.calls).toBeGreaterThan(10);
    }
  });

  it("calls refuel about once a slice while a loop runs inside built-ins", async () => {
    const slice = 1_000_000n;
    const { consumed, calls } = await runMetered(builtins, slice);
    const slices = Number(consumed / slice);
    expect(slices).toBeGreaterThan(100);
    expect(calls).toBeGreaterThan(slices * 0.9);
    expect(calls).toBeLessThanOrEqual(slices + 1);
  });

  it("stops at the same fuel in the interpreter (a trap) and in built-ins (refuel throws)", async () => {
    const cases = [
      { code: "for (;;) {}", stop: WebAssembly.RuntimeError },
      { code: "let s = ''; for (;;) s = 'x'.repeat(1e5).slice(1);", stop: OutOfFuel },
    ];
    for (const { code, stop } of cases) {
      const whole = await runMetered(code, 10n ** 18n, 30_000_000n);
      const sliced = await runMetered(code, 100_000n, 30_000_000n);
      expect(whole.stop).toBeInstanceOf(stop);
      expect(sliced.stop).toBeInstanceOf(stop);
      expect(whole.left).toBeLessThan(0n);
      expect(sliced.left).toBe(whole.left);
    }
  });

  it("lets the host stop the guest by throwing from refuel", async () => {
    const { stop, calls } = await runMetered(
      "let n = 0; for (;;) n += 'x'.repeat(1e5).length;",
      100_000n,
      10n ** 15n,
      5,
    );
    expect(stop).toBeInstanceOf(DeadlinePassed);
    expect(calls).toBe(6);
  });
});
