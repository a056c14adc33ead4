import type { Envelope } from "../adapters/browser/index.ts";
import { parseBytes, parseCompute } from "../core/config/units.ts";
import type { HostRequest } from "../core/runtime/envelope.ts";
import type { LiteralObject } from "./options.ts";

const DEFAULT_COMPUTE = "MEDIUM";
const DEFAULT_RAM_BYTES = 256 * 1024 * 1024;

/** The envelope as a person reads it: outcome first, then what the run cost. */
export function renderSummary(
  into: HTMLElement,
  envelope: Envelope,
  options: LiteralObject | null,
  leading: [string, string][] = [],
): void {
  const { execution } = envelope;
  const status = document.createElement("p");
  status.className = `status ${envelope.success ? "ok" : "failed"}`;
  status.dataset.status = envelope.success ? "success" : (envelope.error?.error_type ?? "failed");
  status.textContent = envelope.success ? "✓ success" : `✗ ${envelope.error?.error_type}`;

  const parts: HTMLElement[] = [status];
  if (envelope.error) parts.push(block("error-message", envelope.error.message));
  else parts.push(block("result", JSON.stringify(envelope.result, null, 2) ?? "undefined"));

  // A task refused before it started (its code or options) spent nothing: no meters to show.
  const started = !["compile_error", "config_error"].includes(envelope.error?.error_type ?? "");
  const facts = costFacts(
    execution,
    options?.compute ?? DEFAULT_COMPUTE,
    options?.ram ?? DEFAULT_RAM_BYTES,
    [["task", execution.task_name], ...leading],
    started,
  );
  addFact(facts, "retries", String(execution.retries));
  addFact(facts, "host requests", String(execution.host_requests.length));
  parts.push(facts);

  if (execution.host_requests.length > 0) {
    const list = document.createElement("ul");
    list.className = "requests";
    for (const request of execution.host_requests) {
      const item = document.createElement("li");
      const outcome = requestOutcome(request);
      item.className = outcome;
      const shown = outcome === "allowed" ? String(request.status) : outcome;
      item.textContent = `${request.method} ${request.url} → ${shown}${request.reason ? `: ${request.reason}` : ""}`;
      list.append(item);
    }
    parts.push(list);
  }
  into.replaceChildren(...parts);
}

/**
 * What a run cost as a list of terms: the `leading` ones, then duration, and fuel and memory
 * against the `compute` and `ram` limits they ran under (a bar when the limit parses).
 */
export function costFacts(
  execution: Envelope["execution"],
  compute: unknown,
  ram: unknown,
  leading: [string, string][] = [],
  started = true,
): HTMLDListElement {
  const facts = document.createElement("dl");
  facts.className = "facts";
  for (const [term, detail] of leading) addFact(facts, term, detail);
  addFact(facts, "duration", `${execution.duration_ms} ms`);
  if (!started) {
    addFact(facts, "fuel", "none: the task did not start");
    return facts;
  }
  const fuelLimit = limitOf(() => parseCompute(compute));
  addFact(
    facts,
    "fuel",
    meter(execution.fuel_consumed, fuelLimit, "fuel", (n) => n.toLocaleString("en")),
  );
  const ramLimit = limitOf(() => (typeof ram === "number" ? ram : parseBytes(ram, "ram")));
  addFact(facts, "memory", meter(execution.ram_used, ramLimit, "memory", formatSize));
  return facts;
}

function addFact(facts: HTMLDListElement, term: string, detail: string | HTMLElement): void {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.append(detail);
  facts.append(dt, dd);
}

/** Denied: the runtime's policy refused it; failed: it was allowed but no response came back. */
function requestOutcome(request: HostRequest): "allowed" | "denied" | "failed" {
  if (request.status !== null) return "allowed";
  return /allowedHosts|refus|not allowed|private|loopback|link-local|metadata/i.test(
    request.reason ?? "",
  )
    ? "denied"
    : "failed";
}

function limitOf(parse: () => number): number | undefined {
  try {
    return parse();
  } catch {
    return undefined;
  }
}

/** A value against its limit: the number, and a bar when the limit is known. */
function meter(
  value: number,
  limit: number | undefined,
  what: string,
  show: (n: number) => string,
): HTMLElement {
  const wrap = document.createElement("span");
  wrap.className = "meter";
  const text = document.createElement("span");
  text.textContent = limit === undefined ? show(value) : `${show(value)} of ${show(limit)}`;
  wrap.append(text);
  if (limit !== undefined) {
    const bar = document.createElement("meter");
    bar.min = 0;
    bar.max = limit;
    bar.value = Math.min(value, limit);
    bar.high = limit * 0.8;
    bar.optimum = 0;
    bar.setAttribute("aria-label", `${what} used of its limit`);
    wrap.append(bar);
  }
  return wrap;
}

function formatSize(bytes: number): string {
  const trim = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));
  if (bytes >= 1024 * 1024) return `${trim(bytes / 1024 / 1024)} MB`;
  if (bytes >= 1024) return `${trim(bytes / 1024)} KB`;
  return `${bytes} B`;
}

/** A preformatted block of `text` (set as text, never as markup). */
export function block(className: string, text: string): HTMLPreElement {
  const pre = document.createElement("pre");
  pre.className = className;
  pre.textContent = text;
  return pre;
}
