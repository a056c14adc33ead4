/**
 * A resume request checked before any journal is read: its own options, and the envelope of one
 * that failed before it ran. Apart from resume.ts so that a page checks them without loading
 * the journal (adapters/browser/runs.ts).
 */
import { ConfigError } from "../errors.ts";
import { type Envelope, envelopeForError } from "../runtime/envelope.ts";

/**
 * run({ resume })'s own options checked: what a resume takes from the record (`recorded`, the
 * names of run()'s options it fills, as "file, task and arguments" or "source, ..." says in
 * `what`) may not be given too, nor `journal: false`. Null when they are fine, else the error.
 */
export function resumeOptionsError(
  options: object,
  recorded: readonly string[],
  what: string,
): ConfigError | null {
  const given = recorded.filter((key) => (options as Record<string, unknown>)[key] !== undefined);
  if (given.length > 0) {
    return new ConfigError(
      `run(): resume runs the recorded run's ${what}; leave out ${given.join(", ")}`,
    );
  }
  if ((options as { journal?: unknown }).journal === false) {
    return new ConfigError("run(): resume records a new run; leave out journal: false");
  }
  return null;
}

/** The envelope of a resume that failed before it ran, under the new run's id. */
export function resumeFailure(
  options: { task?: unknown },
  runId: string,
  started: number,
  error: unknown,
): Envelope {
  const envelope = envelopeForError(
    typeof options.task === "string" ? options.task : "main",
    error,
    Math.round(performance.now() - started),
  );
  envelope.execution.run_id = runId;
  return envelope;
}
