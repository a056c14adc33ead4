/**
 * Python tasks in a page: each attempt (and the read of a file's tasks) in a fresh sandbox
 * (sandbox.ts), from a small set started ahead, since Pyodide takes a second or more to load.
 * Loaded by the adapter only when a page runs Python, so JavaScript-only pages fetch none of it.
 */

import { InternalError } from "../../../core/errors.ts";
import {
  createPythonRunner,
  type PythonTaskRequest,
  untilAborted,
} from "../../../core/python/tasks.ts";
import type { Envelope } from "../../../core/runtime/envelope.ts";
import { checkSessionImage } from "../../../core/session/python-image.ts";
import { createGrantCopies } from "./files.ts";
import { createPythonProvider } from "./provider.ts";
import { PythonSandbox, type SandboxAssets } from "./sandbox.ts";

/**
 * The files the build writes beside capsule.js (dist/browser/python/), each named by a literal
 * `new URL(...)` so an app's bundler (Vite, webpack, Parcel) sees, emits and rewrites it. The
 * Worker's script is text (worker.txt): it starts from a blob, never from its address, and a dev
 * server (Vite's) rewrites every `.js` file it serves as a module of its own. The snapshot is
 * made only where the build had Chromium; without it each sandbox loads from scratch.
 */
const ASSETS = {
  worker: new URL("./python/worker.txt", import.meta.url),
  engine: new URL("./python/pyodide-metered.wasm", import.meta.url),
  stdlib: new URL("./python/python_stdlib.zip", import.meta.url),
  lock: new URL("./python/pyodide-lock.json", import.meta.url),
  snapshot: new URL("./python/pyodide-snapshot.bin", import.meta.url),
};

/** Sandboxes loaded ahead of need: one for the next attempt while the current one runs. */
const SANDBOXES_AHEAD = 1;

let assets: Promise<SandboxAssets> | undefined;
const ahead: PythonSandbox[] = [];
const live = new Set<PythonSandbox>();

/** Fetches every file once per page; sandboxes share the Blobs. */
function loadAssets(): Promise<SandboxAssets> {
  assets ??= fetchAssets().catch((error: unknown) => {
    assets = undefined;
    throw error;
  });
  return assets;
}

async function fetchAssets(): Promise<SandboxAssets> {
  const get = async (url: URL, required = true) => {
    const response = await fetch(url);
    // A missing file may come back as an app server's fallback page: it is not the file either.
    const page = response.headers.get("content-type")?.startsWith("text/html") ?? false;
    if (response.ok && !page) return response;
    if (!required) return undefined;
    throw new InternalError(
      `the Python runtime could not load ${url.href} (${page ? "an HTML page came back" : `HTTP ${response.status}`}); copy the whole dist/browser folder, built with the Python engine`,
    );
  };
  const [worker, engine, stdlib, lock, snapshot] = await Promise.all([
    get(ASSETS.worker),
    get(ASSETS.engine),
    get(ASSETS.stdlib),
    get(ASSETS.lock),
    get(ASSETS.snapshot, false),
  ]);
  const blob = (response: Response | undefined) => (response as Response).blob();
  return {
    workerScript: new Blob([await blob(worker)], { type: "text/javascript" }),
    files: {
      engine: await blob(engine),
      stdlib: await blob(stdlib),
      lock: await blob(lock),
      ...(snapshot ? { snapshot: await snapshot.blob() } : {}),
    },
  };
}

function startSandbox(): PythonSandbox {
  const sandbox = new PythonSandbox(loadAssets());
  live.add(sandbox);
  // One that failed to load is not handed to a task: the next task starts a new one.
  sandbox.ready.catch(() => {
    const index = ahead.indexOf(sandbox);
    if (index !== -1) ahead.splice(index, 1);
    live.delete(sandbox);
  });
  return sandbox;
}

/** A loaded (or loading) sandbox for one job; the next one starts loading at once. */
function takeSandbox(): PythonSandbox {
  const sandbox = ahead.shift() ?? startSandbox();
  while (ahead.length < SANDBOXES_AHEAD) ahead.push(startSandbox());
  return sandbox;
}

/**
 * Sandboxes that may run a job at once on a page; more wait. Each is a Worker holding a whole
 * interpreter (about 100 MB, up to its ram cap), and a tab has one memory budget.
 */
export const PYTHON_SANDBOXES_AT_ONCE = Math.max(4, globalThis.navigator?.hardwareConcurrency ?? 4);

const runPython = createPythonRunner({
  sandboxesAtOnce: PYTHON_SANDBOXES_AT_ONCE,
  async runInSandbox({ job, ...run }) {
    const sandbox = takeSandbox();
    try {
      await untilAborted(sandbox.ready, run.signal);
      if (run.session?.image) checkSessionImage(run.session.image, job.ramBytes);
      run.onStarted?.();
      return await sandbox.run(job, run);
    } finally {
      sandbox.kill();
      live.delete(sandbox);
    }
  },
});

/** Runs a Python task and its sub-tasks, each attempt in a fresh sandbox; never throws. */
export function runPythonTask(
  request: Omit<PythonTaskRequest, "provider" | "fileCopies" | "untimedBound"> & {
    env: Record<string, string | undefined>;
    /** The app's directory in OPFS that allowed_files are relative to. */
    opfsRoot: string;
  },
): Promise<Envelope> {
  const { env, opfsRoot, ...rest } = request;
  return runPython({
    ...rest,
    // The Worker is the guest's realm: what it reports of its fuel cannot be what ends it.
    untimedBound: {
      ms: request.settings.pythonTimeoutMs,
      note: "a Python task in a page that sets no timeout gets limits.pythonTimeoutMs",
    },
    provider: createPythonProvider(env),
    fileCopies: createGrantCopies(opfsRoot),
  });
}

let imageKey: Promise<string> | undefined;

/**
 * What a Python session's image belongs to: the metered engine and the sandbox's script (which
 * holds the SDK and runner), and whether the sandbox starts from the build's snapshot. An image
 * taken under another build is refused, never restored.
 */
export function pythonImageKey(): Promise<string> {
  imageKey ??= loadAssets()
    .then(async ({ workerScript, files }) => {
      const bytes = await new Blob([workerScript, files.engine]).arrayBuffer();
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      const hex = Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
      const snapshot = files.snapshot !== undefined && "Suspending" in WebAssembly;
      return `python-page:${hex}:${snapshot ? "snapshot" : "scratch"}`;
    })
    .catch((error: unknown) => {
      imageKey = undefined;
      throw error;
    });
  return imageKey;
}

/**
 * Starts loading the files and a sandbox, so the next Python task need not wait for Pyodide;
 * resolves once one is loaded (rejects if it cannot load), with how long that took in its Worker.
 */
export function preparePython(): Promise<PythonReadiness> {
  if (ahead.length === 0) ahead.push(startSandbox());
  return (ahead[0] as PythonSandbox).ready;
}

export interface PythonReadiness {
  /** From the Worker receiving the files to Pyodide loaded, in milliseconds. */
  loadMs: number;
  /** Started from the build's snapshot of a loaded interpreter (else loaded from scratch). */
  fromSnapshot: boolean;
}

/** Terminates every Python sandbox; a later task starts new ones. */
export function shutdownPython(): void {
  ahead.length = 0;
  for (const sandbox of live) sandbox.kill();
  live.clear();
}
