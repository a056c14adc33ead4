import type * as Capsule from "../adapters/browser/index.ts";
import type { CellEnvelope, Session } from "../adapters/browser/index.ts";
import { OPFS_ROOT } from "./files.ts";
import { block, costFacts } from "./summary.ts";

export type SessionLanguage = "javascript" | "python";

/** Cells shown at once: older ones leave the page (their state stays in the session). */
const MAX_CELLS = 200;
/** Characters of one output block shown; the rest is counted, not kept. */
const MAX_BLOCK_CHARS = 20_000;
const LANGUAGE_NAMES: Record<SessionLanguage, string> = {
  javascript: "JavaScript",
  python: "Python",
};

export interface SessionElements {
  language: HTMLSelectElement;
  /** Says why a language is not offered, next to the select. */
  languageNote: HTMLElement;
  reset: HTMLButtonElement;
  status: HTMLElement;
  cells: HTMLOListElement;
  input: HTMLTextAreaElement;
  inputLabel: HTMLElement;
  run: HTMLButtonElement;
  /** Where the page names the limits cells run under. */
  limits: HTMLElement;
}

/**
 * The session mode: a notebook whose cells run one after another in one `Session`, so variables,
 * functions and imports carry from cell to cell. Each cell shows its console output, then its last
 * value, or its error; and what it cost. A cell that fails leaves the state as it was.
 */
export class SessionView {
  #session: Session | undefined;
  #language: SessionLanguage = "javascript";
  #busy = false;
  #cellCount = 0;
  /** The limits cells run under (the runtime's cell defaults), for the fuel and memory bars. */
  #limits: { compute: unknown; ram: unknown } = { compute: "LOW", ram: "256MB" };
  /** Where the running cell's console lines go as they arrive. */
  #liveOutput: HTMLPreElement | undefined;

  constructor(
    readonly elements: SessionElements,
    readonly runtime: Promise<typeof Capsule>,
  ) {
    const { language, reset, input, run } = elements;
    run.addEventListener("click", () => void this.runCell());
    reset.addEventListener("click", () => void this.reset());
    language.addEventListener("change", () => void this.#switchLanguage(language.value));
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        void this.runCell();
      }
    });
    this.#setLanguageLabels();
    void runtime.then(({ CELL_DEFAULTS: { compute, ram, timeout } }) => {
      this.#limits = { compute, ram };
      elements.limits.textContent = `compute ${compute}, ram ${ram}, timeout ${timeout}`;
    });
    window.addEventListener("pagehide", () => void this.#session?.close());
  }

  /** Runs what the input holds as the next cell; ignored while a cell runs or when it is empty. */
  async runCell(): Promise<void> {
    const code = this.elements.input.value;
    if (this.#busy || code.trim() === "") return;
    this.elements.input.value = "";
    const cell = this.#appendCell(code);
    await this.#whileBusy(`Running cell ${this.#cellCount}…`, async () => {
      const envelope = await this.#run(code, cell.output);
      this.#finishCell(cell.item, cell.output, envelope);
    });
    if (cell.item.dataset.status === "running") {
      // The runtime itself failed (the status line says how): the cell never ran.
      cell.item.dataset.status = "not_run";
      cell.item.removeAttribute("aria-busy");
    }
    this.elements.input.focus();
  }

  /** Forgets the session's variables; the cells stay on the page, marked. */
  async reset(): Promise<void> {
    if (this.#busy) return;
    await this.#whileBusy("Resetting…", async () => {
      await this.#session?.reset();
      this.#mark("State reset: later cells start from an empty session.");
    });
    this.#announce("State reset.");
  }

  /** The session, made on first use with the cell defaults (compute LOW, ram 256MB, 30 s). */
  async #ensureSession(): Promise<Session> {
    if (this.#session) return this.#session;
    const capsule = await this.runtime;
    this.#session = new capsule.Session(this.#language, {
      opfsRoot: OPFS_ROOT,
      onLog: (_level, text) => {
        const live = this.#liveOutput;
        if (live && (live.textContent?.length ?? 0) <= MAX_BLOCK_CHARS) {
          live.textContent += `${text}\n`;
        }
      },
    });
    return this.#session;
  }

  async #run(code: string, output: HTMLPreElement): Promise<CellEnvelope> {
    const session = await this.#ensureSession();
    this.#liveOutput = output;
    try {
      return await session.runCode(code);
    } finally {
      this.#liveOutput = undefined;
    }
  }

  /**
   * A new language is a new session. Python sessions load Pyodide in the page: the first call
   * shows whether this build has them, and if not the option says so and JavaScript stays.
   */
  async #switchLanguage(value: string): Promise<void> {
    const language: SessionLanguage = value === "python" ? "python" : "javascript";
    if (language === this.#language || this.#busy) {
      this.elements.language.value = this.#language;
      return;
    }
    await this.#whileBusy(`Starting a ${LANGUAGE_NAMES[language]} session…`, async () => {
      const previous = { session: this.#session, language: this.#language };
      this.#session = undefined;
      this.#language = language;
      if (language === "python") {
        const envelope = await this.#run("None", document.createElement("pre"));
        if (!envelope.success) {
          // The session the page had goes on, as it was.
          const failed = this.#session as Session | undefined;
          this.#session = previous.session;
          this.#language = previous.language;
          await failed?.close();
          this.#pythonUnavailable(envelope);
          return;
        }
      }
      await previous.session?.close();
      this.#setLanguageLabels();
      this.#mark(`A new ${LANGUAGE_NAMES[language]} session: later cells start from it.`);
    });
    this.elements.language.value = this.#language;
    if (!this.elements.status.classList.contains("error")) {
      this.#announce(`${LANGUAGE_NAMES[this.#language]} session: cells share its state.`);
    }
  }

  /** Says why a Python session did not start, beside the select where it stays seen. */
  #pythonUnavailable(envelope: CellEnvelope): void {
    const message = `${envelope.error?.error_type}: ${envelope.error?.message}`;
    this.#setLanguageLabels();
    const option = Array.from(this.elements.language.options).find((o) => o.value === "python");
    if (option && envelope.error?.error_type === "config_error") {
      option.disabled = true;
      option.textContent = "Python (not available)";
      const note = this.elements.languageNote;
      note.textContent = `Python sessions are not available in this build (${message})`;
      note.hidden = false;
      this.elements.language.setAttribute("aria-describedby", note.id);
    }
    this.#showError(`Python sessions are not available here. ${message}`);
  }

  #mark(text: string): void {
    const mark = document.createElement("li");
    mark.className = "cell-reset";
    mark.textContent = text;
    this.#append(mark);
  }

  #setLanguageLabels(): void {
    const name = LANGUAGE_NAMES[this.#language];
    this.elements.language.value = this.#language;
    this.elements.inputLabel.textContent = `Next cell (${name})`;
    this.elements.input.placeholder =
      this.#language === "python" ? "x = 1\nx + 1" : "let n = 1;\nn + 1";
    document.body.dataset.sessionLanguage = this.#language;
  }

  async #whileBusy(status: string, work: () => Promise<void>): Promise<void> {
    this.#busy = true;
    this.elements.run.disabled = true;
    this.elements.reset.disabled = true;
    this.elements.language.disabled = true;
    document.body.dataset.sessionState = "running";
    this.#announce(status);
    try {
      await work();
      if (this.elements.status.textContent === status) this.#announce("");
    } catch (error) {
      // runCode reports the cell's own failures as envelopes; this is the runtime not loading.
      this.#showError(`The runtime failed: ${error}`);
    } finally {
      this.#busy = false;
      this.elements.run.disabled = false;
      this.elements.reset.disabled = false;
      this.elements.language.disabled = false;
      document.body.dataset.sessionState = "idle";
    }
  }

  #announce(text: string): void {
    this.elements.status.classList.remove("error");
    this.elements.status.textContent = text;
  }

  #showError(text: string): void {
    this.elements.status.classList.add("error");
    this.elements.status.textContent = text;
  }

  #appendCell(code: string): { item: HTMLLIElement; output: HTMLPreElement } {
    const number = ++this.#cellCount;
    const item = document.createElement("li");
    item.className = "cell";
    item.dataset.cell = String(number);
    item.dataset.status = "running";
    item.setAttribute("aria-busy", "true");
    const head = document.createElement("div");
    head.className = "cell-head";
    const label = document.createElement("span");
    label.className = "cell-number";
    label.textContent = `[${number}] ${LANGUAGE_NAMES[this.#language]}`;
    const again = document.createElement("button");
    again.type = "button";
    again.className = "small";
    again.textContent = "Edit again";
    again.setAttribute("aria-label", `Put cell ${number}'s code back in the input`);
    again.addEventListener("click", () => {
      this.elements.input.value = code;
      this.elements.input.focus();
    });
    head.append(label, again);
    const source = block("cell-source", code);
    source.setAttribute("aria-label", `Cell ${number} code`);
    const output = block("cell-stdout", "");
    output.setAttribute("aria-label", `Cell ${number} console output`);
    item.append(head, source, output);
    this.#append(item);
    return { item, output };
  }

  #finishCell(item: HTMLLIElement, output: HTMLPreElement, envelope: CellEnvelope): void {
    const number = item.dataset.cell;
    item.removeAttribute("aria-busy");
    item.dataset.status = envelope.success ? "success" : (envelope.error?.error_type ?? "failed");
    const { result, error } = envelope;
    if (result) output.textContent = clip(result.stdout);
    else output.textContent = clip(output.textContent ?? "");
    if (output.textContent === "") output.remove();
    const status = document.createElement("p");
    status.className = `status ${envelope.success ? "ok" : "failed"}`;
    status.textContent = envelope.success ? "✓" : `✗ ${error?.error_type}`;
    item.querySelector(".cell-head")?.insertBefore(status, item.querySelector(".cell-head button"));
    if (error) {
      const shown = block("cell-error error-message", "");
      const type = document.createElement("strong");
      type.textContent = error.error_type;
      shown.append(type, `: ${clip(error.message)}`);
      shown.setAttribute("aria-label", `Cell ${number} error`);
      item.append(shown);
    } else if (result) {
      const value = valueText(result.output, result.stdout);
      if (value !== "") {
        const shown = block("cell-value", clip(value));
        shown.setAttribute("aria-label", `Cell ${number} value`);
        item.append(shown);
      }
    }
    item.append(costFacts(envelope.execution, this.#limits.compute, this.#limits.ram));
    document.body.dataset.cells = String(number);
    item.scrollIntoView({ block: "nearest" });
  }

  #append(item: HTMLLIElement): void {
    const list = this.elements.cells;
    list.append(item);
    while (list.children.length > MAX_CELLS) list.firstElementChild?.remove();
  }
}

/** The last value's text: the cell's output after its console lines. */
function valueText(output: string, stdout: string): string {
  if (output.startsWith(stdout)) return output.slice(stdout.length);
  if (stdout.startsWith(output)) return "";
  return output;
}

function clip(text: string): string {
  if (text.length <= MAX_BLOCK_CHARS) return text;
  return `${text.slice(0, MAX_BLOCK_CHARS)}… (${text.length - MAX_BLOCK_CHARS} more characters)`;
}
