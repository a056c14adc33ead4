/**
 * capsule-portable as a Cloudflare Worker: a hono app whose `POST /run` runs a task, and its
 * sub-tasks, in fresh fuel-metered sandboxes on the request's own thread and answers with the
 * envelope and the files the task changed.
 */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import type { Engine } from "../../core/engine/engine.ts";
import type { LogLevel } from "../../core/runtime/attempt.ts";
import type { Envelope } from "../../core/runtime/envelope.ts";
import type { RuntimeSettings } from "../../core/runtime/settings.ts";
import { bearerToken, tokensMatch } from "./auth.ts";
import { executeContextOf, executeRun } from "./execute.ts";
import type { FileContent } from "./files.ts";
import { handleMcpRequest } from "./mcp.ts";
import { BadRequestError, parseRunRequest } from "./request.ts";
import {
  DEFAULT_RUNS_BINDING,
  mountRunRoutes,
  runInObject,
  runNamespace,
  waitUntilOf,
} from "./run-object.ts";

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
  /**
   * The binding of the CapsuleRun Durable Object namespace (run-object.ts). When it is bound,
   * each `POST /run` runs in an object of its own that journals it, and `GET /runs`,
   * `GET /runs/:id` and `POST /runs/:id/resume` answer; when it is not, runs keep no journal.
   * Default "CAPSULE_RUNS".
   */
  runsBinding?: string;
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

type Bindings = Record<string, unknown>;
type CorsOptions = NonNullable<Parameters<typeof cors>[0]>;

export function createCapsuleApp(options: CapsuleAppOptions = {}): Hono<{ Bindings: Bindings }> {
  const context = executeContextOf(options);
  const { settings, engine, memory, maxFileBytes } = context;
  const tokenBinding = options.tokenBinding ?? DEFAULT_TOKEN_BINDING;
  const corsBinding = options.corsBinding ?? DEFAULT_CORS_BINDING;
  const anonymousBinding = options.anonymousBinding ?? DEFAULT_ANONYMOUS_BINDING;
  const localAnonymousBinding = options.localAnonymousBinding ?? DEFAULT_LOCAL_ANONYMOUS_BINDING;
  const runsBinding = options.runsBinding ?? DEFAULT_RUNS_BINDING;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
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
      // With the run objects bound, the run happens in an object of its own that journals it.
      const runs = runNamespace(c.env?.[runsBinding]);
      if (runs !== null) {
        const ran = await runInObject(runs, text, request, undefined, waitUntilOf(c));
        return c.json(ran.body as object, ran.status as 200 | 400 | 409 | 500);
      }
      const { envelope, files } = await executeRun(request, {
        ...context,
        signal: c.req.raw.signal,
      });
      // Every host's envelope names its run, as Node's does (without the run objects bound, a
      // Worker keeps no journal: the id names nothing that can be looked up or resumed).
      envelope.execution.run_id = crypto.randomUUID();
      const response: RunResponse = { ...envelope, files };
      return c.json(response);
    },
  );

  mountRunRoutes(app, { binding: runsBinding, fail });

  app.all("/mcp", (c) =>
    handleMcpRequest(c.req.raw, { engine, settings, memory, maxBodyBytes, onLog: options.onLog }),
  );

  app.notFound((c) =>
    fail(
      c,
      404,
      "not_found",
      `no route ${c.req.method} ${c.req.path}; use POST /run, GET /health, or /mcp (the MCP endpoint, Streamable HTTP: POST initialize there first); GET /runs, GET /runs/:id and POST /runs/:id/resume with the run objects bound (${runsBinding})`,
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
  status: 400 | 401 | 404 | 409 | 500 | 503,
  errorType: string,
  message: string,
): Response {
  const body: ErrorResponse = { success: false, error: { error_type: errorType, message } };
  return c.json(body, status);
}
