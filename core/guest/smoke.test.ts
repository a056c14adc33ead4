import { test } from "vitest";
import { guestSources, installHost, quickJSModule } from "./test-context.ts";

test("measure", async () => {
  const [module, sources] = await Promise.all([quickJSModule(), guestSources()]);
  const times: number[] = [];
  for (let i = 0; i < 220; i++) {
    const vm = module.newContext();
    installHost(vm, sources, { start: 0, log() {}, setTimer() {}, clearTimer() {}, callTask: () => vm.undefined });
    const t1 = performance.now();
    const r = vm.evalCode(sources.prelude);
    const t2 = performance.now();
    vm.unwrapResult(r).dispose(); vm.dispose();
    if (i >= 20) times.push(t2 - t1);
  }
  times.sort((a, b) => a - b);
  console.log("prelude bytes", sources.prelude.length, "median ms", times[100], "p10", times[20], "p90", times[180]);
});
