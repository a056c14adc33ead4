/**
 * `capsule runs` and `capsule inspect`: the run history in `<cwd>/.capsule/journal.db`
 * (adapters/node/journal.ts). `runs` lists runs newest first, or with `--prune` deletes old ones;
 * `inspect` shows one run's tree of task runs, with attempts, errors, fuel and host requests, the
 * run it resumed or the runs that resumed it, and which sub-tasks were answered from the journal.
 */
import { type Command, InvalidArgumentError } from "commander";
import { firstLine } from "../../core/config/units.ts";
import { terminalSafeJson, visible } from "./cli-output.ts";
import {
  inspectRun,
  listRuns,
  pruneRuns,
  RUN_STATES,
  RunLookupError,
  type RunState,
  type RunSummary,
  type TaskRunRecord,
} from "./journal.ts";

const EXIT_USAGE = 2;
const DAY_MS = 24 * 60 * 60 * 1000;
const AGE_UNITS: Record<string, number> = {
  m: 60_000,
  h: 60 * 60_000,
  d: DAY_MS,
  w: 7 * DAY_MS,
};

function parseState(value: string): RunState {
  if (!(RUN_STATES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} is not a run state; use one of ${RUN_STATES.join(", ")}.`,
    );
  }
  return value as RunState;
}

function parseLimit(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} is not a whole number from 1 to 999999999.`,
    );
  }
  return Number(value);
}

/** An age such as "30m", "12h", "7d" or "2w". */
export function parseAge(value: string): number {
  const match = /^(\d{1,6})([mhdw])$/.exec(value.trim());
  if (match === null) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} is not an age; use a whole number and a unit: 30m, 12h, 7d or 2w.`,
    );
  }
  return Number(match[1]) * (AGE_UNITS[match[2] as string] as number);
}

interface RunsFlags {
  json?: boolean;
  state?: RunState;
  limit?: number;
  prune?: boolean;
  olderThan?: number;
}

function usageError(message: string, setExit: (code: number) => void): void {
  process.stderr.write(`error: ${message}\n`);
  setExit(EXIT_USAGE);
}

/** `capsule runs` and `capsule inspect` on the CLI. */
export function addJournalCommands(program: Command, setExit: (code: number) => void): void {
  program
    .command("runs")
    .description("list recorded runs of this project, newest first (.capsule/journal.db)")
    .option("--json", "print the runs as a JSON array")
    .option(`--state <state>`, `only runs in this state (${RUN_STATES.join(", ")})`, parseState)
    .option("--limit <n>", "at most this many runs (default 20; with --json, all)", parseLimit)
    .option("--prune", "delete runs older than --older-than instead of listing")
    .option("--older-than <age>", "with --prune: an age such as 7d, 12h or 2w", parseAge)
    .allowExcessArguments(false)
    .action((flags: RunsFlags) => {
      const cwd = process.cwd();
      if (flags.prune) {
        if (flags.olderThan === undefined) {
          return usageError("--prune needs --older-than <age> (such as 7d)", setExit);
        }
        const removed = pruneRuns({ cwd, olderThanMs: flags.olderThan });
        process.stdout.write(
          flags.json ? `${JSON.stringify({ pruned: removed })}\n` : `pruned ${removed} run(s)\n`,
        );
        return setExit(0);
      }
      if (flags.olderThan !== undefined) {
        return usageError("--older-than is for --prune", setExit);
      }
      const limit = flags.limit ?? (flags.json ? undefined : 20);
      const runs = listRuns({
        cwd,
        ...(flags.state ? { state: flags.state } : {}),
        ...(limit ? { limit } : {}),
      });
      // Task names, files and errors are the task's text: no control character reaches the terminal.
      process.stdout.write(
        flags.json ? `${terminalSafeJson(JSON.stringify(runs, null, 2))}\n` : runsTable(runs),
      );
      setExit(0);
    });

  program
    .command("inspect")
    .description("show one recorded run: its task runs, attempts, errors, fuel and host requests")
    .argument("<run-id>", "a run id, or a prefix of one that names a single run")
    .option("--json", "print the run as JSON")
    .allowExcessArguments(false)
    .action((id: string, flags: { json?: boolean }) => {
      try {
        const detail = inspectRun(id, { cwd: process.cwd() });
        if (flags.json) {
          process.stdout.write(`${terminalSafeJson(JSON.stringify(detail, null, 2))}\n`);
        } else {
          const head = `run ${detail.id}  ${detail.state}  ${detail.file ?? "(code)"} ${detail.task}  started ${iso(detail.started_at)}  ${ms(detail.duration_ms)}  fuel ${detail.fuel_consumed ?? "-"}`;
          const lines = [head];
          if (detail.resumed_from) lines.push(`  resumed from ${detail.resumed_from}`);
          if (detail.resumed_by.length > 0) {
            lines.push(`  resumed by ${detail.resumed_by.join(", ")}`);
          }
          if (detail.error)
            lines.push(`  error ${detail.error.error_type}: ${firstLine(detail.error.message)}`);
          for (const task of detail.tasks) treeLines(task, "  ", lines);
          process.stdout.write(`${visible(lines.join("\n"))}\n`);
        }
        setExit(0);
      } catch (error) {
        if (!(error instanceof RunLookupError)) throw error;
        usageError(error.message, setExit);
      }
    });
}

function iso(at: number): string {
  return new Date(at).toISOString().replace(/\.\d+Z$/, "Z");
}

function ms(value: number | null): string {
  return value === null ? "-" : `${value} ms`;
}

function runsTable(runs: RunSummary[]): string {
  if (runs.length === 0) return "no runs recorded\n";
  const rows = runs.map((r) => [
    r.id.slice(0, 8),
    r.state,
    visible(r.task),
    visible(r.file ?? "(code)"),
    iso(r.started_at),
    ms(r.duration_ms),
    r.fuel_consumed === null ? "-" : String(r.fuel_consumed),
  ]);
  const header = ["ID", "STATE", "TASK", "FILE", "STARTED", "DURATION", "FUEL"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return `${[header, ...rows].map(line).join("\n")}\n`;
}

function treeLines(task: TaskRunRecord, indent: string, lines: string[]): void {
  const replayed = task.replayed_from ? `  replayed from [${task.replayed_from.slice(0, 8)}]` : "";
  lines.push(
    `${indent}${task.task} [${task.id.slice(0, 8)}] ${task.state}  ${ms(task.duration_ms)}  fuel ${task.fuel_consumed ?? "-"}${replayed}`,
  );
  for (const attempt of task.attempts) {
    const error = attempt.error
      ? `  ${attempt.error.error_type}: ${firstLine(attempt.error.message)}`
      : "";
    lines.push(`${indent}  attempt ${attempt.attempt} ${attempt.state}${error}`);
  }
  if (task.error && task.attempts.length === 0) {
    lines.push(`${indent}  ${task.error.error_type}: ${firstLine(task.error.message)}`);
  }
  for (const request of task.host_requests) {
    lines.push(
      `${indent}  ${request.method} ${request.url} ${request.status ?? request.reason ?? "refused"}`,
    );
  }
  for (const child of task.children) treeLines(child, `${indent}  `, lines);
}
