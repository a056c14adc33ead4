// The session images of a process are bounded together (Session.imageBudget): a hostile caller
// who fills session after session with state is refused once the budget is full, and the host
// holds no more than the budget.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "./paths.ts";
import { Session } from "./session.ts";
import { makeProject } from "./test/fixtures.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const MiB = 2 ** 20;
const budget = Session.imageBudget;
const project = makeProject();
const sessions: Session[] = [];
let defaultTotal = 0;

function open(options: ConstructorParameters<typeof Session>[1] = {}): Session {
  const session = new Session("javascript", { cwd: project.dir, ram: "64MB", ...options });
  sessions.push(session);
  return session;
}

beforeAll(() => {
  defaultTotal = budget.totalBytes;
  budget.totalBytes = 128 * MiB;
});

afterAll(async () => {
  for (const session of sessions) await session.close();
  budget.totalBytes = defaultTotal;
  project.cleanup();
});

describe("Session images of a process", () => {
  it("defaults to 1 GiB (a quarter of the machine's memory where less) for this process", () => {
    expect(defaultTotal).toBeLessThanOrEqual(2 ** 30);
    expect(defaultTotal).toBeGreaterThan(0);
    expect(budget.owner).toBe("this process");
  });

  it("refuses state past the budget clearly, keeps earlier sessions working, and frees on close", async () => {
    gc();
    const baseline = process.memoryUsage().rss;
    const outcomes: string[] = [];
    const many: Session[] = [];
    for (let i = 0; i < 10; i++) {
      const session = open();
      many.push(session);
      if (i < 5) await session.run(`var before = "kept ${i}"`);
      const big = await session.runCode(
        `const hoard = new Uint8Array(40e6).fill(${i + 1}); hoard.length`,
      );
      outcomes.push(big.success ? "kept" : `${big.error?.error_type}: ${big.error?.message}`);
      expect(budget.heldBytes).toBeLessThanOrEqual(budget.totalBytes);
    }
    // Three images of about 38 MiB fit in 128 MiB beside the small ones; the others are refused.
    expect(outcomes.slice(0, 3)).toEqual(["kept", "kept", "kept"]);
    for (const refusal of outcomes.slice(3)) {
      expect(refusal).toMatch(
        /^memory_exceeded: the session's state after this call was not kept: its state of (3[89]|4[01])(\.\d)? MiB does not fit in the 128 MiB the session images of this process may hold together: \d+ other sessions hold \d+(\.\d)? MiB of it\. The session keeps its state from before this call/,
      );
    }
    // A refused session still has its state from before; the kept ones have theirs.
    expect(await many[4]?.run("[before, typeof hoard].join()")).toBe("kept 4,undefined");
    expect(await many[0]?.run("[before, hoard[0], hoard.length].join()")).toBe("kept 0,1,40000000");
    expect(await many[2]?.run("hoard[39999999]")).toBe("3");
    // The process holds the budget, not ten images of 38 MiB (380 MiB): its resident memory grew
    // by about the budget (182 MiB measured; wasm memory is not counted in arrayBuffers).
    gc();
    const grown = process.memoryUsage().rss - baseline;
    expect(grown).toBeLessThan(budget.totalBytes + 128 * MiB);
    expect(budget.heldBytes).toBeGreaterThan(110 * MiB);
    // Closing a session gives its bytes back, and a refused one now fits.
    const held = budget.heldBytes;
    const freed = many[1]?.stateBytes ?? 0;
    await many[1]?.close();
    expect(held - budget.heldBytes).toBeGreaterThanOrEqual(freed);
    expect(await many[5]?.run("const hoard = new Uint8Array(40e6).fill(7); hoard[0]")).toBe("7");
    for (const session of many) await session.close();
    expect(budget.heldBytes).toBeLessThan(held - 110 * MiB);
  }, 120_000);

  it("counts a fork's shared image once, and charges it once it holds its own", async () => {
    const source = open();
    await source.run("const hoard = new Uint8Array(40e6).fill(9); hoard.length");
    const held = budget.heldBytes;
    const copies = [await source.fork(), await source.fork(), await source.fork()];
    sessions.push(...copies);
    expect(budget.heldBytes).toBe(held);
    expect(await copies[0]?.run("hoard[0]")).toBe("9");
    // Each copy that changes gets an image of its own, charged: two fit, the third is refused.
    const changed = [];
    for (const copy of copies)
      changed.push(await copy.runCode("hoard[0] = 1; globalThis.mine = 1"));
    expect(changed.map((envelope) => envelope.error?.error_type ?? "ok")).toEqual([
      "ok",
      "ok",
      "memory_exceeded",
    ]);
    expect(budget.heldBytes).toBeLessThanOrEqual(budget.totalBytes);
    // Every call that succeeds leaves a new image: the refused copy runs again once one is closed.
    expect((await copies[2]?.runCode("hoard[0]"))?.error?.error_type).toBe("memory_exceeded");
    await copies[0]?.close();
    expect(await copies[2]?.run("[hoard[0], typeof mine].join()")).toBe("9,undefined");
    for (const session of [source, ...copies]) await session.close();
  }, 120_000);

  it("refuses to read back a stored state that does not fit, until memory is freed", async () => {
    const store = join(project.dir, "stores", "hoard");
    const first = open({ store });
    await first.run("const hoard = new Uint8Array(30e6).fill(4); hoard.length");
    await first.close();
    const hogs = [open(), open(), open()];
    for (const hog of hogs) await hog.run("const held = new Uint8Array(40e6).fill(1); 0");
    const again = open({ store });
    const refused = await again.runCode("hoard[0]");
    expect(refused.error?.error_type).toBe("memory_exceeded");
    expect(refused.error?.message).toMatch(/^the session's saved state was not read back: /);
    await hogs[0]?.close();
    expect(await again.run("hoard[0]")).toBe("4");
    for (const session of [...hogs, again]) await session.close();
  }, 120_000);

  it("reset() gives the bytes back; a closed session cannot be forked", async () => {
    const session = open();
    const held = budget.heldBytes;
    await session.run("const hoard = new Uint8Array(20e6).fill(2); 0");
    expect(budget.heldBytes - held).toBeGreaterThan(19 * MiB);
    await session.reset();
    expect(budget.heldBytes).toBe(held);
    await session.close();
    await expect(session.fork()).rejects.toThrow(/the session is closed/);
  }, 60_000);

  it("refuses a bad budget, naming the value, from code and from CAPSULE_SESSION_MEMORY", () => {
    expect(() => {
      budget.totalBytes = -1;
    }).toThrow(/session image budget: -1 is not a positive number of bytes/);
    expect(budget.totalBytes).toBe(128 * MiB);
    const child = (value: string) =>
      spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `const { Session } = await import(${JSON.stringify(join(packageRoot, "dist", "node.mjs"))}); console.log(Session.imageBudget.totalBytes)`,
        ],
        { env: { PATH: process.env.PATH ?? "", CAPSULE_SESSION_MEMORY: value }, encoding: "utf8" },
      );
    const good = child("300MB");
    expect(good.stdout.trim(), good.stderr).toBe(String(300 * MiB));
    const bad = child("lots");
    expect(bad.status).not.toBe(0);
    expect(bad.stderr, bad.stderr).toMatch(/CAPSULE_SESSION_MEMORY: "lots" is not a valid size/);
  });
});
