/**
 * A Python session's state: the Pyodide sandbox's linear memory after its last successful call,
 * with the few facts that live outside it. Every Python object the session made (globals,
 * functions, classes, instances, generators, closures, imported modules) is in that memory.
 *
 * Why this carries over: every call's sandbox starts the same way (the build's memory snapshot,
 * then the same set-up: the host module, preloaded modules, the SDK and runner), which is
 * deterministic, so the objects JavaScript keeps pointers to (Pyodide's proxies of the runner,
 * its globals) and the JavaScript values Python keeps indices of (Pyodide's hiwire table) are
 * the same in every fresh sandbox. The image is taken in the sandbox once the call has ended
 * (no C frame is live: the stack pointer is at its base), and copied over a fresh sandbox's
 * memory before the next call runs.
 *
 * What lives outside the memory, and what is done with it (`takeImage`, `restoreImage`):
 * - interned strings Python handed to JavaScript (Pyodide's immortal table): carried by value
 *   and added again, in order, before the memory is copied, so they land at the same indices;
 * - the working directory (emscripten's FS keeps it in JavaScript): carried and restored;
 * - JavaScript objects a call left referenced from Python (new hiwire slots), files it left
 *   open (emscripten streams) and compiled extension modules it loaded (new wasm table
 *   entries): none can carry over, so the call fails with a task_error naming what to close,
 *   and the session stays as it was before it;
 * - files the call wrote outside /workspace (in the sandbox's own memory file system) and
 *   pending timers of the event loop are not carried: only /workspace keeps files.
 *
 * The image is untrusted input (a store file): the host checks its shape and size against the
 * call's ram, and the worst a tampered memory can do is break the sandbox it is copied into,
 * which is the call's own failure.
 */
import { ConfigError, MemoryExceededError } from "../errors.ts";

/** The facts of an image, kept after its memory bytes. */
export interface PythonImageFacts {
  /** Bytes of memory kept: the memory up to its last non-zero page. */
  kept: number;
  /** The memory's whole length when taken: the fresh sandbox's memory is grown to it. */
  memoryBytes: number;
  /** Interned strings added after the sandbox's set-up, in order. */
  immortals: string[];
  /** Length of Pyodide's table of JavaScript values when taken. */
  hiwireSlots: number;
  /** The interpreter's working directory. */
  cwd: string;
}

const WASM_PAGE = 65_536;
/** The largest facts text a host reads (interned strings are short; thousands are many). */
export const MAX_FACTS_BYTES = 16 * 1024 * 1024;

/** The image as bytes: the memory kept, the facts as JSON, then the JSON's length (u32 LE). */
export function packImage(memory: Uint8Array, facts: PythonImageFacts): Uint8Array[] {
  const json = new TextEncoder().encode(JSON.stringify(facts));
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, json.byteLength, true);
  return [memory.subarray(0, facts.kept), json, length];
}

/**
 * The facts of an image, checked: well formed, and consistent with its size. Throws a
 * ConfigError naming what is wrong (a tampered or foreign store file).
 */
export function imageFacts(image: Uint8Array): PythonImageFacts {
  const refuse = (why: string) =>
    new ConfigError(`the Python session's state image is not valid (${why}); reset() the session`);
  if (image.byteLength < 4) throw refuse("too short");
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const jsonLength = view.getUint32(image.byteLength - 4, true);
  if (jsonLength > MAX_FACTS_BYTES || jsonLength + 4 > image.byteLength) {
    throw refuse("its facts do not fit in it");
  }
  const start = image.byteLength - 4 - jsonLength;
  let facts: Partial<PythonImageFacts>;
  try {
    facts = JSON.parse(new TextDecoder().decode(image.subarray(start, start + jsonLength)));
  } catch {
    throw refuse("malformed facts");
  }
  const { kept, memoryBytes, immortals, hiwireSlots, cwd } = facts ?? {};
  if (
    !Number.isSafeInteger(kept) ||
    kept !== start ||
    !Number.isSafeInteger(memoryBytes) ||
    (memoryBytes as number) % WASM_PAGE !== 0 ||
    (memoryBytes as number) < start ||
    !Array.isArray(immortals) ||
    !immortals.every((value) => typeof value === "string") ||
    !Number.isSafeInteger(hiwireSlots) ||
    (hiwireSlots as number) < 0 ||
    typeof cwd !== "string" ||
    !cwd.startsWith("/")
  ) {
    throw refuse("inconsistent facts");
  }
  return facts as PythonImageFacts;
}

/**
 * An image must be well formed and fit in the call's ram before a sandbox gets it; a state that
 * outgrew a call's ram is that call's memory_exceeded (the session keeps it).
 */
export function checkSessionImage(image: Uint8Array, ramBytes: number): void {
  const { memoryBytes } = imageFacts(image);
  if (memoryBytes > ramBytes) {
    throw new MemoryExceededError(
      `the Python session's state needs ${memoryBytes} bytes of memory, more than this call's ram of ${ramBytes} bytes`,
    );
  }
}

/** The most bytes a sandbox may send back as a session's image for a call of `ramBytes`. */
export function maxImageBytes(ramBytes: number): number {
  return ramBytes + MAX_FACTS_BYTES + 4;
}

/** The part of Pyodide's module that holds what the image covers. */
export interface PyodideInternals {
  HEAPU8: Uint8Array;
  __hiwire_get(index: number): unknown;
  __hiwire_immortal_get(index: number): unknown;
  __hiwire_immortal_add(value: string): void;
  wasmTable: WebAssembly.Table;
  FS: {
    streams: unknown[];
    cwd(): string;
    chdir(path: string): void;
  };
}

/** What a sandbox holds outside its memory right after its set-up. */
export interface SandboxBaseline {
  hiwire: unknown[];
  immortals: number;
  streams: Set<number>;
  functions: number;
}

/** Probes a table that throws past its end; at most `limit` entries. */
function readTable(get: (index: number) => unknown, limit = 1 << 20): unknown[] {
  const values: unknown[] = [];
  for (let index = 0; index < limit; index++) {
    try {
      values.push(get(index));
    } catch {
      break;
    }
  }
  return values;
}

function openStreams(module: PyodideInternals): Set<number> {
  const open = new Set<number>();
  module.FS.streams.forEach((stream, fd) => {
    if (stream) open.add(fd);
  });
  return open;
}

export function takeBaseline(module: PyodideInternals): SandboxBaseline {
  return {
    hiwire: readTable((index) => module.__hiwire_get(index)),
    immortals: readTable((index) => module.__hiwire_immortal_get(index)).length,
    streams: openStreams(module),
    functions: module.wasmTable.length,
  };
}

/**
 * The image of a sandbox whose call has ended, or the reason it cannot carry over (the call
 * then fails and the session keeps its state).
 */
export function takeImage(
  module: PyodideInternals,
  baseline: SandboxBaseline,
): { parts: Uint8Array[]; facts: PythonImageFacts } | { refused: string } {
  const left = [...openStreams(module)].filter((fd) => !baseline.streams.has(fd));
  if (left.length > 0) {
    return {
      refused: `the cell left ${left.length === 1 ? "a file" : `${left.length} files`} open (file descriptor ${left.join(", ")}): an open file cannot carry over to the session's next call; close it (with open(...) as f:) in the cell that opens it`,
    };
  }
  if (module.wasmTable.length !== baseline.functions) {
    return {
      refused:
        "the cell loaded a compiled extension module: its code cannot carry over to the session's next call",
    };
  }
  const hiwire = readTable((index) => module.__hiwire_get(index));
  const kept = hiwire.some(
    (value, index) =>
      value !== null && value !== undefined && !Object.is(value, baseline.hiwire[index]),
  );
  if (kept || hiwire.length !== baseline.hiwire.length) {
    return {
      refused:
        "the cell keeps JavaScript values (JsProxy objects) in its state: they cannot carry over to the session's next call",
    };
  }
  const immortals = readTable((index) => module.__hiwire_immortal_get(index))
    .slice(baseline.immortals)
    .map(String);
  const memory = module.HEAPU8;
  const facts: PythonImageFacts = {
    kept: keptLength(memory),
    memoryBytes: memory.byteLength,
    immortals,
    hiwireSlots: hiwire.length,
    cwd: module.FS.cwd(),
  };
  return { parts: packImage(memory, facts), facts };
}

/** The memory's length up to its last non-zero page. */
function keptLength(memory: Uint8Array): number {
  const words = new BigUint64Array(memory.buffer, memory.byteOffset, memory.byteLength >>> 3);
  const perPage = WASM_PAGE / 8;
  for (let page = words.length / perPage - 1; page >= 0; page--) {
    const start = page * perPage;
    for (let index = start + perPage - 1; index >= start; index--) {
      if (words[index] !== 0n) return (page + 1) * WASM_PAGE;
    }
  }
  return 0;
}

/**
 * Copies an image over a freshly set-up sandbox, before its call runs. `grow` grows the memory
 * to at least the given bytes through emscripten (so its views follow), false when it cannot.
 */
export function restoreImage(
  module: PyodideInternals,
  baseline: SandboxBaseline,
  image: Uint8Array,
  grow: (bytes: number) => boolean,
): void {
  const facts = imageFacts(image);
  if (baseline.hiwire.length !== facts.hiwireSlots) {
    throw new ConfigError(
      "the Python session's state image does not fit this sandbox (its table of JavaScript values is larger); reset() the session",
    );
  }
  if (module.HEAPU8.byteLength < facts.memoryBytes && !grow(facts.memoryBytes)) {
    throw new ConfigError(
      `the Python session's state needs ${facts.memoryBytes} bytes of memory, more than this call may use`,
    );
  }
  // Added before the memory is copied: the image's own count of them already includes them.
  for (const value of facts.immortals) module.__hiwire_immortal_add(value);
  const memory = module.HEAPU8;
  memory.set(image.subarray(0, facts.kept), 0);
  memory.fill(0, facts.kept);
  try {
    module.FS.chdir(facts.cwd);
  } catch {
    // The directory was in the sandbox's own file system, which does not carry over.
  }
}
