/**
 * What `capsule run` shows a person: colour on a terminal (off with NO_COLOR, --json or a pipe),
 * a status line on stderr while a run waits longer than a moment, console lines marked with the
 * task that printed them once more than one task runs (and with the attempt when it is a retry),
 * and timestamped lifecycle lines with --verbose. picocolors draws the colours, yocto-spinner the
 * status line; both step aside when their stream is not a terminal.
 *
 * Text a task controls (its console lines, task names, error messages, its result) never reaches
 * the terminal with a control character in it: a hostile task could otherwise clear the screen,
 * move the cursor up to rewrite the envelope or the status line, set the window title, write the
 * clipboard (OSC 52) or plant a link (OSC 8). Such characters are shown as escapes (`\x1b`, `\r`)
 * instead, on a terminal and in a pipe alike, since a pipe often ends at one (`| tee`, `| less -R`,
 * a CI log viewer); only the CLI's own colours are sequences it writes itself.
 */

import { createColors } from "picocolors";
import yoctoSpinner, { type Spinner } from "yocto-spinner";
import { firstLine } from "../../core/config/units.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import type { LifecycleEvent } from "../../core/runtime/events.ts";

type Colors = ReturnType<typeof createColors>;

/**
 * Characters a terminal may act on: the control characters (C0, DEL and C1; U+009B is CSI on many
 * terminals) and the bidirectional overrides and isolates, which reorder what a line seems to say.
 */
const TERMINAL_CONTROLS = /[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu;

/** Characters JSON.stringify leaves raw that a terminal may act on (it escapes C0 but not these). */
const JSON_RAW_CONTROLS = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

function hex(char: string, width: number): string {
  return (char.codePointAt(0) as number).toString(16).padStart(width, "0");
}

/**
 * `text` with every character a terminal may act on shown as an escape instead (`\x1b`, `\r`,
 * `\u202e`); tabs and newlines stay as they are. For text a task controls.
 */
export function visible(text: string): string {
  return text.replace(TERMINAL_CONTROLS, (char) => {
    if (char === "\n" || char === "\t") return char;
    if (char === "\r") return "\\r";
    return char <= "\u00ff" ? `\\x${hex(char, 2)}` : `\\u${hex(char, 4)}`;
  });
}

/**
 * The CLI's last word on an error of its own. Its message may quote what a task controls (a
 * name, a path, a reply), so it is shown with the same escapes.
 */
export function internalErrorText(error: unknown): string {
  return `capsule: internal error: ${visible(error instanceof Error ? String(error.stack) : String(error))}\n`;
}

/** JSON text with the controls JSON.stringify leaves raw escaped too (the same value parsed). */
export function terminalSafeJson(json: string): string {
  // JSON.stringify's output holds only one raw control, the newline of its indentation.
  return json.replace(JSON_RAW_CONTROLS, (char) => (char === "\n" ? char : `\\u${hex(char, 4)}`));
}

/** How long a run may stay quiet before the status line appears. */
const STATUS_AFTER_MS = 300;

/** Whether `stream` gets colour: a terminal, unless NO_COLOR; FORCE_COLOR turns it on anyway. */
export function colorsOn(
  stream: { isTTY?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  if ("NO_COLOR" in env && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0") return true;
  return stream.isTTY === true && env.TERM !== "dumb";
}

/**
 * The envelope as `JSON.stringify(envelope, null, 2)` prints it, with no raw control character
 * (terminalSafeJson), coloured when `colors` is on.
 */
export function formatEnvelope(envelope: Envelope, colors: Colors): string {
  const json = terminalSafeJson(JSON.stringify(envelope, null, 2));
  if (!colors.isColorSupported) return json;
  let lastKey = "";
  return json.replace(
    /("(?:[^"\\]|\\.)*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g,
    (token: string, text?: string, colon?: string, literal?: string) => {
      if (text !== undefined && colon !== undefined) {
        lastKey = text;
        return `${colors.cyan(text)}${colon}`;
      }
      if (lastKey === '"success"' && literal !== undefined) {
        return literal === "true"
          ? colors.bold(colors.green(token))
          : colors.bold(colors.red(token));
      }
      if (lastKey === '"error_type"' || lastKey === '"message"') return colors.red(token);
      if (text !== undefined) return colors.green(token);
      if (literal !== undefined) return colors.magenta(token);
      return colors.yellow(token);
    },
  );
}

interface RunView {
  task: string;
  attempt: number;
  done: boolean;
}

export interface CliOutputOptions {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  /** Where console.log lines go (stderr under --json, so stdout holds only the envelope). */
  consoleOut: NodeJS.WriteStream;
  verbose: boolean;
  json: boolean;
  /** What the status line says before the task starts ("main of hello.py"). */
  subject: string;
  env?: NodeJS.ProcessEnv;
}

/** The output of one `capsule run`: hand `onLog` and `onEvent` to run(), then `finish`. */
export class CliOutput {
  readonly #options: CliOutputOptions;
  readonly #err: Colors;
  readonly #out: Colors;
  readonly #runs = new Map<string, RunView>();
  /** The latest attempt of each task name, for lines that say only which task printed them. */
  readonly #attemptOf = new Map<string, number>();
  #started = Date.now();
  #spinner: Spinner | undefined;
  #statusTimer: ReturnType<typeof setTimeout> | undefined;
  #ticker: ReturnType<typeof setInterval> | undefined;

  constructor(options: CliOutputOptions) {
    this.#options = options;
    const env = options.env ?? process.env;
    this.#err = createColors(colorsOn(options.stderr, env));
    this.#out = createColors(!options.json && colorsOn(options.stdout, env));
  }

  /** The run starts: the status line appears if it is still going after a moment. */
  start(): void {
    this.#started = Date.now();
    const env = this.#options.env ?? process.env;
    if (this.#options.stderr.isTTY === true && !("CI" in env) && env.TERM !== "dumb") {
      this.#statusTimer = setTimeout(() => this.#showStatus(), STATUS_AFTER_MS);
    }
  }

  readonly onLog = (level: LogLevel, text: string, task: string): void => {
    const stream =
      level === "error" || level === "warn" ? this.#options.stderr : this.#options.consoleOut;
    const colors = stream === this.#options.stdout ? this.#out : this.#err;
    const attempt = this.#attemptOf.get(task) ?? 1;
    const marked = this.#runs.size > 1 || attempt > 1;
    const prefix = marked
      ? `${colors.dim(`[${visible(task)}${attempt > 1 ? ` #${attempt}` : ""}]`)} `
      : "";
    const shown = visible(text);
    const body =
      level === "error" ? colors.red(shown) : level === "warn" ? colors.yellow(shown) : shown;
    stream.write(`${prefix}${body}\n`);
  };

  readonly onEvent = (event: LifecycleEvent): void => {
    const run = this.#runs.get(event.id) ?? { task: event.task, attempt: 0, done: false };
    this.#runs.set(event.id, run);
    if (event.type === "running") {
      run.attempt = event.attempt;
      this.#attemptOf.set(event.task, event.attempt);
    }
    if (["completed", "failed", "timed_out", "cancelled"].includes(event.type)) run.done = true;
    if (this.#options.verbose) this.#options.stderr.write(`${this.#describe(event)}\n`);
    this.#updateStatus();
  };

  /** Stops the status line and prints the envelope on stdout. */
  finish(envelope: Envelope): void {
    this.stop();
    this.#options.stdout.write(`${formatEnvelope(envelope, this.#out)}\n`);
  }

  /** Stops the status line (also on a failure that prints no envelope). */
  stop(): void {
    clearTimeout(this.#statusTimer);
    clearInterval(this.#ticker);
    this.#spinner?.stop();
    this.#spinner = undefined;
  }

  #showStatus(): void {
    this.#spinner = yoctoSpinner({ stream: this.#options.stderr, text: this.#statusText() });
    this.#spinner.start();
    // The elapsed time moves even while no event comes.
    this.#ticker = setInterval(() => this.#updateStatus(), 250);
  }

  #updateStatus(): void {
    if (this.#spinner !== undefined) this.#spinner.text = this.#statusText();
  }

  #statusText(): string {
    const seconds = ((Date.now() - this.#started) / 1000).toFixed(1);
    const running = [...this.#runs.values()].filter((run) => !run.done);
    const what =
      running.length === 0
        ? `starting ${visible(this.#options.subject)}`
        : running.length === 1
          ? `running ${describeRun(running[0] as RunView)}`
          : `running ${describeRun(running[0] as RunView)} and ${running.length - 1} more`;
    return `${what} ${this.#err.dim(`${seconds} s`)}`;
  }

  #describe(event: LifecycleEvent): string {
    const c = this.#err;
    const time = new Date(event.at).toISOString().slice(11, 23);
    const who = `${"  ".repeat(event.depth)}${visible(event.task)}`;
    const why = visible(`${event.error?.error_type}: ${firstLine(event.error?.message)}`);
    const line = ((): string => {
      switch (event.type) {
        case "created":
          return `${who}: created`;
        case "running":
          return `${who}: running (attempt ${event.attempt})`;
        case "retrying":
          return c.yellow(`${who}: attempt ${event.attempt} failed (${why}), retrying`);
        case "completed":
          return c.green(
            `${who}: completed in ${event.duration_ms} ms, fuel ${event.fuel_consumed}`,
          );
        case "timed_out":
          return c.red(`${who}: timed out after ${event.duration_ms} ms`);
        case "cancelled":
          return c.yellow(`${who}: cancelled after ${event.duration_ms} ms (${why})`);
        case "failed":
          return c.red(`${who}: failed after ${event.duration_ms} ms (${why})`);
      }
    })();
    return `${c.dim(`[capsule ${time}]`)} ${line}`;
  }
}

function describeRun(run: RunView): string {
  return run.attempt > 1 ? `${visible(run.task)} (attempt ${run.attempt})` : visible(run.task);
}
