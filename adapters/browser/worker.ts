/**
 * A pool worker: runs the tasks the page's pool sends, one sandbox per attempt, and hands
 * sub-task requests back to the pool so they can run on any worker. Driven over comlink.
 */
import * as Comlink from "comlink";
import { CapsuleError } from "../../core/errors.ts";
import { WriteQuota } from "../../core/files/quota.ts";
import { grantsFromAllowedFiles } from "../../core/policy/paths.ts";
import type { AttemptState } from "../../core/runtime/attempt.ts";
import { type Envelope, type ErrorType, envelopeForError } from "../../core/runtime/envelope.ts";
import { memoryRefusal } from "../../core/runtime/memory-budget.ts";
import { setPolyfillSourceLoader } from "../../core/runtime/prepared.ts";
import type { ReplyHook } from "../../core/runtime/replies.ts";
import { type Bundle, resolveLimits, runTask } from "../../core/runtime/run-task.ts";
import { engineKey, imageState } from "../../core/session/image.ts";
import { compileCode } from "./compile.ts";
import { loadEngine } from "./engine.ts";
import { appRootHandle, OpfsSnapshot, WriteBackError } from "./files.ts";
import { LAZY_GUEST_CHUNKS } from "./guest-chunks.ts";
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
      const session =
        job.image === undefined ? null : imageState(job.image, await engineKey(await loadEngine()));
      const envelope = await runJob(job, host, controller.signal, session?.state);
      // A session's new state goes back only with a call that succeeded to the end.
      const image = envelope.success ? session?.captured() : null;
      if (image) {
        // A copy (a wasm memory's buffer cannot be transferred), handed over without another.
        const bytes = image.bytes.slice();
        await host.image(Comlink.transfer({ ...image, bytes }, [bytes.buffer]));
      }
      return envelope;
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
  state: AttemptState | undefined,
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
  const writes = settledWrites(job, host);
  // The write-back counts in the last attempt's time: it must end by that attempt's deadline.
  let attemptStarted = performance.now();
  const envelope = await runTask({
    engine,
    bundle,
    taskName: job.taskName,
    argsJson: job.argsJson,
    depth: job.depth,
    parentId: job.parentId,
    call: job.call,
    settings: job.settings,
    provider: createBrowserProvider(job.providerConfig, snapshot),
    writeQuota: writes.quota,
    signal,
    cell: job.cell,
    state,
    onEvent: (event) => {
      if (event.type === "running") {
        attemptStarted = performance.now();
        void host.watch(limits?.timeoutMs ?? null);
      }
      void host.onEvent(event);
    },
    onLog: (level, text, task) => void host.onLog(level, text, task),
    // The pool holds the run's journal: each fetch is looked up there first, recorded after.
    ...(job.replies
      ? {
          replies: {
            before: (place) => host.replyBefore(place),
            after: (place, reply) => void host.replyAfter(place, reply),
          } satisfies ReplyHook,
        }
      : {}),
    // The pool holds the page's memory budget, and frees the job's share when it ends.
    reserveMemory: async (ramBytes) => {
      const refusal = await host.reserveMemory(ramBytes);
      if (refusal !== null) throw memoryRefusal(refusal);
      return () => {};
    },
    startSubtask: async (name, argsJson, depth, subtaskSignal, parentId, call) => {
      const callId = nextCallId++;
      subtaskSignal.addEventListener("abort", () => void host.cancelSubtask(callId), {
        once: true,
      });
      // The sub-task starts from what this job wrote so far, and this job goes on from what the
      // sub-task wrote.
      await writes.settle();
      const result = await host.startSubtask(callId, name, argsJson, depth, parentId, call);
      await writes.settle();
      return result;
    },
  });
  await writes.settle();
  try {
    if (snapshot === null) return envelope;
    if (writes.overRun) return failed(envelope, "task_error", WRITTEN_PAST_QUOTA);
    const timeoutMs = limits?.timeoutMs ?? null;
    const deadline = timeoutMs === null ? null : attemptStarted + timeoutMs;
    try {
      await snapshot.flush(await appRootHandle(job.providerConfig.opfsRoot), deadline);
      return envelope;
    } catch (error) {
      if (!(error instanceof WriteBackError)) {
        return failed(envelope, "internal_error", `the task's files could not be saved: ${error}`);
      }
      const type = { timeout: "timeout", full: "task_error", failed: "internal_error" } as const;
      return failed(envelope, type[error.reason], error.message);
    }
  } finally {
    void host.watch(null);
  }
}

const WRITTEN_PAST_QUOTA =
  "ENOSPC: no space left on device: tasks of this run running at the same time used up its write quota (limits.writeBytes, limits.writeFiles); this task's files were not saved";

function failed(envelope: Envelope, errorType: ErrorType, message: string): Envelope {
  // A task that had failed already keeps its own error first: the save came after it.
  const earlier = envelope.error;
  return {
    ...envelope,
    success: false,
    result: null,
    error:
      earlier === null
        ? { error_type: errorType, message }
        : { error_type: earlier.error_type, message: `${earlier.message}; then ${message}` },
  };
}

/**
 * The run's write quota as this job sees it: the run's shared counts where the page has shared
 * memory (cross-origin isolated), else a copy that settles with the pool before and after each
 * sub-task and at the end. What a copy wrote past the quota (with other jobs of the run at the
 * same time) is refused there, and the job saves nothing.
 */
function settledWrites(job: JobRequest, host: Comlink.Remote<JobHost>) {
  const quota = new WriteQuota(job.settings, job.writeCounts);
  let settledBytes = quota.bytesWritten;
  let settledEntries = quota.entriesCreated;
  const state = {
    quota,
    overRun: false,
    async settle() {
      if (quota.shared) return;
      const answer = await host.settleWrites(
        quota.bytesWritten - settledBytes,
        quota.entriesCreated - settledEntries,
      );
      if (!answer.fits) state.overRun = true;
      quota.reset(answer.bytes, answer.entries);
      settledBytes = answer.bytes;
      settledEntries = answer.entries;
    },
  };
  return state;
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
 * Guest chunks the build leaves beside the worker (guest-chunks.ts) come in the first time a task
 * needs one. The guest asks synchronously, and a worker may block on a request, so this is one of
 * the few places a synchronous XMLHttpRequest is the right tool; the HTTP cache keeps it cheap.
 * An app's bundler may have inlined a small chunk as a data: URL, which the request reads the same.
 */
const guestChunks = new Map<string, string>();
setPolyfillSourceLoader((name) => {
  const known = guestChunks.get(name);
  if (known !== undefined) return known;
  if (!Object.hasOwn(LAZY_GUEST_CHUNKS, name)) {
    throw new Error(`no guest chunk named ${JSON.stringify(name)}`);
  }
  const url = LAZY_GUEST_CHUNKS[name] as URL;
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
