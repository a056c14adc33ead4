/**
 * The runtime keeps its own state (the compile cache, the key that signs it) in folders named
 * `.capsule`. No guest ever sees or reaches one: a guest path through a `.capsule` segment is
 * refused, and so is an allowedFiles entry or a mount that names one, on every host.
 */
export const RUNTIME_STATE_DIR = ".capsule";

/** Why a path through RUNTIME_STATE_DIR is refused, for messages. */
export const RUNTIME_STATE_RULE = `"${RUNTIME_STATE_DIR}" holds the runtime's own state (its compile cache), which no task can see or reach`;

/** Whether a path's names (split on "/" or the host's separator) pass through a `.capsule`. */
export function namesRuntimeState(segments: readonly string[]): boolean {
  return segments.includes(RUNTIME_STATE_DIR);
}

/** The same test on a path string, either separator. */
export function pathNamesRuntimeState(path: string): boolean {
  return namesRuntimeState(path.split(/[\\/]/));
}
