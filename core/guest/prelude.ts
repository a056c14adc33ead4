/**
 * The eager prelude: evaluated as a global script in every sandbox before the task's bundle.
 * QuickJS compiles only about 3.5 KB of minified code per ms, so this file holds just the bridge
 * capture, the lazy globals and task registration; everything else lives in chunks that are
 * evaluated on first use, by the task's code and charged to it like the rest of its work: the
 * chunks call built-ins the task may have replaced, so their cost cannot be the runtime's.
 */
import type { GuestControl, HostBridge } from "./bridge.ts";
import type {
  ChunkContext,
  ChunkExports,
  ChunkInstaller,
  ChunkName,
  NodeModuleChunk,
  RegisteredTask,
} from "./chunk.ts";

/** Inlined by the build: `lazyGlobalsTable()` from chunk.ts. */
declare const CAPSULE_LAZY_GLOBALS: string;

const global = globalThis as unknown as Record<string, unknown>;
const host = global.__capsule_host as HostBridge;
delete global.__capsule_host;

const defineProperty = Object.defineProperty;
// Captured now for the same reason: what the runtime reads back must not pass through task code.
const json = { parse: JSON.parse, stringify: JSON.stringify };
const registry = new Map<string, RegisteredTask>();
const loaded = new Map<ChunkName, unknown>();
let loadingDepth = 0;
const ctx: ChunkContext = { host, registry, load, json };

function load<Name extends ChunkName>(name: Name): ChunkExports[Name] {
  if (!loaded.has(name)) {
    // The host compiles each chunk once, uncharged (no guest code runs in a compile); running its
    // top level and installer is charged. A load that throws (the task broke a built-in the
    // chunk uses) is not recorded, so the next touch runs them again, and pays again.
    loadingDepth++;
    try {
      loaded.set(name, (host.polyfill(name)() as ChunkInstaller<unknown>)(ctx));
    } finally {
      loadingDepth--;
    }
  }
  return loaded.get(name) as ChunkExports[Name];
}

function defineValue(name: string, value: unknown): void {
  defineProperty(global, name, { value, writable: true, configurable: true });
}

for (const entry of CAPSULE_LAZY_GLOBALS.split(";")) {
  const [chunk, names] = entry.split(":") as [ChunkName, string];
  for (const name of names.split(",")) {
    defineProperty(global, name, {
      configurable: true,
      get() {
        // While a chunk evaluates, the lazy globals read as absent, so a polyfill's feature
        // tests choose its own code instead of pulling in (or recursing into) other chunks.
        if (loadingDepth) return;
        const value = (load(chunk) as unknown as Record<string, unknown>)[name];
        defineValue(name, value);
        return value;
      },
      set(value: unknown) {
        defineValue(name, value);
      },
    });
  }
}

defineProperty(global, "__capsule", {
  value: Object.freeze({
    register(options: { name?: unknown }, fn: RegisteredTask["fn"]): void {
      const name = options?.name;
      if (typeof name !== "string" || !name || typeof fn !== "function" || registry.has(name)) {
        throw load("tasks").registrationError(options, fn);
      }
      const task = { fn } as RegisteredTask;
      try {
        task.optionsJson = json.stringify(options);
      } catch (error) {
        task.optionsError = error;
      }
      registry.set(name, task);
    },
    call: (name: string, args: unknown[]) => load("tasks").call(name, args),
    /**
     * A Node-compatible module ("fs", "path", "process", "buffer") for the compiled imports; the
     * compiler only ever asks for those, so the name is not checked here, where bytes cost time.
     */
    require: (name: NodeModuleChunk) => load(name).module,
  }),
});

// Every run needs the task registry's chunk (start, listTasks), so it is loaded here, with the
// prelude, by trusted code before any task code exists: its set-up is then not the task's work,
// and a sandbox prepared ahead of time has it ready.
load("tasks");

const control: GuestControl = {
  fireTimer: (id) => load("timers").fire(id),
  listTasks: () => load("tasks").listTasks(),
  start: (name, argsJson) => load("tasks").start(name, argsJson),
};
export default control;
