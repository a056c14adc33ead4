/**
 * A gate on the finalizers of a realm that hosts a Python sandbox: `close` for a session's image
 * on hosts that cannot collect garbage on demand (a page's Worker has no `gc()`), `stop` for
 * every job on every host.
 *
 * Why: Pyodide releases the Python object behind a JavaScript proxy when the proxy is collected
 * (a FinalizationRegistry calls Py_DecRef). A proxy the set-up dropped may be collected at any
 * later moment; if that happens after a session's image was copied over the memory, the
 * release lands on the image's objects, which may by then be other objects or none: a double
 * free. Closing the gate at the copy drops the finalizations of everything registered before it.
 * That is always safe: either the image's own sandbox already released the object (and the
 * image holds the result), or it had not, and the object stays alive, a leak of a few set-up
 * objects per call. Registrations made after the gate closed (the call's own proxies) are
 * finalized as usual until the gate is stopped.
 *
 * Must be installed before the engine's glue creates its registry.
 */
export interface FinalizerGate {
  /** Drops, from now on, the finalization of everything registered so far. */
  close(): void;
  /**
   * Drops every finalization from now on, whenever it was registered: for a sandbox that runs
   * one job and is then thrown away. A finalization releases Python objects (Py_DecRef), which
   * changes the interpreter's counts, and so when its cyclic collector runs and what the task's
   * fuel comes to; the moment it lands is set by the JavaScript collector's timing, which load
   * and the Node line change. Stopped at the job's start, none lands during the job; what it
   * would have released goes with the sandbox (bounded by the task's ram).
   */
  stop(): void;
}

export function gateFinalizers(
  scope: { FinalizationRegistry?: unknown } = globalThis,
): FinalizerGate {
  const Native = scope.FinalizationRegistry as typeof FinalizationRegistry | undefined;
  let generation = 0;
  let stopped = false;
  if (Native === undefined) return { close() {}, stop() {} };
  class GatedRegistry<T> extends Native<{ generation: number; held: T }> {
    constructor(cleanup: (held: T) => void) {
      super((entry) => {
        if (!stopped && entry.generation === generation) cleanup(entry.held);
      });
    }
    // @ts-expect-error: registers the wrapped value; callers pass what they hold.
    override register(target: WeakKey, held: T, token?: WeakKey): void {
      super.register(target, { generation, held }, token);
    }
  }
  scope.FinalizationRegistry = GatedRegistry;
  return {
    close() {
      generation++;
    },
    stop() {
      stopped = true;
    },
  };
}
