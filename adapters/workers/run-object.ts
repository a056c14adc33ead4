/**
 * Durable runs on Workers: each run in a Durable Object of its own, which holds its journal.
 *
 * Bind the `CapsuleRun` class (exported by `capsule-portable/workers`) as `CAPSULE_RUNS`
 * (wrangler.jsonc: `durable_objects.bindings` and a `new_sqlite_classes` migration), and
 * `POST /run` runs each task in a new object (`newUniqueId()`), whose id is the envelope's
 * `execution.run_id`. The object records the run with core's recorder (core/journal/) in its
 * own SQLite storage (journal.ts), and keeps the request (code, arguments, files, env) so that
 * `POST /runs/:id/resume` can run it again: the resume is a new run in a new object, whose
 * completed sub-task calls are answered from the old run's journal (core/journal/resume.ts).
 * One more object, `idFromName("index")`, lists the runs for `GET /runs`, bounded as core's
 * journal is (DEFAULT_RETENTION_MS, MAX_RUNS); each run's object deletes its own storage
 * DEFAULT_RETENTION_MS after it started (an alarm).
 *
 * A run id reaches only the object it names: the Worker turns it into an object id with
 * `idFromString` (which refuses ids this namespace did not make) and the object answers only
 * for itself. Tasks never see the objects: their files are the request's, their network is fetch.
 */
import type { Context, Hono } from "hono";
import { ConfigError } from "../../core/errors.ts";
import {
  DEFAULT_RETENTION_MS,
  inspectRun,
  MAX_RUNS,
  markInterrupted,
  prepareJournal,
  RUN_STATES,
  RunRecorder,
  type RunState,
  type RunSummary,
  type SqlRow,
  type SqlValue,
} from "../../core/journal/journal.ts";
import { journalReplyHook, ReplyMatcher } from "../../core/journal/replies.ts";
import { CallMatcher, journalSubtaskHook, resumeTarget } from "../../core/journal/resume.ts";
import { envelopeForError } from "../../core/runtime/envelope.ts";
import type { CapsuleAppOptions, RunResponse } from "./app.ts";
import { type ExecuteContext, executeContextOf, executeRun, requestSourceName } from "./execute.ts";
import {
  DurableObjectJournalStore,
  type DurableObjectStorageLike,
  getText,
  putText,
} from "./journal.ts";
import { BadRequestError, parseRunRequest } from "./request.ts";

export const DEFAULT_RUNS_BINDING = "CAPSULE_RUNS";
/** The name of the object that lists the runs. */
const INDEX_NAME = "index";
/** Where the Worker reaches its objects (the host name is never resolved). */
const OBJECT_ORIGIN = "https://capsule-run.internal";
/** A finished run's response (envelope and files) is kept for a resume up to this size. */
export const MAX_KEPT_RESPONSE_CHARS = 1024 * 1024;
/** Runs `GET /runs` lists by default, and at most. */
const DEFAULT_LIST_LIMIT = 100;
const MAX_LIST_LIMIT = 1000;
/** Unfinished runs whose objects `GET /runs` asks for their state, at most, per request. */
const MAX_REFRESH = 32;

interface ObjectId {
  toString(): string;
}
interface ObjectStub {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}
/** The part of a `DurableObjectNamespace` binding the Worker uses. */
export interface RunNamespace {
  newUniqueId(): ObjectId;
  idFromName(name: string): ObjectId;
  idFromString(id: string): ObjectId;
  get(id: ObjectId): ObjectStub;
}
/** The part of a Durable Object's `ctx` the run object uses. */
export interface RunObjectState {
  readonly id: ObjectId;
  readonly storage: DurableObjectStorageLike;
}

/** The binding's value, when it is a Durable Object namespace. */
export function runNamespace(value: unknown): RunNamespace | null {
  if (typeof value !== "object" || value === null) return null;
  const ns = value as Partial<RunNamespace>;
  return typeof ns.newUniqueId === "function" &&
    typeof ns.idFromString === "function" &&
    typeof ns.get === "function"
    ? (ns as RunNamespace)
    : null;
}

/** What a run's object answers `/run` with: the response, and the run's row for the index. */
interface ObjectRunAnswer {
  response: RunResponse;
  summary: RunSummary;
}

interface ResumeRows {
  task_runs: SqlRow[];
  calls: SqlRow[];
  /** Left out by an object of an older build: its run's fetches are then made again. */
  replies?: SqlRow[];
}

const TASK_RUN_COLUMNS = [
  "run_id",
  "id",
  "parent_id",
  "depth",
  "task",
  "file",
  "state",
  "created_at",
  "ended_at",
  "attempts",
  "duration_ms",
  "fuel_consumed",
  "error_type",
  "error_message",
  "call_attempt",
  "call_index",
  "replayed_from",
];
const CALL_COLUMNS = [
  "run_id",
  "parent_id",
  "attempt",
  "seq",
  "task",
  "args_sha256",
  "args_json",
  "options_json",
  "child_id",
  "state",
  "envelope_json",
];

const REPLY_COLUMNS = [
  "run_id",
  "task_run_id",
  "attempt",
  "seq",
  "calls_before",
  "key_sha256",
  "meta_json",
  "body_base64",
];

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function failure(status: number, errorType: string, message: string): Response {
  return json({ success: false, error: { error_type: errorType, message } }, status);
}

/**
 * The Durable Object class that runs and journals runs, with the same options as the app (its
 * limits, engine, memory budget and log are the ones the runs get). `CapsuleRun` is this with
 * the defaults; a Worker that passes options to createCapsuleApp passes the same ones here.
 */
export function createCapsuleRunObject(options: CapsuleAppOptions = {}) {
  let shared: ExecuteContext | undefined;
  const context = () => {
    shared ??= executeContextOf(options);
    return shared;
  };
  return class CapsuleRun {
    readonly #state: RunObjectState;
    readonly #store: DurableObjectJournalStore;

    constructor(state: RunObjectState, _env?: unknown) {
      this.#state = state;
      this.#store = new DurableObjectJournalStore(state.storage);
    }

    async fetch(request: Request): Promise<Response> {
      const path = new URL(request.url).pathname;
      try {
        if (path.startsWith("/index/")) return await this.#index(path, request);
        if (request.method === "POST" && path === "/run") {
          return await this.#run((await request.json()) as RunOrder);
        }
        if (request.method === "GET" && path === "/inspect") return this.#inspect(false);
        if (request.method === "GET" && path === "/summary") return this.#inspect(true);
        if (request.method === "GET" && path === "/resume-source") return this.#resumeSource();
        if (request.method === "POST" && path === "/forget") return await this.#forget();
        return failure(404, "not_found", `no object route ${request.method} ${path}`);
      } catch (error) {
        return failure(500, "internal_error", (error as Error)?.message ?? String(error));
      }
    }

    /** Deletes the run's storage (dropped from the index), unless the run is still going here. */
    async #forget(): Promise<Response> {
      if (this.#hasRun()) {
        markInterrupted(this.#store);
        const [row] = this.#store.all("SELECT state FROM runs WHERE id = ?", [this.#id]);
        if (["created", "running", "retrying"].includes(String(row?.state))) {
          return failure(409, "conflict", `run ${this.#id} is still ${String(row?.state)}`);
        }
      }
      await this.#state.storage.deleteAll();
      return json({ forgotten: true });
    }

    /** The retention alarm: the run's whole storage goes. */
    async alarm(): Promise<void> {
      await this.#state.storage.deleteAll();
    }

    get #id(): string {
      return this.#state.id.toString();
    }

    /** Whether this object holds a run (not when no run was started under its id). */
    #hasRun(): boolean {
      return (
        this.#store.hasJournal() &&
        this.#store.all("SELECT id FROM runs WHERE id = ?", [this.#id]).length > 0
      );
    }

    #noRun(): Response {
      return failure(
        404,
        "not_found",
        `no run ${JSON.stringify(this.#id)}: no run was recorded under this id (or it has been pruned)`,
      );
    }

    #inspect(summaryOnly: boolean): Response {
      if (!this.#hasRun()) return this.#noRun();
      const detail = inspectRun(this.#store, this.#id);
      if (!summaryOnly) return json(detail);
      return json(summaryOf(detail));
    }

    async #run(order: RunOrder): Promise<Response> {
      const store = this.#store;
      const id = this.#id;
      if (this.#hasRun()) {
        return failure(409, "conflict", `run ${id} has already run in this object`);
      }
      let request: ReturnType<typeof parseRunRequest>;
      const ctx = context();
      try {
        request = parseRunRequest(JSON.parse(order.body), ctx.maxFileBytes);
      } catch (error) {
        if (error instanceof BadRequestError || error instanceof SyntaxError) {
          return failure(400, "bad_request", error.message);
        }
        throw error;
      }
      prepareJournal(store);
      await this.#state.storage.setAlarm(Date.now() + DEFAULT_RETENTION_MS);
      putText(store, "request", order.body);
      let matcher: CallMatcher | undefined;
      let replies: ReplyMatcher | undefined;
      if (order.resume !== undefined) {
        copyRows(store, order.resume.from, order.resume.rows);
        matcher = new CallMatcher(store, order.resume.from);
        replies = new ReplyMatcher(store, matcher);
      }
      let warned = false;
      const guard = (write: () => void) => {
        try {
          write();
        } catch (error) {
          if (!warned)
            console.error(
              `the journal of run ${id} cannot be written: ${(error as Error).message}; the run goes on unrecorded`,
            );
          warned = true;
        }
      };
      let recorder: RunRecorder | null = null;
      guard(() => {
        recorder = new RunRecorder(store, {
          id,
          host: "workers",
          task: request.task,
          file: requestSourceName(request),
          language: request.language,
          args: request.args,
          limits: request.limits,
          at: Date.now(),
          ...(order.resume === undefined ? {} : { resumedFrom: order.resume.from }),
        });
      });
      let diverged: string | null = null;
      const stop = new AbortController();
      const started = performance.now();
      let { envelope, files } = await executeRun(
        request,
        { ...ctx, signal: stop.signal },
        {
          onEvent: (event) => {
            matcher?.onEvent(event);
            guard(() => recorder?.event(event));
          },
          subtasks: (optionsOf) =>
            journalSubtaskHook({
              recorder,
              ...(matcher === undefined ? {} : { matcher }),
              optionsOf,
              guard,
              onDiverged: (message) => {
                diverged ??= message;
                stop.abort();
              },
            }),
          replies: journalReplyHook({
            recorder,
            ...(replies === undefined ? {} : { matcher: replies }),
            guard,
          }),
        },
      );
      if (diverged !== null) {
        envelope = envelopeForError(
          envelope.execution.task_name,
          new ConfigError(diverged),
          Math.round(performance.now() - started),
        );
        files = {};
      }
      envelope.execution.run_id = id;
      guard(() => recorder?.finish(envelope));
      const response: RunResponse = { ...envelope, files };
      const text = JSON.stringify(response);
      if (text.length <= MAX_KEPT_RESPONSE_CHARS) guard(() => putText(store, "response", text));
      const answer: ObjectRunAnswer = { response, summary: summaryOf(inspectRun(store, id)) };
      return json(answer);
    }

    /** What a resume of this run needs: its request and its journaled calls, or its answer. */
    #resumeSource(): Response {
      if (!this.#hasRun()) return this.#noRun();
      const store = this.#store;
      let target: ReturnType<typeof resumeTarget>;
      try {
        target = resumeTarget(store, this.#id);
      } catch (error) {
        if (error instanceof ConfigError) return failure(409, "conflict", error.message);
        throw error;
      }
      if (target.completed !== null) {
        const kept = getText(store, "response");
        const response: RunResponse =
          kept === null ? { ...target.completed, files: {} } : (JSON.parse(kept) as RunResponse);
        return json({ completed: response });
      }
      const body = getText(store, "request");
      if (body === null) {
        return failure(
          409,
          "conflict",
          `resume: run ${this.#id}'s request was not kept, so it cannot run again`,
        );
      }
      const rows: ResumeRows = {
        task_runs: store.all("SELECT * FROM task_runs WHERE run_id = ?", [this.#id]),
        calls: store.all("SELECT * FROM calls WHERE run_id = ?", [this.#id]),
        replies: store.all("SELECT * FROM replies WHERE run_id = ?", [this.#id]),
      };
      return json({ body, rows, from: this.#id });
    }

    /** The index object: one row per run, newest first, bounded like core's journal. */
    async #index(path: string, request: Request): Promise<Response> {
      const store = this.#store;
      store.exec(`CREATE TABLE IF NOT EXISTS run_index (
        id TEXT PRIMARY KEY, task TEXT NOT NULL, file TEXT, state TEXT NOT NULL,
        started_at INTEGER NOT NULL, ended_at INTEGER, duration_ms INTEGER, fuel_consumed INTEGER,
        ram_used INTEGER, retries INTEGER, error_type TEXT, error_message TEXT, resumed_from TEXT);
        CREATE INDEX IF NOT EXISTS run_index_started ON run_index (started_at);`);
      if (path === "/index/add") {
        const row = (await request.json()) as IndexRow;
        const dropped: string[] = [];
        store.transaction(() => {
          store.run(
            `INSERT OR REPLACE INTO run_index (id, task, file, state, started_at, resumed_from)
             VALUES (?, ?, ?, 'running', ?, ?)`,
            [row.id, row.task, row.file, row.started_at, row.resumed_from ?? null],
          );
          const doomed = store.all(
            // As core's pruneRuns: finished runs past the newest MAX_RUNS, and any run past the
            // retention (whose object's alarm deletes it then).
            `SELECT id FROM run_index WHERE started_at < ?
               OR (state NOT IN ('created', 'running', 'retrying')
                 AND id NOT IN (SELECT id FROM run_index ORDER BY started_at DESC LIMIT ?))`,
            [Date.now() - DEFAULT_RETENTION_MS, MAX_RUNS],
          );
          for (const { id } of doomed) {
            store.run("DELETE FROM run_index WHERE id = ?", [id ?? null]);
            dropped.push(String(id));
          }
        });
        return json({ dropped });
      }
      if (path === "/index/update") {
        const s = (await request.json()) as RunSummary;
        store.run(
          `UPDATE run_index SET state = ?, ended_at = ?, duration_ms = ?, fuel_consumed = ?,
             ram_used = ?, retries = ?, error_type = ?, error_message = ? WHERE id = ?`,
          [
            s.state,
            s.ended_at,
            s.duration_ms,
            s.fuel_consumed,
            s.ram_used,
            s.retries,
            s.error?.error_type ?? null,
            s.error?.message ?? null,
            s.id,
          ],
        );
        return json({ updated: true });
      }
      if (path === "/index/remove") {
        const { id } = (await request.json()) as { id: string };
        store.run("DELETE FROM run_index WHERE id = ?", [id]);
        return json({ removed: true });
      }
      if (path === "/index/open") {
        const rows = store.all(
          `SELECT id FROM run_index WHERE state IN ('created', 'running', 'retrying')
           ORDER BY started_at DESC LIMIT ?`,
          [MAX_REFRESH],
        );
        return json(rows.map((r) => String(r.id)));
      }
      if (path === "/index/list") {
        const url = new URL(request.url);
        const state = url.searchParams.get("state");
        const limit = Number(url.searchParams.get("limit") ?? DEFAULT_LIST_LIMIT);
        const params: SqlValue[] = state === null ? [] : [state];
        params.push(limit);
        const rows = store.all(
          `SELECT * FROM run_index ${state === null ? "" : "WHERE state = ?"}
           ORDER BY started_at DESC, rowid DESC LIMIT ?`,
          params,
        );
        return json(rows.map(indexSummary));
      }
      return failure(404, "not_found", `no index route ${path}`);
    }
  };
}

interface RunOrder {
  /** The `POST /run` body, as sent. */
  body: string;
  resume?: { from: string; rows: ResumeRows };
}

interface IndexRow {
  id: string;
  task: string;
  file: string;
  started_at: number;
  resumed_from?: string;
}

function summaryOf(detail: RunSummary): RunSummary {
  const {
    id,
    task,
    file,
    state,
    started_at,
    ended_at,
    duration_ms,
    fuel_consumed,
    ram_used,
    retries,
    error,
  } = detail;
  return {
    id,
    task,
    file,
    state,
    started_at,
    ended_at,
    duration_ms,
    fuel_consumed,
    ram_used,
    retries,
    error,
  };
}

function indexSummary(row: SqlRow): RunSummary & { resumed_from: string | null } {
  const n = (v: SqlValue | undefined) => (v === null || v === undefined ? null : Number(v));
  return {
    id: String(row.id),
    task: String(row.task),
    file: row.file === null ? null : String(row.file),
    state: String(row.state) as RunState,
    started_at: Number(row.started_at),
    ended_at: n(row.ended_at),
    duration_ms: n(row.duration_ms),
    fuel_consumed: n(row.fuel_consumed),
    ram_used: n(row.ram_used),
    retries: n(row.retries),
    error:
      row.error_type === null
        ? null
        : { error_type: String(row.error_type), message: String(row.error_message ?? "") },
    resumed_from: row.resumed_from === null ? null : String(row.resumed_from),
  };
}

/** The resumed run's journaled task runs and calls, copied in for its CallMatcher. */
function copyRows(store: DurableObjectJournalStore, from: string, rows: ResumeRows): void {
  store.transaction(() => {
    for (const [table, columns, list] of [
      ["task_runs", TASK_RUN_COLUMNS, rows.task_runs],
      ["calls", CALL_COLUMNS, rows.calls],
      ["replies", REPLY_COLUMNS, Array.isArray(rows.replies) ? rows.replies : []],
    ] as const) {
      const sql = `INSERT OR REPLACE INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`;
      for (const row of list) {
        // Only the run being resumed: its rows, under its id.
        if (row.run_id !== from) continue;
        store.run(
          sql,
          columns.map((c) => (row[c] === undefined ? null : (row[c] as SqlValue))),
        );
      }
    }
  });
}

interface RouteOptions {
  /** The binding of the run objects' namespace. */
  binding: string;
  fail: (c: Context, status: 400 | 404 | 409 | 500, type: string, message: string) => Response;
}

/** The request's waitUntil, where the host gives one. */
export function waitUntilOf(c: Context): ((promise: Promise<unknown>) => void) | undefined {
  try {
    const ctx = c.executionCtx;
    return (promise) => ctx.waitUntil(promise);
  } catch {
    // No execution context (the app called outside a Worker).
    return undefined;
  }
}

/** A run id as the routes take it: 64 hex digits (an object id), refused by name otherwise. */
function objectIdOf(
  ns: RunNamespace,
  id: string,
): { id: ObjectId } | { status: 400 | 404; message: string } {
  const shown = JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}...` : id);
  if (!/^[0-9a-f]{64}$/i.test(id)) {
    return {
      status: 400,
      message: `run id ${shown} is not a run id: a run id is 64 hexadecimal digits (execution.run_id, or GET /runs)`,
    };
  }
  try {
    return { id: ns.idFromString(id.toLowerCase()) };
  } catch (error) {
    return {
      status: 404,
      message: `no run ${shown}: it is not an id of this Worker's runs (${(error as Error).message})`,
    };
  }
}

async function objectJson<T>(
  stub: ObjectStub,
  path: string,
  init?: RequestInit,
): Promise<{ status: number; body: T }> {
  const response = await stub.fetch(`${OBJECT_ORIGIN}${path}`, init);
  return { status: response.status, body: (await response.json()) as T };
}

function post(body: unknown): RequestInit {
  return {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  };
}

/**
 * Starts a run in a new object and answers its response. The index learns of the run as it starts
 * (so a run cut short is listed, as interrupted) and of its end after: that last write goes on
 * after the answer when `waitUntil` is given (a `GET /runs` asks an unfinished run's object).
 */
export async function runInObject(
  ns: RunNamespace,
  body: string,
  request: { task: string; language: string },
  resume?: { from: string; rows: ResumeRows },
  waitUntil?: (promise: Promise<unknown>) => void,
): Promise<{ status: number; body: unknown }> {
  const id = ns.newUniqueId();
  const runId = id.toString();
  const index = ns.get(ns.idFromName(INDEX_NAME));
  const indexed = objectJson<{ dropped: string[] }>(
    index,
    "/index/add",
    post({
      id: runId,
      task: request.task,
      file: `<task>.${request.language}`,
      started_at: Date.now(),
      ...(resume === undefined ? {} : { resumed_from: resume.from }),
    }),
  ).then((added) =>
    // Runs past the index's bounds: their objects' storage goes too (each also has its alarm).
    Promise.all(
      (added.body.dropped ?? []).slice(0, 16).map((gone) =>
        ns
          .get(ns.idFromString(gone))
          .fetch(`${OBJECT_ORIGIN}/forget`, { method: "POST" })
          .catch(() => null),
      ),
    ),
  );
  let ran: { status: number; body: ObjectRunAnswer | { error: unknown } };
  try {
    ran = await objectJson<ObjectRunAnswer | { error: unknown }>(
      ns.get(id),
      "/run",
      post({ body, ...(resume === undefined ? {} : { resume }) } satisfies RunOrder),
    );
  } finally {
    await indexed;
  }
  const answer = ran.body;
  const ended =
    ran.status === 200 && "response" in answer
      ? objectJson(index, "/index/update", post(answer.summary))
      : objectJson(index, "/index/remove", post({ id: runId }));
  if (waitUntil === undefined) await ended;
  else waitUntil(ended.catch(() => null));
  return ran.status === 200 && "response" in answer ? { status: 200, body: answer.response } : ran;
}

/** `GET /runs`, `GET /runs/:id` and `POST /runs/:id/resume`, answered from the run objects. */
export function mountRunRoutes(
  app: Hono<{ Bindings: Record<string, unknown> }>,
  options: RouteOptions,
): void {
  const { binding, fail } = options;
  const notConfigured = `this Worker keeps no run journal: bind the CapsuleRun Durable Object class as ${binding} (wrangler.jsonc durable_objects, with a new_sqlite_classes migration) to record runs and resume them`;

  app.get("/runs", async (c) => {
    const ns = runNamespace(c.env?.[binding]);
    if (ns === null) return fail(c, 404, "not_found", notConfigured);
    const state = c.req.query("state");
    const limitText = c.req.query("limit");
    if (state !== undefined && !(RUN_STATES as readonly string[]).includes(state)) {
      return fail(
        c,
        400,
        "bad_request",
        `state ${JSON.stringify(state)} is not one of ${RUN_STATES.join(", ")}`,
      );
    }
    const limit = limitText === undefined ? DEFAULT_LIST_LIMIT : Number(limitText);
    if (
      !Number.isSafeInteger(limit) ||
      limit < 1 ||
      limit > MAX_LIST_LIMIT ||
      !/^\d+$/.test(limitText ?? "1")
    ) {
      return fail(
        c,
        400,
        "bad_request",
        `limit ${JSON.stringify(limitText)} is not a whole number from 1 to ${MAX_LIST_LIMIT}`,
      );
    }
    const index = ns.get(ns.idFromName(INDEX_NAME));
    // Runs the index still has as unfinished: their objects say whether they still are (an object
    // that restarted since reads its run as interrupted).
    const open = await objectJson<string[]>(index, "/index/open", { method: "GET" });
    await Promise.all(
      open.body.map(async (runId) => {
        try {
          const summary = await objectJson<RunSummary>(ns.get(ns.idFromString(runId)), "/summary");
          if (summary.status === 200) await objectJson(index, "/index/update", post(summary.body));
          else if (summary.status === 404) {
            await objectJson(index, "/index/remove", post({ id: runId }));
          }
        } catch {
          // Listed as the index has it; the next GET /runs asks again.
        }
      }),
    );
    const query = new URLSearchParams({
      limit: String(limit),
      ...(state === undefined ? {} : { state }),
    });
    const listed = await objectJson<RunSummary[]>(index, `/index/list?${query}`);
    return c.json({ runs: listed.body });
  });

  app.get("/runs/:id", async (c) => {
    const ns = runNamespace(c.env?.[binding]);
    if (ns === null) return fail(c, 404, "not_found", notConfigured);
    const found = objectIdOf(ns, c.req.param("id"));
    if (!("id" in found))
      return fail(
        c,
        found.status,
        found.status === 400 ? "bad_request" : "not_found",
        found.message,
      );
    const answer = await ns.get(found.id).fetch(`${OBJECT_ORIGIN}/inspect`);
    return new Response(answer.body, {
      status: answer.status,
      headers: { "content-type": "application/json" },
    });
  });

  app.post("/runs/:id/resume", async (c) => {
    const ns = runNamespace(c.env?.[binding]);
    if (ns === null) return fail(c, 404, "not_found", notConfigured);
    const found = objectIdOf(ns, c.req.param("id"));
    if (!("id" in found))
      return fail(
        c,
        found.status,
        found.status === 400 ? "bad_request" : "not_found",
        found.message,
      );
    const source = await objectJson<
      | { completed: RunResponse }
      | { body: string; rows: ResumeRows; from: string }
      | { error: unknown }
    >(ns.get(found.id), "/resume-source");
    if (source.status !== 200)
      return c.json(source.body as object, source.status as 404 | 409 | 500);
    if ("completed" in source.body) return c.json(source.body.completed);
    if (!("body" in source.body))
      return fail(c, 500, "internal_error", "the run's object answered nothing to resume");
    const { body, rows, from } = source.body;
    const parsed = JSON.parse(body) as { task?: string; language?: string };
    const ran = await runInObject(
      ns,
      body,
      { task: parsed.task ?? "main", language: parsed.language ?? "ts" },
      { from, rows },
      waitUntilOf(c),
    );
    return c.json(ran.body as object, ran.status as 200 | 400 | 409 | 500);
  });
}

/** The run object with the app's default options: bind it as CAPSULE_RUNS. */
export const CapsuleRun = createCapsuleRunObject();
