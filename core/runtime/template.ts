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
 * otherwise share with the recorded sandbox; each copy gets its own random seed, as every sandbox
 * set up from scratch does (core/engine/random-state.ts).
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
  return {
    image,
    controlPointer: control.value as unknown as number,
    functions: bridge.functions.map(({ fn }) => fn),
    runtime: sandbox.runtime,
    chunks: [...bridge.compiledChunks].map(([name, handle]): [string, number] => [
      name,
      handle.value as unknown as number,
    ]),
  };
}

async function copyOf(
  template: Template,
  memoryBytes: number,
  makers: TemplateMakers,
): Promise<PreparedSandbox | null> {
  const { image } = template;
  const sandbox = await Sandbox.restore(image, { engine: image.engine, memoryBytes });
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
