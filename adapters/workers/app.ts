/**
 * capsule-portable as a Cloudflare Worker: a hono app whose `POST /run` runs a task, and its
 * sub-tasks, in fresh fuel-metered sandboxes on the request's own thread and answers with the
 * envelope and the files the task changed.
 */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { CODE_SOURCE_NAME, compileTaskModule } from "../../core/compile/task-module.ts";
import type { Engine } from "../../core/engine/engine.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import { type Envelope, envelopeForError } from "../../core/runtime/envelope.ts";
import { MemoryBudget, type MemoryWaits } from "../../core/runtime/memory-budget.ts";
import { runTreeInProcess } from "../../core/runtime/run-in-process.ts";
import { type RuntimeSettings, resolveSettings } from "../../core/runtime/settings.ts";
import { bearerToken, tokensMatch } from "./auth.ts";
import { bundledEngine } from "./engine.ts";
import { features } from "./features.ts";
import { type FileContent, RequestFileTree } from "./files.ts";
import { handleMcpRequest } from "./mcp.ts";
import { createWorkersProvider } from "./provider.ts";
import { BadRequestError, parseRunRequest } from "./request.ts";

export interface CapsuleAppOptions {
  /**
   * The secret binding that holds the bearer token every route but `GET /health` requires
   * (`wrangler secret put CAPSULE_TOKEN`). While it is unset the Worker is closed: it answers
   * 503 saying how to set one, unless one of the two bindings below opens it.
   */
  tokenBinding?: string;
  /**
   * The variable that, set to "true" while no token is set, lets anyone who can reach the Worker
   * run tasks on the owner's account (`"vars": { "CAPSULE_ALLOW_ANONYMOUS": "true" }`).
   */
  anonymousBinding?: string;
  /**
   * The variable that, set to "true" while no token is set, lets requests addressed to a loopback
   * host (127.0.0.1, localhost, [::1]) run without one: `wrangler dev` on one's own machine. Put
   * it in `.dev.vars` or pass `--var CAPSULE_LOCAL_ANONYMOUS:true`, never in deployed vars: the
   * host a request names is the caller's to choose, so it is trusted only with this variable.
   */
  localAnonymousBinding?: string;
  /** CORS for pages calling the Worker (hono's cors options). Off unless this or the binding. */
  cors?: CorsOptions;
  /**
   * The variable that turns CORS on when `cors` is not given: "*" or origins separated by commas
   * (`"vars": { "CAPSULE_CORS_ORIGINS": "https://app.example" }` in wrangler.jsonc).
   */
  corsBinding?: string;
  /** Largest request body, in bytes. Default 8 MiB. */
  maxBodyBytes?: number;
  /**
   * Most bytes a run's files may hold, those sent and those the task writes. Default 16 MiB: the
   * files, the task's memory and the response all share the isolate's 128 MB.
   */
  maxFileBytes?: number;
  /**
   * Runtime-wide limits. On Workers `defaultRamBytes` is 16 MiB, so that a task and a few
   * sub-tasks fit the isolate's memory budget together, and no sandboxes are prepared ahead (a
   * request's timers end with it).
   */
  limits?: Partial<RuntimeSettings>;
  /**
   * What the sandboxes of every request this isolate serves may hold together (the sum of their
   * `ram`). Default 96 MiB (`features.memoryBudgetBytes`): Cloudflare gives an isolate 128 MB in
   * all and ends every request on it when it goes past. A task asking more is a config_error; a
   * task that does not fit in what is left waits for memory to free up, and is refused
   * (permission_denied) once none has been freed for 3 s (a sub-task) or 10 s (an entry task).
   */
  memoryBudgetBytes?: number;
  /** Console output of tasks (e.g. to the Worker's own log). Dropped when not given. */
  onLog?: (level: LogLevel, text: string, task: string) => void;
  /** The engine to run; the one bundled with the Worker unless given. */
  engine?: () => Engine;
}

/** What `POST /run` answers: the envelope, and the files the task changed (null: removed). */
export type RunResponse = Envelope & { files: Record<string, FileContent | null> };

/** An error answer (4xx/5xx): shaped like a failed envelope's error, without `execution`. */
export interface ErrorResponse {
  success: false;
  error: { error_type: string; message: string };
}

export const DEFAULT_TOKEN_BINDING = "CAPSULE_TOKEN";
export const DEFAULT_CORS_BINDING = "CAPSULE_CORS_ORIGINS";
export const DEFAULT_ANONYMOUS_BINDING = "CAPSULE_ALLOW_ANONYMOUS";
export const DEFAULT_LOCAL_ANONYMOUS_BINDING = "CAPSULE_LOCAL_ANONYMOUS";
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);
const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024;
const WORKERS_SETTINGS: Partial<RuntimeSettings> = {
  defaultRamBytes: 16 * 1024 * 1024,
  preparedSandboxes: 0,
};

type Bindings = Record<string, unknown>;
type CorsOptions = NonNullable<Parameters<typeof cors>[0]>;

/** How long a task waits for memory in an isolate with none left before it is refused. */
const WORKERS_MEMORY_WAITS: MemoryWaits = { entryMs: 10_000, subtaskMs: 3_000 };

export function createCapsuleApp(options: CapsuleAppOptions = {}): Hono<{ Bindings: Bindings }> {
  const settings = resolveSettings({ ...WORKERS_SETTINGS, ...options.limits });
  const tokenBinding = options.tokenBinding ?? DEFAULT_TOKEN_BINDING;
  const corsBinding = options.corsBinding ?? DEFAULT_CORS_BINDING;
  const anonymousBinding = options.anonymousBinding ?? DEFAULT_ANONYMOUS_BINDING;
  const localAnonymousBinding = options.localAnonymousBinding ?? DEFAULT_LOCAL_ANONYMOUS_BINDING;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const engine = options.engine ?? bundledEngine;
  // One app per isolate: its requests share this budget. Shorter waits than on other hosts: a
  // request that holds the isolate's memory while its sub-tasks wait blocks every other request.
  const memory = new MemoryBudget(
    options.memoryBudgetBytes ?? features.memoryBudgetBytes,
    "this Worker's isolate",
    WORKERS_MEMORY_WAITS,
  );
  const app = new Hono<{ Bindings: Bindings }>();

  const fixedCors = options.cors ? cors(options.cors) : null;
  app.use("*", (c, next) => {
    if (fixedCors) return fixedCors(c, next);
    const origins = corsOrigins(c.env?.[corsBinding]);
    return origins === null ? next() : cors({ origin: origins })(c, next);
  });

  app.get("/health", (c) => c.json({ status: "ok" }));

  // Closed by default: every route but /health needs the token, or an explicit opening.
  app.use("*", async (c, next) => {
    if (c.req.method === "GET" && c.req.path === "/health") return next();
    const expected = c.env?.[tokenBinding];
    if (typeof expected !== "string" || expected === "") {
      if (c.env?.[anonymousBinding] === "true") return next();
      const local = LOOPBACK_HOSTS.has(new URL(c.req.url).hostname);
      if (local && c.env?.[localAnonymousBinding] === "true") return next();
      return fail(
        c,
        503,
        "not_configured",
        `this Worker has no ${tokenBinding} secret, so it runs nothing: set one with \`wrangler secret put ${tokenBinding}\` and send it as Authorization: Bearer <token> (or set the variable ${anonymousBinding} = "true" to let anyone run tasks on this account; for \`wrangler dev\` on 127.0.0.1, ${localAnonymousBinding}=true in .dev.vars)`,
      );
    }
    const given = bearerToken(c.req.header("authorization"));
    if (given === null || !(await tokensMatch(given, expected))) {
      c.header("WWW-Authenticate", 'Bearer realm="capsule"');
      return fail(
        c,
        401,
        "unauthorized",
        given === null
          ? "this Worker needs an Authorization: Bearer <token> header"
          : "the bearer token is not the one this Worker expects",
      );
    }
    return next();
  });

  app.post(
    "/run",
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: (c) =>
        fail(c, 400, "bad_request", `the body is larger than ${maxBodyBytes} bytes, the limit`),
    }),
    async (c) => {
      let text: string;
      try {
        // Strict: a lenient decode would run a task whose strings hold U+FFFD instead of its bytes.
        text = new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer());
      } catch {
        return fail(c, 400, "bad_request", "the body is not UTF-8; send JSON encoded as UTF-8");
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (error) {
        return fail(c, 400, "bad_request", `the body is not JSON: ${(error as Error).message}`);
      }
      let request: ReturnType<typeof parseRunRequest>;
      try {
        request = parseRunRequest(body, maxFileBytes);
      } catch (error) {
        if (error instanceof BadRequestError) return fail(c, 400, "bad_request", error.message);
        throw error;
      }
      const files = new RequestFileTree(request.files, maxFileBytes);
      const started = performance.now();
      let envelope: Envelope;
      try {
        const bundle = await compileTaskModule(request.code, request.language, {
          sourceName: `${CODE_SOURCE_NAME}.${request.language}`,
          loadSucrase: () => import("sucrase"),
        });
        envelope = await runTreeInProcess({
          engine: engine(),
          bundle,
          taskName: request.task,
          argsJson: JSON.stringify(request.args),
          // A request may only tighten the Worker's write quota.
          settings: {
            ...settings,
            writeBytes: Math.min(settings.writeBytes, request.limits.writeBytes ?? Infinity),
            writeFiles: Math.min(settings.writeFiles, request.limits.writeFiles ?? Infinity),
          },
          provider: createWorkersProvider(files, request.env),
          reserveMemory: memory.reserverFor(request),
          onLog: options.onLog,
          signal: c.req.raw.signal,
        });
      } catch (error) {
        envelope = envelopeForError(request.task, error, Math.round(performance.now() - started));
      }
      // Every host's envelope names its run, as Node's does (this one keeps no journal yet).
      envelope.execution.run_id = crypto.randomUUID();
      const response: RunResponse = { ...envelope, files: files.changes() };
      return c.json(response);
    },
  );

  app.all("/mcp", (c) =>
    handleMcpRequest(c.req.raw, { engine, settings, memory, maxBodyBytes, onLog: options.onLog }),
  );

  app.notFound((c) =>
    fail(
      c,
      404,
      "not_found",
      `no route ${c.req.method} ${c.req.path}; use POST /run, GET /health, or /mcp (the MCP endpoint, Streamable HTTP: POST initialize there first)`,
    ),
  );
  app.onError((error, c) =>
    fail(c, 500, "internal_error", error instanceof Error ? error.message : String(error)),
  );
  return app;
}

/** The origins a CORS variable lists: "*" for any, null when it lists none. */
function corsOrigins(value: unknown): string | string[] | null {
  if (typeof value !== "string") return null;
  const origins = value
    .split(",")
    .map((origin) => origin.trim())
    .filter((origin) => origin !== "");
  if (origins.length === 0) return null;
  return origins.includes("*") ? "*" : origins;
}

function fail(
  c: Context,
  status: 400 | 401 | 404 | 500 | 503,
  errorType: string,
  message: string,
): Response {
  const body: ErrorResponse = { success: false, error: { error_type: errorType, message } };
  return c.json(body, status);
}
