/**
 * A Python sandbox as the page sees it: a hidden iframe with `sandbox="allow-scripts"` (an opaque
 * origin: no storage, no cookies, no access to this page) whose policy forbids every network
 * request and code from strings, and inside it a Worker from a blob URL that runs Pyodide
 * (worker.ts). The page posts the bytes of every file down, then talks to the Worker over one
 * MessagePort and checks every message it gets back. One sandbox runs one job and is terminated.
 */
import { InternalError, TaskError, TimeoutError } from "../../../core/errors.ts";
import {
  checkPythonRequest,
  type PythonJob,
  type PythonJobResult,
} from "../../../core/python/protocol.ts";
import {
  cancelled,
  fuelExhausted,
  interpreterBroken,
  type SandboxRun,
} from "../../../core/python/tasks.ts";
import { maxImageBytes } from "../../../core/session/python-image.ts";
import { checkSandboxMessage, type PageMessage, type SandboxFiles } from "./protocol.ts";

/**
 * The frame's whole policy: its inline script, one Worker from a blob, wasm compiles, nothing
 * else at all. The Worker inherits it: with no blob: in script-src, `importScripts` of a blob is
 * refused there too (Chromium: NetworkError), and the Worker's own script removes the rest
 * (worker.ts, closeCodeRoutes).
 */
export const SANDBOX_POLICY =
  "default-src 'none'; script-src 'unsafe-inline' 'wasm-unsafe-eval'; worker-src blob:; connect-src 'none'";

/**
 * The frame's only script: it starts the Worker from the script text it is sent, hands it the
 * page's port and the files, and terminates it when the page says so. Messages from the Worker
 * to the frame are ignored: the Worker talks to the page on its port, where they are checked.
 */
const FRAME_SCRIPT = `
addEventListener("message", (event) => {
  const data = event.data;
  if (event.source !== parent || !data || data.type !== "start") return;
  const worker = new Worker(URL.createObjectURL(data.script), { name: "capsule-python" });
  worker.postMessage({ port: data.port, files: data.files, seal: data.seal }, [data.port]);
  worker.onerror = (event) => {
    event.preventDefault();
    data.control.postMessage({ type: "error", message: String(event.message || "the sandbox script failed") });
  };
  data.control.onmessage = () => {
    worker.terminate();
    data.control.postMessage({ type: "terminated" });
  };
}, { once: true });
`;

const FRAME_DOCUMENT = `<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="${SANDBOX_POLICY}"><script>${FRAME_SCRIPT}</script></head></html>`;

/** The end of a run whose guest wrote to the runtime's port itself (without the Worker's seal). */
function forged(): TaskError {
  return new TaskError(
    "the task sent the runtime a message of its own making (a forged report), so its run was ended; a task reaches the runtime only through capsule's calls",
  );
}

/** Everything a sandbox is started from: fetched by the page once, the same Blobs for every sandbox. */
export interface SandboxAssets {
  /** The Worker's script (worker.ts, built), started from a blob URL inside the frame. */
  workerScript: Blob;
  files: SandboxFiles;
}

/** How long a terminated sandbox's frame may stay before it is removed anyway. */
const REMOVE_AFTER_MS = 1000;

/** Pyodide loads in seconds; a sandbox silent for this long was stopped by something on the page. */
const READY_WITHIN_MS = 120_000;

export class PythonSandbox {
  /** Resolves once Pyodide is loaded in the Worker (how long it took, inside the Worker). */
  readonly ready: Promise<{ loadMs: number; fromSnapshot: boolean }>;
  readonly #frame: HTMLIFrameElement;
  readonly #port: MessagePort;
  readonly #control: MessagePort;
  #killed = false;
  /**
   * A secret the Worker's own script puts on every message it sends; the guest, which shares
   * that realm, cannot read it. A message without it was written by the guest.
   */
  readonly #seal = Array.from(crypto.getRandomValues(new Uint32Array(4)), (word) =>
    word.toString(16).padStart(8, "0"),
  ).join("");
  /** The current listener for what the Worker sends; replaced when a job starts. */
  #onMessage: (data: unknown) => void = () => {};
  /** Called when the sandbox ends without a message of its own (terminated, script failed). */
  #onEnd: (error: Error) => void = () => {};

  constructor(assets: Promise<SandboxAssets>) {
    const page = new MessageChannel();
    const control = new MessageChannel();
    this.#port = page.port1;
    this.#control = control.port1;
    this.#frame = document.createElement("iframe");
    this.#frame.setAttribute("sandbox", "allow-scripts");
    this.#frame.setAttribute("referrerpolicy", "no-referrer");
    this.#frame.setAttribute("aria-hidden", "true");
    this.#frame.tabIndex = -1;
    this.#frame.style.display = "none";
    this.#frame.srcdoc = FRAME_DOCUMENT;

    let deadline: ReturnType<typeof setTimeout> | undefined;
    this.ready = new Promise((resolve, reject) => {
      this.#onMessage = (data) => {
        const message = checkSandboxMessage(data);
        if (message?.type === "ready") resolve(message);
        else if (message?.type === "failed" || message?.type === "crashed") {
          reject(new InternalError(message.message));
        }
      };
      this.#onEnd = reject;
      deadline = setTimeout(
        () =>
          reject(
            new InternalError(
              `the Python sandbox did not start within ${READY_WITHIN_MS / 1000} s; a Content-Security-Policy on the page must let it create a srcdoc frame (frame-src or child-src) that starts a blob: Worker`,
            ),
          ),
        READY_WITHIN_MS,
      );
    });
    // One that cannot start is gone at once; a rejection nobody awaits is not an error.
    this.ready.then(
      () => clearTimeout(deadline),
      () => {
        clearTimeout(deadline);
        this.kill();
      },
    );
    this.#port.onmessage = (event) => {
      const data = event.data as { seal?: unknown } | null;
      if (typeof data === "object" && data !== null && data.seal === this.#seal) {
        this.#onMessage(data);
      } else {
        this.#onEnd(forged());
      }
    };
    this.#control.onmessage = (event) => {
      const data = event.data as { type?: unknown; message?: unknown } | null;
      if (data?.type === "terminated") this.#frame.remove();
      else if (data?.type === "error") {
        this.#onEnd(new InternalError(`the Python sandbox failed: ${String(data.message)}`));
      }
    };

    const frameLoaded = new Promise<void>((resolve) =>
      this.#frame.addEventListener("load", () => resolve(), { once: true }),
    );
    (document.body ?? document.documentElement).append(this.#frame);
    Promise.all([assets, frameLoaded]).then(
      ([{ workerScript, files }]) => {
        if (this.#killed) return;
        // The frame's origin is opaque: "*" is the only target that reaches it. Blobs pass as
        // handles; the Worker reads them.
        this.#frame.contentWindow?.postMessage(
          {
            type: "start",
            script: workerScript,
            files,
            seal: this.#seal,
            port: page.port2,
            control: control.port2,
          },
          "*",
          [page.port2, control.port2],
        );
      },
      (error: unknown) => this.#onEnd(error instanceof Error ? error : new Error(String(error))),
    );
  }

  /** Runs one job; resolves to what the sandbox reported, or rejects with why it ended. */
  run(job: PythonJob, run: Omit<SandboxRun, "job">): Promise<PythonJobResult> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        run.signal?.removeEventListener("abort", onAbort);
        this.kill();
        outcome();
      };
      const onAbort = () => finish(() => reject(cancelled()));
      const timer =
        run.timeoutMs === null
          ? undefined
          : setTimeout(
              () => finish(() => reject(new TimeoutError(`timed out after ${run.timeoutMs} ms`))),
              run.timeoutMs,
            );
      this.#onEnd = (error) => finish(() => reject(error));
      this.#onMessage = (data) => {
        const message = checkSandboxMessage(data);
        if (message?.type === "log") run.onLog(message.level, message.text);
        else if (message?.type === "done") {
          const { outcomeJson, ramUsed, fuelConsumed, changes, session } = message;
          // The meter stops the task at its budget: a count past it means the guest changed it.
          if (BigInt(fuelConsumed) > BigInt(job.fuel)) {
            finish(() =>
              reject(
                new TaskError(
                  `the sandbox reported ${fuelConsumed} fuel, more than the budget of ${job.fuel}: the task tampered with its meter`,
                ),
              ),
            );
          } else if (session !== undefined && "refused" in session) {
            finish(() => reject(new TaskError(session.refused)));
          } else if (
            session !== undefined &&
            session.image.byteLength > maxImageBytes(job.ramBytes)
          ) {
            finish(() =>
              reject(
                new TaskError(
                  `the Python task sent a session state of ${session.image.byteLength} bytes, more than its ram allows`,
                ),
              ),
            );
          } else {
            const image = run.session && session?.image;
            finish(() =>
              resolve({ outcomeJson, ramUsed, fuelConsumed, changes, ...(image && { image }) }),
            );
          }
        } else if (message?.type === "failed") {
          finish(() => reject(new InternalError(`Python engine: ${message.message}`)));
        } else if (message?.type === "crashed") {
          finish(() => reject(interpreterBroken(message.message)));
        } else if (message?.type === "call") {
          this.#answer(message.id, message.request, job, run, (error) =>
            finish(() => reject(error)),
          );
        }
      };
      if (run.signal?.aborted) {
        onAbort();
        return;
      }
      run.signal?.addEventListener("abort", onAbort);
      this.#post({
        type: "run",
        job,
        ...(run.files && { files: run.files }),
        // Copied, not handed over: the session keeps its image should this call fail.
        ...(run.session && { session: { image: run.session.image } }),
      });
    });
  }

  /** Checks a guest request and answers it; a forged one gets an error and the task goes on. */
  #answer(
    id: number,
    value: unknown,
    job: PythonJob,
    run: Omit<SandboxRun, "job">,
    end: (error: Error) => void,
  ) {
    let request: ReturnType<typeof checkPythonRequest>;
    try {
      request = checkPythonRequest(value);
    } catch (error) {
      this.#post({ type: "reply", id, reply: { error: (error as Error).message } });
      return;
    }
    // The sandbox is spinning until it is terminated; the budget is the runtime's own.
    if (request.op === "fuel_exhausted") {
      end(fuelExhausted(job.fuel));
      return;
    }
    run.onRequest(request).then(
      (reply) => this.#post({ type: "reply", id, reply }),
      (error: unknown) => this.#post({ type: "reply", id, reply: { error: String(error) } }),
    );
  }

  #post(message: PageMessage) {
    if (!this.#killed) this.#port.postMessage(message);
  }

  /** Terminates the Worker and removes its frame; what the Worker still sends is ignored. */
  kill() {
    if (this.#killed) return;
    this.#killed = true;
    this.#onMessage = () => {};
    this.#onEnd(new InternalError("the Python sandbox was stopped"));
    this.#control.postMessage({ type: "terminate" });
    this.#port.close();
    // Removing the frame ends its Worker too, should the frame not answer.
    setTimeout(() => {
      this.#frame.remove();
      this.#control.close();
    }, REMOVE_AFTER_MS);
  }
}
