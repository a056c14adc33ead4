/**
 * `capsule worker`: a long-lived process that runs task files for a host program, as Capsule's
 * does. It reads one JSON request per line on stdin, `{ "id", "file", "args"?, "mounts"? }`, and
 * answers each on stdout with `{ "id", "output": <envelope> }` or `{ "id", "error": "..." }`.
 * Requests run at the same time (on the shared worker pool); a malformed line gets an error answer
 * and the worker lives on; when stdin closes, the requests in flight finish and the process ends.
 *
 * stdout carries answers only: task console output goes to stderr, marked with the request id.
 * What a sender can make it hold is bounded: a line longer than MAX_LINE_BYTES is answered with
 * an error and skipped, and past MAX_IN_FLIGHT requests running, stdin is not read until one ends.
 */
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
import type { Command } from "commander";
import { formatValue } from "../../core/config/units.ts";
import { terminalSafeJson, visible } from "./cli-output.ts";
import { type Envelope, run } from "./index.ts";

/** Long enough for a large argument list; a line past it is refused, not buffered. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** Requests running at once before stdin waits (the memory budget bounds their sandboxes). */
export const MAX_IN_FLIGHT = 64;

type Answer = { id: string; output: Envelope } | { id: string; error: string };

interface WorkerRequest {
  id: string;
  file: string;
  args: string[];
  mounts: string[];
  task?: string;
}

export interface WorkerStreams {
  input: Readable;
  output: Writable;
  log: Writable;
  cwd: string;
}

/** Serves requests from `input` until it ends and every answer is written. */
export function serveWorker({ input, output, log, cwd }: WorkerStreams): Promise<void> {
  const running = new Set<Promise<void>>();
  // One JSON line each; the controls JSON.stringify leaves raw (DEL, C1) are escaped too.
  const answer = (reply: Answer) => output.write(`${terminalSafeJson(JSON.stringify(reply))}\n`);

  const handle = (line: string) => {
    const parsed = parseRequest(line);
    if ("error" in parsed) return answer(parsed);
    const job = runRequest(parsed, cwd, log).then(answer, (error: unknown) =>
      answer({ id: parsed.id, error: `internal error: ${(error as Error).message}` }),
    );
    const done = job.then(() => {
      running.delete(done);
      if (running.size < MAX_IN_FLIGHT && input.isPaused()) input.resume();
    });
    running.add(done);
    if (running.size >= MAX_IN_FLIGHT) input.pause();
  };

  return new Promise((resolveServed, reject) => {
    let pending = "";
    let skipping = false;
    input.setEncoding("utf8");
    input.on("data", (chunk: string) => {
      let start = 0;
      for (
        let newline = chunk.indexOf("\n");
        newline !== -1;
        newline = chunk.indexOf("\n", start)
      ) {
        const piece = chunk.slice(start, newline);
        start = newline + 1;
        if (skipping) {
          skipping = false;
          pending = "";
          continue;
        }
        const line = (pending + piece).trim();
        pending = "";
        if (line !== "") handle(line);
      }
      if (skipping) return;
      pending += chunk.slice(start);
      // Characters, not bytes: cheap per chunk, and a character is at least a byte.
      if (pending.length > MAX_LINE_BYTES) {
        answer({
          id: "unknown",
          error: `a request line is longer than ${MAX_LINE_BYTES / 2 ** 20} MiB; it was skipped (put large arguments in a file the task reads)`,
        });
        pending = "";
        skipping = true;
      }
    });
    input.on("error", reject);
    input.on("end", () => {
      const last = pending.trim();
      if (!skipping && last !== "") handle(last);
      Promise.all(running).then(() => resolveServed(), reject);
    });
  });
}

function parseRequest(line: string): WorkerRequest | { id: string; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { id: "unknown", error: `Failed to parse request: ${(error as Error).message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return {
      id: "unknown",
      error: `Failed to parse request: ${formatValue(value)} is not an object like {"id": "1", "file": "task.ts"}`,
    };
  }
  const request = value as Record<string, unknown>;
  const id = typeof request.id === "string" && request.id !== "" ? request.id : undefined;
  const refuse = (problem: string) => ({
    id: id ?? "unknown",
    error: `Failed to parse request: ${problem}`,
  });
  if (id === undefined)
    return refuse(`"id" must be a non-empty string, got ${formatValue(request.id)}`);
  if (typeof request.file !== "string" || request.file === "") {
    return refuse(`"file" must be a task file path, got ${formatValue(request.file)}`);
  }
  for (const key of ["args", "mounts"] as const) {
    const list = request[key];
    if (
      list !== undefined &&
      (!Array.isArray(list) || list.some((item) => typeof item !== "string"))
    ) {
      return refuse(`"${key}" must be an array of strings, got ${formatValue(list)}`);
    }
  }
  if (request.task !== undefined && typeof request.task !== "string") {
    return refuse(`"task" must be a task name, got ${formatValue(request.task)}`);
  }
  const known = new Set(["id", "file", "args", "mounts", "task"]);
  const unknown = Object.keys(request).filter((key) => !known.has(key));
  if (unknown.length > 0) {
    return refuse(
      `unknown field ${JSON.stringify(unknown[0])}; a request has id, file, args, mounts and task`,
    );
  }
  return {
    id,
    file: request.file,
    args: (request.args as string[] | undefined) ?? [],
    mounts: (request.mounts as string[] | undefined) ?? [],
    ...(typeof request.task === "string" ? { task: request.task } : {}),
  };
}

async function runRequest(request: WorkerRequest, cwd: string, log: Writable): Promise<Answer> {
  const path = resolve(cwd, request.file);
  if (!existsSync(path) || !statSync(path).isFile()) {
    return { id: request.id, error: `File not found: ${path}` };
  }
  if (/\.c?wasm$/i.test(path)) {
    // A component's HTTP calls block the thread they run on, which here serves every request.
    return {
      id: request.id,
      error: `${request.file}: components run with capsule exec, not in the worker, for now`,
    };
  }
  const output = await run({
    file: request.file,
    args: request.args,
    mounts: request.mounts,
    cwd,
    ...(request.task !== undefined ? { task: request.task } : {}),
    // The log is a terminal's more often than not: no control character of the task's reaches it.
    onLog: (_level, text, task) =>
      log.write(`[${visible(`${request.id} ${task}`)}] ${visible(text)}\n`),
  });
  return { id: request.id, output };
}

/** `capsule worker` on the CLI. */
export function addWorkerCommand(program: Command, setExit: (code: number) => void): void {
  program
    .command("worker")
    .description(
      'run task files for a host program: JSON lines {"id","file","args","mounts"} on stdin, {"id","output"|"error"} on stdout',
    )
    .allowExcessArguments(false)
    .action(async () => {
      await serveWorker({
        input: process.stdin,
        output: process.stdout,
        log: process.stderr,
        cwd: process.cwd(),
      });
      setExit(0);
    });
}
