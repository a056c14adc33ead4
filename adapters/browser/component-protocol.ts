import type { LimitDefaults, TaskLimits } from "../../core/config/options.ts";

/**
 * What the page and a component sandbox (component-sandbox.ts) say to each other. A directory in
 * preview2-shim's in-memory form: `{ dir: { name: entry } }`, a file `{ source: bytes }`.
 */
export interface FileData {
  dir?: Record<string, FileData>;
  source?: Uint8Array;
  symlink?: string;
}

/** A granted directory: where the task sees it, whether it may change it, and its files. */
export interface SandboxGrant {
  guestPath: string;
  mode: "rw" | "ro";
  tree: FileData;
}

/** The one job a sandbox runs. */
export interface ComponentSandboxRun {
  /** The prepared component (core/component/prepared.ts). */
  prepared: Blob;
  limits: TaskLimits;
  defaults: LimitDefaults;
  argsJson: string;
  /** The variables the page passed, already cut to the run's envVariables. */
  environment: [string, string][];
  grants: SandboxGrant[];
}

/** What the sandbox answers: the envelope, and the writable grants as its tasks left them. */
export interface ComponentSandboxDone {
  type: "done";
  envelope: unknown;
  compileMs: number;
  grants: SandboxGrant[];
}

/** A request the sandbox's guest made, for the page to check and make. */
export interface FetchAsk {
  type: "fetch";
  id: number;
  url: string;
  method: string;
  headers: [string, string][];
  body: ArrayBuffer | null;
}

/** The page's answer to a FetchAsk: the response read whole, or why there is none. */
export type FetchAnswer =
  | {
      type: "fetched";
      id: number;
      ok: true;
      status: number;
      statusText: string;
      headers: [string, string][];
      body: ArrayBuffer;
    }
  | { type: "fetched"; id: number; ok: false; message: string };

/**
 * The sandbox asks the page to hold a sub-task's ram in the page's memory budget before the
 * sub-task runs (core/component/memory.ts); the page answers with a MemoryAnswer.
 */
export interface MemoryAsk {
  type: "hold";
  id: number;
  name: string;
  depth: number;
  ramBytes: number;
}

/** The page's answer to a MemoryAsk: held (refusal null), or the error that refuses it. */
export interface MemoryAnswer {
  type: "held";
  id: number;
  refusal: { errorType: string; message: string } | null;
}

/** The sandbox is done with a held sub-task's ram. */
export interface MemoryRelease {
  type: "release";
  id: number;
}
