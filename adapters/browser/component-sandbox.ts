/**
 * One component sandbox: a module Worker started from a blob inside an opaque-origin iframe whose
 * policy allows no network (connect-src 'none'), no storage and no code from strings. The blob is
 * the component's glue (jco's `instantiate`, which is why this file is built as text and joined
 * after it: a Worker there cannot import another blob) followed by this script. The page posts the
 * prepared component, the task's limits and copies of its granted directories; this realm runs
 * the task and its sub-tasks (core/component/run.ts), and posts back the envelope and the granted
 * directories as the tasks left them, which the page checks before it saves any of them.
 */
import * as cli from "@bytecodealliance/preview2-shim/cli";
import * as clocks from "@bytecodealliance/preview2-shim/clocks";
import {
  createFilesystem,
  InMemoryFilesystemAdapter,
} from "@bytecodealliance/preview2-shim/filesystem";
import * as http from "@bytecodealliance/preview2-shim/http";
import * as io from "@bytecodealliance/preview2-shim/io";
import * as random from "@bytecodealliance/preview2-shim/random";
import { meteredClocks } from "../../core/component/clock.ts";
import { componentImportMap, taskEnvironment } from "../../core/component/imports.ts";
import { decodePrepared } from "../../core/component/prepared.ts";
import {
  budgetedDescriptor,
  readOnlyDescriptor,
  type WriteBudget,
} from "../../core/component/read-only.ts";
import {
  type AttemptContext,
  admitRequest,
  type ComponentRun,
  componentRun,
  type GlueInstantiate,
  methodName,
  type OutgoingRequest,
  requestUrl,
  runComponentTask,
} from "../../core/component/run.ts";
import type { LimitDefaults, TaskLimits } from "../../core/config/options.ts";
import { envelopeForError } from "../../core/runtime/envelope.ts";
import { memoryRefusal } from "../../core/runtime/memory-budget.ts";
import { DEFAULT_SETTINGS } from "../../core/runtime/settings.ts";
import type {
  ComponentSandboxRun,
  FetchAnswer,
  FetchAsk,
  FileData,
  MemoryAnswer,
  MemoryAsk,
  SandboxGrant,
} from "./component-protocol.ts";

/** The glue's export: this script runs in the same module, after it. */
declare const instantiate: GlueInstantiate;

interface WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
}
const scope = globalThis as unknown as WorkerScope;

scope.onmessage = (event: MessageEvent) => {
  scope.onmessage = null;
  const { port } = (event.data ?? {}) as { port?: MessagePort };
  if (port === undefined) return;
  port.onmessage = (message: MessageEvent) => {
    port.onmessage = (answer: MessageEvent) => {
      const data = answer.data as FetchAnswer | MemoryAnswer;
      if (data?.type === "held") held(data);
      else fetched(data);
    };
    pagePort = port;
    void start(port, message.data as ComponentSandboxRun);
  };
};

/**
 * This realm has no network (connect-src 'none'): preview2-shim's `fetch` asks the page, which
 * checks the request again under the run's allowedHosts and makes it (component.ts). The guest
 * waits for the answer suspended (JSPI), as it waits on any pollable here.
 */
let pagePort: MessagePort | null = null;
let nextFetch = 1;
const waiting = new Map<
  number,
  { resolve(response: Response): void; reject(error: unknown): void }
>();

function fetched(answer: FetchAnswer) {
  if (answer?.type !== "fetched") return;
  const pending = waiting.get(answer.id);
  if (pending === undefined) return;
  waiting.delete(answer.id);
  if (!answer.ok) {
    pending.reject(new TypeError(answer.message));
    return;
  }
  const empty = answer.body.byteLength === 0 || [101, 204, 205, 304].includes(answer.status);
  pending.resolve(
    new Response(empty ? null : answer.body, {
      status: answer.status,
      statusText: answer.statusText,
      headers: answer.headers,
    }),
  );
}

/**
 * A sub-task's ram is held in the page's memory budget, which the page keeps: the sandbox asks
 * and the sub-task waits (suspended, as schedule-task is) for the answer.
 */
let nextHold = 1;
const holding = new Map<number, { resolve(release: () => void): void; reject(e: unknown): void }>();

function holdMemory(ramBytes: number, task: { name: string; depth: number }): Promise<() => void> {
  const id = nextHold++;
  const ask: MemoryAsk = { type: "hold", id, name: task.name, depth: task.depth, ramBytes };
  return new Promise((resolve, reject) => {
    holding.set(id, { resolve, reject });
    pagePort?.postMessage(ask);
  });
}

function held(answer: MemoryAnswer) {
  const pending = holding.get(answer.id);
  if (pending === undefined) return;
  holding.delete(answer.id);
  if (answer.refusal !== null) {
    pending.reject(memoryRefusal(answer.refusal));
    return;
  }
  pending.resolve(() => pagePort?.postMessage({ type: "release", id: answer.id }));
}

(globalThis as { fetch: unknown }).fetch = (input: unknown, init: RequestInit = {}) => {
  const id = nextFetch++;
  const body =
    init.body instanceof Uint8Array
      ? ((init.body as Uint8Array).slice().buffer as ArrayBuffer)
      : init.body instanceof ArrayBuffer
        ? init.body.slice(0)
        : null;
  const request: FetchAsk = {
    type: "fetch",
    id,
    url: String(input),
    method: init.method ?? "GET",
    headers: headerPairs(new Headers(init.headers)),
    body,
  };
  return new Promise<Response>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    init.signal?.addEventListener(
      "abort",
      () => {
        waiting.delete(id);
        reject(new DOMException("the request was aborted", "AbortError"));
      },
      { once: true },
    );
    pagePort?.postMessage(request, body ? [body] : []);
  });
};

async function start(port: MessagePort, job: ComponentSandboxRun) {
  const compiledAt = performance.now();
  let envelope: unknown;
  try {
    const prepared = decodePrepared(new Uint8Array(await job.prepared.arrayBuffer()), "component");
    const modules = new Map<string, WebAssembly.Module>();
    for (const [name, bytes] of prepared.files) {
      if (name.endsWith(".wasm"))
        modules.set(name, await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>));
    }
    const engineModule = modules.get(prepared.manifest.engine) as WebAssembly.Module;
    const compileMs = performance.now() - compiledAt;
    const program = {
      instantiate,
      modules,
      engineModule,
      memoryMinPages: prepared.manifest.memoryMinPages,
    };
    const defaults: LimitDefaults = job.defaults;
    // What the run's tasks may write in all: the page's memory holds it (limits.writeBytes).
    const writeBudget: WriteBudget = { bytes: 0, maxBytes: DEFAULT_SETTINGS.writeBytes };
    const run: ComponentRun<SandboxGrant[]> = componentRun(
      program,
      {
        // Sub-tasks get the run's grants: the same directories, the same copies.
        grants: () => job.grants,
        imports: (attempt) => componentImports(run, job.environment, writeBudget, attempt),
        holdMemory,
      },
      defaults,
      job.limits as TaskLimits,
      (event) => port.postMessage({ type: "event", event }),
    );
    envelope = await runComponentTask(run, job.limits as TaskLimits, job.argsJson, 0, null);
    port.postMessage({
      type: "done",
      envelope,
      compileMs,
      grants: job.grants.filter((grant) => grant.mode === "rw"),
    });
  } catch (error) {
    envelope = envelopeForError(job.limits?.name ?? "main", error);
    port.postMessage({ type: "done", envelope, compileMs: 0, grants: [] });
  }
}

const memoryAdapter = new InMemoryFilesystemAdapter();
const readOnlyAdapter = {
  getRoot(capability: FileData) {
    return readOnlyDescriptor(memoryAdapter.getRoot(capability as never) as object);
  },
};

type Filesystem = {
  types: unknown;
  preopens: { getDirectories(): unknown[] };
};

function filesystem(grants: readonly SandboxGrant[], budget: WriteBudget) {
  const budgetedAdapter = {
    getRoot(capability: FileData) {
      return budgetedDescriptor(memoryAdapter.getRoot(capability as never) as object, budget);
    },
  };
  const create = createFilesystem as unknown as (options: {
    adapter: unknown;
    preopens: Record<string, FileData>;
  }) => Filesystem;
  const of = (mode: "rw" | "ro") =>
    create({
      adapter: mode === "rw" ? budgetedAdapter : readOnlyAdapter,
      preopens: Object.fromEntries(
        grants.filter((grant) => grant.mode === mode).map((grant) => [grant.guestPath, grant.tree]),
      ),
    });
  const writable = of("rw");
  const readable = of("ro");
  return {
    types: writable.types,
    preopens: {
      getDirectories: () => [
        ...writable.preopens.getDirectories(),
        ...readable.preopens.getDirectories(),
      ],
    },
  };
}

function componentImports(
  run: ComponentRun<SandboxGrant[]>,
  environment: [string, string][],
  writeBudget: WriteBudget,
  { limits, grants, hostRequests, api, fuelSpent }: AttemptContext<SandboxGrant[]>,
): Record<string, unknown> {
  const fs = filesystem(grants, writeBudget);
  const outgoingHandler = {
    handle(request: OutgoingRequest, options: unknown) {
      try {
        admitRequest(run, limits, methodName(request.method()), requestUrl(request), hostRequests);
      } catch {
        throw { tag: "HTTP-request-denied" };
      }
      return http.outgoingHandler.handle(request as never, options as never);
    },
  };
  const variables = new Map(environment);
  return componentImportMap({
    api,
    environment: taskEnvironment(limits, (name) => variables.get(name)),
    shim: { cli: cli as unknown as Record<string, unknown>, io, random, httpTypes: http.types },
    // The time the component reads is its fuel and its timers', as on Node (clock.ts).
    clocks: meteredClocks(fuelSpent, clocks.monotonicClock),
    fs,
    outgoingHandler,
  });
}

/** A Headers' pairs, by forEach: the DOM library of TypeScript 5 has no Headers iterator. */
function headerPairs(headers: Headers): [string, string][] {
  const pairs: [string, string][] = [];
  headers.forEach((value, name) => {
    pairs.push([name, value]);
  });
  return pairs;
}
