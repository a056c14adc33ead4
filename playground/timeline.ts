import type { LifecycleEvent } from "../adapters/browser/index.ts";

type Outcome = "running" | "completed" | "failed" | "timed_out" | "retrying" | "cancelled";

interface Attempt {
  attempt: number;
  start: number;
  end?: number;
  outcome: Outcome;
  message?: string;
}

interface TaskRun {
  task: string;
  depth: number;
  created: number;
  attempts: Attempt[];
  done: boolean;
  /**
   * The run's duration as its last event states it: the envelope's own `duration_ms`, so the
   * timeline and the summary show one figure. (Subtracting the events' whole-millisecond
   * timestamps measured from the first attempt, not from the task's start, and rounded twice:
   * it could differ by 1 ms or more.)
   */
  durationMs?: number;
}

/**
 * The run's tasks as rows of bars on one time axis: overlapping bars ran concurrently. Each
 * lifecycle event names its task run by id, so parallel sub-tasks of the same name stay apart.
 */
export class Timeline {
  #runs: TaskRun[] = [];
  readonly #byId = new Map<string, TaskRun>();
  #origin = 0;
  #frame = 0;
  #finishedAt: number | undefined;
  #note: string | undefined;

  constructor(readonly element: HTMLElement) {}

  reset(): void {
    this.#runs = [];
    this.#byId.clear();
    this.#origin = Date.now();
    this.#finishedAt = undefined;
    this.#note = undefined;
    this.render();
  }

  /** Shown instead of rows when a run reports no events (a run on the edge). */
  note(text: string): void {
    this.#note = text;
    this.render();
  }

  add(event: LifecycleEvent): void {
    if (event.type === "created") {
      const run: TaskRun = {
        task: event.task,
        depth: event.depth,
        created: event.at,
        attempts: [],
        done: false,
      };
      this.#runs.push(run);
      this.#byId.set(event.id, run);
      this.#schedule();
      return;
    }
    const run = this.#byId.get(event.id);
    if (!run) return;
    const current = run.attempts.find((a) => a.outcome === "running");
    if (event.type === "running") {
      run.attempts.push({ attempt: event.attempt, start: event.at, outcome: "running" });
    } else {
      const ending = current ?? { attempt: event.attempt, start: event.at, outcome: "running" };
      if (!current) run.attempts.push(ending);
      ending.end = event.at;
      ending.outcome = event.type;
      if (event.error) ending.message = `${event.error.error_type}: ${event.error.message}`;
      if (event.type !== "retrying") {
        run.done = true;
        run.durationMs = event.duration_ms;
      }
    }
    this.#schedule();
  }

  /** Ends open bars at the time the run finished (events may trail the envelope). */
  finish(): void {
    this.#finishedAt = Date.now();
    this.render();
  }

  #schedule(): void {
    if (this.#frame !== 0) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.render();
    });
  }

  render(): void {
    const element = this.element;
    element.replaceChildren();
    if (this.#runs.length === 0) {
      element.append(paragraph(this.#note ?? "Run a task to see its sub-tasks here."));
      return;
    }
    const now = this.#finishedAt ?? Date.now();
    const ends = this.#runs.flatMap((run) => run.attempts.map((a) => a.end ?? now));
    const span = Math.max(1, ...ends.map((end) => end - this.#origin));
    const list = document.createElement("ol");
    list.className = "timeline-rows";
    for (const run of this.#runs) {
      const row = document.createElement("li");
      row.className = "timeline-row";
      const label = document.createElement("span");
      label.className = "timeline-label";
      label.style.paddingInlineStart = `${run.depth * 0.75}rem`;
      const last = run.attempts.at(-1);
      const retries = run.attempts.filter((a) => a.outcome === "retrying").length;
      const status = last?.outcome ?? "queued";
      label.textContent = `${run.task}${retries > 0 ? ` ↻${retries}` : ""}`;
      label.title = `${run.task}: ${status}${retries > 0 ? `, ${retries} retried` : ""}`;
      const track = document.createElement("span");
      track.className = "timeline-track";
      for (const attempt of run.attempts) {
        const bar = document.createElement("span");
        bar.className = `timeline-bar ${attempt.outcome}`;
        const start = attempt.start - this.#origin;
        const end = (attempt.end ?? now) - this.#origin;
        bar.style.left = `${(start / span) * 100}%`;
        bar.style.width = `max(3px, ${((end - start) / span) * 100}%)`;
        bar.title = `${run.task} attempt ${attempt.attempt}: ${attempt.outcome}, ${start}–${end} ms${attempt.message ? `\n${attempt.message}` : ""}`;
        track.append(bar);
      }
      const outcome = document.createElement("span");
      outcome.className = `timeline-outcome ${status}`;
      const took = run.durationMs ?? (last?.end ?? 0) - (run.attempts[0]?.start ?? 0);
      const total = last?.end === undefined ? "" : ` ${took} ms`;
      outcome.textContent = `${status.replace("_", " ")}${total}`;
      row.append(label, track, outcome);
      list.append(row);
    }
    const axis = paragraph(`0 – ${span} ms since Run`);
    axis.className = "timeline-axis";
    element.append(list, axis);
    if (this.#finishedAt === undefined && this.#runs.some((run) => !run.done)) this.#schedule();
  }
}

function paragraph(text: string): HTMLParagraphElement {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}
