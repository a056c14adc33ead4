// bench/fuel-overhead.ts
import { readFile as readFile2 } from "node:fs/promises";
import { createRequire as createRequire2 } from "node:module";
import { join as join2 } from "node:path";

// scripts/build-engine.ts
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

// core/engine/instrument.ts
var FUEL_EXPORT = "fuel";
var LEAF_MAX_COST = 60;
var FUEL_GLOBAL = "capsule$fuel";
var WASM_PAGE_BYTES = 65536;
var INITIAL_FUEL = 1n << 62n;
function emitFeatures(binaryen) {
  const f = binaryen.Features;
  return f.MVP | f.MutableGlobals | f.NontrappingFPToInt | f.SIMD128 | f.BulkMemory | f.BulkMemoryOpt | f.SignExt | f.ReferenceTypes | f.Multivalue | f.TailCall | f.ExceptionHandling;
}
function instrumentFuel(binaryen, wasm, options = {}) {
  const features = emitFeatures(binaryen);
  const module = binaryen.readBinary(wasm);
  const savedLevels = {
    optimize: binaryen.getOptimizeLevel(),
    shrink: binaryen.getShrinkLevel(),
    debugInfo: binaryen.getDebugInfo()
  };
  try {
    module.setFeatures(features);
    const memoryFloorPages = findMemoryFloorPages(binaryen, module);
    const memoryMinPages = options.memoryMinPages ?? memoryFloorPages;
    if (!Number.isInteger(memoryMinPages) || memoryMinPages < memoryFloorPages) {
      throw new RangeError(
        `memoryMinPages ${memoryMinPages} is below the module's floor of ${memoryFloorPages} pages (static data plus stack); use an integer >= ${memoryFloorPages}`
      );
    }
    if (module.getExport(FUEL_EXPORT) !== 0) {
      throw new Error(`module already exports "${FUEL_EXPORT}"; it is instrumented already`);
    }
    const analysis = analyseFunctions(binaryen, module, options.leafMaxCost ?? LEAF_MAX_COST);
    module.addGlobal(
      FUEL_GLOBAL,
      binaryen.i64,
      true,
      i64Const(module, INITIAL_FUEL)
    );
    module.addGlobalExport(FUEL_GLOBAL, FUEL_EXPORT);
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
    const output = setMemoryMinimum(module.emitBinary(), memoryMinPages);
    return {
      wasm: output,
      stats: {
        ...stats,
        memoryFloorPages,
        memoryMinPages,
        inputBytes: wasm.byteLength,
        outputBytes: output.byteLength
      }
    };
  } finally {
    binaryen.setOptimizeLevel(savedLevels.optimize);
    binaryen.setShrinkLevel(savedLevels.shrink);
    binaryen.setDebugInfo(savedLevels.debugInfo);
    module.dispose();
  }
}
function findMemoryFloorPages(binaryen, module) {
  let highestByte = 0;
  const segments = module;
  for (let i = 0; i < segments.getNumDataSegments(); i++) {
    const segment = segments.getDataSegmentInfo(segments.getDataSegmentByIndex(i));
    if (segment.passive || segment.offset === null) continue;
    highestByte = Math.max(highestByte, segment.offset + segment.data.byteLength);
  }
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const global = binaryen.getGlobalInfo(module.getGlobalByIndex(i));
    if (global.module || !global.mutable || global.type !== binaryen.i32) continue;
    const start = constantValue(binaryen, global.init);
    if (start !== null) highestByte = Math.max(highestByte, start);
  }
  return Math.max(1, Math.ceil(highestByte / WASM_PAGE_BYTES));
}
function constantValue(binaryen, expr) {
  if (!expr || binaryen.getExpressionId(expr) !== binaryen.ConstId) return null;
  const info = binaryen.getExpressionInfo(expr);
  return info.type === binaryen.i32 && typeof info.value === "number" ? info.value >>> 0 : null;
}
function childSlots(binaryen, expr) {
  const id = binaryen.getExpressionId(expr);
  const table = slotTable(binaryen);
  const fixed = table.fixed.get(id);
  if (fixed) return fixed;
  const listed = table.listed.get(id);
  if (listed) return listed(expr);
  if (table.leaves.has(id)) return [];
  throw new Error(
    `fuel instrumentation does not support expression id ${id} (${expressionName(binaryen, id)}); supported: MVP, SIMD, bulk memory, sign-ext, reference types, tail calls, atomics`
  );
}
function expressionName(binaryen, id) {
  for (const [key, value] of Object.entries(binaryen)) {
    if (value === id && key.endsWith("Id") && !key.startsWith("_")) return key.slice(0, -2);
  }
  return "unknown";
}
var slotTables = /* @__PURE__ */ new WeakMap();
function slotTable(binaryen) {
  const cached = slotTables.get(binaryen);
  if (cached) return cached;
  const b = binaryen;
  const field = (cls, name) => {
    const wrapper = b[cls];
    const get = wrapper?.[`get${name}`];
    const set = wrapper?.[`set${name}`];
    if (!get || !set) throw new Error(`binaryen.js lacks ${cls}.get/set${name}`);
    return { get: (e) => get(e), set: (e, c) => void set(e, c) };
  };
  const fixedFields = [
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
    [binaryen.TupleExtractId, "TupleExtract", ["Tuple"]]
  ];
  const fixed = /* @__PURE__ */ new Map();
  for (const [id, cls, names] of fixedFields) {
    const slots = names.map((name) => field(cls, name));
    fixed.set(id, slots);
  }
  const list = (cls, count, at, extra = []) => (e) => {
    const wrapper = b[cls];
    const n = wrapper?.[`get${count}`]?.(e) ?? 0;
    const get = wrapper?.[`get${at}At`];
    const set = wrapper?.[`set${at}At`];
    if (!get || !set) throw new Error(`binaryen.js lacks ${cls}.get/set${at}At`);
    const slots = [];
    for (let i = 0; i < n; i++) {
      slots.push({ get: (x) => get(x, i), set: (x, c) => void set(x, i, c) });
    }
    for (const name of extra) slots.push(field(cls, name));
    return slots;
  };
  const listed = /* @__PURE__ */ new Map([
    [binaryen.BlockId, list("Block", "NumChildren", "Child")],
    [binaryen.CallId, list("Call", "NumOperands", "Operand")],
    // The table index is evaluated after the operands.
    [binaryen.CallIndirectId, list("CallIndirect", "NumOperands", "Operand", ["Target"])],
    [binaryen.TupleMakeId, list("TupleMake", "NumOperands", "Operand")]
  ]);
  const leaves = /* @__PURE__ */ new Set([
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
    binaryen.AtomicFenceId
  ]);
  const table = { fixed, listed, leaves };
  slotTables.set(binaryen, table);
  return table;
}
function analyseFunctions(binaryen, module, leafMaxCost) {
  const facts = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(module.getFunctionByIndex(i));
    const fact = {
      name: info.name,
      imported: Boolean(info.module),
      ownCost: 0,
      hasLoop: false,
      hasCallIndirect: false,
      hasPerByteCost: false,
      callees: []
    };
    if (!fact.imported) {
      const stack = [info.body];
      while (stack.length > 0) {
        const expr = stack.pop();
        const id = binaryen.getExpressionId(expr);
        fact.ownCost += instructionCost(binaryen, id);
        if (id === binaryen.LoopId) fact.hasLoop = true;
        else if (id === binaryen.CallIndirectId) fact.hasCallIndirect = true;
        else if (id === binaryen.CallId) fact.callees.push(binaryen.Call.getTarget(expr));
        else if (isPerByte(binaryen, id)) fact.hasPerByteCost = true;
        for (const slot of childSlots(binaryen, expr)) {
          const child = slot.get(expr);
          if (child) stack.push(child);
        }
      }
    }
    facts.push(fact);
  }
  const byName = new Map(facts.map((f) => [f.name, f]));
  const leafCost = /* @__PURE__ */ new Map();
  for (let changed = true; changed; ) {
    changed = false;
    for (const fact of facts) {
      if (leafCost.has(fact.name) || fact.imported) continue;
      if (fact.hasLoop || fact.hasCallIndirect || fact.hasPerByteCost) continue;
      let cost = fact.ownCost;
      let allLeaves = true;
      for (const callee of fact.callees) {
        const calleeCost = leafCost.get(callee);
        if (calleeCost === void 0 || byName.get(callee)?.imported) {
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
  return { facts, leafCost };
}
function instructionCost(binaryen, id) {
  return id === binaryen.BlockId || id === binaryen.NopId ? 0 : 1;
}
function isBranchTarget(binaryen, expr) {
  if (binaryen.getExpressionId(expr) !== binaryen.BlockId) return false;
  if (binaryen.Block.getName(expr)) return true;
  const count = binaryen.Block.getNumChildren(expr);
  return count > 0 && isBranchTarget(binaryen, binaryen.Block.getChildAt(expr, count - 1));
}
function isPerByte(binaryen, id) {
  return id === binaryen.MemoryCopyId || id === binaryen.MemoryFillId || id === binaryen.MemoryInitId;
}
function instrumentFunctions(binaryen, module, analysis) {
  const counts = {
    functions: 0,
    meteredFunctions: 0,
    leafFunctions: analysis.leafCost.size,
    entryChecks: 0,
    loopChecks: 0,
    armCharges: 0,
    joinCharges: 0,
    perByteCharges: 0,
    flushedCalls: 0
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
      counts
    );
    const needsEntryCheck = fact.callees.some((c) => !analysis.leafCost.has(c)) || fact.hasCallIndirect;
    const body = rewriter.rewriteBody(info.body, info.results, needsEntryCheck);
    module.removeFunction(fact.name);
    module.addFunction(fact.name, info.params, info.results, [...info.vars, ...rewriter.newVars], body);
  }
  return counts;
}
var FunctionRewriter = class {
  constructor(binaryen, module, leafCost, importedNames, firstNewLocal, counts) {
    this.binaryen = binaryen;
    this.module = module;
    this.leafCost = leafCost;
    this.importedNames = importedNames;
    this.firstNewLocal = firstNewLocal;
    this.counts = counts;
    this.#fuel = this.addLocal(binaryen.i64);
  }
  binaryen;
  module;
  leafCost;
  importedNames;
  firstNewLocal;
  counts;
  newVars = [];
  #fuel;
  /** Bumped whenever code that changes the counter local is emitted; tells calls when to spill. */
  #counterWrites = 0;
  rewriteBody(body, results, needsEntryCheck) {
    const { binaryen, module } = this;
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    const prologue = [
      module.local.set(
        this.#fuel,
        module.i64.sub(module.global.get(FUEL_GLOBAL, binaryen.i64), this.i64(region.cost))
      )
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
      [...prologue, module.local.set(result, newBody), this.flush(), module.local.get(result, results)],
      results
    );
  }
  addLocal(type) {
    this.newVars.push(type);
    return this.firstNewLocal + this.newVars.length - 1;
  }
  i64(value) {
    return i64Const(this.module, BigInt(value));
  }
  fuelLocal() {
    return this.module.local.get(this.#fuel, this.binaryen.i64);
  }
  charge(amount) {
    this.#counterWrites++;
    return this.module.local.set(this.#fuel, this.module.i64.sub(this.fuelLocal(), amount));
  }
  /** Trap once the counter is negative, storing it first so the host sees why. */
  check() {
    const { module } = this;
    return module.if(
      module.i64.lt_s(this.fuelLocal(), this.i64(0)),
      module.block(null, [this.flush(), module.unreachable()])
    );
  }
  flush() {
    return this.module.global.set(FUEL_GLOBAL, this.fuelLocal());
  }
  reload() {
    return this.module.local.set(this.#fuel, this.module.global.get(FUEL_GLOBAL, this.binaryen.i64));
  }
  /** Visits `expr` as part of `region`, returning the expression to put in its place. */
  visit(expr, region) {
    const { binaryen } = this;
    const id = binaryen.getExpressionId(expr);
    region.cost += instructionCost(binaryen, id);
    switch (id) {
      case binaryen.LoopId:
        return this.visitLoop(expr);
      case binaryen.IfId:
        return this.visitIf(expr, region);
      case binaryen.CallId: {
        const target = binaryen.Call.getTarget(expr);
        const leaf = this.leafCost.get(target);
        if (leaf !== void 0 && !this.importedNames.has(target)) {
          region.cost += leaf;
          this.visitChildren(expr, region);
          return expr;
        }
        return this.visitCall(expr, region, binaryen.Call.isReturn(expr));
      }
      case binaryen.CallIndirectId:
        return this.visitCall(expr, region, binaryen.CallIndirect.isReturn(expr));
      case binaryen.BlockId:
        this.visitBlock(expr, region);
        return expr;
      case binaryen.ReturnId:
        return this.visitReturn(expr, region);
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
  visitChildren(expr, region) {
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
  visitBlock(expr, region) {
    const { binaryen } = this;
    const count = binaryen.Block.getNumChildren(expr);
    const joins = [];
    let current = region;
    for (let i = 0; i < count; i++) {
      const child = binaryen.Block.getChildAt(expr, i);
      const replaced = this.visit(child, current);
      if (replaced !== child) binaryen.Block.setChildAt(expr, i, replaced);
      if (i < count - 1 && isBranchTarget(binaryen, replaced)) {
        current = { cost: 0 };
        joins.push({ index: i + 1, region: current });
      }
    }
    for (const join3 of joins.reverse()) {
      if (join3.region.cost === 0) continue;
      this.counts.joinCharges++;
      binaryen.Block.insertChildAt(expr, join3.index, this.charge(this.i64(join3.region.cost)));
    }
  }
  visitLoop(expr) {
    const { binaryen, module } = this;
    const body = binaryen.Loop.getBody(expr);
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    this.counts.loopChecks++;
    binaryen.Loop.setBody(
      expr,
      module.block(null, [this.charge(this.i64(region.cost)), this.check(), newBody], binaryen.auto)
    );
    this.#counterWrites++;
    return expr;
  }
  visitIf(expr, region) {
    const { binaryen } = this;
    const condition = binaryen.If.getCondition(expr);
    const newCondition = this.visit(condition, region);
    if (newCondition !== condition) binaryen.If.setCondition(expr, newCondition);
    const ifTrue = binaryen.If.getIfTrue(expr);
    binaryen.If.setIfTrue(expr, this.chargedArm(ifTrue));
    const ifFalse = binaryen.If.getIfFalse(expr);
    if (ifFalse) binaryen.If.setIfFalse(expr, this.chargedArm(ifFalse));
    return expr;
  }
  chargedArm(arm) {
    const region = { cost: 0 };
    const newArm = this.visit(arm, region);
    if (region.cost === 0) return newArm;
    this.counts.armCharges++;
    return this.module.block(null, [this.charge(this.i64(region.cost)), newArm], this.binaryen.auto);
  }
  /**
   * Stores the counter for the callee and reloads what it left. When evaluating the operands
   * changes the counter, they are spilled to locals so the store comes after them.
   */
  visitCall(expr, region, isTailCall) {
    const { binaryen, module } = this;
    const writesBefore = this.#counterWrites;
    this.visitChildren(expr, region);
    const type = binaryen.getExpressionType(expr);
    if (type === binaryen.unreachable && !isTailCall) return expr;
    this.counts.flushedCalls++;
    const prefix = [];
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
    if (isTailCall) return module.block(null, [...prefix, expr], binaryen.auto);
    if (type === binaryen.none) {
      return module.block(null, [...prefix, expr, this.reload()], binaryen.none);
    }
    const result = this.addLocal(type);
    return module.block(
      null,
      [...prefix, module.local.set(result, expr), this.reload(), module.local.get(result, type)],
      type
    );
  }
  visitReturn(expr, region) {
    const { binaryen, module } = this;
    const value = binaryen.Return.getValue(expr);
    if (!value) return module.block(null, [this.flush(), expr], binaryen.auto);
    const writesBefore = this.#counterWrites;
    const newValue = this.visit(value, region);
    const valueType = binaryen.getExpressionType(newValue);
    if (valueType === binaryen.unreachable) {
      if (newValue !== value) binaryen.Return.setValue(expr, newValue);
      return expr;
    }
    if (this.#counterWrites === writesBefore) {
      if (newValue !== value) binaryen.Return.setValue(expr, newValue);
      return module.block(null, [this.flush(), expr], binaryen.auto);
    }
    const temp = this.addLocal(valueType);
    binaryen.Return.setValue(expr, module.local.get(temp, valueType));
    return module.block(null, [module.local.set(temp, newValue), this.flush(), expr], binaryen.auto);
  }
  /** Charges the size operand (evaluated last) one unit per byte, checking before the copy runs. */
  chargePerByte(expr, id) {
    const { binaryen, module } = this;
    const cls = id === binaryen.MemoryCopyId ? binaryen.MemoryCopy : id === binaryen.MemoryFillId ? binaryen.MemoryFill : binaryen.MemoryInit;
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
          module.local.get(temp, binaryen.i32)
        ],
        binaryen.i32
      )
    );
    return expr;
  }
};
function i64Const(module, value) {
  return module.i64.const(value);
}
function setMemoryMinimum(wasm, minPages) {
  const reader = new ByteReader(wasm);
  reader.pos = 8;
  const chunks = [wasm.subarray(0, 8)];
  let patched = false;
  while (reader.pos < wasm.length) {
    const sectionId = reader.byte();
    const size = reader.u32();
    const start = reader.pos;
    const end = start + size;
    let content = wasm.subarray(start, end);
    if (!patched && (sectionId === 2 || sectionId === 5)) {
      const rewritten = sectionId === 2 ? patchImportedMemory(reader, end, minPages) : patchDefinedMemory(reader, end, minPages);
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
function patchImportedMemory(reader, end, minPages) {
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
function patchDefinedMemory(reader, end, minPages) {
  const sectionStart = reader.pos;
  if (reader.u32() === 0) return null;
  return reader.withLimitsRewritten(sectionStart, end, minPages);
}
var ByteReader = class {
  constructor(bytes) {
    this.bytes = bytes;
  }
  bytes;
  pos = 0;
  byte() {
    const value = this.bytes[this.pos++];
    if (value === void 0) throw new Error("truncated wasm binary");
    return value;
  }
  u32() {
    let result = 0;
    let shift = 0;
    for (; ; ) {
      const b = this.byte();
      result += (b & 127) * 2 ** shift;
      if ((b & 128) === 0) return result;
      shift += 7;
    }
  }
  skipName() {
    const length = this.u32();
    this.pos += length;
  }
  skipLimits() {
    const flags = this.byte();
    this.u32();
    if (flags & 1) this.u32();
  }
  /** The section from `sectionStart` to `end`, with the limits at the cursor given a new minimum. */
  withLimitsRewritten(sectionStart, end, minPages) {
    const limitsAt = this.pos;
    const flags = this.byte();
    if (flags & 4) throw new Error("fuel instrumentation supports 32-bit memories only");
    this.u32();
    const max = flags & 1 ? this.u32() : null;
    if (max !== null && minPages > max) {
      throw new RangeError(`memory minimum ${minPages} pages exceeds the declared maximum ${max}`);
    }
    const limits = [flags, ...encodeU32(minPages), ...max === null ? [] : encodeU32(max)];
    return Uint8Array.from([
      ...this.bytes.subarray(sectionStart, limitsAt),
      ...limits,
      ...this.bytes.subarray(this.pos, end)
    ]);
  }
};
function encodeU32(value) {
  const out = [];
  let rest = value;
  do {
    let b = rest & 127;
    rest = Math.floor(rest / 128);
    if (rest !== 0) b |= 128;
    out.push(b);
  } while (rest !== 0);
  return out;
}

// scripts/build-engine.ts
var METERED_WASM = "dist/quickjs-metered.wasm";
var METERED_MANIFEST = "dist/quickjs-metered.json";
var INPUT_WASM = "@jitl/quickjs-wasmfile-release-sync/wasm";
var INSTRUMENT_SOURCE = "core/engine/instrument.ts";
async function buildEngine(opts) {
  const log = opts.log ?? (() => {
  });
  const require2 = createRequire(join(opts.root, "package.json"));
  const wasmPath = join(opts.root, METERED_WASM);
  const manifestPath = join(opts.root, METERED_MANIFEST);
  const input = await readFile(require2.resolve(INPUT_WASM));
  const inputSha256 = sha256(input);
  const instrumentSha256 = sha256(await readFile(join(opts.root, INSTRUMENT_SOURCE)));
  const binaryenVersion = require2("binaryen/package.json").version;
  const previous = await readManifest(manifestPath);
  if (previous?.inputSha256 === inputSha256 && previous.instrumentSha256 === instrumentSha256 && previous.binaryenVersion === binaryenVersion && await fileSha256(wasmPath) === previous.outputSha256) {
    log(`engine: ${METERED_WASM} is up to date`);
    return { wasmPath, built: false };
  }
  log(`engine: instrumenting QuickJS (${input.byteLength} bytes) with fuel metering...`);
  const started = performance.now();
  const { default: binaryen } = await import("binaryen");
  const { wasm, stats } = instrumentFuel(binaryen, input, {});
  const buildMs = Math.round(performance.now() - started);
  const manifest = {
    inputSha256,
    outputSha256: sha256(wasm),
    instrumentSha256,
    binaryenVersion,
    memoryFloorPages: stats.memoryFloorPages,
    stats,
    buildMs
  };
  await mkdir(join(opts.root, "dist"), { recursive: true });
  await writeFile(`${wasmPath}.tmp`, wasm);
  await rename(`${wasmPath}.tmp`, wasmPath);
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}
`);
  log(
    `engine: wrote ${METERED_WASM} (${wasm.byteLength} bytes, memory floor ${stats.memoryFloorPages} pages) in ${buildMs} ms`
  );
  return { wasmPath, built: true };
}
function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}
async function fileSha256(path) {
  try {
    return sha256(await readFile(path));
  } catch {
    return null;
  }
}
async function readManifest(path) {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch {
    return null;
  }
}

// bench/quickjs-instance.ts
import QuickJSRaw from "@jitl/quickjs-wasmfile-release-sync/emscripten-module";
import { QuickJSFFI } from "@jitl/quickjs-wasmfile-release-sync/ffi";
import { QuickJSWASMModule } from "quickjs-emscripten-core";
var UNLIMITED_FUEL = 1n << 62n;
async function instantiateQuickJS(module, memory) {
  let instance;
  const emscripten = await QuickJSRaw({
    wasmMemory: new WebAssembly.Memory({
      initial: memory.initialPages,
      maximum: memory.maximumPages
    }),
    instantiateWasm(imports, onSuccess) {
      instance = new WebAssembly.Instance(module, imports);
      const fuel2 = instance.exports.fuel;
      if (fuel2 instanceof WebAssembly.Global) fuel2.value = UNLIMITED_FUEL;
      onSuccess(instance);
      return instance.exports;
    }
  });
  emscripten.type = "sync";
  const quickjs = new QuickJSWASMModule(emscripten, new QuickJSFFI(emscripten));
  const fuel = instance?.exports.fuel;
  return { quickjs, fuel: fuel instanceof WebAssembly.Global ? fuel : null };
}
function evalMetered(instance, code) {
  const runtime = instance.quickjs.newRuntime();
  const context = runtime.newContext();
  try {
    const before = instance.fuel ? instance.fuel.value : 0n;
    const outcome = context.evalCode(code);
    const after = instance.fuel ? instance.fuel.value : 0n;
    const handle = context.unwrapResult(outcome);
    const result = JSON.stringify(context.dump(handle));
    handle.dispose();
    return { fuel: before - after, result };
  } finally {
    context.dispose();
    runtime.dispose();
  }
}

// bench/fuel-overhead.ts
var FIB = "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); } fib(27);";
var JSON_STRING = `
let total = 0;
for (let i = 0; i < 3000; i++) {
  const record = { id: i, name: "item-" + i, tags: ["a", "b", String(i % 7)], nested: { x: i * 2, y: "v" + (i % 13) } };
  const text = JSON.stringify(record);
  const back = JSON.parse(text);
  const words = (back.name + " " + back.tags.join(",") + " " + text).split(/[ ,:]/);
  total += words.join("|").toUpperCase().length + back.nested.x;
}
total;`;
var REGEX_SORT = `
let seed = 42;
const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
const words = [];
for (let i = 0; i < 20000; i++) words.push("w" + next().toString(36) + "-" + (i % 97));
words.sort();
let matches = 0;
const pattern = /^w([a-z]+)(\\d*)-(\\d+)$/;
for (const word of words) { const m = pattern.exec(word); if (m && m[3].length > 1) matches++; }
const numbers = words.map((w) => w.length * 7919 % 1000);
numbers.sort((a, b) => a - b);
matches + numbers[500];`;
var WORKLOADS = { fib27: FIB, jsonString: JSON_STRING, regexSort: REGEX_SORT };
var MEMORY = { initialPages: 256, maximumPages: 16384 };
async function benchFuelOverhead(options = {}) {
  const root = options.root ?? process.cwd();
  const repetitions = options.repetitions ?? 7;
  const wasmPath = options.meteredWasmPath ?? (await buildEngine({ root, log: options.log })).wasmPath;
  const require2 = createRequire2(join2(root, "package.json"));
  const stockPath = require2.resolve("@jitl/quickjs-wasmfile-release-sync/wasm");
  const stock = new WebAssembly.Module(await readFile2(stockPath));
  const metered = new WebAssembly.Module(await readFile2(wasmPath));
  const workloads = [];
  for (const [workload, code] of Object.entries(WORKLOADS)) {
    const stockTimes = [];
    const meteredTimes = [];
    const fuels = /* @__PURE__ */ new Set();
    let expected;
    for (let rep = -1; rep < repetitions; rep++) {
      for (const [module, times] of [
        [stock, stockTimes],
        [metered, meteredTimes]
      ]) {
        const instance = await instantiateQuickJS(module, MEMORY);
        const { ms, fuel: fuel2, result } = timeEval(instance, code);
        expected ??= result;
        if (result !== expected) {
          throw new Error(`${workload}: metered and stock results differ (${result} vs ${expected})`);
        }
        if (rep < 0) continue;
        times.push(ms);
        if (instance.fuel) fuels.add(fuel2);
      }
    }
    const stockMs = median(stockTimes);
    const meteredMs = median(meteredTimes);
    const [fuel = 0n] = fuels;
    workloads.push({
      workload,
      stockMs,
      meteredMs,
      ratio: meteredMs / stockMs,
      fuel: Number(fuel),
      fuelDeterministic: fuels.size === 1
    });
  }
  const v8Fib27Ms = benchV8Fib(repetitions);
  const fib = workloads.find((w) => w.workload === "fib27");
  return {
    repetitions,
    workloads,
    v8Fib27Ms,
    guestVsV8: fib ? fib.meteredMs / v8Fib27Ms : Number.NaN
  };
}
function timeEval(instance, code) {
  const start = performance.now();
  const { fuel, result } = evalMetered(instance, code);
  return { ms: performance.now() - start, fuel, result };
}
function benchV8Fib(repetitions) {
  const fib = (n) => n < 2 ? n : fib(n - 1) + fib(n - 2);
  const times = [];
  for (let rep = -1; rep < repetitions; rep++) {
    const start = performance.now();
    fib(27);
    if (rep >= 0) times.push(performance.now() - start);
  }
  return median(times);
}
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] ?? Number.NaN : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}
function formatReport(report) {
  const lines = [
    `fuel overhead, median of ${report.repetitions} runs (fresh runtime each)`,
    "workload     stock ms  metered ms  ratio  fuel (deterministic)"
  ];
  for (const w of report.workloads) {
    lines.push(
      `${w.workload.padEnd(12)} ${w.stockMs.toFixed(1).padStart(8)}  ${w.meteredMs.toFixed(1).padStart(10)}  ${w.ratio.toFixed(3)}  ${w.fuel} (${w.fuelDeterministic ? "yes" : "NO"})`
    );
  }
  lines.push(
    `V8 fib(27) ${report.v8Fib27Ms.toFixed(2)} ms; metered guest is ${report.guestVsV8.toFixed(1)}x slower`
  );
  return lines.join("\n");
}
var invokedDirectly = import.meta.url === `file://${process.argv[1]}`;
if (invokedDirectly) {
  const [meteredWasmPath] = process.argv.slice(2);
  benchFuelOverhead({ meteredWasmPath, log: (line) => console.error(line) }).then(
    (report) => console.log(formatReport(report)),
    (error) => {
      console.error(error);
      process.exitCode = 1;
    }
  );
}
export {
  WORKLOADS,
  benchFuelOverhead,
  formatReport
};
