/**
 * The eager prelude: evaluated as a global script in every sandbox before the task's bundle.
 * It must stay small (QuickJS compiles roughly 7 KB per ms), so everything sizeable is a lazy
 * global whose chunk is evaluated, uncharged, on first access.
 */
import type { HostBridge } from "./bridge.ts";
import {
  CHUNK_GLOBALS,
  type ChunkContext,
  type ChunkExports,
  type ChunkInstaller,
  type ChunkName,
} from "./chunk.ts";
import { createTasks } from "./tasks.ts";
import { createTimers } from "./timers.ts";

const global = globalThis as unknown as Record<string, unknown>;
const host = global.__capsule_host as HostBridge;
delete global.__capsule_host;

const { uncharged, polyfillSource } = host;
const defineProperty = Object.defineProperty;
// Captured now: task code may replace `globalThis.eval` later.
const indirectEval = global.eval as (source: string) => unknown;

const loaded = new Map<ChunkName, unknown>();
let loadingDepth = 0;

const ctx: ChunkContext = {
  host: { log: host.log, monotonic: host.monotonic, randomBytes: host.randomBytes },
  load,
};

function load<Name extends ChunkName>(name: Name): ChunkExports[Name] {
  if (loaded.has(name)) return loaded.get(name) as ChunkExports[Name];
  let exports: ChunkExports[Name] | undefined;
  let failure: unknown;
  let failed = false;
  const evaluate = () => {
    loadingDepth++;
    try {
      exports = (indirectEval(polyfillSource(name)) as ChunkInstaller<ChunkExports[Name]>)(ctx);
    } catch (error) {
      failed = true;
      failure = error;
    } finally {
      loadingDepth--;
    }
  };
  // A chunk that loads another from its own set-up is already uncharged.
  if (loadingDepth > 0) evaluate();
  else uncharged(evaluate);
  if (failed) throw failure;
  loaded.set(name, exports);
  return exports as ChunkExports[Name];
}

function defineValue(name: string, value: unknown): void {
  defineProperty(global, name, { value, writable: true, configurable: true, enumerable: false });
}

for (const chunk of Object.keys(CHUNK_GLOBALS) as ChunkName[]) {
  for (const name of CHUNK_GLOBALS[chunk]) {
    defineProperty(global, name, {
      configurable: true,
      enumerable: false,
      get() {
        // While a chunk evaluates, the lazy globals read as absent, so a polyfill's feature
        // tests choose its own code instead of pulling in (or recursing into) other chunks.
        if (loadingDepth > 0) return undefined;
        const value = (load(chunk) as Record<string, unknown>)[name];
        defineValue(name, value);
        return value;
      },
      set(value: unknown) {
        defineValue(name, value);
      },
    });
  }
}

const reportUncaught = (error: unknown) => load("console").reportUncaught(error);
const timers = createTimers(host, reportUncaught);

const promiseThen = Promise.prototype.then;
const resolved = Promise.resolve();
defineValue("queueMicrotask", function queueMicrotask(callback: () => void) {
  if (typeof callback !== "function") {
    throw new TypeError(`queueMicrotask: callback must be a function, got ${typeof callback}`);
  }
  promiseThen.call(resolved, () => {
    try {
      callback();
    } catch (error) {
      reportUncaught(error);
    }
  });
});
for (const name of ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] as const) {
  defineValue(name, timers[name]);
}

const tasks = createTasks(host, () => load("inspect").inspect);
defineProperty(global, "__capsule", { value: tasks.capsule });

export default { fireTimer: timers.fire, listTasks: tasks.listTasks, start: tasks.start };
