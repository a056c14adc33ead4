import { PermissionDeniedError } from "../errors.ts";
import { type Envelope, failureEnvelope } from "./envelope.ts";
import type { RuntimeSettings } from "./settings.ts";

/**
 * Counts the sub-tasks of one run (across every depth and every worker) and refuses the ones over
 * the run's limits, so a task cannot fork without bound.
 */
export class SubtaskGate {
  #started = 0;
  readonly #settings: RuntimeSettings;

  constructor(settings: RuntimeSettings) {
    this.#settings = settings;
  }

  get started(): number {
    return this.#started;
  }

  /** Returns null when the sub-task may start, or the failure envelope to hand back instead. */
  admit(name: string, depth: number): Envelope | null {
    const { maxSubtaskDepth, maxSubtasksPerRun } = this.#settings;
    if (depth > maxSubtaskDepth) {
      return refusal(
        name,
        new PermissionDeniedError(
          `sub-task ${JSON.stringify(name)} refused: it would run at depth ${depth}, over the limit of ${maxSubtaskDepth} nested sub-tasks`,
        ),
      );
    }
    if (this.#started >= maxSubtasksPerRun) {
      return refusal(
        name,
        new PermissionDeniedError(
          `sub-task ${JSON.stringify(name)} refused: this run already started ${maxSubtasksPerRun} sub-tasks, the limit per run`,
        ),
      );
    }
    this.#started++;
    return null;
  }
}

function refusal(name: string, error: PermissionDeniedError): Envelope {
  return failureEnvelope(name, { error_type: error.errorType, message: error.message });
}
