import { afterEach, describe, expect, it } from "vitest";
import { InternalError } from "../errors.ts";
import { bridgeFor, prepareSandbox, setUpSandbox } from "../runtime/prepared.ts";
import { recordTemplate } from "../runtime/template.ts";
import { contains, differingBytes, evaluate, freshEngine } from "../testing/sandbox-probes.ts";
import { FencedSandboxError, memoryShelf } from "./memory-shelf.ts";

const MB = 1024 * 1024;
const ENDED = new InternalError("ended");

/** A tenant that leaves a secret all over its memory (strings, typed arrays, a big object). */
const SECRET = "s3cr3t-of-the-earlier-tenant";
const LEAVE_SECRET = `
  globalThis.kept = Array.from({ length: 2000 }, (_, i) => ${JSON.stringify(SECRET)} + i);
  globalThis.bytes = new TextEncoder().encode(${JSON.stringify(SECRET)}.repeat(100));
  Object.prototype.poisoned = ${JSON.stringify(SECRET)};
  kept.length`;

afterEach(() => memoryShelf.clear());

describe.each([
  ["set up from scratch", false],
  ["copies of the recorded sandbox", true],
])("memory reuse, sandboxes %s", (_name, copies) => {
  async function engineFor() {
    const engine = freshEngine();
    if (copies) expect(await recordTemplate(engine, { setUp: setUpSandbox, bridgeFor })).toBe(true);
    return engine;
  }

  it("gives the next sandbox a memory with nothing of the last tenant: bytes, globals, fuel", async () => {
    const engine = await engineFor();
    memoryShelf.clear();
    const first = await prepareSandbox(engine, 64 * MB, { copies });
    expect(evaluate(first, LEAVE_SECRET).value).toBe(2000);
    const secret = new TextEncoder().encode(SECRET);
    expect(contains(first.sandbox.memory, secret)).toBe(true);
    first.sandbox.retire(ENDED);
    expect(memoryShelf.size).toBe(1);

    const reused = await prepareSandbox(engine, 64 * MB, { copies });
    // It is the same memory (so this test is about reuse), and the shelf gave it away.
    expect(reused.sandbox.memory).toBe(first.sandbox.memory);
    expect(memoryShelf.size).toBe(0);
    const fresh = await prepareSandbox(engine, 64 * MB, { copies });
    expect(fresh.sandbox.memory).not.toBe(first.sandbox.memory);

    expect(contains(reused.sandbox.memory, secret)).toBe(false);
    // Byte for byte a new memory's, but for Math.random's eight bytes (each sandbox its seed).
    expect(differingBytes(reused.sandbox, fresh.sandbox).length).toBeLessThanOrEqual(8);
    // Globals, prototypes and the fuel counter are the new instance's: the same code costs the
    // same fuel in both, and sees nothing the last tenant defined.
    const probe = `JSON.stringify([typeof kept, typeof bytes, ({}).poisoned,
      [..."capsule"].sort().join(""), new URL("https://a.b/c?d").search])`;
    const inReused = evaluate(reused, probe);
    const inFresh = evaluate(fresh, probe);
    expect(inReused.value).toBe(JSON.stringify(["undefined", "undefined", null, "acelpsu", "?d"]));
    expect(inReused).toEqual(inFresh);
  });

  it("fences the ended sandbox: a late call into its engine throws and writes nothing", async () => {
    const engine = await engineFor();
    memoryShelf.clear();
    const first = await prepareSandbox(engine, 64 * MB, { copies });
    evaluate(first, "1");
    const { context } = first.sandbox;
    const late = context.newString("held past the end");
    first.sandbox.retire(ENDED);
    const next = await prepareSandbox(engine, 64 * MB, { copies });
    expect(next.sandbox.memory).toBe(first.sandbox.memory);
    const before = Buffer.from(next.sandbox.memory.buffer.slice(0));
    expect(() => late.dispose()).toThrow(FencedSandboxError);
    expect(() => context.newString("written late")).toThrow(FencedSandboxError);
    expect(() => context.evalCode("1 + 1")).toThrow(FencedSandboxError);
    expect(Buffer.from(next.sandbox.memory.buffer).equals(before)).toBe(true);
    // The new tenant's engine is not fenced.
    expect(evaluate(next, "6 * 7").value).toBe(42);
  });

  it("keeps no memory that grew, that someone else reads, or past its capacity", async () => {
    const engine = await engineFor();
    memoryShelf.clear();
    const grown = await prepareSandbox(engine, 64 * MB, { copies });
    evaluate(grown, "globalThis.big = new Uint8Array(8 * 1024 * 1024).fill(7); big.length");
    grown.sandbox.retire(ENDED);
    expect(memoryShelf.size).toBe(0);

    const lent = await prepareSandbox(engine, 64 * MB, { copies });
    evaluate(lent, "1");
    const image = lent.sandbox.memoryImage();
    lent.sandbox.retire(ENDED);
    expect(memoryShelf.size).toBe(0);
    expect(image.byteLength).toBeGreaterThan(0);

    const many = await Promise.all(
      Array.from({ length: 6 }, () => prepareSandbox(engine, 64 * MB, { copies })),
    );
    for (const prepared of many) prepared.sandbox.retire(ENDED);
    expect(memoryShelf.size).toBe(4);
    // A memory is shelved once, however often its sandbox is retired.
    many[5]?.sandbox.retire(ENDED);
    expect(memoryShelf.size).toBe(4);
    // Another cap takes none of them.
    const other = await prepareSandbox(engine, 32 * MB, { copies });
    expect(many.some((p) => p.sandbox.memory === other.sandbox.memory)).toBe(false);
    expect(memoryShelf.size).toBe(4);
  });
});
