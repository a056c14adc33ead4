import { expect } from "vitest";
import { loadEngine } from "../../adapters/node/engine.ts";
import { engineFromModule } from "../engine/engine.ts";
import type { Sandbox } from "../engine/sandbox.ts";
import type { GuestHost, PreparedSandbox } from "../runtime/prepared.ts";

/**
 * Probes for tests that compare sandboxes' memories: what one attempt left behind and what the
 * next one can see. Shared by the template (copies) and memory-shelf (reuse) tests.
 */

/** An engine object of its own: templates and kept memories are per engine. */
export function freshEngine() {
  const shared = loadEngine();
  return engineFromModule(shared.module, shared.memoryFloorPages, shared.stackBytes);
}

/** A host that answers the guest's set-up calls and keeps its console lines. */
export const quietHost = (lines: string[] = []): GuestHost =>
  ({
    log: (_level: string, text: string) => lines.push(text),
    monotonic: () => 0,
    setTimer: () => {},
    clearTimer: () => {},
    processInfo: () => JSON.stringify({ env: {}, cwd: "/" }),
  }) as unknown as GuestHost;

/** Runs guest code as a prepared sandbox's one attempt: its value and the fuel it cost. */
export function evaluate(prepared: PreparedSandbox, code: string, lines: string[] = []) {
  const { sandbox } = prepared;
  prepared.setTenant(quietHost(lines));
  sandbox.lease({ fuel: 1e10, clock: { now: () => 0 }, shouldInterrupt: () => false });
  const handle = sandbox.metered(() =>
    sandbox.context.unwrapResult(sandbox.context.evalCode(code)),
  );
  const value = sandbox.context.dump(handle);
  handle.dispose();
  return { value, fuel: sandbox.fuelConsumed };
}

/** Whether a memory holds the bytes anywhere. */
export function contains(memory: WebAssembly.Memory, needle: Uint8Array): boolean {
  const haystack = new Uint8Array(memory.buffer);
  const first = needle[0] as number;
  for (let at = haystack.indexOf(first); at !== -1; at = haystack.indexOf(first, at + 1)) {
    if (needle.every((byte, i) => haystack[at + i] === byte)) return true;
  }
  return false;
}

/** Offsets where two sandboxes' memories differ. */
export function differingBytes(a: Sandbox, b: Sandbox): number[] {
  const left = new Uint8Array(a.memory.buffer);
  const right = new Uint8Array(b.memory.buffer);
  expect(left.byteLength).toBe(right.byteLength);
  const offsets: number[] = [];
  for (let i = 0; i < left.byteLength; i++) if (left[i] !== right[i]) offsets.push(i);
  return offsets;
}
