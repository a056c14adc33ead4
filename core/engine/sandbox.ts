import QuickJSRaw from "@jitl/quickjs-wasmfile-release-sync/emscripten-module";
import { QuickJSFFI } from "@jitl/quickjs-wasmfile-release-sync/ffi";
import {
  type JSContextPointer,
  type JSRuntimePointer,
  type JSValueConstPointer,
  type JSValuePointer,
  Lifetime,
  type QuickJSContext,
  type QuickJSHandle,
  QuickJSRuntime,
  QuickJSWASMModule,
  StaticLifetime,
} from "quickjs-emscripten-core";
import { FuelExhaustedError, InternalError, MemoryExceededError, TaskError } from "../errors.ts";
import { type Engine, WASM_PAGE_BYTES } from "./engine.ts";
import { fencedExports, memoryShelf } from "./memory-shelf.ts";
import { PINNED_IMPORT_NAMES, type PinnedClock, pinImports } from "./pinned-imports.ts";
import { mathRandomOffset, reseedMathRandom, writeRandomSeed } from "./random-state.ts";

/** Stack kept free below QuickJS's recursion limit, for the C functions a guest call runs. */
const STACK_SAFETY_MARGIN = 128 * 1024;

/** Pages above the engine's floor that a sandbox starts with (1.5 MiB). */
const STARTING_HEADROOM_PAGES = 24;

/** What the fuel global holds while no guest code runs: enough that host calls never trap. */
const UNMETERED_FUEL = 1n << 62n;

/**
 * Fuel between the host's looks at the deadline while the guest runs outside the interpreter
 * (about a millisecond of guest work): QuickJS's own interrupt handler may not be called for
 * seconds while a loop spends its time inside built-ins. The engine calls refuel once the counter
 * drops below `tick`, which the host keeps one slice below the counter.
 */
const DEADLINE_SLICE = 24_000_000n;

/** Fuel a stopped guest gets to unwind out of a nested call (about 40 microseconds of work). */
const UNWIND_FUEL = 1_000_000n;

/** Thrown from the fuel checks when the attempt's owner asks the guest to stop. */
export class SandboxInterrupted extends InternalError {
  override name = "SandboxInterrupted";
}

export interface SandboxOptions {
  engine: Engine;
  /** Hard cap on the sandbox's linear memory. */
  memoryBytes: number;
  /** Text the C library writes to stdout/stderr (normally nothing). */
  onEngineOutput?: (text: string) => void;
}

/** What the attempt that owns a sandbox decides: its fuel, its clock, when to stop it. */
export interface SandboxLease {
  fuel: number;
  clock: PinnedClock;
  /** Called by the QuickJS interrupt handler; return true to stop the guest. */
  shouldInterrupt: () => boolean;
}

/**
 * One QuickJS instance in its own linear memory, owned by exactly one task attempt. Once guest
 * code traps (fuel, memory, abort) the sandbox is dead: every later use throws, and the owner
 * drops it.
 */
export class Sandbox {
  readonly runtime: QuickJSRuntime;
  readonly context: QuickJSContext;
  readonly memory: WebAssembly.Memory;
  #fuelGlobal: WebAssembly.Global | null;
  /** Where checks outside the interpreter call refuel: one slice below the counter. */
  #tickGlobal: WebAssembly.Global | null;
  /** The counter as the guest left it (between metered sections): the budget not yet spent. */
  #fuelLeft = 0n;
  /** The counter as the last refuel saw it: fresher than the global, which lags behind it. */
  #refuelCounter: bigint | null = null;
  #fuelBudget = 0n;
  #lease: SandboxLease | null = null;
  /** The engine's JSON.parse, taken before any guest code ran (parseHostJson). */
  readonly #jsonParse: QuickJSHandle;
  #meteredDepth = 0;
  #dead: Error | null = null;
  #unwindingAllowed = false;
  /** The glue's emscripten_resize_heap, which also renews its views of the memory. */
  #resizeHeap: ((bytes: number) => unknown) | null = null;
  #engine: Engine | null = null;
  #slot: SandboxSlot | null = null;
  #maximumPages = 0;
  /** Set once a view of the memory left the sandbox (memoryImage): it is never shelved. */
  #memoryLent = false;

  private constructor(
    runtime: QuickJSRuntime,
    context: QuickJSContext,
    memory: WebAssembly.Memory,
    fuelGlobal: WebAssembly.Global | null,
    tickGlobal: WebAssembly.Global | null,
    jsonParse: QuickJSHandle,
  ) {
    this.runtime = runtime;
    this.#jsonParse = jsonParse;
    this.context = context;
    this.memory = memory;
    this.#fuelGlobal = fuelGlobal;
    this.#tickGlobal = tickGlobal;
  }

  /**
   * Hands the sandbox to the one attempt that will run guest code in it. Until then only the
   * runtime's own set-up code runs (uncharged, never interrupted, on the real clock).
   */
  lease(lease: SandboxLease): void {
    if (this.#lease !== null) throw new InternalError("a sandbox serves exactly one attempt");
    this.#lease = lease;
    this.#fuelBudget = BigInt(lease.fuel);
    this.#fuelLeft = this.#fuelBudget;
  }

  /** Sets where the next deadline look happens: one slice below `counter`, never below zero. */
  #setTick(counter: bigint): void {
    if (this.#tickGlobal) {
      this.#tickGlobal.value = counter > DEADLINE_SLICE ? counter - DEADLINE_SLICE : 0n;
    }
  }

  /**
   * Called by the instrumented engine at a check outside the interpreter whose counter went below
   * `tick`: stops the guest by throwing (budget spent, or the owner wants it stopped), else moves
   * `tick` a slice on and leaves the counter as it is.
   */
  #refuel(counter: bigint): bigint {
    if (this.#dead) throw this.#dead;
    const lease = this.#lease;
    if (lease === null || this.#meteredDepth === 0) return counter;
    if (counter < 0n) {
      this.#fuelLeft = counter;
      this.#dead = this.#exhausted();
      throw this.#dead;
    }
    this.#refuelCounter = counter;
    if (lease.shouldInterrupt()) {
      this.#dead = new SandboxInterrupted("the guest was interrupted");
      throw this.#dead;
    }
    this.#setTick(counter);
    return counter;
  }

  #throwIfDead(): void {
    if (this.#dead) throw this.#dead;
  }

  #exhaustedAlready(): boolean {
    return this.#dead instanceof FuelExhaustedError;
  }

  #exhausted(): FuelExhaustedError {
    return new FuelExhaustedError(
      `fuel exhausted: the task used its budget of ${this.#fuelBudget} fuel`,
    );
  }

  /**
   * Starts the engine in `memory`: a fresh wasm instance, its C library set up (data segments,
   * constructors), nothing of QuickJS yet. The sandbox's callbacks reach it through `slot`.
   */
  static async #start(
    engine: Engine,
    memory: WebAssembly.Memory,
    options: SandboxOptions,
    slot: SandboxSlot,
  ): Promise<EngineStart> {
    let instance: WebAssembly.Instance | undefined;
    let resizeHeap: ((bytes: number) => unknown) | null = null;
    const clock: PinnedClock = { now: () => slot.sandbox?.leased?.clock.now() ?? Date.now() };
    const output = options.onEngineOutput ?? (() => {});
    const emscripten = (await QuickJSRaw({
      wasmMemory: memory,
      thisProgram: "capsule",
      print: output,
      printErr: output,
      instantiateWasm(
        imports: Record<string, Record<string, unknown>>,
        onSuccess: (instance: WebAssembly.Instance) => void,
      ) {
        pinImports(imports, memory, clock);
        const resize = imports.a?.[PINNED_IMPORT_NAMES.resizeHeap];
        if (typeof resize === "function") resizeHeap = resize as (bytes: number) => unknown;
        if (engine.refuels) {
          imports.capsule = {
            refuel: (counter: bigint) => (slot.sandbox ? slot.sandbox.#refuel(counter) : counter),
          };
        }
        instance = new WebAssembly.Instance(engine.module, imports as WebAssembly.Imports);
        // The glue calls into the instance only through the exports it is handed here: fenced,
        // so that nothing reaches this instance's memory once the sandbox ended (memory-shelf.ts).
        const exports = fencedExports(instance.exports, () => slot.ended);
        onSuccess({ exports } as WebAssembly.Instance);
        return exports;
      },
    } as Parameters<typeof QuickJSRaw>[0])) as EmscriptenModule;
    const exports = instance?.exports ?? {};
    const fuel = engine.metered ? (exports.fuel as WebAssembly.Global | undefined) : undefined;
    if (engine.metered && fuel === undefined) {
      throw new InternalError("metered engine has no fuel global");
    }
    if (fuel) fuel.value = UNMETERED_FUEL;
    const tick = engine.metered ? (exports.tick as WebAssembly.Global | undefined) : undefined;
    if (engine.metered && tick === undefined) {
      throw new InternalError("metered engine has no tick global; rebuild it (npm run build)");
    }
    emscripten.type = "sync";
    // quickjs-emscripten copies host strings and bytes to whatever _malloc returns, unchecked: a
    // failed allocation (0) would write them over the sandbox's low memory. Fail it instead.
    const malloc = emscripten._malloc;
    emscripten._malloc = (size: number) => {
      const pointer = malloc(size);
      if (pointer === 0 && size > 0) {
        throw new MemoryExceededError(
          `out of memory: ${size} bytes from the host do not fit in what is left of the task's ram (${formatBytes(options.memoryBytes)})`,
        );
      }
      return pointer;
    };
    return { emscripten, fuel: fuel ?? null, tick: tick ?? null, resizeHeap };
  }

  static async create(options: SandboxOptions): Promise<Sandbox> {
    const { engine } = options;
    const maximumPages = checkedMaximumPages(engine, options.memoryBytes);
    // Start a little above the floor: a small task then never grows memory (growing costs more
    // than reserving, since untouched pages are not committed), and fuel does not depend on it.
    const pages = startingPages(engine, maximumPages);
    const memory =
      memoryShelf.take(pages, maximumPages) ??
      new WebAssembly.Memory({ initial: pages, maximum: maximumPages });
    const slot: SandboxSlot = { sandbox: undefined, ended: false };
    const started = await Sandbox.#start(engine, memory, options, slot);
    const quickjs = new QuickJSWASMModule(started.emscripten, new QuickJSFFI(started.emscripten));
    const runtime = quickjs.newRuntime();
    // QuickJS's default limit equals the whole C stack; stop guest recursion with a catchable
    // "stack overflow" before it runs into the static data below the stack.
    if (engine.stackBytes !== null) {
      runtime.setMaxStackSize(Math.max(64 * 1024, engine.stackBytes - STACK_SAFETY_MARGIN));
    }
    runtime.setInterruptHandler(() => slot.sandbox?.leased?.shouldInterrupt() ?? false);
    const madeFrom = Date.now();
    const context = runtime.newContext();
    reseedMathRandom(engine, memory, contextPointerOf(context), madeFrom, Date.now());
    const json = context.getProp(context.global, "JSON");
    const jsonParse = context.getProp(json, "parse");
    json.dispose();
    return Sandbox.#finish({
      runtime,
      context,
      memory,
      started,
      jsonParse,
      engine,
      slot,
      maximumPages,
    });
  }

  static #finish(parts: {
    runtime: QuickJSRuntime;
    context: QuickJSContext;
    memory: WebAssembly.Memory;
    started: EngineStart;
    jsonParse: QuickJSHandle;
    engine: Engine;
    slot: SandboxSlot;
    /** Its memory's cap; it started at `startingPages` of it (`restore` takes no other image). */
    maximumPages: number;
  }): Sandbox {
    const { runtime, context, memory, started } = parts;
    const sandbox = new Sandbox(
      runtime,
      context,
      memory,
      started.fuel,
      started.tick,
      parts.jsonParse,
    );
    sandbox.#engine = parts.engine;
    sandbox.#resizeHeap = started.resizeHeap;
    sandbox.#slot = parts.slot;
    sandbox.#maximumPages = parts.maximumPages;
    parts.slot.sandbox = sandbox;
    return sandbox;
  }

  /**
   * Records this sandbox so that `restore` can make copies of it: the memory blocks that differ
   * from a freshly started engine's, and the addresses the engine wrappers hold. Only a live
   * sandbox nobody leased, in which nothing runs; it must not be used until this resolves.
   */
  async captureImage(): Promise<SandboxImage> {
    const engine = this.#engine;
    if (engine === null || this.#lease !== null || this.#dead !== null || this.#meteredDepth > 0) {
      throw new InternalError(
        "only a live sandbox nobody leased, with nothing running, is recorded",
      );
    }
    const internals = this.context as unknown as ContextInternals;
    const scratchPointer = internals.uint32Out?.value?.ptr;
    const globalPointer = (internals._global as { value?: number } | undefined)?.value;
    if (typeof scratchPointer !== "number" || typeof globalPointer !== "number") {
      throw new InternalError("quickjs-emscripten's context no longer keeps the recorded cells");
    }
    // Handles the context wrapper caches on first use: a copy's wrapper would make them again, at
    // other addresses than a fresh sandbox's, so set-up must not have made any.
    const cached = ["_BigInt", "_Symbol", "_SymbolIterator", "_SymbolAsyncIterator"] as const;
    if (cached.some((name) => (this.context as unknown as Record<string, unknown>)[name])) {
      throw new InternalError("set-up made a cached handle a copy would not hold");
    }
    const randomOffset = mathRandomOffset(engine);
    if (randomOffset === null) {
      throw new InternalError(
        "Math.random's state was not found: every copy would repeat one sequence",
      );
    }
    const pages = this.memory.buffer.byteLength / WASM_PAGE_BYTES;
    // What a copy starts from before its blocks are written: a freshly started engine.
    const pristine = new WebAssembly.Memory({ initial: pages, maximum: pages });
    await Sandbox.#start(
      engine,
      pristine,
      { engine, memoryBytes: pages * WASM_PAGE_BYTES },
      { sandbox: undefined, ended: false },
    );
    const { runtime, context } = this.addresses;
    return {
      engine,
      pages,
      blocks: await changedBlocks(
        new Uint8Array(pristine.buffer),
        new Uint8Array(this.memory.buffer),
      ),
      runtimePointer: runtime,
      contextPointer: context,
      randomStatePointer: context + randomOffset,
      globalPointer,
      scratchPointer,
      jsonParsePointer: this.#jsonParse.value as unknown as number,
    };
  }

  /**
   * A new sandbox in the state `image` recorded: a fresh wasm instance over a fresh memory, filled
   * from the image, with new engine wrappers at the recorded addresses; nothing is shared with the
   * recorded sandbox or any other copy; its Math.random gets a seed of its own (random-state.ts).
   * Null when the image cannot serve this memory cap (a fresh sandbox would start with another
   * memory size).
   */
  static async restore(image: SandboxImage, options: SandboxOptions): Promise<Sandbox | null> {
    const { engine } = options;
    if (engine !== image.engine)
      throw new InternalError("the image was recorded on another engine");
    const maximumPages = checkedMaximumPages(engine, options.memoryBytes);
    if (startingPages(engine, maximumPages) !== image.pages) return null;
    const memory =
      memoryShelf.take(image.pages, maximumPages) ??
      new WebAssembly.Memory({ initial: image.pages, maximum: maximumPages });
    const slot: SandboxSlot = { sandbox: undefined, ended: false };
    const started = await Sandbox.#start(engine, memory, options, slot);
    const heap = new Uint8Array(memory.buffer);
    for (const block of image.blocks) heap.set(block.bytes, block.offset);
    writeRandomSeed(memory, image.randomStatePointer);
    const { emscripten } = started;
    const ffi = new QuickJSFFI(emscripten);
    const quickjs = new QuickJSWASMModule(emscripten, ffi);
    const callbacks = (quickjs as unknown as { callbacks: unknown }).callbacks;
    const runtime = new QuickJSRuntime({
      module: emscripten,
      ffi,
      rt: new Lifetime(image.runtimePointer as JSRuntimePointer, undefined, (pointer) => {
        ffi.QTS_FreeRuntime(pointer);
      }),
      callbacks,
    } as unknown as ConstructorParameters<typeof QuickJSRuntime>[0]);
    // Sets the same C handler the image holds (the same bytes), with this copy's callback.
    runtime.setInterruptHandler(() => slot.sandbox?.leased?.shouldInterrupt() ?? false);
    // The context wrapper allocates a 4-byte scratch cell: the recorded one is handed back, so the
    // heap stays byte for byte the recorded one (where later allocations land shows in fuel).
    const allocate = emscripten._malloc;
    let allocations = 0;
    emscripten._malloc = (size: number) => {
      allocations++;
      if (size !== 4 || allocations > 1) {
        throw new InternalError(`unexpected ${size}-byte allocation while restoring a context`);
      }
      return image.scratchPointer;
    };
    let context: QuickJSContext;
    try {
      context = runtime.newContext({ contextPointer: image.contextPointer as JSContextPointer });
    } finally {
      emscripten._malloc = allocate;
    }
    if (allocations !== 1) {
      throw new InternalError("quickjs-emscripten's context no longer allocates a scratch cell");
    }
    const internals = context as unknown as ContextInternals;
    internals._global = new StaticLifetime(
      image.globalPointer as unknown as JSValueConstPointer,
      runtime,
    ) as unknown as QuickJSHandle;
    const jsonParse = internals.memory.heapValueHandle(image.jsonParsePointer as JSValuePointer);
    return Sandbox.#finish({
      runtime,
      context,
      memory,
      started,
      jsonParse,
      engine,
      slot,
      maximumPages,
    });
  }

  /** A value handle for a pointer the recorded sandbox held (a handle made before recording). */
  adoptHandle(pointer: number): QuickJSHandle {
    const internals = this.context as unknown as ContextInternals;
    return internals.memory.heapValueHandle(pointer as JSValuePointer);
  }

  /**
   * Where the engine's runtime and context live in linear memory. A memory image is only
   * meaningful to a sandbox whose runtime and context sit at the same addresses.
   */
  get addresses(): { runtime: number; context: number } {
    const runtime = (this.runtime as unknown as { rt: { value: number } }).rt.value;
    return { runtime, context: contextPointerOf(this.context) };
  }

  /**
   * The linear memory up to its last non-zero word, as a view of the sandbox's own memory, not a
   * copy: take it only once no guest or engine code will run in this sandbox again (its attempt
   * has ended), so nothing writes to it afterwards (restoreMemory clears what lies beyond it).
   */
  memoryImage(): Uint8Array {
    // Someone else now reads this memory: it is never handed to another sandbox.
    this.#memoryLent = true;
    const buffer = this.memory.buffer;
    const words = new Int32Array(buffer);
    let end = words.length;
    while (end > 0 && words[end - 1] === 0) end--;
    return new Uint8Array(buffer, 0, end * 4);
  }

  /**
   * Replaces the whole linear memory with an image another sandbox of the same engine took
   * between calls, after the same set-up: the engine's heap (runtime, context, every guest value)
   * is then the image's. Grows the memory to fit (a MemoryExceededError when the image is larger
   * than this sandbox's cap) and clears what lies beyond the image. Only before the lease.
   */
  restoreMemory(image: Uint8Array): void {
    if (this.#lease !== null) throw new InternalError("memory restored into a leased sandbox");
    const resize = this.#resizeHeap;
    if (resize === null) throw new InternalError("the engine glue has no emscripten_resize_heap");
    const missing = Math.ceil((image.byteLength - this.memory.buffer.byteLength) / WASM_PAGE_BYTES);
    if (missing > 0) {
      try {
        this.memory.grow(missing);
      } catch {
        throw new MemoryExceededError(
          `out of memory: the session's state (${formatBytes(image.byteLength)}) does not fit in the call's ram`,
        );
      }
      // Growing from outside detaches the glue's views; asking for the size it has (its old view
      // now reads as empty, so it grows nothing) renews them.
      if (resize(this.memory.buffer.byteLength) !== true) {
        throw new InternalError("the engine glue could not renew its views of the memory");
      }
    }
    const bytes = new Uint8Array(this.memory.buffer);
    bytes.set(image);
    bytes.fill(0, image.byteLength);
  }

  get leased(): SandboxLease | null {
    return this.#lease;
  }

  get fuelConsumed(): number {
    const consumed = this.#fuelBudget - this.#fuelLeft;
    return Number(consumed > this.#fuelBudget ? this.#fuelBudget : consumed);
  }

  /** Fuel spent so far, read while the guest runs (from its interrupt checks). */
  get fuelConsumedNow(): number {
    const global = this.#fuelGlobal;
    if (global === null || this.#meteredDepth === 0) return this.fuelConsumed;
    let left = global.value as bigint;
    if (this.#refuelCounter !== null && this.#refuelCounter < left) left = this.#refuelCounter;
    const consumed = this.#fuelBudget - left;
    return Number(consumed > this.#fuelBudget ? this.#fuelBudget : consumed);
  }

  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  /**
   * Runs guest code with the fuel counter live. A trap inside (fuel exhausted, memory access
   * out of bounds after a failed grow, an engine abort) kills the sandbox and becomes a typed error.
   */
  metered<T>(run: () => T): T {
    if (this.#dead) throw this.#dead;
    if (this.#lease === null) throw new InternalError("guest code ran in a sandbox nobody leased");
    const global = this.#fuelGlobal;
    if (global === null || this.#meteredDepth > 0) return this.#guarded(run);
    this.#meteredDepth++;
    global.value = this.#fuelLeft;
    this.#refuelCounter = null;
    this.#setTick(this.#fuelLeft);
    try {
      const result = this.#guarded(run);
      // A stop thrown from a fuel check nested inside a host call may have reached the guest as
      // an ordinary exception; the sandbox is dead all the same.
      this.#throwIfDead();
      return result;
    } finally {
      if (!this.#exhaustedAlready()) this.#fuelLeft = global.value as bigint;
      global.value = UNMETERED_FUEL;
      this.#meteredDepth--;
    }
  }

  /** Runs host work (a host function the guest called) with the fuel counter paused. */
  unmetered<T>(run: () => T): T {
    const global = this.#fuelGlobal;
    if (global === null || this.#meteredDepth === 0) return run();
    const saved = global.value as bigint;
    global.value = UNMETERED_FUEL;
    this.#meteredDepth--;
    try {
      return run();
    } finally {
      this.#meteredDepth++;
      global.value = saved;
    }
  }

  /**
   * After the guest was stopped inside a nested call, gives the engine a little fuel to throw
   * back into the guest (instead of throwing through the bridge); once that is spent, the guest's
   * next fuel check stops it for good. Given once: a stopped guest that keeps calling the host
   * must not be topped up on every call.
   */
  allowUnwinding(): void {
    if (this.#dead === null || this.#fuelGlobal === null || this.#unwindingAllowed) return;
    this.#unwindingAllowed = true;
    this.#fuelGlobal.value = UNWIND_FUEL;
  }

  #guarded<T>(run: () => T): T {
    try {
      return run();
    } catch (error) {
      // Once stopped, whatever the engine does on the way out is noise: keep the first reason.
      if (this.#dead !== null) throw this.#dead;
      if (isHostStackOverflow(error)) {
        // The guest's recursion ran out of the host's native stack inside wasm; the engine's
        // state is no longer trustworthy, so the sandbox dies, but the host is fine.
        this.#dead = stackOverflow();
        throw this.#dead;
      }
      if (error instanceof WebAssembly.RuntimeError || isEmscriptenAbort(error)) {
        this.#dead = this.#classifyTrap(error);
        throw this.#dead;
      }
      throw error;
    }
  }

  #classifyTrap(error: unknown): Error {
    const global = this.#fuelGlobal;
    const left = global ? (global.value as bigint) : this.#fuelLeft;
    if (global !== null && left < 0n) {
      // A check in the interpreter traps instead of calling refuel.
      this.#fuelLeft = left;
      return this.#exhausted();
    }
    const message = error instanceof Error ? error.message : String(error);
    if (/memory|alloc|out of bounds|OOM/i.test(message)) {
      return new MemoryExceededError(
        `out of memory: the sandbox reached its ${formatBytes(this.memoryBytes)} linear memory (${message})`,
      );
    }
    return new InternalError(`engine trap: ${message}`);
  }

  /** Marks the sandbox unusable; the owner must drop every reference after this. */
  kill(reason: Error): void {
    this.#dead ??= reason;
  }

  /**
   * Ends the sandbox for good, when its attempt is over: kills it, fences its instance (every
   * later call into the engine throws), and, with `keepMemory`, gives its memory to the next
   * sandbox of the same shape when nothing else holds it and it never grew (memory-shelf.ts).
   */
  retire(reason: Error, keepMemory = true): void {
    this.kill(reason);
    const slot = this.#slot;
    if (slot === null || slot.ended) return;
    slot.ended = true;
    const engine = this.#engine;
    if (!keepMemory || engine === null || this.#memoryLent || this.#meteredDepth > 0) return;
    memoryShelf.put(this.memory, startingPages(engine, this.#maximumPages), this.#maximumPages);
  }

  newHostFunction(
    name: string,
    implementation: (...args: QuickJSHandle[]) => QuickJSHandle | undefined,
  ): QuickJSHandle {
    return this.context.newFunction(name, this.hostFunction(implementation));
  }

  /**
   * What the engine calls for a host function: `implementation` with metering paused, what it
   * throws turned into the guest's exception.
   */
  hostFunction(
    implementation: (...args: QuickJSHandle[]) => QuickJSHandle | undefined,
  ): HostFunction {
    return (...args) => {
      let failure: { name: string; message: string } | null = null;
      const result = this.unmetered(() => {
        try {
          return implementation(...args);
        } catch (error) {
          // The host's own stack ran out inside the call: the guest recursed until the host
          // could not serve it. The same end as a recursion that exhausts the stack in wasm.
          if (isHostStackOverflow(error)) this.kill(stackOverflow());
          const { name, message } = error instanceof Error ? error : new Error(String(error));
          failure = { name, message };
          return undefined;
        }
      });
      if (failure === null) {
        this.allowUnwinding();
        return result;
      }
      return { error: this.#guestError(failure) };
    };
  }

  /**
   * The guest's exception for a failed host call, made with the guest's counter live: setting its
   * name and message runs any setter the task put on Error.prototype, and that is the task's work.
   * Once the guest is stopped, a bare error (which runs no guest code) carries it out.
   */
  #guestError(failure: { name: string; message: string }): QuickJSHandle {
    if (this.#dead === null) {
      try {
        return this.#guarded(() => this.context.newError(failure));
      } catch {
        // Stopped while making it: fall through to the bare error.
      }
    }
    this.allowUnwinding();
    return this.context.newError();
  }

  /**
   * JSON text made by the host as a guest value, through the engine's own JSON.parse captured
   * before any guest code ran: it runs no guest code (no reviver, and parsing defines properties
   * rather than setting them), and its cost does not depend on anything the task controls.
   */
  parseHostJson(text: string): QuickJSHandle {
    const parse = this.#jsonParse;
    const source = this.context.newString(text);
    try {
      return this.unmetered(() =>
        this.context.unwrapResult(this.context.callFunction(parse, this.context.undefined, source)),
      );
    } finally {
      source.dispose();
    }
  }
}

/** What the engine calls for a guest function made with `context.newFunction`. */
export type HostFunction = (
  ...args: QuickJSHandle[]
) => QuickJSHandle | undefined | { error: QuickJSHandle };

/** The emscripten module object, as far as the sandbox touches it. */
type EmscriptenModule = Awaited<ReturnType<typeof QuickJSRaw>> & {
  type?: string;
  _malloc: (size: number) => number;
};

/** A started engine: its module object and the globals the sandbox drives. */
interface EngineStart {
  emscripten: EmscriptenModule;
  fuel: WebAssembly.Global | null;
  tick: WebAssembly.Global | null;
  resizeHeap: ((bytes: number) => unknown) | null;
}

/** Where the engine's callbacks find their sandbox, which exists only after the engine started. */
interface SandboxSlot {
  sandbox: Sandbox | undefined;
  /** Set when the sandbox ends: from then on every export of its instance throws. */
  ended: boolean;
}

/**
 * quickjs-emscripten 0.32 internals a copy must reproduce: the context's scratch cell and cached
 * global handle, and its value handles. Checked where used; a version that changes them fails
 * loudly in captureImage/restore (and the engine tests).
 */
interface ContextInternals {
  uint32Out?: { value?: { ptr?: number } };
  _global: QuickJSHandle | undefined;
  memory: { heapValueHandle(pointer: JSValuePointer): QuickJSHandle };
}

/**
 * A recorded sandbox: enough to make copies that behave exactly like it (the same memory bytes,
 * the engine objects at the same addresses). Holds no JavaScript object of the recorded sandbox.
 */
export interface SandboxImage {
  readonly engine: Engine;
  /** Memory size in pages when recorded; a copy starts with exactly this many. */
  readonly pages: number;
  /** The blocks that differ from a freshly started engine's memory. */
  readonly blocks: readonly { readonly offset: number; readonly bytes: Uint8Array }[];
  readonly runtimePointer: number;
  readonly contextPointer: number;
  /** Math.random's state in the context: each copy writes a seed of its own there. */
  readonly randomStatePointer: number;
  readonly globalPointer: number;
  readonly scratchPointer: number;
  readonly jsonParsePointer: number;
}

/** Granularity of the recorded image: small enough to skip untouched stack and heap. */
const IMAGE_BLOCK_BYTES = 4096;

/** Blocks compared between yields: reading untouched pages costs a page fault each. */
const BLOCKS_PER_SLICE = 64;

/**
 * The runs of blocks in which `recorded` differs from `pristine`, copied; in slices, with the
 * event loop let through between them (a whole scan faults in every page of both memories).
 */
async function changedBlocks(
  pristine: Uint8Array,
  recorded: Uint8Array,
): Promise<{ offset: number; bytes: Uint8Array }[]> {
  const blocks: { offset: number; bytes: Uint8Array }[] = [];
  const pristineWords = new Int32Array(
    pristine.buffer,
    pristine.byteOffset,
    pristine.byteLength >> 2,
  );
  const recordedWords = new Int32Array(
    recorded.buffer,
    recorded.byteOffset,
    recorded.byteLength >> 2,
  );
  const blockWords = IMAGE_BLOCK_BYTES >> 2;
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart >= 0) blocks.push({ offset: runStart, bytes: recorded.slice(runStart, end) });
    runStart = -1;
  };
  let scanned = 0;
  for (let offset = 0; offset < recorded.byteLength; offset += IMAGE_BLOCK_BYTES) {
    if (++scanned % BLOCKS_PER_SLICE === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    const first = offset >> 2;
    let differs = false;
    for (let i = first; i < first + blockWords; i++) {
      if (pristineWords[i] !== recordedWords[i]) {
        differs = true;
        break;
      }
    }
    if (differs && runStart < 0) runStart = offset;
    if (!differs) flush(offset);
  }
  flush(recorded.byteLength);
  return blocks;
}

function checkedMaximumPages(engine: Engine, memoryBytes: number): number {
  const maximumPages = Math.floor(memoryBytes / WASM_PAGE_BYTES);
  if (maximumPages < engine.memoryFloorPages) {
    throw new MemoryExceededError(
      `ram ${memoryBytes} bytes is below the engine's floor of ${engine.memoryFloorPages * WASM_PAGE_BYTES} bytes`,
    );
  }
  return maximumPages;
}

/** Pages a sandbox of this cap starts with. */
export function startingPages(engine: Engine, maximumPages: number): number {
  return Math.min(maximumPages, engine.memoryFloorPages + STARTING_HEADROOM_PAGES);
}

function stackOverflow(): TaskError {
  return new TaskError("InternalError: stack overflow: the task recursed too deeply");
}

export function isHostStackOverflow(error: unknown): boolean {
  return error instanceof RangeError && /call stack/i.test(error.message);
}

function isEmscriptenAbort(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("Aborted(");
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20) return `${Math.round((bytes / (1 << 20)) * 10) / 10} MiB`;
  if (bytes >= 1 << 10) return `${Math.round((bytes / (1 << 10)) * 10) / 10} KiB`;
  return `${bytes} bytes`;
}

function contextPointerOf(context: QuickJSContext): number {
  return (context as unknown as { ctx: { value: number } }).ctx.value;
}
