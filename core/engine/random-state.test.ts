import { afterEach, describe, expect, it, vi } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import { mathRandomOffset } from "./random-state.ts";
import { Sandbox } from "./sandbox.ts";

const engine = loadEngine();
const MB = 1024 * 1024;

function draw(sandbox: Sandbox, code: string): unknown {
  sandbox.lease({ fuel: 1e9, clock: { now: () => Date.now() }, shouldInterrupt: () => false });
  const handle = sandbox.context.unwrapResult(
    sandbox.metered(() => sandbox.context.evalCode(code)),
  );
  const value = sandbox.context.dump(handle);
  handle.dispose();
  return value;
}

/** QuickJS's Math.random() from this state: one step of xorshift64*, as a double in [0, 1). */
function firstRandom(state: bigint): number {
  const mask = (1n << 64n) - 1n;
  let x = state;
  x ^= x >> 12n;
  x = (x ^ (x << 25n)) & mask;
  x ^= x >> 27n;
  const bits = (0x3ffn << 52n) | (((x * 0x2545f4914f6cdd1dn) & mask) >> 12n);
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, bits, true);
  return view.getFloat64(0, true) - 1;
}

describe("Math.random's seed", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("is found where QuickJS keeps Math.random's state", async () => {
    const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
    const offset = mathRandomOffset(engine);
    expect(offset).not.toBeNull();
    const known = 0x0123456789abcdefn;
    new DataView(sandbox.memory.buffer).setBigUint64(
      sandbox.addresses.context + (offset as number),
      known,
      true,
    );
    expect(draw(sandbox, "Math.random()")).toBe(firstRandom(known));
  });

  it("differs between sandboxes made while the clock stands still, as on Workers", async () => {
    vi.spyOn(Date, "now").mockReturnValue(1_750_000_000_000);
    const sequences = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const sandbox = await Sandbox.create({ engine, memoryBytes: 64 * MB });
      sequences.add(JSON.stringify(draw(sandbox, "[Math.random(), Math.random()]")));
    }
    expect(sequences.size).toBe(4);
  });
});
