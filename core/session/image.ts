/**
 * A session's state is the memory image of its sandbox after its last successful call: the whole
 * QuickJS heap (every global, closure, class instance and imported module), taken while no C
 * frame is live, so the stack pointer is at its base and the heap is all the engine holds.
 *
 * Each call still gets a fresh wasm instance. The runtime prepares it as for any task (engine
 * start, the guest API surface), which is deterministic: the runtime, the context and every
 * handle and host-function id the host side keeps land at the same addresses and ids as in the
 * sandbox that took the image. The image is then copied over the fresh memory, and the host-side
 * wrappers, now pointing into the image, match it. A call that fails is never captured, so the
 * next call starts again from the image before it.
 */
import type { Engine } from "../engine/engine.ts";
import type { Sandbox } from "../engine/sandbox.ts";
import { ConfigError, InternalError } from "../errors.ts";
import { POLYFILL_SOURCES, PRELUDE_SOURCE, SDK_MODULE_SOURCE } from "../guest/sources.generated.ts";
import type { AttemptState } from "../runtime/attempt.ts";

export interface SessionImage {
  /**
   * The sandbox's linear memory up to its last non-zero word: a view of the memory of the dead
   * sandbox that took it (never written again, never changed in place; a fork shares it).
   */
  bytes: Uint8Array;
  /** Where the runtime and context were; a fresh sandbox must have them at the same place. */
  runtime: number;
  context: number;
  /** Names the engine build and guest sources the image belongs to (engineKey). */
  engineKey: string;
}

const keys = new WeakMap<Engine, Promise<string>>();

/**
 * What an image depends on besides itself: the engine's shape and the runtime's own guest code.
 * An image taken under another build is refused instead of restored.
 */
export function engineKey(engine: Engine): Promise<string> {
  let key = keys.get(engine);
  if (key === undefined) {
    const shape = JSON.stringify({
      exports: WebAssembly.Module.exports(engine.module),
      imports: WebAssembly.Module.imports(engine.module),
      floor: engine.memoryFloorPages,
      stack: engine.stackBytes,
      metered: engine.metered,
      prelude: PRELUDE_SOURCE,
      sdk: SDK_MODULE_SOURCE,
      polyfills: POLYFILL_SOURCES,
    });
    key = crypto.subtle
      .digest("SHA-256", new TextEncoder().encode(shape))
      .then((digest) =>
        [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
      );
    keys.set(engine, key);
  }
  return key;
}

/**
 * The AttemptState of one call: each attempt restores `image` (none: a fresh sandbox), and a
 * successful attempt's image is kept for `captured()`; the caller commits it only when the whole
 * call succeeded.
 */
export function imageState(image: SessionImage | null, key: string) {
  let captured: SessionImage | null = null;
  const state: AttemptState = {
    restore(prepared) {
      captured = null;
      if (image === null) return;
      if (image.engineKey !== key) {
        throw new ConfigError(
          "the session's saved state belongs to another build of the engine; reset() the session or use a new store",
        );
      }
      const { runtime, context } = prepared.sandbox.addresses;
      if (runtime !== image.runtime || context !== image.context) {
        throw new InternalError(
          `a fresh sandbox's engine is not where the session's image expects it (runtime ${runtime} vs ${image.runtime}, context ${context} vs ${image.context})`,
        );
      }
      prepared.sandbox.restoreMemory(image.bytes);
    },
    // Called as the attempt's last use of its sandbox (AttemptState.capture).
    capture(sandbox: Sandbox) {
      const { runtime, context } = sandbox.addresses;
      captured = { bytes: sandbox.memoryImage(), runtime, context, engineKey: key };
    },
  };
  return { state, captured: () => captured };
}
