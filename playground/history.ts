import type * as Capsule from "../adapters/browser/index.ts";
import type { Envelope, RunDetail, RunSummary } from "../adapters/browser/index.ts";

/** Past runs shown at once, newest first. */
const MAX_SHOWN = 25;

/**
 * Past runs from the page's run journal (OPFS): state, task, when and fuel; a click shows the
 * run's envelope. Everything a task chose (its name, result, error) is shown as text only, with
 * control and bidirectional characters written as escapes.
 */
export class HistoryView {
  constructor(
    readonly list: HTMLElement,
    readonly viewer: HTMLElement,
    readonly runtime: Promise<typeof Capsule>,
  ) {}

  async refresh(): Promise<void> {
    let runs: RunSummary[];
    try {
      runs = await (await this.runtime).listRuns({ limit: MAX_SHOWN });
    } catch (error) {
      this.list.replaceChildren(item(`Cannot read the run journal: ${error}`));
      return;
    }
    if (runs.length === 0) {
      this.list.replaceChildren(item("No runs yet. Each run in this page is recorded here."));
      return;
    }
    this.list.replaceChildren(...runs.map((run) => this.#row(run)));
  }

  #row(run: RunSummary): HTMLElement {
    const row = document.createElement("li");
    row.className = "file-row history-row";
    row.dataset.runId = run.id;
    row.dataset.state = run.state;
    const state = document.createElement("span");
    state.className = `history-state ${run.state}`;
    state.textContent = run.state;
    const task = document.createElement("span");
    task.className = "file-name history-task";
    task.textContent = escapeControls(run.task, true);
    const when = document.createElement("time");
    when.className = "file-size history-when";
    when.dateTime = new Date(run.started_at).toISOString();
    when.textContent = new Date(run.started_at).toLocaleString();
    const fuel = document.createElement("span");
    fuel.className = "file-size history-fuel";
    fuel.textContent =
      run.fuel_consumed === null ? "" : `${run.fuel_consumed.toLocaleString()} fuel`;
    const show = document.createElement("button");
    show.type = "button";
    show.className = "small";
    show.textContent = "Envelope";
    show.setAttribute("aria-label", `Show the envelope of run ${run.id}`);
    show.addEventListener("click", () => void this.#show(run.id));
    row.append(state, task, when, fuel, show);
    return row;
  }

  async #show(id: string): Promise<void> {
    const heading = document.createElement("h3");
    heading.textContent = `Run ${id}`;
    const content = document.createElement("pre");
    content.className = "file-content history-envelope";
    try {
      const detail = await (await this.runtime).inspectRun(id);
      content.textContent = escapeControls(JSON.stringify(envelopeOf(detail), null, 2));
    } catch (error) {
      content.textContent = escapeControls(String(error));
    }
    this.viewer.replaceChildren(heading, content);
    this.viewer.hidden = false;
  }
}

/** The envelope a recorded run returned, as the journal keeps it. */
export function envelopeOf(detail: RunDetail): Envelope & { state: string } {
  const entry = detail.tasks[0];
  return {
    state: detail.state,
    success: detail.state === "completed",
    result: detail.state === "completed" ? detail.result : null,
    error: detail.error === null ? null : (detail.error as Envelope["error"]),
    execution: {
      task_name: detail.task,
      duration_ms: detail.duration_ms ?? 0,
      retries: detail.retries ?? 0,
      fuel_consumed: detail.fuel_consumed ?? 0,
      ram_used: detail.ram_used ?? 0,
      host_requests: (entry?.host_requests ?? []) as Envelope["execution"]["host_requests"],
      run_id: detail.id,
    },
  };
}

/**
 * Control, line-separator and bidirectional-override characters as `\u` escapes (tabs and line
 * breaks too when `oneLine`).
 */
export function escapeControls(text: string, oneLine = false): string {
  const asEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  const escaped = text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: these are what it escapes
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g,
    asEscape,
  );
  return oneLine ? escaped.replace(/[\t\n]/g, asEscape) : escaped;
}

function item(text: string): HTMLElement {
  const row = document.createElement("li");
  row.className = "hint";
  row.textContent = text;
  return row;
}
