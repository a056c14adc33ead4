// The gate with V8's own collector and FinalizationRegistry: real collections, no stand-ins.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { gateFinalizers } from "./finalizer-gate.ts";

setFlagsFromString("--expose-gc");
const collect = runInNewContext("gc") as () => void;

/** Collects until the registry's callbacks had their turns (V8 runs them as tasks). */
async function settle() {
  for (let round = 0; round < 4; round++) {
    collect();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** A realm's registry under a gate, and `drop(n)`: registers n objects and lets them go. */
function gatedRealm() {
  const scope: { FinalizationRegistry?: unknown } = { FinalizationRegistry };
  const gate = gateFinalizers(scope);
  const Registry = scope.FinalizationRegistry as typeof FinalizationRegistry;
  const finalized: string[] = [];
  const registry = new Registry<string>((held) => finalized.push(held));
  const drop = (label: string, count = 8) => {
    for (let i = 0; i < count; i++) registry.register({ payload: new Array(64) }, `${label}${i}`);
  };
  return { gate, finalized, drop, registry };
}

describe("gateFinalizers", () => {
  it("finalizes as usual while open", async () => {
    const realm = gatedRealm();
    realm.drop("open");
    await settle();
    expect(realm.finalized.filter((held) => held.startsWith("open")).length).toBeGreaterThan(0);
  });

  it("stop drops every finalization from then on, whenever it was registered", async () => {
    const realm = gatedRealm();
    realm.drop("before");
    realm.gate.stop();
    realm.drop("after");
    await settle();
    expect(realm.finalized).toEqual([]);
  });
});
