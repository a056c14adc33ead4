/**
 * A gate on the finalizers of a realm that hosts a Python sandbox, stopped at the start of its
 * one job, on every host.
 *
 * Why: Pyodide releases the Python object behind a JavaScript proxy when the proxy is collected
 * (a FinalizationRegistry calls Py_DecRef), at a moment the JavaScript collector picks, which load
 * and the Node line change. A release changes the interpreter's counts, and so when its cyclic
 * collector runs and what the task's fuel comes to. And a proxy the set-up dropped, collected
 * after a session's image was copied over the memory, would release the image's objects, which
 * may by then be other objects or none: a double free. Stopped, no finalization lands; what it
 * would have released goes with the sandbox, which runs one job and is thrown away (bounded by
 * the task's ram).
 *
 * Must be installed before the engine's glue creates its registry.
 */
export interface FinalizerGate {
  /** Drops every finalization from now on, whenever it was registered. */
  stop(): void;
}

export function gateFinalizers(
  scope: { FinalizationRegistry?: unknown } = globalThis,
): FinalizerGate {
  const Native = scope.FinalizationRegistry as typeof FinalizationRegistry | undefined;
  let stopped = false;
  if (Native === undefined) return { stop() {} };
  class GatedRegistry<T> extends Native<T> {
    constructor(cleanup: (held: T) => void) {
      super((held) => {
        if (!stopped) cleanup(held);
      });
    }
  }
  scope.FinalizationRegistry = GatedRegistry;
  return {
    stop() {
      stopped = true;
    },
  };
}
