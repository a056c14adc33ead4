import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { type Envelope, type LifecycleEvent, run } from "../adapters/node/index.ts";

// The script loads this module as one bundle, so it must stop this bundle's pool.
export { shutdown } from "../adapters/node/index.ts";

/**
 * A bounded load test through the public `run()`: a deterministic mix of successes, failures,
 * timeouts and fuel exhaustion, a fixed number in flight, and a check that every task got
 * exactly one envelope of the kind it should have.
 */

export interface LoadOptions {
  tasks: number;
  /** At most this many `run()` calls outstanding at once. */
  inFlight: number;
  /**
   * Tasks run (and checked) before the baseline is taken: threads spawned, bundles compiled, heaps
   * grown. Default: ten per slot in flight.
   */
  warmUpTasks?: number;
  /** Pause after a forced GC before memory is read, so freed memory reaches the OS. */
  settleMs?: number;
  /** A task whose envelope has not come by then is counted lost and its slot freed. */
  lostAfterMs?: number;
  /** Progress lines, about every 1000 tasks. */
  log?: (line: string) => void;
  /**
   * What the checks receive in place of task `index`'s envelope: none (lost), two (duplicated),
   * or a changed one. Only for proving that the checks catch such faults.
   */
  alter?: (index: number, envelope: Envelope) => Envelope[];
}

export interface KindTally {
  kind: TaskKind;
  tasks: number;
  asExpected: number;
}

export interface MemorySample {
  rss: number;
  heapUsed: number;
}

export interface LoadReport {
  tasks: number;
  inFlight: number;
  warmUpTasks: number;
  /** The most `run()` calls outstanding at one time. */
  mostInFlight: number;
  kinds: KindTally[];
  /** Tasks whose envelope never came (counted over the warm-up and the measured run). */
  lost: number;
  /** Tasks that got more than one envelope or more than one end event. */
  duplicated: number;
  /** Envelopes of the wrong kind, with the wrong result, or with inconsistent events. */
  wrong: number;
  /** The first few problems, described. */
  problems: string[];
  /** Whether `global.gc` was available (node --expose-gc) to force collection before reading. */
  gcForced: boolean;
  baseline: MemorySample;
  peakRss: number;
  after: MemorySample;
  worstEventLoopDelayMs: number;
  eventLoopDelayP99Ms: number;
  durationMs: number;
  tasksPerSecond: number;
}

export type TaskKind =
  | "success"
  | "task_error"
  | "busy_timeout"
  | "fuel_exhausted"
  | "stuck_await"
  | "subtask";

interface KindSpec {
  source: string;
  /** null for success. */
  errorType: string | null;
  /** The entry task's last lifecycle event. */
  endEvent: LifecycleEvent["type"];
  /** The task id the envelope's content names, for kinds whose content carries one. */
  names?: (envelope: Envelope) => string | null;
  /** Checks what the envelope carries beyond its error type and the id it names. */
  check?: (envelope: Envelope, id: string) => void;
}

const SDK = `import { task } from "@capsule-run/sdk";\n`;

function resultId(envelope: Envelope): string | null {
  const id = (envelope.result as { id?: unknown } | null)?.id;
  return typeof id === "string" ? id : null;
}

const KINDS: Record<TaskKind, KindSpec> = {
  success: {
    source: `${SDK}export const main = task({ name: "main", compute: "LOW" }, (id: string) => ({ id, doubled: Number(id) * 2 }));`,
    errorType: null,
    endEvent: "completed",
    names: resultId,
    check: (envelope, id) => {
      const result = envelope.result as { doubled?: unknown };
      if (result.doubled !== Number(id) * 2) {
        throw new Error(`expected doubled: ${Number(id) * 2}, got ${JSON.stringify(result)}`);
      }
    },
  },
  task_error: {
    // The id is wrapped so that task 7's message never matches inside task 17's.
    source: `${SDK}export const main = task({ name: "main", compute: "LOW" }, (id: string) => { throw new Error("planned failure <" + id + ">"); });`,
    errorType: "task_error",
    endEvent: "failed",
    names: (envelope) => /planned failure <(\d+)>/.exec(envelope.error?.message ?? "")?.[1] ?? null,
  },
  busy_timeout: {
    source: `${SDK}export const main = task({ name: "main", compute: "HIGH", timeout: "50ms" }, () => { for (;;) {} });`,
    errorType: "timeout",
    endEvent: "timed_out",
  },
  fuel_exhausted: {
    source: `${SDK}export const main = task({ name: "main", compute: "20000000" }, () => { for (;;) {} });`,
    errorType: "fuel_exhausted",
    endEvent: "failed",
  },
  stuck_await: {
    source: `${SDK}export const main = task({ name: "main", timeout: "50ms" }, async () => { await new Promise((r) => setTimeout(r, 60000)); return "late"; });`,
    errorType: "timeout",
    endEvent: "timed_out",
  },
  subtask: {
    source: `${SDK}export const leaf = task({ name: "leaf", compute: "LOW" }, (id: string) => "leaf" + "<" + id + ">");
export const main = task({ name: "main", compute: "LOW" }, async (id: string) => ({ id, child: (await leaf(id)).result }));`,
    errorType: null,
    endEvent: "completed",
    names: resultId,
    check: (envelope, id) => {
      const result = envelope.result as { child?: unknown };
      if (result.child !== `leaf<${id}>`) {
        throw new Error(`expected child: "leaf<${id}>", got ${JSON.stringify(result)}`);
      }
    },
  },
};

/** The mix, repeated by task index: weighted so busy timeouts (50 ms of CPU each) stay a tenth. */
const MIX: TaskKind[] = [
  "success",
  "task_error",
  "fuel_exhausted",
  "success",
  "busy_timeout",
  "subtask",
  "success",
  "task_error",
  "stuck_await",
  "fuel_exhausted",
];

export const kindOf = (index: number): TaskKind => MIX[index % MIX.length] as TaskKind;

const END_EVENTS = new Set<LifecycleEvent["type"]>([
  "completed",
  "failed",
  "timed_out",
  "cancelled",
]);
const PROBLEMS_KEPT = 10;

/** Every task's envelope and events, checked as they arrive. */
class Ledger {
  readonly delivered = new Map<string, number>();
  readonly kinds = new Map<TaskKind, KindTally>();
  wrong = 0;
  extraEndEvents = 0;
  /** `run()` calls outstanding now, and the most at one time. */
  outstanding = 0;
  mostOutstanding = 0;
  readonly problems: string[] = [];

  note(problem: string) {
    if (this.problems.length < PROBLEMS_KEPT) this.problems.push(problem);
  }

  /** Ids `0 .. count-1` that no envelope was counted toward. */
  lost(count: number, lostAfterMs: number): number {
    let lost = 0;
    for (let index = 0; index < count; index++) {
      if (this.delivered.has(String(index))) continue;
      lost++;
      this.note(`task ${index}: lost: no envelope of its own within ${lostAfterMs} ms`);
    }
    return lost;
  }

  /** Counts an envelope toward the task it names (or the task it was run for). */
  deliver(id: string) {
    this.delivered.set(id, (this.delivered.get(id) ?? 0) + 1);
  }

  duplicated(): number {
    let count = this.extraEndEvents;
    for (const [id, times] of this.delivered) {
      if (times <= 1) continue;
      count++;
      this.note(`task ${id}: duplicated: ${times} envelopes`);
    }
    return count;
  }

  tally(kind: TaskKind, asExpected: boolean) {
    const entry = this.kinds.get(kind) ?? { kind, tasks: 0, asExpected: 0 };
    entry.tasks++;
    if (asExpected) entry.asExpected++;
    this.kinds.set(kind, entry);
  }
}

interface Batch {
  from: number;
  count: number;
  inFlight: number;
  cwd: string;
  lostAfterMs: number;
  ledger: Ledger;
  /** Counts the measured tasks toward the per-kind tally. */
  measured: boolean;
  alter?: LoadOptions["alter"];
  onSettled?: (done: number) => void;
}

/** Runs tasks `from .. from+count-1`, at most `inFlight` at once, checking each one. */
async function runBatch(batch: Batch): Promise<void> {
  let next = batch.from;
  const end = batch.from + batch.count;
  let done = 0;
  const lane = async () => {
    while (next < end) {
      const index = next++;
      await runOne(index, batch);
      done++;
      batch.onSettled?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(batch.inFlight, batch.count) }, lane));
}

async function runOne(index: number, batch: Batch): Promise<void> {
  const { ledger } = batch;
  const kind = kindOf(index);
  const spec = KINDS[kind];
  const id = String(index);
  const events: LifecycleEvent[] = [];
  let settled = false;
  const onEvent = (event: LifecycleEvent) => {
    if (settled && event.parentId === null && END_EVENTS.has(event.type)) {
      ledger.extraEndEvents++;
      ledger.note(`task ${id}: duplicated: a "${event.type}" event after its envelope`);
    }
    events.push(event);
  };
  ledger.outstanding++;
  ledger.mostOutstanding = Math.max(ledger.mostOutstanding, ledger.outstanding);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const lostAt = new Promise<"lost">((resolve) => {
    timer = setTimeout(() => resolve("lost"), batch.lostAfterMs);
  });
  const outcome = await Promise.race([
    run({ code: spec.source, language: "ts", args: [id], cwd: batch.cwd, onEvent }),
    lostAt,
  ]);
  clearTimeout(timer);
  ledger.outstanding--;
  settled = true;
  // The hook stands in for a faulty runtime: it may drop, repeat or change the envelope.
  const envelopes = outcome === "lost" ? [] : (batch.alter?.(index, outcome) ?? [outcome]);
  let right = 0;
  for (const envelope of envelopes) {
    // An envelope whose content names another task counts toward that task.
    const named = spec.names?.(envelope) ?? id;
    try {
      const errorType = envelope.error?.error_type ?? null;
      if (envelope.success !== (spec.errorType === null) || errorType !== spec.errorType) {
        throw new Error(
          `expected ${spec.errorType ?? "success"}, got ${errorType ?? "success"}: ${envelope.error?.message ?? JSON.stringify(envelope.result)}`,
        );
      }
      if (named !== id) throw new Error(`the envelope is task ${named}'s`);
      spec.check?.(envelope, id);
      checkEvents(events, spec, kind);
      right++;
    } catch (error) {
      ledger.wrong++;
      ledger.note(`task ${id}: wrong: ${(error as Error).message}`);
    }
    ledger.deliver(named);
  }
  if (batch.measured) ledger.tally(kind, envelopes.length === 1 && right === 1);
}

/** The entry task has one run, ending once, as its envelope says; a sub-task hangs below it. */
function checkEvents(events: LifecycleEvent[], spec: KindSpec, kind: TaskKind) {
  const entries = events.filter((e) => e.parentId === null && e.type === "created");
  if (entries.length !== 1) throw new Error(`${entries.length} entry "created" events`);
  const root = (entries[0] as LifecycleEvent).id;
  const ends = events.filter((e) => e.id === root && END_EVENTS.has(e.type));
  if (ends.length !== 1 || ends[0]?.type !== spec.endEvent) {
    throw new Error(
      `expected one "${spec.endEvent}" event, got [${ends.map((e) => e.type).join(", ")}]`,
    );
  }
  const foreign = events.filter((e) => e.id !== root && e.parentId !== root);
  if (foreign.length > 0) throw new Error(`${foreign.length} events of another task run`);
  if (kind === "subtask") {
    const children = events.filter((e) => e.parentId === root && e.type === "created");
    const childEnds = events.filter((e) => e.parentId === root && END_EVENTS.has(e.type));
    if (children.length !== 1 || childEnds.length !== 1 || childEnds[0]?.type !== "completed") {
      throw new Error(
        `expected one sub-task run ending "completed", got ${children.length} runs ending [${childEnds.map((e) => e.type).join(", ")}]`,
      );
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function settledMemory(settleMs: number): Promise<MemorySample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await sleep(settleMs);
  gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed };
}

/** Runs the load test on the shared worker pool; the caller shuts the pool down. */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const { tasks, inFlight, settleMs = 1000, lostAfterMs = 60_000, log, alter } = options;
  for (const [name, value] of [
    ["tasks", tasks],
    ["inFlight", inFlight],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`runLoad(): ${name} must be a positive integer, got ${value}`);
    }
  }
  // Worker heaps grow to their working size over the first thousands of tasks (settled RSS after
  // 400 tasks: 120-140 MiB; after 3,000: 150-190 MiB, then flat over 18,000 more), and a baseline
  // taken before that would charge the growth to the measured run.
  const warmUpTasks = options.warmUpTasks ?? Math.min(tasks, 10 * inFlight);
  const cwd = mkdtempSync(join(tmpdir(), "capsule-load-"));
  const ledger = new Ledger();
  try {
    log?.(`warm-up: ${warmUpTasks} tasks, ${inFlight} in flight`);
    await runBatch({
      from: 0,
      count: warmUpTasks,
      inFlight,
      cwd,
      lostAfterMs,
      ledger,
      measured: false,
      alter,
    });
    const baseline = await settledMemory(settleMs);
    ledger.mostOutstanding = 0;

    let peakRss = process.memoryUsage.rss();
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
    }, 50);
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const started = performance.now();
    const progressEvery = 1000;
    await runBatch({
      from: warmUpTasks,
      count: tasks,
      inFlight,
      cwd,
      lostAfterMs,
      ledger,
      measured: true,
      alter,
      onSettled: (done) => {
        if (done % progressEvery !== 0 && done !== tasks) return;
        const seconds = (performance.now() - started) / 1000;
        log?.(
          `${done}/${tasks} tasks, ${seconds.toFixed(1)} s, rss ${mib(process.memoryUsage.rss())} MiB, worst delay ${(delay.max / 1e6).toFixed(1)} ms`,
        );
      },
    });
    const durationMs = performance.now() - started;
    delay.disable();
    clearInterval(sampler);
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
    const after = await settledMemory(settleMs);

    return {
      tasks,
      inFlight,
      warmUpTasks,
      mostInFlight: ledger.mostOutstanding,
      kinds: MIX.filter((kind, i) => MIX.indexOf(kind) === i).map(
        (kind) => ledger.kinds.get(kind) ?? { kind, tasks: 0, asExpected: 0 },
      ),
      lost: ledger.lost(warmUpTasks + tasks, lostAfterMs),
      duplicated: ledger.duplicated(),
      wrong: ledger.wrong,
      problems: ledger.problems,
      gcForced: typeof (globalThis as { gc?: unknown }).gc === "function",
      baseline,
      peakRss,
      after,
      worstEventLoopDelayMs: delay.max / 1e6,
      eventLoopDelayP99Ms: delay.percentile(99) / 1e6,
      durationMs,
      tasksPerSecond: tasks / (durationMs / 1000),
    };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

export const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
