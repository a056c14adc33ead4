import { test } from "vitest";
import { guestSources, installHost, quickJSModule } from "./test-context.ts";

test("measure", async () => {
  const [module, sources] = await Promise.all([quickJSModule(), guestSources()]);
  const variants: Record<string, string> = {
    full: sources.prelude,
    compileOnly: `(function(){${sources.prelude}})`,
    tiny: `(()=>{"use strict";return {}})()`,
  };
  for (const [label, code] of Object.entries(variants)) {
    const times: number[] = [];
    for (let i = 0; i < 220; i++) {
      const vm = module.newContext();
      installHost(vm, sources, { start: 0, log() {}, setTimer() {}, clearTimer() {}, callTask: () => vm.undefined });
      const t1 = performance.now();
      const r = vm.evalCode(code);
      const t2 = performance.now();
      vm.unwrapResult(r).dispose(); vm.dispose();
      if (i >= 20) times.push(t2 - t1);
    }
    times.sort((a, b) => a - b);
    console.log(label, code.length, "median ms", times[100].toFixed(3), "p10", times[20].toFixed(3));
  }
});
