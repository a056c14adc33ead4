import { parentPort, workerData } from "node:worker_threads";
import { WriteQuota } from "../../core/files/quota.ts";
import { type Envelope, failureEnvelope } from "../../core/runtime/envelope.ts";
import { memoryRefusal } from "../../core/runtime/memory-budget.ts";
import type { HostReply, ReplyHook } from "../../core/runtime/replies.ts";
import { type Bundle, runTask } from "../../core/runtime/run-task.ts";
import { adoptEngine } from "./engine.ts";
import type { FromWorker, MemoryRefusal, ToWorker, WorkerData } from "./protocol.ts";
import { createNodeProvider } from "./provider.ts";

// A pool thread: runs the tasks the pool sends, one sandbox per attempt, and hands sub-task
// requests back to the pool so they can run on any thread.
const port = parentPort;
if (port === null) throw new Error("node-worker must run in a worker thread");
const data = workerData as WorkerData;
const engine = adoptEngine(data.engineModule, data.memoryFloorPages, data.stackBytes);
const cancelFlags = new Int32Array(data.cancelFlags);
const bundles = new Map<string, Bundle>();
const jobs = new Map<number, AbortController>();
const subtaskCalls = new Map<number, (envelope: Envelope) => void>();
const memoryCalls = new Map<number, (refusal: MemoryRefusal | null) => void>();
const replyCalls = new Map<number, (reply: HostReply | null) => void>();
let nextCallId = 1;
const send = (message: FromWorker) => port.postMessage(message);

port.on("message", (message: ToWorker) => {
  switch (message.type) {
    case "run":
      void runJob(message);
      break;
    case "abort":
      jobs.get(message.jobId)?.abort();
      break;
    case "memory-reserved":
      memoryCalls.get(message.callId)?.(message.refusal);
      memoryCalls.delete(message.callId);
      break;
    case "subtask-result":
      subtaskCalls.get(message.callId)?.(message.envelope);
      subtaskCalls.delete(message.callId);
      break;
    case "reply":
      replyCalls.get(message.callId)?.(message.reply);
      replyCalls.delete(message.callId);
      break;
  }
});

async function runJob(message: Extract<ToWorker, { type: "run" }>) {
  const { jobId } = message;
  if (message.bundle !== undefined) bundles.set(message.hash, message.bundle);
  const bundle = bundles.get(message.hash);
  const controller = new AbortController();
  jobs.set(jobId, controller);
  try {
    if (bundle === undefined) throw new Error(`worker has no bundle ${message.hash}`);
    const envelope = await runTask({
      engine,
      bundle,
      taskName: message.taskName,
      argsJson: message.argsJson,
      depth: message.depth,
      parentId: message.parentId,
      call: message.call,
      settings: message.settings,
      provider: createNodeProvider(message.providerConfig),
      writeQuota: new WriteQuota(message.settings, message.writeCounts),
      signal: controller.signal,
      cancelled:
        message.cancelSlot >= 0
          ? () => Atomics.load(cancelFlags, message.cancelSlot) === 1
          : undefined,
      // The pool holds the process's memory budget, and frees the job's share when it ends.
      reserveMemory: async (ramBytes) => {
        const callId = nextCallId++;
        const refusal = await new Promise<MemoryRefusal | null>((resolve) => {
          memoryCalls.set(callId, resolve);
          send({ type: "reserve-memory", jobId, callId, ramBytes });
        });
        if (refusal !== null) throw memoryRefusal(refusal);
        return () => {};
      },
      // The pool holds the run's journal: each fetch is looked up there first, recorded after.
      ...(message.replies
        ? {
            replies: {
              before: (place) =>
                new Promise<HostReply | null>((resolve) => {
                  const callId = nextCallId++;
                  replyCalls.set(callId, resolve);
                  send({ type: "reply-before", jobId, callId, place });
                }),
              after: (place, reply) => send({ type: "reply-after", jobId, place, reply }),
            } satisfies ReplyHook,
          }
        : {}),
      onEvent: (event) => send({ type: "event", jobId, event }),
      onLog: (level, text, task) => send({ type: "log", jobId, level, text, task }),
      startSubtask: (name, argsJson, depth, signal, parentId, call) =>
        new Promise<Envelope>((resolve) => {
          const callId = nextCallId++;
          subtaskCalls.set(callId, resolve);
          signal.addEventListener(
            "abort",
            () => {
              subtaskCalls.delete(callId);
              send({ type: "cancel-subtask", callId });
            },
            { once: true },
          );
          send({ type: "subtask", jobId, callId, name, argsJson, depth, parentId, call });
        }),
    });
    send({ type: "done", jobId, envelope });
  } catch (error) {
    send({
      type: "done",
      jobId,
      envelope: failureEnvelope(message.taskName, {
        error_type: "internal_error",
        message: error instanceof Error ? error.message : String(error),
      }),
    });
  } finally {
    jobs.delete(jobId);
  }
}
