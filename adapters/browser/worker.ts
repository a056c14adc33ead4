/**
 * A pool worker: runs the tasks the page's pool sends, one sandbox per attempt, and hands
 * sub-task requests back to the pool so they can run on any worker. Driven over comlink.
 */
import * as Comlink from "comlink";
import { CapsuleError } from "../../core/errors.ts";
import { grantsFromAllowedFiles } from "../../core/policy/paths.ts";
import { type Envelope, envelopeForError } from "../../core/runtime/envelope.ts";
import { memoryRefusal } from "../../core/runtime/memory-budget.ts";
import { setPolyfillSourceLoader } from "../../core/runtime/prepared.ts";
import { type Bundle, resolveLimits, runTask } from "../../core/runtime/run-task.ts";
import { compileCode } from "./compile.ts";
import { loadEngine } from "./engine.ts";
import { appRootHandle, OpfsSnapshot } from "./files.ts";
import type { CompileOutcome, JobHost, JobRequest, WorkerApi } from "./protocol.ts";
import { BROWSER_PROJECT_ROOT, createBrowserProvider } from "./provider.ts";

const bundles = new Map<string, Bundle>();
const jobs = new Map<number, AbortController>();
let nextCallId = 1;

const api: WorkerApi = {
  async compile(code, language): Promise<CompileOutcome> {
    try {
      const bundle = await compileCode(code, language);
      bundles.set(bundle.hash, bundle);
      return { ok: true, bundle };
    } catch (error) {
      if (error instanceof CapsuleError) {
        return { ok: false, errorType: error.errorType, message: error.message };
      }
      return { ok: false, errorType: "internal_error", message: String(error) };
    }
  },

  async run(job, hostProxy) {
    // What arrives is comlink's proxy of the pool's JobHost: every call is a message back.
    const host = hostProxy as unknown as Comlink.Remote<JobHost>;
    const controller = new AbortController();
    jobs.set(job.jobId, controller);
    try {
      return await runJob(job, host, controller.signal);
    } catch (error) {
      // A bad allowedFiles entry fails while its files are loaded, before the runtime looks at
      // it: it keeps its type (config_error) like every other failure the runtime reports.
      return envelopeForError(job.taskName, error);
    } finally {
      jobs.delete(job.jobId);
      host[Comlink.releaseProxy]();
    }
  },

  abort(jobId) {
    jobs.get(jobId)?.abort();
  },
};

async function runJob(
  job: JobRequest,
  host: Comlink.Remote<JobHost>,
  signal: AbortSignal,
): Promise<Envelope> {
  if (job.bundle) bundles.set(job.hash, job.bundle);
  const bundle = bundles.get(job.hash);
  if (bundle === undefined) throw new Error(`worker has no bundle ${job.hash}`);
  const engine = await loadEngine();
  const limits = await taskLimits(bundle, job);
  const snapshot = limits?.allowedFiles.length ? new OpfsSnapshot() : null;
  if (snapshot && limits) {
    const appRoot = await appRootHandle(job.providerConfig.opfsRoot);
    for (const grant of grantsFromAllowedFiles(limits.allowedFiles, BROWSER_PROJECT_ROOT)) {
      await snapshot.load(appRoot, grant.hostPath);
    }
  }
  const envelope = await runTask({
    engine,
    bundle,
    taskName: job.taskName,
    argsJson: job.argsJson,
    depth: job.depth,
    parentId: job.parentId,
    settings: job.settings,
    provider: createBrowserProvider(job.providerConfig, snapshot),
    signal,
    onEvent: (event) => {
      if (event.type === "running") void host.watch(limits?.timeoutMs ?? null);
      void host.onEvent(event);
    },
    onLog: (level, text, task) => void host.onLog(level, text, task),
    // The pool holds the page's memory budget, and frees the job's share when it ends.
    reserveMemory: async (ramBytes) => {
      const refusal = await host.reserveMemory(ramBytes);
      if (refusal !== null) throw memoryRefusal(refusal);
      return () => {};
    },
    startSubtask: (name, argsJson, depth, subtaskSignal, parentId) => {
      const callId = nextCallId++;
      subtaskSignal.addEventListener("abort", () => void host.cancelSubtask(callId), {
        once: true,
      });
      return host.startSubtask(callId, name, argsJson, depth, parentId);
    },
  });
  void host.watch(null);
  if (snapshot === null) return envelope;
  try {
    await snapshot.flush(await appRootHandle(job.providerConfig.opfsRoot));
    return envelope;
  } catch (error) {
    return {
      ...envelope,
      success: false,
      result: null,
      error: {
        error_type: "internal_error",
        message: `the task's files could not be saved to OPFS: ${String(error)}`,
      },
    };
  }
}

/**
 * The task's validated limits, read as the runtime reads them (and cached with them). The
 * runtime reports any error itself; here they only say how long to wait and what to load.
 */
async function taskLimits(bundle: Bundle, job: JobRequest) {
  try {
    return await resolveLimits({
      engine: await loadEngine(),
      bundle,
      taskName: job.taskName,
      settings: job.settings,
    });
  } catch {
    return null;
  }
}

/**
 * Guest chunks the build leaves beside the worker (guest/<name>.js) come in the first time a task
 * needs one. The guest asks synchronously, and a worker may block on a request, so this is one of
 * the few places a synchronous XMLHttpRequest is the right tool; the HTTP cache keeps it cheap.
 */
const guestChunks = new Map<string, string>();
setPolyfillSourceLoader((name) => {
  const known = guestChunks.get(name);
  if (known !== undefined) return known;
  if (!/^[a-z-]+$/.test(name)) throw new Error(`no guest chunk named ${JSON.stringify(name)}`);
  const url = new URL(`./guest/${name}.js`, import.meta.url);
  const request = new XMLHttpRequest();
  request.open("GET", url, false);
  request.send();
  if (request.status !== 200) {
    throw new Error(
      `the sandbox's ${name} module could not be loaded from ${url.href} (HTTP ${request.status}); copy the whole dist/browser folder`,
    );
  }
  guestChunks.set(name, request.responseText);
  return request.responseText;
});

Comlink.expose(api);
