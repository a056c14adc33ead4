/**
 * Copies of a recorded sandbox: a thread that prepares many sandboxes records one, set up from
 * scratch and never leased, and makes the next ones from its image. A copy is a fresh wasm
 * instance over a fresh memory filled from the image, with new engine wrappers and new bridge
 * functions: nothing of the recorded sandbox or of another copy is shared, and no attempt ever
 * runs in the recorded one. What it saves is the set-up: creating QuickJS's context, the prelude
 * and the SDK module (measured in BENCH.md, "Sandbox copies").
 *
 * A copy must be indistinguishable from a sandbox set up from scratch, to the unit of fuel: the
 * same memory bytes, the engine's objects at the same addresses, its bridge functions under the
 * same ids. One thing differs on purpose: the state of Math.random, which every copy would
 * otherwise share with the recorded sandbox; each copy gets its own random seed (a sandbox set up
 * from scratch is seeded from the clock, in milliseconds).
 */
import type { QuickJSRuntime } from "quickjs-emscripten-core";
import type { Engine } from "../engine/engine.ts";
import { type HostFunction, Sandbox, type SandboxImage } from "../engine/sandbox.ts";
import { InternalError, MemoryExceededError } from "../errors.ts";
import type { Bridge, PreparedSandbox } from "./prepared.ts";

/** How a template is made and a copy's bridge bound (prepared.ts, passed in to avoid a cycle). */
export interface TemplateMakers {
  setUp(
    engine: Engine,
    memoryBytes: number,
  ): Promise<{ prepared: PreparedSandbox; bridge: Bridge }>;
  bridgeFor(sandbox: Sandbox): Bridge;
}

interface Template {
  image: SandboxImage;
  controlPointer: number;
  /** The recorded sandbox's bridge functions and runtime: a copy's ids are checked against them. */
  functions: HostFunction[];
  runtime: QuickJSRuntime;
  /** Guest chunks the set-up compiled (the SDK module loads some): their handles' addresses. */
  chunks: [name: string, pointer: number][];
  /** Where Math.random's state lies in the engine's context, found and checked when recorded. */
  seedOffset: number;
}

/**
 * Sandboxes a thread sets up from scratch before it records a template (which costs about two
 * sandboxes' worth of work, in idle time): a process that runs one task never pays for it.
 */
export const FRESH_BEFORE_TEMPLATE = 8;

/** The recorded sandbox's cap: copies take their own; this only bounds its set-up. */
const TEMPLATE_MEMORY_BYTES = 256 * 1024 * 1024;

type TemplateState =
  | { kind: "pending"; fresh: number }
  | { kind: "recording" }
  | { kind: "ready"; template: Template }
  | { kind: "off"; reason: string };

const templates = new WeakMap<Engine, TemplateState>();

function stateOf(engine: Engine): TemplateState {
  let state = templates.get(engine);
  if (state === undefined) {
    state = { kind: "pending", fresh: 0 };
    templates.set(engine, state);
  }
  return state;
}

/**
 * A copy of this thread's template for the engine, or null when there is none yet (recording
 * starts after FRESH_BEFORE_TEMPLATE sandboxes), copies are off, or the cap does not fit it.
 */
export async function templateCopy(
  engine: Engine,
  memoryBytes: number,
  makers: TemplateMakers,
): Promise<PreparedSandbox | null> {
  const state = stateOf(engine);
  if (state.kind === "ready") {
    try {
      return await copyOf(state.template, memoryBytes, makers);
    } catch (error) {
      // A cap below the engine's floor fails the same way on either path.
      if (error instanceof MemoryExceededError) throw error;
      // Copies are an optimisation: one that cannot be made turns them off for good.
      templates.set(engine, { kind: "off", reason: String(error) });
      return null;
    }
  }
  if (state.kind === "pending" && ++state.fresh >= FRESH_BEFORE_TEMPLATE) {
    void recordTemplate(engine, makers);
  }
  return null;
}

/** Records the engine's template now (tests; the reserve does it after a few sandboxes). */
export async function recordTemplate(engine: Engine, makers: TemplateMakers): Promise<boolean> {
  const state = stateOf(engine);
  if (state.kind === "ready") return true;
  if (state.kind !== "pending") return false;
  templates.set(engine, { kind: "recording" });
  try {
    const template = await record(engine, makers);
    templates.set(engine, { kind: "ready", template });
    return true;
  } catch (error) {
    templates.set(engine, { kind: "off", reason: String(error) });
    return false;
  }
}

/** Whether this thread makes copies for the engine now, and if not, why (tests, reports). */
export function templateStatus(engine: Engine): string {
  const state = stateOf(engine);
  return state.kind === "off" ? `off: ${state.reason}` : state.kind;
}

async function record(engine: Engine, makers: TemplateMakers): Promise<Template> {
  const { prepared, bridge } = await makers.setUp(engine, TEMPLATE_MEMORY_BYTES);
  const { sandbox, control } = prepared;
  const image = await sandbox.captureImage();
  const partial = {
    image,
    controlPointer: control.value as unknown as number,
    functions: bridge.functions.map(({ fn }) => fn),
    runtime: sandbox.runtime,
    chunks: [...bridge.compiledChunks].map(([name, handle]): [string, number] => [
      name,
      handle.value as unknown as number,
    ]),
  };
  return { ...partial, seedOffset: await findSeedOffset(sandbox, partial, makers) };
}

async function copyOf(
  template: Omit<Template, "seedOffset"> & { seedOffset: number | null },
  memoryBytes: number,
  makers: TemplateMakers,
  seed: bigint = randomSeed(),
): Promise<PreparedSandbox | null> {
  const { image } = template;
  const sandbox = await Sandbox.restore(
    image,
    { engine: image.engine, memoryBytes },
    template.seedOffset === null ? undefined : { offset: template.seedOffset, value: seed },
  );
  if (sandbox === null) return null;
  const bridge = makers.bridgeFor(sandbox);
  const hostRefs = (sandbox.runtime as unknown as RuntimeInternals).hostRefs;
  const recorded = (template.runtime as unknown as RuntimeInternals).hostRefs;
  bridge.functions.forEach(({ name, fn }, index) => {
    const id = hostRefs.put(fn);
    // The recorded guest function objects carry these ids: a copy must bind the same ones.
    if (recorded.get(id) !== template.functions[index]) {
      throw new InternalError(`bridge function ${name} got id ${id}, not the recorded one`);
    }
  });
  for (const [name, pointer] of template.chunks) {
    bridge.compiledChunks.set(name, sandbox.adoptHandle(pointer));
  }
  // Sets the loader the image already holds (the same bytes), with this copy's callbacks.
  sandbox.runtime.setModuleLoader(bridge.loadModule, bridge.normalizeModule);
  return {
    sandbox,
    control: sandbox.adoptHandle(template.controlPointer),
    importFailure: bridge.importFailure,
    setTenant: bridge.setTenant,
  };
}

/** quickjs-emscripten 0.32's map from host function ids to functions, per runtime. */
interface RuntimeInternals {
  hostRefs: { put(value: unknown): number; get(id: number): unknown };
}

/**
 * Where Math.random's state lies in the recorded context: QuickJS seeds it from the clock, in
 * microseconds, when the context is made. Each candidate word is checked by making a copy with
 * a known seed and comparing its first Math.random() with QuickJS's generator (xorshift64*).
 */
async function findSeedOffset(
  recorded: Sandbox,
  template: Omit<Template, "seedOffset">,
  makers: TemplateMakers,
): Promise<number> {
  const view = new DataView(recorded.memory.buffer);
  const context = template.image.contextPointer;
  const nowMicros = BigInt(Date.now()) * 1000n;
  const hour = 3_600_000_000n;
  const probe = 0x2545f4914f6cdd1dn ^ 0x123456789abcdefn;
  for (let offset = 0; offset < SEED_SEARCH_BYTES; offset += 8) {
    const value = view.getBigUint64(context + offset, true);
    if (value === 0n || value % 1000n !== 0n) continue;
    if (value < nowMicros - hour || value > nowMicros + hour) continue;
    const copy = await copyOf(
      { ...template, seedOffset: offset },
      TEMPLATE_MEMORY_BYTES,
      makers,
      probe,
    );
    if (copy === null) continue;
    const { sandbox } = copy;
    sandbox.lease({ fuel: 1e9, clock: { now: () => Date.now() }, shouldInterrupt: () => false });
    const drawn = sandbox.metered(() =>
      sandbox.context.unwrapResult(sandbox.context.evalCode("Math.random()")),
    );
    const number = sandbox.context.getNumber(drawn);
    drawn.dispose();
    sandbox.kill(new InternalError("a probe copy serves no attempt"));
    if (number === firstRandom(probe)) return offset;
  }
  throw new InternalError("Math.random's state was not found in the recorded context");
}

/** Bytes of the context searched for Math.random's state (it sits a few hundred bytes in). */
const SEED_SEARCH_BYTES = 4096;

/** QuickJS's Math.random() from this state: one step of xorshift64*, as a double in [0, 1). */
function firstRandom(state: bigint): number {
  const mask = (1n << 64n) - 1n;
  let x = state;
  x ^= x >> 12n;
  x = (x ^ (x << 25n)) & mask;
  x ^= x >> 27n;
  const v = (x * 0x2545f4914f6cdd1dn) & mask;
  const bits = (0x3ffn << 52n) | (v >> 12n);
  const buffer = new DataView(new ArrayBuffer(8));
  buffer.setBigUint64(0, bits, true);
  return buffer.getFloat64(0, true) - 1;
}

/** Seeds drawn 256 at a time: one small getRandomValues per copy showed in profiles. */
const seeds = new BigUint64Array(256);
let seedsLeft = 0;

function randomSeed(): bigint {
  for (;;) {
    if (seedsLeft === 0) {
      crypto.getRandomValues(seeds);
      seedsLeft = seeds.length;
    }
    const seed = seeds[--seedsLeft] as bigint;
    if (seed !== 0n) return seed;
  }
}
