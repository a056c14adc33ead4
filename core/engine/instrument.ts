import type BinaryenNamespace from "binaryen";

/**
 * Deterministic fuel metering for a wasm module, as a binaryen pass written against the
 * binaryen.js API. binaryen is passed in rather than imported, so this file stays a pure
 * function of its inputs and core/ keeps no runtime dependency on a 15 MB build tool.
 *
 * The counter: an exported mutable i64 global `fuel` holding what is left of the budget. Guest
 * work subtracts from it. Checks come in two kinds, because they do two jobs:
 * - in the interpreter (the function with the bytecode dispatch, see `findInterpreter`), a check
 *   stores the counter to `fuel` and traps (`unreachable`) once it is below zero. No call, so the
 *   hottest code keeps its registers; the interpreter calls the engine's own interrupt handler,
 *   so it needs no deadline check of ours;
 * - everywhere else a check compares the counter with a second exported i64 global, `tick`, and
 *   below it stores the counter to `fuel` and calls the imported `capsule.refuel(counter)`, whose
 *   result becomes the counter. The host lowers `tick` a slice below the counter each time, so
 *   loops inside built-ins (where the interrupt handler is never called) reach the host about
 *   once a slice to look at the clock; it throws to stop the guest, and the exception leaves
 *   the wasm call unchanged.
 * With `tick >= 0`, a counter below zero always fails a check: the guest stops at the first check
 * after its budget runs out, by a trap or by refuel's throw, at the same point for any slice size.
 * A guest's catch_all can catch refuel's throw (a trap it cannot), but the counter it reloads
 * still fails the next check, so a host that keeps throwing once it has stopped the guest stops it.
 * Charges never depend on the counter's value, so consumed = (the value stored before running +
 * whatever refuel added) - the value read afterwards.
 *
 * Where the cost goes (see DESIGN.md section 2 for the measurements behind each choice):
 * - every straight-line region (function body, loop body, if arm, the code after a block that
 *   branches target) subtracts its static cost, roughly its instruction count, at its start;
 * - checks sit only at loop headers and at the entry of functions that make calls (a superset
 *   of the functions on a call cycle), so every unbounded execution passes a check;
 * - inside a function the counter lives in a local: loaded at entry, stored back before every
 *   call, return and the function's end, reloaded after every call;
 * - small loop-free functions that call only such functions are left unmetered and charged
 *   their whole size at each direct call site (called through the table they run uncharged,
 *   which stays bounded: the calling region is charged, and a leaf has no loop or metered call);
 * - memory.copy / memory.fill / memory.init are charged one unit per byte of their size;
 * - exceptions (the legacy try / catch / catch_all / delegate / throw / rethrow instructions):
 *   a throw or rethrow stores the counter first, like a call, and every catch body is a region
 *   of its own that reloads the counter from `fuel` after taking its `pop` and subtracts its
 *   cost, so work done before a throw stays charged wherever the exception is caught. A function
 *   that throws is never left unmetered: its callers do not store the counter before calling a
 *   leaf, so a catch further up would reload a value without their charges.
 * binaryen -O3 runs afterwards: it sees the counter as ordinary code, so counts are unchanged.
 *
 * The same pass can shrink an emscripten module's C stack (`stackBytes`): emscripten lays out
 * static data, then the stack growing down from the stack pointer's start, then the heap, so the
 * stack's size sets the smallest memory the module can start in.
 */

export type Binaryen = typeof BinaryenNamespace;
type Module = BinaryenNamespace.Module;
type ExpressionRef = number;
type Type = number;

/** binaryen.js's per-expression accessors, which its typings do not declare. */
interface ExpressionClasses {
  Block: {
    getName(e: ExpressionRef): string | null;
    getNumChildren(e: ExpressionRef): number;
    getChildAt(e: ExpressionRef, index: number): ExpressionRef;
    setChildAt(e: ExpressionRef, index: number, child: ExpressionRef): void;
    insertChildAt(e: ExpressionRef, index: number, child: ExpressionRef): void;
  };
  Loop: {
    getBody(e: ExpressionRef): ExpressionRef;
    setBody(e: ExpressionRef, c: ExpressionRef): void;
  };
  If: {
    getCondition(e: ExpressionRef): ExpressionRef;
    setCondition(e: ExpressionRef, c: ExpressionRef): void;
    getIfTrue(e: ExpressionRef): ExpressionRef;
    setIfTrue(e: ExpressionRef, c: ExpressionRef): void;
    getIfFalse(e: ExpressionRef): ExpressionRef;
    setIfFalse(e: ExpressionRef, c: ExpressionRef): void;
  };
  Call: { getTarget(e: ExpressionRef): string; isReturn(e: ExpressionRef): boolean };
  Switch: { getNumNames(e: ExpressionRef): number };
  CallIndirect: { isReturn(e: ExpressionRef): boolean };
  Return: {
    getValue(e: ExpressionRef): ExpressionRef;
    setValue(e: ExpressionRef, c: ExpressionRef): void;
  };
  /** Catch bodies come one per catch tag, then one more for a catch_all; none for a delegate. */
  Try: {
    getBody(e: ExpressionRef): ExpressionRef;
    setBody(e: ExpressionRef, c: ExpressionRef): void;
    getNumCatchTags(e: ExpressionRef): number;
    getCatchTagAt(e: ExpressionRef, index: number): string;
    getNumCatchBodies(e: ExpressionRef): number;
    getCatchBodyAt(e: ExpressionRef, index: number): ExpressionRef;
    setCatchBodyAt(e: ExpressionRef, index: number, c: ExpressionRef): void;
  };
  Const: { setValueI32(e: ExpressionRef, value: number): void };
  MemoryCopy: SizedExpression;
  MemoryFill: SizedExpression;
  MemoryInit: SizedExpression;
}

interface SizedExpression {
  getSize(e: ExpressionRef): ExpressionRef;
  setSize(e: ExpressionRef, c: ExpressionRef): void;
}

function classes(binaryen: Binaryen): ExpressionClasses {
  return binaryen as unknown as ExpressionClasses;
}

export interface InstrumentOptions {
  /**
   * Declared minimum of the module's memory, in 64 KiB pages. Defaults to the floor (static data
   * plus the C stack); a value below the floor is refused.
   */
  memoryMinPages?: number;
  /**
   * Size of the emscripten C stack in bytes, a multiple of 16 (default 1 MiB). The stack, and the
   * heap base above it, move accordingly. Ignored for a module without an emscripten stack;
   * null keeps the stack as built (a wasi-libc module, which records no stack size).
   */
  stackBytes?: number | null;
  /** Run binaryen -O3 after instrumenting (default true). Off only to compare fuel counts. */
  optimize?: boolean;
  /** Largest static cost (callees included) of a loop-free function left unmetered. */
  leafMaxCost?: number;
  /**
   * Whether the checks in the bytecode interpreter (see `findInterpreter`) trap instead of
   * calling refuel (default true). Only for an engine whose interpreter runs a deadline check of
   * its own, as QuickJS's interrupt handler does: with false every check calls refuel.
   */
  interpreterTraps?: boolean;
}

export interface InstrumentStats {
  /** Functions defined in the module (imports excluded). */
  functions: number;
  /** Functions that carry their own counter. */
  meteredFunctions: number;
  /** Small loop-free functions charged at their call sites instead. */
  leafFunctions: number;
  /** Function entries that check the counter. */
  entryChecks: number;
  loopChecks: number;
  /** Checks (of all kinds) in the interpreter, which trap instead of calling refuel. */
  trappingChecks: number;
  /**
   * The function whose checks trap, or null when none do (the module has no bytecode
   * interpreter, or `interpreterTraps` is false).
   */
  interpreter: InterpreterFacts | null;
  /** If arms that subtract their own cost. */
  armCharges: number;
  /** Join points (code after a branch-target block) that subtract their own cost. */
  joinCharges: number;
  /** memory.copy / memory.fill / memory.init sites charged per byte. */
  perByteCharges: number;
  /** Call sites that store the counter before the call and reload it after. */
  flushedCalls: number;
  /** throw / rethrow sites that store the counter first. */
  flushedThrows: number;
  /** Catch bodies that reload the counter and subtract their own cost. */
  catchCharges: number;
  /** Smallest safe declared memory minimum: static data plus the C stack, in pages. */
  memoryFloorPages: number;
  /** The C stack as built, or null for a module without an emscripten stack. */
  stack: StackLayout | null;
  /** Declared memory minimum written into the output, in pages. */
  memoryMinPages: number;
  inputBytes: number;
  outputBytes: number;
}

/** What identified the interpreter: see `findInterpreter`. */
export interface InterpreterFacts {
  name: string;
  /** Its static cost (its instruction count). */
  cost: number;
  /** Targets of its largest br_table (the opcode dispatch). */
  switchTargets: number;
  /** Functions with a br_table that large; the interpreter is the biggest of them. */
  candidates: number;
}

/** An emscripten stack: it grows down from `top` to `end`; the heap starts at `top`. */
export interface StackLayout {
  top: number;
  end: number;
  bytes: number;
  /** The stack's size in the module as emscripten built it. */
  originalBytes: number;
  /** Places rewritten to the new top besides the stack pointer: code constants, data words. */
  rewrittenConstants: number;
  rewrittenDataWords: number;
}

export interface InstrumentResult {
  wasm: Uint8Array<ArrayBuffer>;
  stats: InstrumentStats;
}

/** Exported name of the counter global. */
export const FUEL_EXPORT = "fuel";
/** Exported name of the global that checks outside the interpreter compare the counter with. */
export const TICK_EXPORT = "tick";
/** The import a check outside the interpreter calls once the counter is below `tick`: `(counter: i64) -> i64`. */
export const REFUEL_IMPORT = { module: "capsule", name: "refuel" } as const;
/**
 * A bytecode interpreter dispatches through one br_table with a target per opcode (QuickJS has
 * about 250); other switches in an engine stay well below this.
 */
export const INTERPRETER_MIN_SWITCH_TARGETS = 200;
/** Default size of the emscripten C stack (the stock QuickJS build has 5 MiB). */
export const DEFAULT_STACK_BYTES = 1 << 20;
/** Functions with at most this static cost (callees included) and no loops are left unmetered. */
export const LEAF_MAX_COST = 60;
const FUEL_GLOBAL = "capsule$fuel";
const TICK_GLOBAL = "capsule$tick";
const REFUEL_FUNCTION = "capsule$refuel";
const WASM_PAGE_BYTES = 65536;
/** Initial counter value: large enough that set-up code run before the host stores a budget never refuels. */
const INITIAL_FUEL = 1n << 62n;

/** The features the output is emitted with; `Features.All` emits encodings Node 20 rejects. */
export function emitFeatures(binaryen: Binaryen): number {
  const f = binaryen.Features;
  return (
    f.MVP |
    f.MutableGlobals |
    f.NontrappingFPToInt |
    f.SIMD128 |
    f.BulkMemory |
    f.BulkMemoryOpt |
    f.SignExt |
    f.ReferenceTypes |
    f.Multivalue |
    f.TailCall |
    f.ExceptionHandling
  );
}

export function instrumentFuel(
  binaryen: Binaryen,
  wasm: Uint8Array,
  options: InstrumentOptions = {},
): InstrumentResult {
  const features = emitFeatures(binaryen);
  const module = binaryen.readBinary(wasm);
  const savedLevels = {
    optimize: binaryen.getOptimizeLevel(),
    shrink: binaryen.getShrinkLevel(),
    debugInfo: binaryen.getDebugInfo(),
  };
  try {
    module.setFeatures(features);
    const stack =
      options.stackBytes === null
        ? null
        : relocateStack(binaryen, module, options.stackBytes ?? DEFAULT_STACK_BYTES);
    const memoryFloorPages = findMemoryFloorPages(binaryen, module);
    const memoryMinPages = options.memoryMinPages ?? memoryFloorPages;
    if (!Number.isInteger(memoryMinPages) || memoryMinPages < memoryFloorPages) {
      throw new RangeError(
        `memoryMinPages ${memoryMinPages} is below the module's floor of ${memoryFloorPages} pages (static data plus stack); use an integer >= ${memoryFloorPages}`,
      );
    }
    for (const name of [FUEL_EXPORT, TICK_EXPORT]) {
      if (module.getExport(name) !== 0) {
        throw new Error(`module already exports "${name}"; it is instrumented already`);
      }
    }
    const analysis = analyseFunctions(
      binaryen,
      module,
      options.leafMaxCost ?? LEAF_MAX_COST,
      options.interpreterTraps ?? true,
    );
    module.addGlobal(FUEL_GLOBAL, binaryen.i64, true, i64Const(module, INITIAL_FUEL));
    module.addGlobalExport(FUEL_GLOBAL, FUEL_EXPORT);
    module.addGlobal(TICK_GLOBAL, binaryen.i64, true, i64Const(module, 0n));
    module.addGlobalExport(TICK_GLOBAL, TICK_EXPORT);
    module.addFunctionImport(
      REFUEL_FUNCTION,
      REFUEL_IMPORT.module,
      REFUEL_IMPORT.name,
      binaryen.i64,
      binaryen.i64,
    );
    const stats = instrumentFunctions(binaryen, module, analysis);
    if (!module.validate()) {
      throw new Error("instrumented module does not validate");
    }
    if (options.optimize !== false) {
      binaryen.setOptimizeLevel(3);
      binaryen.setShrinkLevel(0);
      binaryen.setDebugInfo(false);
      module.optimize();
    }
    let output = setMemoryMinimum(module.emitBinary(), memoryMinPages);
    if (stack) {
      // binaryen.js cannot edit data segments; the heap base is patched in the binary.
      const patched = rewriteDataWords(output, stack.originalTop, stack.top);
      if (patched.count !== stack.dataWords) {
        throw new Error(
          `found the old heap base ${stack.originalTop} in ${stack.dataWords} data words before optimising but ${patched.count} after`,
        );
      }
      output = patched.wasm;
    }
    return {
      wasm: output,
      stats: {
        ...stats,
        memoryFloorPages,
        stack: stack && {
          top: stack.top,
          end: stack.end,
          bytes: stack.bytes,
          originalBytes: stack.originalBytes,
          rewrittenConstants: stack.codeConstants,
          rewrittenDataWords: stack.dataWords,
        },
        memoryMinPages,
        inputBytes: wasm.byteLength,
        outputBytes: output.byteLength,
      },
    };
  } finally {
    binaryen.setOptimizeLevel(savedLevels.optimize);
    binaryen.setShrinkLevel(savedLevels.shrink);
    binaryen.setDebugInfo(savedLevels.debugInfo);
    module.dispose();
  }
}

/**
 * Static data plus the C stack: emscripten lays out data, then the stack growing down from the
 * stack pointer's initial value, then the heap. The heap grows on demand through the glue.
 */
function findMemoryFloorPages(binaryen: Binaryen, module: Module): number {
  let highestByte = 0;
  for (const segment of activeDataSegments(module)) {
    highestByte = Math.max(highestByte, segment.offset + segment.data.byteLength);
  }
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const global = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (global.module || !global.mutable || global.type !== binaryen.i32) continue;
    // The stack pointer is the mutable i32 global whose start value is an address; emscripten
    // may have others (stack end, base), all within the same region.
    const start = constantValue(binaryen, global.init);
    if (start !== null) highestByte = Math.max(highestByte, start);
  }
  return Math.max(1, Math.ceil(highestByte / WASM_PAGE_BYTES));
}

interface StackRelocation {
  originalTop: number;
  originalBytes: number;
  top: number;
  end: number;
  bytes: number;
  /** Code constants that held the old top (the heap base or the stack's recorded base). */
  codeConstants: number;
  /** Aligned words in active data segments that held the old top (sbrk's initial break). */
  dataWords: number;
}

/**
 * Gives an emscripten module's C stack `stackBytes`, keeping its low end where it was: the stack
 * pointer's start, every code constant and data word holding the old top (the heap base, the
 * main thread's recorded stack base) and the recorded stack size all move together.
 */
function relocateStack(
  binaryen: Binaryen,
  module: Module,
  stackBytes: number,
): StackRelocation | null {
  if (!Number.isInteger(stackBytes) || stackBytes < 4096 || stackBytes % 16 !== 0) {
    throw new RangeError(
      `stackBytes ${stackBytes} is not a usable C stack size; use a multiple of 16 of at least 4096`,
    );
  }
  const pointers: ExpressionRef[] = [];
  let originalTop = -1;
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const global = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (global.module || !global.mutable || global.type !== binaryen.i32) continue;
    const start = constantValue(binaryen, global.init);
    if (start === null) continue;
    // The stack pointer starts highest of all: data and the stack lie below its start.
    if (start > originalTop) pointers.length = 0;
    if (start >= originalTop) {
      originalTop = start;
      pointers.push(global.init);
    }
  }
  if (pointers.length === 0) return null;

  const constants: ExpressionRef[] = [];
  const storedWords = new Map<number, ExpressionRef>();
  forEachFunctionExpression(binaryen, module, (expr, id) => {
    if (id === binaryen.ConstId) {
      if (constantValue(binaryen, expr) === originalTop) constants.push(expr);
    } else if (id === binaryen.StoreId) {
      const store = binaryen.getExpressionInfo(expr) as BinaryenNamespace.StoreInfo;
      const address = constantValue(binaryen, store.ptr);
      if (store.bytes === 4 && address !== null && constantValue(binaryen, store.value) !== null) {
        storedWords.set(address + store.offset, store.value);
      }
    }
  });
  const staticEnd = activeDataSegments(module).reduce(
    (end, segment) => Math.max(end, segment.offset + segment.data.byteLength),
    0,
  );
  // musl records the main thread's stack base and size side by side, as constants in the init code.
  let sizeConstant: ExpressionRef | undefined;
  let originalBytes = 0;
  for (const [address, value] of storedWords) {
    if (constantValue(binaryen, value) !== originalTop) continue;
    const next = storedWords.get(address + 4);
    const size = next === undefined ? null : constantValue(binaryen, next);
    if (size !== null && size > 0 && originalTop - size >= staticEnd) {
      sizeConstant = next;
      originalBytes = size;
    }
  }
  if (sizeConstant === undefined) {
    throw new Error(
      `cannot find the C stack's size: expected init code storing the stack top ${originalTop} and the stack size in adjacent words (emscripten's libc); build without stackBytes support for this module`,
    );
  }
  const end = originalTop - originalBytes;
  const top = end + stackBytes;
  const dataWords = countDataWords(module, originalTop);
  // The init code's store of the stack base is one of the constants; the heap base is another.
  if (dataWords + constants.length < 2) {
    throw new Error(
      `cannot find the heap base: no data word or second code constant holds the stack top ${originalTop}`,
    );
  }
  const { Const } = classes(binaryen);
  for (const pointer of pointers) Const.setValueI32(pointer, top);
  for (const constant of constants) Const.setValueI32(constant, top);
  Const.setValueI32(sizeConstant, stackBytes);
  return {
    originalTop,
    originalBytes,
    top,
    end,
    bytes: stackBytes,
    codeConstants: constants.length,
    dataWords,
  };
}

function forEachFunctionExpression(
  binaryen: Binaryen,
  module: Module,
  visit: (expr: ExpressionRef, id: number) => void,
): void {
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
    if (info.module || !info.body) continue;
    const stack: ExpressionRef[] = [info.body];
    while (stack.length > 0) {
      const expr = stack.pop() as ExpressionRef;
      visit(expr, binaryen.getExpressionId(expr));
      for (const slot of childSlots(binaryen, expr)) {
        const child = slot.get(expr);
        if (child) stack.push(child);
      }
    }
  }
}

interface ActiveSegment {
  offset: number;
  data: ArrayBuffer;
}

function activeDataSegments(module: Module): ActiveSegment[] {
  // binaryen.js 132 ships data-segment accessors its typings do not declare.
  const segments = module as unknown as {
    getNumDataSegments(): number;
    getDataSegmentByIndex(index: number): number;
    getDataSegmentInfo(ref: number): { offset: number | null; data: ArrayBuffer; passive: boolean };
  };
  const active: ActiveSegment[] = [];
  for (let i = 0; i < segments.getNumDataSegments(); i++) {
    const segment = segments.getDataSegmentInfo(segments.getDataSegmentByIndex(i));
    if (segment.passive || segment.offset === null) continue;
    active.push({ offset: segment.offset, data: segment.data });
  }
  return active;
}

function countDataWords(module: Module, value: number): number {
  let count = 0;
  for (const segment of activeDataSegments(module)) {
    const bytes = new Uint8Array(segment.data);
    for (const at of alignedWords(segment.offset, bytes.length)) {
      if (wordAt(bytes, at, bytes.length) === value) count++;
    }
  }
  return count;
}

/** Offsets within a segment at `offset` of `length` bytes where aligned words start. */
function* alignedWords(offset: number, length: number): Generator<number> {
  for (let at = (4 - (offset % 4)) % 4; at < length; at += 4) yield at;
}

/**
 * The little-endian word at `at`; bytes at or past `end` read as zero, because segments omit
 * trailing zeros (a segment "``Q" holds the word 0x516060).
 */
function wordAt(bytes: Uint8Array, at: number, end: number): number {
  let value = 0;
  for (let k = 3; k >= 0; k--) value = value * 256 + (at + k < end ? (bytes[at + k] ?? 0) : 0);
  return value;
}

function constantValue(binaryen: Binaryen, expr: ExpressionRef): number | null {
  if (!expr || binaryen.getExpressionId(expr) !== binaryen.ConstId) return null;
  const info = binaryen.getExpressionInfo(expr) as { type: Type; value?: unknown };
  return info.type === binaryen.i32 && typeof info.value === "number" ? info.value >>> 0 : null;
}

// ---------------------------------------------------------------------------------------------
// Walking expressions generically through binaryen.js's per-class accessors.

type ChildSlot = {
  get: (e: ExpressionRef) => ExpressionRef;
  set: (e: ExpressionRef, c: ExpressionRef) => void;
};

/** Children of an expression in evaluation order, with a setter for each. */
function childSlots(binaryen: Binaryen, expr: ExpressionRef): ChildSlot[] {
  const id = binaryen.getExpressionId(expr);
  const table = slotTable(binaryen);
  const fixed = table.fixed.get(id);
  if (fixed) return fixed;
  const listed = table.listed.get(id);
  if (listed) return listed(expr);
  if (table.leaves.has(id)) return [];
  throw new Error(
    `fuel instrumentation does not support expression id ${id} (${expressionName(binaryen, id)}); supported: MVP, SIMD, bulk memory, sign-ext, reference types, tail calls, atomics, legacy exception handling (try/catch/delegate, throw, rethrow)`,
  );
}

function expressionName(binaryen: Binaryen, id: number): string {
  for (const [key, value] of Object.entries(binaryen)) {
    if (value === id && key.endsWith("Id") && !key.startsWith("_")) return key.slice(0, -2);
  }
  return "unknown";
}

interface SlotTable {
  fixed: Map<number, ChildSlot[]>;
  listed: Map<number, (e: ExpressionRef) => ChildSlot[]>;
  leaves: Set<number>;
}

const slotTables = new WeakMap<object, SlotTable>();

function slotTable(binaryen: Binaryen): SlotTable {
  const cached = slotTables.get(binaryen);
  if (cached) return cached;
  const b = binaryen as unknown as Record<string, Record<string, (...args: number[]) => number>>;
  const field = (cls: string, name: string): ChildSlot => {
    const wrapper = b[cls];
    const get = wrapper?.[`get${name}`];
    const set = wrapper?.[`set${name}`];
    if (!get || !set) throw new Error(`binaryen.js lacks ${cls}.get/set${name}`);
    return { get: (e) => get(e), set: (e, c) => void set(e, c) };
  };
  const fixedFields: Array<[number, string, string[]]> = [
    [binaryen.IfId, "If", ["Condition", "IfTrue", "IfFalse"]],
    [binaryen.LoopId, "Loop", ["Body"]],
    [binaryen.BreakId, "Break", ["Value", "Condition"]],
    [binaryen.SwitchId, "Switch", ["Value", "Condition"]],
    [binaryen.LocalSetId, "LocalSet", ["Value"]],
    [binaryen.GlobalSetId, "GlobalSet", ["Value"]],
    [binaryen.LoadId, "Load", ["Ptr"]],
    [binaryen.StoreId, "Store", ["Ptr", "Value"]],
    [binaryen.UnaryId, "Unary", ["Value"]],
    [binaryen.BinaryId, "Binary", ["Left", "Right"]],
    [binaryen.SelectId, "Select", ["IfTrue", "IfFalse", "Condition"]],
    [binaryen.DropId, "Drop", ["Value"]],
    [binaryen.ReturnId, "Return", ["Value"]],
    [binaryen.MemoryGrowId, "MemoryGrow", ["Delta"]],
    [binaryen.MemoryCopyId, "MemoryCopy", ["Dest", "Source", "Size"]],
    [binaryen.MemoryFillId, "MemoryFill", ["Dest", "Value", "Size"]],
    [binaryen.MemoryInitId, "MemoryInit", ["Dest", "Offset", "Size"]],
    [binaryen.SIMDExtractId, "SIMDExtract", ["Vec"]],
    [binaryen.SIMDReplaceId, "SIMDReplace", ["Vec", "Value"]],
    [binaryen.SIMDShuffleId, "SIMDShuffle", ["Left", "Right"]],
    [binaryen.SIMDTernaryId, "SIMDTernary", ["A", "B", "C"]],
    [binaryen.SIMDShiftId, "SIMDShift", ["Vec", "Shift"]],
    [binaryen.SIMDLoadId, "SIMDLoad", ["Ptr"]],
    [binaryen.SIMDLoadStoreLaneId, "SIMDLoadStoreLane", ["Ptr", "Vec"]],
    [binaryen.AtomicRMWId, "AtomicRMW", ["Ptr", "Value"]],
    [binaryen.AtomicCmpxchgId, "AtomicCmpxchg", ["Ptr", "Expected", "Replacement"]],
    [binaryen.AtomicWaitId, "AtomicWait", ["Ptr", "Expected", "Timeout"]],
    [binaryen.AtomicNotifyId, "AtomicNotify", ["Ptr", "NotifyCount"]],
    [binaryen.RefIsNullId, "RefIsNull", ["Value"]],
    [binaryen.RefAsId, "RefAs", ["Value"]],
    [binaryen.TableGetId, "TableGet", ["Index"]],
    [binaryen.TableSetId, "TableSet", ["Index", "Value"]],
    [binaryen.TableGrowId, "TableGrow", ["Value", "Delta"]],
    [binaryen.TupleExtractId, "TupleExtract", ["Tuple"]],
  ];
  const fixed = new Map<number, ChildSlot[]>();
  for (const [id, cls, names] of fixedFields) {
    const slots = names.map((name) => field(cls, name));
    // Optional children (an if without else, a br without value) read as 0; callers skip them.
    fixed.set(id, slots);
  }
  const list =
    (cls: string, count: string, at: string, extra: string[] = []) =>
    (e: ExpressionRef): ChildSlot[] => {
      const wrapper = b[cls];
      const n = wrapper?.[`get${count}`]?.(e) ?? 0;
      const get = wrapper?.[`get${at}At`];
      const set = wrapper?.[`set${at}At`];
      if (!get || !set) throw new Error(`binaryen.js lacks ${cls}.get/set${at}At`);
      const slots: ChildSlot[] = [];
      for (let i = 0; i < n; i++) {
        slots.push({ get: (x) => get(x, i), set: (x, c) => void set(x, i, c) });
      }
      for (const name of extra) slots.push(field(cls, name));
      return slots;
    };
  const listed = new Map<number, (e: ExpressionRef) => ChildSlot[]>([
    [binaryen.BlockId, list("Block", "NumChildren", "Child")],
    [binaryen.CallId, list("Call", "NumOperands", "Operand")],
    // The table index is evaluated after the operands.
    [binaryen.CallIndirectId, list("CallIndirect", "NumOperands", "Operand", ["Target"])],
    [binaryen.TupleMakeId, list("TupleMake", "NumOperands", "Operand")],
    [binaryen.ThrowId, list("Throw", "NumOperands", "Operand")],
    [binaryen.TryId, (e) => trySlots(binaryen, e)],
  ]);
  const leaves = new Set<number>([
    binaryen.NopId,
    binaryen.ConstId,
    binaryen.LocalGetId,
    binaryen.GlobalGetId,
    binaryen.MemorySizeId,
    binaryen.UnreachableId,
    binaryen.RefNullId,
    binaryen.RefFuncId,
    binaryen.DataDropId,
    binaryen.TableSizeId,
    binaryen.AtomicFenceId,
    binaryen.RethrowId,
    binaryen.PopId,
  ]);
  const table = { fixed, listed, leaves };
  slotTables.set(binaryen, table);
  return table;
}

/** A try's body, then its catch bodies (catch_all's last). */
function trySlots(binaryen: Binaryen, expr: ExpressionRef): ChildSlot[] {
  const { Try } = classes(binaryen);
  const slots: ChildSlot[] = [{ get: Try.getBody, set: Try.setBody }];
  for (let i = 0; i < Try.getNumCatchBodies(expr); i++) {
    slots.push({
      get: (e) => Try.getCatchBodyAt(e, i),
      set: (e, c) => Try.setCatchBodyAt(e, i, c),
    });
  }
  return slots;
}

// ---------------------------------------------------------------------------------------------
// Analysis: which functions can stay unmetered.

interface FunctionFacts {
  name: string;
  imported: boolean;
  /** Static cost of the whole body, every path counted. */
  ownCost: number;
  hasLoop: boolean;
  hasCallIndirect: boolean;
  hasPerByteCost: boolean;
  /** Whether it has a throw or rethrow. */
  throws: boolean;
  /** Targets of the function's largest br_table (0 without one). */
  switchTargets: number;
  /** Direct callees, one entry per call site. */
  callees: string[];
}

interface Analysis {
  facts: FunctionFacts[];
  /** Unmetered functions and the cost charged at each call site. */
  leafCost: Map<string, number>;
  interpreter: InterpreterFacts | null;
}

function analyseFunctions(
  binaryen: Binaryen,
  module: Module,
  leafMaxCost: number,
  interpreterTraps: boolean,
): Analysis {
  const facts: FunctionFacts[] = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
    const fact: FunctionFacts = {
      name: info.name,
      imported: Boolean(info.module),
      ownCost: 0,
      hasLoop: false,
      hasCallIndirect: false,
      hasPerByteCost: false,
      throws: false,
      switchTargets: 0,
      callees: [],
    };
    if (!fact.imported) {
      const stack: ExpressionRef[] = [info.body];
      while (stack.length > 0) {
        const expr = stack.pop() as ExpressionRef;
        const id = binaryen.getExpressionId(expr);
        fact.ownCost += instructionCost(binaryen, id);
        if (id === binaryen.LoopId) fact.hasLoop = true;
        else if (id === binaryen.CallIndirectId) fact.hasCallIndirect = true;
        else if (id === binaryen.CallId) fact.callees.push(classes(binaryen).Call.getTarget(expr));
        else if (isPerByte(binaryen, id)) fact.hasPerByteCost = true;
        else if (id === binaryen.ThrowId || id === binaryen.RethrowId) fact.throws = true;
        else if (id === binaryen.SwitchId) {
          const targets = classes(binaryen).Switch.getNumNames(expr);
          if (targets > fact.switchTargets) fact.switchTargets = targets;
        }
        for (const slot of childSlots(binaryen, expr)) {
          const child = slot.get(expr);
          if (child) stack.push(child);
        }
      }
    }
    facts.push(fact);
  }
  const byName = new Map(facts.map((f) => [f.name, f]));
  const leafCost = new Map<string, number>();
  // Leaves form a DAG by construction (a callee must be a leaf first), so this terminates.
  for (let changed = true; changed; ) {
    changed = false;
    for (const fact of facts) {
      if (leafCost.has(fact.name) || fact.imported) continue;
      if (fact.hasLoop || fact.hasCallIndirect || fact.hasPerByteCost || fact.throws) continue;
      let cost = fact.ownCost;
      let allLeaves = true;
      for (const callee of fact.callees) {
        const calleeCost = leafCost.get(callee);
        if (calleeCost === undefined || byName.get(callee)?.imported) {
          allLeaves = false;
          break;
        }
        cost += calleeCost;
      }
      if (allLeaves && cost <= leafMaxCost) {
        leafCost.set(fact.name, cost);
        changed = true;
      }
    }
  }
  return { facts, leafCost, interpreter: interpreterTraps ? findInterpreter(facts) : null };
}

/**
 * The bytecode interpreter: the biggest function with an opcode-sized br_table. In QuickJS that
 * is JS_CallInternal, which also calls the engine's interrupt handler every few thousand
 * opcodes, so its checks need only stop exhaustion. Its loops run one opcode per iteration, and
 * every built-in it calls keeps deadline checks of its own.
 */
function findInterpreter(facts: FunctionFacts[]): InterpreterFacts | null {
  const candidates = facts.filter(
    (f) => !f.imported && f.switchTargets >= INTERPRETER_MIN_SWITCH_TARGETS,
  );
  let best: FunctionFacts | undefined;
  for (const fact of candidates) {
    if (best === undefined || fact.ownCost > best.ownCost) best = fact;
  }
  if (best === undefined) return null;
  return {
    name: best.name,
    cost: best.ownCost,
    switchTargets: best.switchTargets,
    candidates: candidates.length,
  };
}

/** Blocks and nops are structure, not work; everything else counts one. */
function instructionCost(binaryen: Binaryen, id: number): number {
  return id === binaryen.BlockId || id === binaryen.NopId ? 0 : 1;
}

/** Whether branches can land right after `expr`: a named block, or a block ending in one. */
function isBranchTarget(binaryen: Binaryen, expr: ExpressionRef): boolean {
  if (binaryen.getExpressionId(expr) !== binaryen.BlockId) return false;
  if (classes(binaryen).Block.getName(expr)) return true;
  const count = classes(binaryen).Block.getNumChildren(expr);
  return count > 0 && isBranchTarget(binaryen, classes(binaryen).Block.getChildAt(expr, count - 1));
}

function isPerByte(binaryen: Binaryen, id: number): boolean {
  return (
    id === binaryen.MemoryCopyId || id === binaryen.MemoryFillId || id === binaryen.MemoryInitId
  );
}

// ---------------------------------------------------------------------------------------------
// Rewriting.

type Counts = Omit<
  InstrumentStats,
  "memoryFloorPages" | "memoryMinPages" | "inputBytes" | "outputBytes" | "stack" | "interpreter"
>;

function instrumentFunctions(
  binaryen: Binaryen,
  module: Module,
  analysis: Analysis,
): Counts & { interpreter: InterpreterFacts | null } {
  const counts: Counts = {
    functions: 0,
    meteredFunctions: 0,
    leafFunctions: analysis.leafCost.size,
    entryChecks: 0,
    loopChecks: 0,
    trappingChecks: 0,
    armCharges: 0,
    joinCharges: 0,
    perByteCharges: 0,
    flushedCalls: 0,
    flushedThrows: 0,
    catchCharges: 0,
  };
  const importedNames = new Set(analysis.facts.filter((f) => f.imported).map((f) => f.name));
  for (const fact of analysis.facts) {
    if (fact.imported) continue;
    counts.functions++;
    if (analysis.leafCost.has(fact.name)) continue;
    counts.meteredFunctions++;
    const ref = module.getFunction(fact.name);
    const info = binaryen.getFunctionInfo(ref);
    const rewriter = new FunctionRewriter(
      binaryen,
      module,
      analysis.leafCost,
      importedNames,
      binaryen.expandType(info.params).length + info.vars.length,
      counts,
      fact.name === analysis.interpreter?.name,
    );
    const needsEntryCheck =
      fact.callees.some((c) => !analysis.leafCost.has(c)) || fact.hasCallIndirect;
    const body = rewriter.rewriteBody(info.body, info.results, needsEntryCheck);
    // binaryen.js cannot add locals to a function, so each metered function is replaced by a
    // copy with the extra locals; re-adding in module order keeps the original function order.
    module.removeFunction(fact.name);
    module.addFunction(
      fact.name,
      info.params,
      info.results,
      [...info.vars, ...rewriter.newVars],
      body,
    );
  }
  return { ...counts, interpreter: analysis.interpreter };
}

class FunctionRewriter {
  readonly newVars: Type[] = [];
  readonly #fuel: number;
  /** Bumped whenever code that changes the counter local is emitted; tells calls when to spill. */
  #counterWrites = 0;

  constructor(
    readonly binaryen: Binaryen,
    readonly module: Module,
    readonly leafCost: Map<string, number>,
    readonly importedNames: Set<string>,
    readonly firstNewLocal: number,
    readonly counts: Counts,
    /** Whether checks trap (the interpreter) instead of calling refuel below `tick`. */
    readonly traps: boolean,
  ) {
    this.#fuel = this.addLocal(binaryen.i64);
  }

  rewriteBody(body: ExpressionRef, results: Type, needsEntryCheck: boolean): ExpressionRef {
    const { binaryen, module } = this;
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    const prologue: ExpressionRef[] = [
      module.local.set(
        this.#fuel,
        module.i64.sub(module.global.get(FUEL_GLOBAL, binaryen.i64), this.i64(region.cost)),
      ),
    ];
    if (needsEntryCheck) {
      prologue.push(this.check());
      this.counts.entryChecks++;
    }
    const bodyType = binaryen.getExpressionType(newBody);
    if (bodyType === binaryen.unreachable) {
      return module.block(null, [...prologue, newBody], results);
    }
    if (results === binaryen.none) {
      return module.block(null, [...prologue, newBody, this.flush()], results);
    }
    const result = this.addLocal(results);
    return module.block(
      null,
      [
        ...prologue,
        module.local.set(result, newBody),
        this.flush(),
        module.local.get(result, results),
      ],
      results,
    );
  }

  addLocal(type: Type): number {
    this.newVars.push(type);
    return this.firstNewLocal + this.newVars.length - 1;
  }

  i64(value: number): ExpressionRef {
    return i64Const(this.module, BigInt(value));
  }

  fuelLocal(): ExpressionRef {
    return this.module.local.get(this.#fuel, this.binaryen.i64);
  }

  charge(amount: ExpressionRef): ExpressionRef {
    this.#counterWrites++;
    return this.module.local.set(this.#fuel, this.module.i64.sub(this.fuelLocal(), amount));
  }

  /**
   * In the interpreter: once the counter is negative, stores it in `fuel` (the host tells a fuel
   * trap from other traps by it) and traps. Elsewhere: once the counter is below `tick`, stores
   * it and calls refuel, whose result becomes the counter; the host stops the guest by throwing.
   */
  check(): ExpressionRef {
    const { binaryen, module } = this;
    if (this.traps) {
      this.counts.trappingChecks++;
      return module.if(
        module.i64.lt_s(this.fuelLocal(), this.i64(0)),
        module.block(null, [this.flush(), module.unreachable()]),
      );
    }
    this.#counterWrites++;
    return module.if(
      module.i64.lt_s(this.fuelLocal(), module.global.get(TICK_GLOBAL, binaryen.i64)),
      module.block(null, [
        this.flush(),
        module.local.set(
          this.#fuel,
          module.call(REFUEL_FUNCTION, [this.fuelLocal()], binaryen.i64),
        ),
      ]),
    );
  }

  flush(): ExpressionRef {
    return this.module.global.set(FUEL_GLOBAL, this.fuelLocal());
  }

  reload(): ExpressionRef {
    return this.module.local.set(
      this.#fuel,
      this.module.global.get(FUEL_GLOBAL, this.binaryen.i64),
    );
  }

  /** Visits `expr` as part of `region`, returning the expression to put in its place. */
  visit(expr: ExpressionRef, region: { cost: number }): ExpressionRef {
    const { binaryen } = this;
    const id = binaryen.getExpressionId(expr);
    region.cost += instructionCost(binaryen, id);
    switch (id) {
      case binaryen.LoopId:
        return this.visitLoop(expr);
      case binaryen.IfId:
        return this.visitIf(expr, region);
      case binaryen.CallId: {
        const target = classes(binaryen).Call.getTarget(expr);
        const leaf = this.leafCost.get(target);
        if (leaf !== undefined && !this.importedNames.has(target)) {
          region.cost += leaf;
          this.visitChildren(expr, region);
          return expr;
        }
        return this.visitCall(expr, region, classes(binaryen).Call.isReturn(expr));
      }
      case binaryen.CallIndirectId:
        return this.visitCall(expr, region, classes(binaryen).CallIndirect.isReturn(expr));
      case binaryen.BlockId:
        this.visitBlock(expr, region);
        return expr;
      case binaryen.ReturnId:
        return this.visitReturn(expr, region);
      case binaryen.TryId:
        return this.visitTry(expr, region);
      case binaryen.ThrowId:
      case binaryen.RethrowId:
        return this.visitThrow(expr, region);
      case binaryen.MemoryCopyId:
      case binaryen.MemoryFillId:
      case binaryen.MemoryInitId:
        this.visitChildren(expr, region);
        return this.chargePerByte(expr, id);
      default:
        this.visitChildren(expr, region);
        return expr;
    }
  }

  visitChildren(expr: ExpressionRef, region: { cost: number }): void {
    for (const slot of childSlots(this.binaryen, expr)) {
      const child = slot.get(expr);
      if (!child) continue;
      const replaced = this.visit(child, region);
      if (replaced !== child) slot.set(expr, replaced);
    }
  }

  /**
   * Code after a named block in a sequence is a join point (branches to the label land there):
   * it starts a region of its own. Without this, an interpreter's switch (a ladder of nested
   * blocks, one case after each) would charge every case on every dispatch.
   */
  visitBlock(expr: ExpressionRef, region: { cost: number }): void {
    const { binaryen } = this;
    const count = classes(binaryen).Block.getNumChildren(expr);
    const joins: Array<{ index: number; region: { cost: number } }> = [];
    let current = region;
    for (let i = 0; i < count; i++) {
      const child = classes(binaryen).Block.getChildAt(expr, i);
      const replaced = this.visit(child, current);
      if (replaced !== child) classes(binaryen).Block.setChildAt(expr, i, replaced);
      if (i < count - 1 && isBranchTarget(binaryen, replaced)) {
        current = { cost: 0 };
        joins.push({ index: i + 1, region: current });
      }
    }
    for (const join of joins.reverse()) {
      if (join.region.cost === 0) continue;
      this.counts.joinCharges++;
      classes(binaryen).Block.insertChildAt(
        expr,
        join.index,
        this.charge(this.i64(join.region.cost)),
      );
    }
  }

  visitLoop(expr: ExpressionRef): ExpressionRef {
    const { binaryen, module } = this;
    const body = classes(binaryen).Loop.getBody(expr);
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    this.counts.loopChecks++;
    classes(binaryen).Loop.setBody(
      expr,
      module.block(
        null,
        [this.charge(this.i64(region.cost)), this.check(), newBody],
        binaryen.auto,
      ),
    );
    this.#counterWrites++;
    return expr;
  }

  visitIf(expr: ExpressionRef, region: { cost: number }): ExpressionRef {
    const { binaryen } = this;
    const condition = classes(binaryen).If.getCondition(expr);
    const newCondition = this.visit(condition, region);
    if (newCondition !== condition) classes(binaryen).If.setCondition(expr, newCondition);
    const ifTrue = classes(binaryen).If.getIfTrue(expr);
    classes(binaryen).If.setIfTrue(expr, this.chargedArm(ifTrue));
    const ifFalse = classes(binaryen).If.getIfFalse(expr);
    if (ifFalse) classes(binaryen).If.setIfFalse(expr, this.chargedArm(ifFalse));
    return expr;
  }

  chargedArm(arm: ExpressionRef): ExpressionRef {
    const region = { cost: 0 };
    const newArm = this.visit(arm, region);
    if (region.cost === 0) return newArm;
    this.counts.armCharges++;
    return this.module.block(
      null,
      [this.charge(this.i64(region.cost)), newArm],
      this.binaryen.auto,
    );
  }

  /**
   * Stores the counter for the callee and reloads what it left. When evaluating the operands
   * changes the counter, they are spilled to locals so the store comes after them.
   */
  visitCall(expr: ExpressionRef, region: { cost: number }, isTailCall: boolean): ExpressionRef {
    const { binaryen, module } = this;
    const writesBefore = this.#counterWrites;
    this.visitChildren(expr, region);
    const type = binaryen.getExpressionType(expr);
    if (type === binaryen.unreachable && !isTailCall) return expr; // an operand never returns
    this.counts.flushedCalls++;
    const prefix = this.flushAfterOperands(expr, writesBefore);
    if (isTailCall) return module.block(null, [...prefix, expr], binaryen.auto);
    if (type === binaryen.none) {
      return module.block(null, [...prefix, expr, this.reload()], binaryen.none);
    }
    const result = this.addLocal(type);
    return module.block(
      null,
      [...prefix, module.local.set(result, expr), this.reload(), module.local.get(result, type)],
      type,
    );
  }

  /**
   * The code that stores the counter before `expr` runs, after its operands: when evaluating
   * them changes the counter, they are spilled to locals first.
   */
  flushAfterOperands(expr: ExpressionRef, writesBefore: number): ExpressionRef[] {
    const { binaryen, module } = this;
    const prefix: ExpressionRef[] = [];
    if (this.#counterWrites !== writesBefore) {
      for (const slot of childSlots(binaryen, expr)) {
        const operand = slot.get(expr);
        const operandType = binaryen.getExpressionType(operand);
        const temp = this.addLocal(operandType);
        prefix.push(module.local.set(temp, operand));
        slot.set(expr, module.local.get(temp, operandType));
      }
    }
    prefix.push(this.flush());
    return prefix;
  }

  /** A throw or rethrow stores the counter for the catch that takes it, here or in a caller. */
  visitThrow(expr: ExpressionRef, region: { cost: number }): ExpressionRef {
    const { binaryen, module } = this;
    const writesBefore = this.#counterWrites;
    this.visitChildren(expr, region);
    for (const slot of childSlots(binaryen, expr)) {
      // An operand that never returns: the throw never runs.
      if (binaryen.getExpressionType(slot.get(expr)) === binaryen.unreachable) return expr;
    }
    this.counts.flushedThrows++;
    return module.block(
      null,
      [...this.flushAfterOperands(expr, writesBefore), expr],
      binaryen.auto,
    );
  }

  /**
   * The body runs as part of the enclosing region (it is entered whenever that region runs, and
   * the code after the try is charged there too); each catch body is a region of its own.
   */
  visitTry(expr: ExpressionRef, region: { cost: number }): ExpressionRef {
    const { Try } = classes(this.binaryen);
    const body = Try.getBody(expr);
    const newBody = this.visit(body, region);
    if (newBody !== body) Try.setBody(expr, newBody);
    const tags = Try.getNumCatchTags(expr);
    for (let i = 0; i < Try.getNumCatchBodies(expr); i++) {
      const tag = i < tags ? Try.getCatchTagAt(expr, i) : null;
      Try.setCatchBodyAt(expr, i, this.chargedCatch(Try.getCatchBodyAt(expr, i), tag));
    }
    return expr;
  }

  /**
   * A catch body is entered from a throw that stored the counter (here, in a callee, or in the
   * host), never with the local current: it takes the exception's values (the `pop`, which must
   * come first), reloads the counter from `fuel` and subtracts its own cost.
   */
  chargedCatch(catchBody: ExpressionRef, tag: string | null): ExpressionRef {
    const { binaryen, module } = this;
    const prologue: ExpressionRef[] = [];
    let body = catchBody;
    const params = tag === null ? binaryen.none : binaryen.getTagInfo(module.getTag(tag)).params;
    if (params !== binaryen.none) {
      const pop = firstPop(binaryen, catchBody);
      if (pop === null) {
        throw new Error(`a catch of tag "${tag}" does not start with a pop of its values`);
      }
      const temp = this.addLocal(params);
      prologue.push(module.local.set(temp, pop.expr));
      const value = module.local.get(temp, params);
      if (pop.holder === null) body = value;
      else pop.holder.slot.set(pop.holder.parent, value);
    }
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    this.counts.catchCharges++;
    this.#counterWrites++;
    prologue.push(
      module.local.set(
        this.#fuel,
        module.i64.sub(module.global.get(FUEL_GLOBAL, binaryen.i64), this.i64(region.cost)),
      ),
    );
    return module.block(null, [...prologue, newBody], binaryen.auto);
  }

  visitReturn(expr: ExpressionRef, region: { cost: number }): ExpressionRef {
    const { binaryen, module } = this;
    const value = classes(binaryen).Return.getValue(expr);
    if (!value) return module.block(null, [this.flush(), expr], binaryen.auto);
    const writesBefore = this.#counterWrites;
    const newValue = this.visit(value, region);
    const valueType = binaryen.getExpressionType(newValue);
    if (valueType === binaryen.unreachable) {
      if (newValue !== value) classes(binaryen).Return.setValue(expr, newValue);
      return expr;
    }
    if (this.#counterWrites === writesBefore) {
      if (newValue !== value) classes(binaryen).Return.setValue(expr, newValue);
      return module.block(null, [this.flush(), expr], binaryen.auto);
    }
    const temp = this.addLocal(valueType);
    classes(binaryen).Return.setValue(expr, module.local.get(temp, valueType));
    return module.block(
      null,
      [module.local.set(temp, newValue), this.flush(), expr],
      binaryen.auto,
    );
  }

  /** Charges the size operand (evaluated last) one unit per byte, checking before the copy runs. */
  chargePerByte(expr: ExpressionRef, id: number): ExpressionRef {
    const { binaryen, module } = this;
    const cls =
      id === binaryen.MemoryCopyId
        ? classes(binaryen).MemoryCopy
        : id === binaryen.MemoryFillId
          ? classes(binaryen).MemoryFill
          : classes(binaryen).MemoryInit;
    const size = cls.getSize(expr);
    const sizeType = binaryen.getExpressionType(size);
    if (sizeType === binaryen.unreachable) return expr;
    if (sizeType !== binaryen.i32) {
      throw new Error("fuel instrumentation supports 32-bit memories only (memory64 size operand)");
    }
    this.counts.perByteCharges++;
    const temp = this.addLocal(binaryen.i32);
    cls.setSize(
      expr,
      module.block(
        null,
        [
          module.local.set(temp, size),
          this.charge(module.i64.extend_u(module.local.get(temp, binaryen.i32))),
          this.check(),
          module.local.get(temp, binaryen.i32),
        ],
        binaryen.i32,
      ),
    );
    return expr;
  }
}

/**
 * The `pop` a catch body starts with: the first thing it evaluates, found down the chain of
 * first children (binaryen keeps it there), with the slot that holds it; null if there is none.
 */
function firstPop(
  binaryen: Binaryen,
  catchBody: ExpressionRef,
): { expr: ExpressionRef; holder: { parent: ExpressionRef; slot: ChildSlot } | null } | null {
  let holder: { parent: ExpressionRef; slot: ChildSlot } | null = null;
  let expr = catchBody;
  for (;;) {
    const id = binaryen.getExpressionId(expr);
    if (id === binaryen.PopId) return { expr, holder };
    // A loop or a nested try runs its first child again or elsewhere: a pop there is not first.
    if (id === binaryen.LoopId || id === binaryen.TryId) return null;
    const parent: ExpressionRef = expr;
    const slot = childSlots(binaryen, parent).find((s) => s.get(parent) !== 0);
    if (slot === undefined) return null;
    holder = { parent, slot };
    expr = slot.get(parent);
  }
}

/** binaryen.js 132 rejects the (low, high) form; it takes one bigint. */
function i64Const(module: Module, value: bigint): ExpressionRef {
  return module.i64.const(value);
}

// ---------------------------------------------------------------------------------------------
// Memory limits, patched in the binary: binaryen.js cannot change an imported memory's limits.

/** Rewrites the declared minimum of the module's first memory (imported or defined). */
export function setMemoryMinimum(wasm: Uint8Array, minPages: number): Uint8Array<ArrayBuffer> {
  const reader = new ByteReader(wasm);
  reader.pos = 8;
  const chunks: Uint8Array[] = [wasm.subarray(0, 8)];
  let patched = false;
  while (reader.pos < wasm.length) {
    const sectionId = reader.byte();
    const size = reader.u32();
    const start = reader.pos;
    const end = start + size;
    let content = wasm.subarray(start, end);
    if (!patched && (sectionId === 2 || sectionId === 5)) {
      const rewritten =
        sectionId === 2
          ? patchImportedMemory(reader, end, minPages)
          : patchDefinedMemory(reader, end, minPages);
      if (rewritten) {
        content = rewritten;
        patched = true;
      }
    }
    chunks.push(Uint8Array.from([sectionId, ...encodeU32(content.length)]), content);
    reader.pos = end;
  }
  if (!patched) throw new Error("module has no memory whose minimum could be set");
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Replaces every aligned word `from` in active data segments with `to`, in a copy. */
export function rewriteDataWords(
  wasm: Uint8Array,
  from: number,
  to: number,
): { wasm: Uint8Array<ArrayBuffer>; count: number } {
  const out = Uint8Array.from(wasm);
  const reader = new ByteReader(out);
  reader.pos = 8;
  let count = 0;
  while (reader.pos < out.length) {
    const sectionId = reader.byte();
    const size = reader.u32();
    const end = reader.pos + size;
    if (sectionId === 11) {
      const segments = reader.u32();
      for (let i = 0; i < segments; i++) {
        const flags = reader.u32();
        let offset: number | null = null;
        if (flags === 0 || flags === 2) {
          if (flags === 2) reader.u32();
          offset = reader.constOffset();
        } else if (flags !== 1) {
          throw new Error(`unknown data segment flags ${flags}`);
        }
        const length = reader.u32();
        const start = reader.pos;
        reader.pos += length;
        if (offset === null) continue;
        for (const at of alignedWords(offset, length)) {
          if (wordAt(out, start + at, start + length) !== from) continue;
          for (let k = 0; k < 4; k++) {
            const byte = Math.floor(to / 256 ** k) % 256;
            if (at + k < length) out[start + at + k] = byte;
            else if (byte !== 0) {
              throw new Error(`cannot write ${to} into a data segment that ends inside the word`);
            }
          }
          count++;
        }
      }
    }
    reader.pos = end;
  }
  return { wasm: out, count };
}

function patchImportedMemory(reader: ByteReader, end: number, minPages: number): Uint8Array | null {
  const sectionStart = reader.pos;
  const count = reader.u32();
  for (let i = 0; i < count; i++) {
    reader.skipName();
    reader.skipName();
    const kind = reader.byte();
    if (kind === 0) reader.u32();
    else if (kind === 1) {
      reader.byte();
      reader.skipLimits();
    } else if (kind === 2) {
      return reader.withLimitsRewritten(sectionStart, end, minPages);
    } else if (kind === 3) {
      reader.byte();
      reader.byte();
    } else if (kind === 4) {
      reader.byte();
      reader.u32();
    } else throw new Error(`unknown import kind ${kind} in the import section`);
  }
  return null;
}

function patchDefinedMemory(reader: ByteReader, end: number, minPages: number): Uint8Array | null {
  const sectionStart = reader.pos;
  if (reader.u32() === 0) return null;
  return reader.withLimitsRewritten(sectionStart, end, minPages);
}

class ByteReader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  byte(): number {
    const value = this.bytes[this.pos++];
    if (value === undefined) throw new Error("truncated wasm binary");
    return value;
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  }

  /** An active segment's offset: `i32.const N end`, the only form emscripten emits. */
  constOffset(): number {
    if (this.byte() !== 0x41) throw new Error("data segment offset is not an i32.const");
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.byte();
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 32 && b & 0x40) result |= -1 << shift;
    if (this.byte() !== 0x0b) throw new Error("data segment offset is not a constant expression");
    return result >>> 0;
  }

  skipName(): void {
    const length = this.u32();
    this.pos += length;
  }

  skipLimits(): void {
    const flags = this.byte();
    this.u32();
    if (flags & 1) this.u32();
  }

  /** The section from `sectionStart` to `end`, with the limits at the cursor given a new minimum. */
  withLimitsRewritten(sectionStart: number, end: number, minPages: number): Uint8Array {
    const limitsAt = this.pos;
    const flags = this.byte();
    if (flags & 0x04) throw new Error("fuel instrumentation supports 32-bit memories only");
    this.u32();
    const max = flags & 1 ? this.u32() : null;
    if (max !== null && minPages > max) {
      throw new RangeError(`memory minimum ${minPages} pages exceeds the declared maximum ${max}`);
    }
    const limits = [flags, ...encodeU32(minPages), ...(max === null ? [] : encodeU32(max))];
    return Uint8Array.from([
      ...this.bytes.subarray(sectionStart, limitsAt),
      ...limits,
      ...this.bytes.subarray(this.pos, end),
    ]);
  }
}

function encodeU32(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    let b = rest & 0x7f;
    rest = Math.floor(rest / 128);
    if (rest !== 0) b |= 0x80;
    out.push(b);
  } while (rest !== 0);
  return out;
}
