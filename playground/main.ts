import { javascript } from "@codemirror/lang-javascript";
import { python } from "@codemirror/lang-python";
import { Compartment } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { basicSetup } from "codemirror";
import type * as Capsule from "../adapters/browser/index.ts";
import type { Envelope } from "../adapters/browser/index.ts";
import { type EdgeOutcome, edgeAvailable, runOnEdge, TOKEN_KEY } from "./edge.ts";
import { EXAMPLES, examplesIn, type Language } from "./examples.ts";
import { ensureDirectories, FileBrowser, OPFS_ROOT } from "./files.ts";
import { HistoryView } from "./history.ts";
import {
  allowedDirectories,
  FIELD_NAMES,
  fieldsOf,
  findMainOptions,
  findPythonMainOptions,
  formatOptions,
  type OptionFields,
  withField,
} from "./options.ts";
import { SessionView } from "./session.ts";
import { decodeState, encodeState, type SharedState } from "./share.ts";
import { renderSummary } from "./summary.ts";
import { Timeline } from "./timeline.ts";

// The runtime is the built script-module folder, copied beside the page: loaded at run time, so the
// page uses exactly what `<script type=module>` users get, and its worker and wasm resolve from it.
const runtime: Promise<typeof Capsule> = import(
  /* @vite-ignore */ new URL("capsule/capsule.js", document.baseURI).href
);

const MAX_CONSOLE_LINES = 2000;
const EDGE_DEFAULT_RAM_BYTES = 16 * 1024 * 1024;

const $ = <T extends HTMLElement>(selector: string) => {
  const element = document.querySelector<T>(selector);
  if (!element) throw new Error(`the page has no ${selector}`);
  return element;
};

const languageSelect = $<HTMLSelectElement>("#language");
const exampleSelect = $<HTMLSelectElement>("#example");
const runButton = $<HTMLButtonElement>("#run");
const stopButton = $<HTMLButtonElement>("#stop");
const shareButton = $<HTMLButtonElement>("#share");
const shareStatus = $<HTMLElement>("#share-status");
const shareLink = $<HTMLInputElement>("#share-link");
const optionsFieldset = $<HTMLFieldSetElement>("#options");
const optionsNote = $<HTMLElement>("#options-note");
const codeHint = $<HTMLElement>("#code-hint");
const argsInput = $<HTMLInputElement>("#args");
const envInput = $<HTMLTextAreaElement>("#env");
const whereSelect = $<HTMLSelectElement>("#where");
const wherePair = $<HTMLElement>("#where-pair");
const whereNote = $<HTMLElement>("#where-note");
const edgeInputs = $<HTMLElement>("#edge-inputs");
const edgeToken = $<HTMLInputElement>("#edge-token");
const summary = $<HTMLElement>("#summary");
const consoleOutput = $<HTMLElement>("#console");
const envelopeOutput = $<HTMLElement>("#envelope");
const timeline = new Timeline($("#timeline"));
const files = new FileBrowser($("#files"), $("#file-viewer"), runtime);
const runHistory = new HistoryView($("#history"), $("#history-viewer"), runtime);

const taskView = $<HTMLElement>("#task-view");
const taskControls = $<HTMLElement>("#task-controls");
const sessionView = $<HTMLElement>("#session-view");
const modeInputs = Array.from(
  document.querySelectorAll<HTMLInputElement>('#mode input[name="mode"]'),
);
new SessionView(
  {
    language: $("#session-language"),
    languageNote: $("#session-language-note"),
    reset: $("#session-reset"),
    status: $("#session-status"),
    cells: $("#cells"),
    input: $("#cell-code"),
    inputLabel: $("#cell-code-label"),
    run: $("#cell-run"),
    limits: $("#session-limits"),
  },
  runtime,
);
let mode: SharedState["mode"] = "task";

const fieldInputs = new Map(
  FIELD_NAMES.map((name) => [name, $<HTMLInputElement>(`#options input[name="${name}"]`)]),
);
const OPTIONS_NOTE = optionsNote.innerHTML;

const LANGUAGE_NAMES: Record<Language, string> = { ts: "TypeScript", py: "Python" };
/** The editor's grammar: TypeScript's, or none for Python (no Python grammar is bundled). */
const grammar = new Compartment();
let language: Language = "ts";

/** Set once `GET health` beside the page answers as a Capsule Worker does. */
let edgeServed = false;
const edgeOption = whereSelect.querySelector<HTMLOptionElement>('option[value="edge"]');

let running: AbortController | undefined;
let runCount = 0;
let fromFields = false;

const editor = new EditorView({
  parent: $("#editor"),
  extensions: [
    keymap.of([
      {
        key: "Mod-Enter",
        run: () => {
          void runTask();
          return true;
        },
      },
    ]),
    basicSetup,
    grammar.of(grammarFor(language)),
    EditorView.lineWrapping,
    EditorView.updateListener.of((update) => {
      if (!update.docChanged) return;
      // Edited code is no longer the example the list names.
      const shown = EXAMPLES.find((example) => example.id === exampleSelect.value);
      if (shown !== undefined && shown.code !== code()) exampleSelect.value = "custom";
      if (!fromFields) syncFieldsFromCode();
      saveStateSoon();
    }),
  ],
});

function grammarFor(lang: Language) {
  return [
    lang === "ts" ? javascript({ typescript: true }) : python(),
    EditorView.contentAttributes.of({ "aria-label": `Task code (${LANGUAGE_NAMES[lang]})` }),
  ];
}

/** Switches the editor, the example list and the option fields to `lang`. */
function setLanguage(lang: Language): void {
  language = lang;
  languageSelect.value = lang;
  editor.dispatch({ effects: grammar.reconfigure(grammarFor(lang)) });
  codeHint.textContent = `${LANGUAGE_NAMES[lang]} · Ctrl+Enter runs`;
  exampleSelect.replaceChildren(
    ...examplesIn(lang).map((example) => new Option(example.title, example.id)),
    customOption,
  );
  updateWhere();
  // Pyodide takes seconds to load: start a sandbox while the visitor reads the code.
  if (lang === "py") void runtime.then((capsule) => capsule.preparePython()).catch(() => {});
}

/** Offers the edge when a Worker serves the page and the task is TypeScript (what /run takes). */
function updateWhere(): void {
  const edgeUsable = edgeServed && language === "ts";
  // Only a Worker-served page has a choice to offer.
  wherePair.hidden = !edgeServed;
  if (edgeOption) edgeOption.disabled = !edgeUsable;
  if (!edgeUsable) whereSelect.value = "page";
  const edge = whereSelect.value === "edge";
  edgeInputs.hidden = !edge;
  document.body.dataset.where = whereSelect.value;
  whereNote.textContent = edge
    ? "Runs in the Worker that serves this page (POST /run): it answers with the envelope only, so console output and the timeline stay there, and the page's files are not sent."
    : !edgeServed
      ? "Runs in this page, in sandboxes in Web Workers. The edge is offered when the Worker from examples/workers serves this page."
      : language === "ts"
        ? "Runs in this page, in sandboxes in Web Workers."
        : "Runs in this page: the Worker runs TypeScript and JavaScript tasks only.";
}

/** Shows the task editor or the session's cells; the other view keeps its state meanwhile. */
function setMode(next: SharedState["mode"]): void {
  mode = next;
  for (const input of modeInputs) input.checked = input.value === next;
  taskView.hidden = next !== "task";
  taskControls.hidden = next !== "task";
  sessionView.hidden = next !== "session";
  document.body.dataset.mode = next;
}

function code(): string {
  return editor.state.doc.toString();
}

function setCode(text: string): void {
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: text } });
}

/** Fills the option fields from the code, or disables them when the code's options are not literal. */
function syncFieldsFromCode(): void {
  if (language === "py") {
    // Shown, not edited: the fields write TypeScript literals.
    optionsFieldset.disabled = true;
    optionsNote.innerHTML =
      'A Python task takes its options from <code>@task(name="main", …)</code>: edit them in the code.';
    const fields = fieldsOf(findPythonMainOptions(code()) ?? {});
    for (const [name, input] of fieldInputs) input.value = fields[name];
    return;
  }
  const found = findMainOptions(code());
  const editable = found?.value != null;
  optionsFieldset.disabled = !editable;
  optionsNote.innerHTML = editable
    ? OPTIONS_NOTE
    : found
      ? "The options of <code>main</code> are not a plain object literal: edit them in the code."
      : 'No <code>task({ name: "main", … })</code> found in the code.';
  if (!found?.value) return;
  const fields = fieldsOf(found.value);
  for (const [name, input] of fieldInputs) {
    if (document.activeElement !== input) input.value = fields[name];
  }
}

function onFieldInput(name: keyof OptionFields, text: string): void {
  const found = findMainOptions(code());
  if (!found?.value) return;
  const literal = formatOptions(withField(found.value, name, text), found.indent);
  fromFields = true;
  try {
    editor.dispatch({ changes: { from: found.start, to: found.end, insert: literal } });
  } finally {
    fromFields = false;
  }
}

for (const [name, input] of fieldInputs) {
  input.addEventListener("input", () => onFieldInput(name, input.value));
  input.addEventListener("change", () => syncFieldsFromCode());
}

function parseArgs(text: string): string[] {
  return text.trim() === "" ? [] : text.split(",").map((arg) => arg.trim());
}

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Za-z_][\w]*)\s*=(.*)$/.exec(line);
    if (match?.[1]) env[match[1]] = match[2]?.trim() ?? "";
  }
  return env;
}

function loadExample(id: string): void {
  const example = EXAMPLES.find((e) => e.id === id) ?? examplesIn(language)[0];
  if (!example) return;
  if ((example.language ?? "ts") !== language) setLanguage(example.language ?? "ts");
  exampleSelect.value = example.id;
  setCode(example.code);
  argsInput.value = example.args.join(", ");
}

function appendLog(level: string, text: string, task: string): void {
  const line = document.createElement("span");
  line.className = `log ${level}`;
  line.textContent = `[${task}] ${text}\n`;
  consoleOutput.append(line);
  while (consoleOutput.childNodes.length > MAX_CONSOLE_LINES) consoleOutput.firstChild?.remove();
  consoleOutput.scrollTop = consoleOutput.scrollHeight;
}

async function runTask(): Promise<void> {
  if (running) return;
  const controller = new AbortController();
  running = controller;
  runButton.disabled = true;
  stopButton.disabled = false;
  document.body.dataset.state = "running";
  // For tests and scripts: which run the page shows.
  document.body.dataset.runs = String(++runCount);
  consoleOutput.replaceChildren();
  envelopeOutput.textContent = "Running…";
  summary.replaceChildren(statusLine("Running…"));
  // At phone width the result sits far below the Run button: bring it into view.
  if (window.matchMedia("(max-width: 860px)").matches) {
    summary.closest("section")?.scrollIntoView({ block: "start" });
  }
  timeline.reset();
  const source = code();
  if (whereSelect.value === "edge" && language === "ts") {
    await runEdgeTask(source, controller.signal);
    return;
  }
  let envelope: Envelope;
  try {
    const capsule = await runtime;
    await ensureDirectories(allowedDirectories(source));
    envelope = await capsule.run({
      code: source,
      language,
      args: parseArgs(argsInput.value),
      env: parseEnv(envInput.value),
      opfsRoot: OPFS_ROOT,
      signal: controller.signal,
      onLog: appendLog,
      onEvent: (event) => timeline.add(event),
    });
  } catch (error) {
    // Only loading the runtime can throw: run() reports every failure as an envelope.
    summary.replaceChildren(statusLine(`The runtime did not load: ${error}`));
    finishRun();
    return;
  }
  timeline.finish();
  envelopeOutput.textContent = JSON.stringify(envelope, null, 2);
  renderSummary(
    summary,
    envelope,
    language === "ts" ? (findMainOptions(source)?.value ?? null) : findPythonMainOptions(source),
  );
  finishRun();
  await files.refresh();
  await runHistory.refresh();
}

async function runEdgeTask(source: string, signal: AbortSignal): Promise<void> {
  const outcome: EdgeOutcome = await runOnEdge(
    document.baseURI,
    {
      code: source,
      language: "ts",
      args: parseArgs(argsInput.value),
      env: parseEnv(envInput.value),
    },
    edgeToken.value,
    signal,
  );
  timeline.note("A run on the edge answers with its envelope only: no timeline comes back.");
  if (outcome.kind === "refused") {
    envelopeOutput.textContent = JSON.stringify(
      {
        status: outcome.status,
        error: { error_type: outcome.errorType, message: outcome.message },
      },
      null,
      2,
    );
    const status = document.createElement("p");
    status.className = "status failed";
    status.dataset.status = outcome.errorType;
    status.textContent = `✗ the Worker refused: ${outcome.errorType}${outcome.status ? ` (HTTP ${outcome.status})` : ""}`;
    const message = document.createElement("pre");
    message.className = "error-message";
    message.textContent = outcome.message;
    summary.replaceChildren(status, message);
    if (outcome.status === 401 || outcome.status === 503) {
      summary.append(
        statusLine(
          "Type the Worker's token (its CAPSULE_TOKEN secret) in the Worker token field below the args, then run again.",
        ),
      );
    }
    finishRun();
    return;
  }
  appendLog("info", "console output of a run on the edge stays in the Worker's log", "edge");
  envelopeOutput.textContent = JSON.stringify(outcome.envelope, null, 2);
  // A Worker's sandboxes get 16 MiB unless the task asks for more (createCapsuleApp's default).
  const options = { ram: EDGE_DEFAULT_RAM_BYTES, ...findMainOptions(source)?.value };
  renderSummary(summary, outcome.envelope, options, [["ran in", "the Worker (edge)"]]);
  finishRun();
}

function finishRun(): void {
  running = undefined;
  runButton.disabled = false;
  stopButton.disabled = true;
  document.body.dataset.state = "done";
}

function statusLine(text: string): HTMLParagraphElement {
  const p = document.createElement("p");
  p.className = "hint";
  p.textContent = text;
  return p;
}

let saveTimer: ReturnType<typeof setTimeout> | undefined;
function saveStateSoon(): void {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => void saveState(), 400);
}

/** Keeps the address current, so reloading or copying it keeps the code. */
async function saveState(): Promise<string> {
  const hash = await encodeState({
    code: code(),
    args: parseArgs(argsInput.value),
    language,
    mode,
  });
  history.replaceState(null, "", hash);
  return location.href;
}

async function share(): Promise<void> {
  clearTimeout(saveTimer);
  const link = await saveState();
  shareLink.value = link;
  shareStatus.hidden = false;
  shareLink.focus();
  shareLink.select();
  try {
    await navigator.clipboard.writeText(link);
    shareButton.textContent = "Link copied";
  } catch {
    shareButton.textContent = "Share link";
  }
}

const customOption = new Option("Your code", "custom");
customOption.hidden = true;
setLanguage(language);
languageSelect.addEventListener("change", () => {
  setLanguage(languageSelect.value === "py" ? "py" : "ts");
  loadExample(examplesIn(language)[0]?.id ?? "");
  syncFieldsFromCode();
});
exampleSelect.addEventListener("change", () => loadExample(exampleSelect.value));
runButton.addEventListener("click", () => void runTask());
whereSelect.addEventListener("change", () => {
  updateWhere();
  if (whereSelect.value === "edge") edgeToken.value ||= sessionStorage.getItem(TOKEN_KEY) ?? "";
});
edgeToken.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, edgeToken.value));
stopButton.addEventListener("click", () => running?.abort());
shareButton.addEventListener("click", () => void share());
argsInput.addEventListener("input", saveStateSoon);
for (const input of modeInputs) {
  input.addEventListener("change", () => {
    if (!input.checked) return;
    setMode(input.value === "session" ? "session" : "task");
    saveStateSoon();
  });
}
$("#refresh-files").addEventListener("click", () => void files.refresh());
$("#refresh-history").addEventListener("click", () => void runHistory.refresh());
window.addEventListener("hashchange", () => void restoreFromHash());

async function restoreFromHash(): Promise<boolean> {
  const state = await decodeState(location.hash);
  if (!state) return false;
  if (state.language !== language) setLanguage(state.language);
  if (state.code !== code()) setCode(state.code);
  argsInput.value = state.args.join(", ");
  setMode(state.mode);
  const example = EXAMPLES.find((e) => e.code === state.code);
  exampleSelect.value = example?.id ?? "custom";
  return true;
}

if (!(await restoreFromHash())) loadExample(examplesIn(language)[0]?.id ?? "");
syncFieldsFromCode();
timeline.render();
await files.refresh();
document.body.dataset.ready = "true";
// Asked after the page is ready, so a slow answer never holds up the first paint.
void edgeAvailable(document.baseURI).then((served) => {
  edgeServed = served;
  updateWhere();
  document.body.dataset.edge = String(served);
});
// The journal (SQLite in OPFS) loads after the first paint too.
void runHistory.refresh().then(() => {
  document.body.dataset.history = "ready";
});
