import { PermissionDeniedError } from "../errors.ts";
import { type Envelope, failureEnvelope } from "./envelope.ts";
import type { SubtaskCall } from "./events.ts";
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

/** One sub-task call as the run journal sees it (core/journal/resume.ts). */
export interface SubtaskCallRecord extends SubtaskCall {
  /** The task run that made the call. */
  parentId: string;
  name: string;
  argsJson: string;
}

/**
 * Wraps every sub-task call of a run: the run journal records each call and its envelope, and a
 * resumed run answers a call that already completed from the journal instead of running it.
 */
export interface SubtaskHook {
  /** Before the call runs: an envelope to answer it with instead, or null to run it. */
  before(call: SubtaskCallRecord): Promise<Envelope | null>;
  /** After a call ran: its envelope. */
  after(call: SubtaskCallRecord, envelope: Envelope): void;
}

/** Runs one sub-task call through the run's hook, when it has one. */
export async function hookedSubtask(
  hook: SubtaskHook | undefined,
  call: SubtaskCallRecord | undefined,
  start: () => Promise<Envelope>,
): Promise<Envelope> {
  if (hook === undefined || call === undefined) return start();
  const answer = await hook.before(call);
  if (answer !== null) return answer;
  const envelope = await start();
  hook.after(call, envelope);
  return envelope;
}
