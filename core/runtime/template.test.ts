import { describe, expect, it } from "vitest";
import { contains, differingBytes, evaluate, freshEngine } from "../testing/sandbox-probes.ts";
import { bridgeFor, prepareSandbox, setUpSandbox } from "./prepared.ts";
import { recordTemplate, templateStatus } from "./template.ts";

const MB = 1024 * 1024;
const makers = { setUp: setUpSandbox, bridgeFor };

async function recordedEngine() {
  const engine = freshEngine();
  expect(await recordTemplate(engine, makers)).toBe(true);
  expect(templateStatus(engine)).toBe("ready");
  return engine;
}

describe("sandbox copies", () => {
  it("start as a sandbox set up from scratch does, byte for byte but Math.random's seed", async () => {
    const engine = await recordedEngine();
    const copy = await prepareSandbox(engine, 64 * MB, { copies: true });
    const fresh = await prepareSandbox(engine, 64 * MB);
    expect(copy.sandbox.addresses).toEqual(fresh.sandbox.addresses);
    expect(copy.sandbox.memory.buffer.byteLength).toBe(fresh.sandbox.memory.buffer.byteLength);
    const differ = differingBytes(copy.sandbox, fresh.sandbox);
    // Only the eight bytes of Math.random's state, inside the context, may differ.
    expect(differ.length).toBeLessThanOrEqual(8);
    const context = copy.sandbox.addresses.context;
    for (const offset of differ) {
      expect(offset).toBeGreaterThanOrEqual(context);
      expect(offset).toBeLessThan(context + 4096);
    }
  });

  it("spend exactly the fuel a sandbox set up from scratch spends", async () => {
    const engine = await recordedEngine();
    const workloads = [
      "1 + 1",
      `JSON.stringify(JSON.parse('{"a":[1,2,{"b":"c"}]}'))`,
      `[..."the quick brown fox"].sort().join("") + /o+/g.exec("foo")[0]`,
      `new URL("https://example.com/a/b?c=1#d").pathname + new TextEncoder().encode("héllo").length`,
      `console.log("a", { b: [1, 2] }); typeof Buffer`,
      `let s = 0; for (let i = 0; i < 20000; i++) s += i % 7; s`,
    ];
    for (const code of workloads) {
      const fromCopy = evaluate(await prepareSandbox(engine, 64 * MB, { copies: true }), code);
      const fromScratch = evaluate(await prepareSandbox(engine, 64 * MB), code);
      expect({ code, ...fromCopy }).toEqual({ code, ...fromScratch });
      expect(fromCopy.fuel).toBeGreaterThan(0);
    }
  });

  it("hold nothing of an earlier attempt: its secret, globals and fuel are gone", async () => {
    const engine = await recordedEngine();
    const secret = "capsule-secret-7f3a9c1e5b2d";
    const first = await prepareSandbox(engine, 64 * MB, { copies: true });
    const stashed = evaluate(
      first,
      `globalThis.leaked = ${JSON.stringify(secret)};
       Object.prototype.leakedToo = leaked;
       globalThis.kept = [leaked.repeat(1000), new TextEncoder().encode(leaked)];
       kept[0].length`,
    );
    expect(stashed.value).toBe(secret.length * 1000);
    const bytes = new TextEncoder().encode(secret);
    expect(contains(first.sandbox.memory, bytes)).toBe(true);

    const second = await prepareSandbox(engine, 64 * MB, { copies: true });
    expect(second.sandbox.memory).not.toBe(first.sandbox.memory);
    expect(contains(second.sandbox.memory, bytes)).toBe(false);
    const looked = evaluate(
      second,
      `[typeof globalThis.leaked, ({}).leakedToo === undefined, typeof globalThis.kept]`,
    );
    expect(looked.value).toEqual(["undefined", true, "undefined"]);
    // Its own fuel count from zero, the same as the first one's for the same code.
    const again = evaluate(await prepareSandbox(engine, 64 * MB, { copies: true }), "1 + 1");
    const fresh = evaluate(await prepareSandbox(engine, 64 * MB), "1 + 1");
    expect(again.fuel).toBe(fresh.fuel);
  });

  it("each draw their own Math.random sequence", async () => {
    const engine = await recordedEngine();
    const draws = new Set<unknown>();
    for (let i = 0; i < 5; i++) {
      const copy = await prepareSandbox(engine, 64 * MB, { copies: true });
      draws.add(JSON.stringify(evaluate(copy, "[Math.random(), Math.random()]").value));
    }
    expect(draws.size).toBe(5);
  });

  it("are not made for a cap a fresh sandbox would start smaller in; those are set up anew", async () => {
    const engine = await recordedEngine();
    const floor = engine.memoryFloorPages * 65536;
    // Below the floor plus the starting headroom, a fresh sandbox starts with all of its cap.
    const small = await prepareSandbox(engine, floor + MB, { copies: true });
    expect(small.sandbox.memory.buffer.byteLength).toBeLessThanOrEqual(floor + MB);
    expect(evaluate(small, "2 * 21").value).toBe(42);
    await expect(prepareSandbox(engine, floor - 65536, { copies: true })).rejects.toThrow(
      /below the engine's floor/,
    );
    expect(templateStatus(engine)).toBe("ready");
  });
});
