import { afterEach, describe, expect, it, vi } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import { compileTaskModule } from "../compile/task-module.ts";
import { memoryShelf } from "../engine/memory-shelf.ts";
import { MAX_FUEL_PER_TIMEOUT_MS } from "./attempt.ts";
import { runTreeInProcess } from "./run-in-process.ts";
import { DEFAULT_SETTINGS } from "./settings.ts";

async function runJs(source: string) {
  return runTreeInProcess({
    engine: loadEngine(),
    bundle: await compileTaskModule(source, "js", {
      sourceName: "<task>.js",
      loadSucrase: () => import("sucrase"),
    }),
    taskName: "main",
    argsJson: "[]",
    settings: DEFAULT_SETTINGS,
  });
}

describe("timeouts where the clock stands still", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("stops a busy loop by its work when Date.now() does not advance, as in a Worker", async () => {
    // Cloudflare Workers freeze Date.now() during synchronous code; so does this test.
    const frozen = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(frozen);
    const envelope = await runJs(
      'import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "main", compute: "HIGH", timeout: "20ms" }, () => { for (;;) {} });',
    );
    expect(envelope.error?.error_type).toBe("timeout");
    const bound = 20 * MAX_FUEL_PER_TIMEOUT_MS;
    expect(envelope.execution.fuel_consumed).toBeGreaterThan(bound);
    // Stopped within one fuel slice (24M) of the bound, long before HIGH's 5e10.
    expect(envelope.execution.fuel_consumed).toBeLessThan(bound + 50_000_000);
  });

  it("leaves a task that finishes under the bound alone", async () => {
    vi.spyOn(Date, "now").mockReturnValue(Date.now());
    const envelope = await runJs(
      'import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "main", timeout: "20ms" }, () => { let s = 0; for (let i = 0; i < 1e5; i++) s += i; return s; });',
    );
    expect(envelope.error).toBe(null);
    expect(envelope.result).toBe(4999950000);
  });
});

describe("an ended attempt's memory", () => {
  afterEach(() => memoryShelf.clear());

  async function hello(preparedSandboxes: number) {
    return runTreeInProcess({
      engine: loadEngine(),
      bundle: await compileTaskModule(
        'import { task } from "@capsule-run/sdk";\nexport const main = task({ name: "main" }, () => "hi");',
        "js",
        { sourceName: "<task>.js", loadSucrase: () => import("sucrase") },
      ),
      taskName: "main",
      argsJson: "[]",
      settings: { ...DEFAULT_SETTINGS, preparedSandboxes },
    });
  }

  it("is kept for the next sandbox where sandboxes are prepared ahead, given back where not", async () => {
    // Counted as kept, not as on the shelf now: the reserve's refill may take it at once.
    const before = memoryShelf.keptSoFar;
    expect((await hello(0)).result).toBe("hi");
    expect(memoryShelf.keptSoFar).toBe(before);
    expect((await hello(2)).result).toBe("hi");
    expect(memoryShelf.keptSoFar).toBe(before + 1);
  });
});
