// ../../tmp/variant.ts
import binaryen from "binaryen";
import { readFileSync, writeFileSync } from "node:fs";

// core/engine/instrument.ts
var FUEL_EXPORT = "fuel";
var LEAF_MAX_COST = 60;
var FUEL_GLOBAL = "capsule$fuel";
var WASM_PAGE_BYTES = 65536;
var INITIAL_FUEL = 1n << 62n;
function emitFeatures(binaryen2) {
  const f = binaryen2.Features;
  return f.MVP | f.MutableGlobals | f.NontrappingFPToInt | f.SIMD128 | f.BulkMemory | f.BulkMemoryOpt | f.SignExt | f.ReferenceTypes | f.Multivalue | f.TailCall | f.ExceptionHandling;
}
function instrumentFuel(binaryen2, wasm2, options = {}) {
  const features = emitFeatures(binaryen2);
  const module = binaryen2.readBinary(wasm2);
  const savedLevels = {
    optimize: binaryen2.getOptimizeLevel(),
    shrink: binaryen2.getShrinkLevel(),
    debugInfo: binaryen2.getDebugInfo()
  };
  try {
    module.setFeatures(features);
    const memoryFloorPages = findMemoryFloorPages(binaryen2, module);
    const memoryMinPages = options.memoryMinPages ?? memoryFloorPages;
    if (!Number.isInteger(memoryMinPages) || memoryMinPages < memoryFloorPages) {
      throw new RangeError(
        `memoryMinPages ${memoryMinPages} is below the module's floor of ${memoryFloorPages} pages (static data plus stack); use an integer >= ${memoryFloorPages}`
      );
    }
    if (module.getExport(FUEL_EXPORT) !== 0) {
      throw new Error(`module already exports "${FUEL_EXPORT}"; it is instrumented already`);
    }
    const analysis = analyseFunctions(binaryen2, module, options.leafMaxCost ?? LEAF_MAX_COST);
    module.addGlobal(
      FUEL_GLOBAL,
      binaryen2.i64,
      true,
      i64Const(module, INITIAL_FUEL)
    );
    module.addGlobalExport(FUEL_GLOBAL, FUEL_EXPORT);
    const stats = instrumentFunctions(binaryen2, module, analysis);
    if (!module.validate()) {
      throw new Error("instrumented module does not validate");
    }
    if (options.optimize !== false) {
      binaryen2.setOptimizeLevel(3);
      binaryen2.setShrinkLevel(0);
      binaryen2.setDebugInfo(false);
      module.optimize();
    }
    const output = setMemoryMinimum(module.emitBinary(), memoryMinPages);
    return {
      wasm: output,
      stats: {
        ...stats,
        memoryFloorPages,
        memoryMinPages,
        inputBytes: wasm2.byteLength,
        outputBytes: output.byteLength
      }
    };
  } finally {
    binaryen2.setOptimizeLevel(savedLevels.optimize);
    binaryen2.setShrinkLevel(savedLevels.shrink);
    binaryen2.setDebugInfo(savedLevels.debugInfo);
    module.dispose();
  }
}
function findMemoryFloorPages(binaryen2, module) {
  let highestByte = 0;
  const segments = module;
  for (let i = 0; i < segments.getNumDataSegments(); i++) {
    const segment = segments.getDataSegmentInfo(segments.getDataSegmentByIndex(i));
    if (segment.passive || segment.offset === null) continue;
    highestByte = Math.max(highestByte, segment.offset + segment.data.byteLength);
  }
  for (let i = 0; i < module.getNumGlobals(); i++) {
    const global = binaryen2.getGlobalInfo(module.getGlobalByIndex(i));
    if (global.module || !global.mutable || global.type !== binaryen2.i32) continue;
    const start = constantValue(binaryen2, global.init);
    if (start !== null) highestByte = Math.max(highestByte, start);
  }
  return Math.max(1, Math.ceil(highestByte / WASM_PAGE_BYTES));
}
function constantValue(binaryen2, expr) {
  if (!expr || binaryen2.getExpressionId(expr) !== binaryen2.ConstId) return null;
  const info = binaryen2.getExpressionInfo(expr);
  return info.type === binaryen2.i32 && typeof info.value === "number" ? info.value >>> 0 : null;
}
function childSlots(binaryen2, expr) {
  const id = binaryen2.getExpressionId(expr);
  const table = slotTable(binaryen2);
  const fixed = table.fixed.get(id);
  if (fixed) return fixed;
  const listed = table.listed.get(id);
  if (listed) return listed(expr);
  if (table.leaves.has(id)) return [];
  throw new Error(
    `fuel instrumentation does not support expression id ${id} (${expressionName(binaryen2, id)}); supported: MVP, SIMD, bulk memory, sign-ext, reference types, tail calls, atomics`
  );
}
function expressionName(binaryen2, id) {
  for (const [key, value] of Object.entries(binaryen2)) {
    if (value === id && key.endsWith("Id") && !key.startsWith("_")) return key.slice(0, -2);
  }
  return "unknown";
}
var slotTables = /* @__PURE__ */ new WeakMap();
function slotTable(binaryen2) {
  const cached = slotTables.get(binaryen2);
  if (cached) return cached;
  const b = binaryen2;
  const field = (cls, name) => {
    const wrapper = b[cls];
    const get = wrapper?.[`get${name}`];
    const set = wrapper?.[`set${name}`];
    if (!get || !set) throw new Error(`binaryen.js lacks ${cls}.get/set${name}`);
    return { get: (e) => get(e), set: (e, c) => void set(e, c) };
  };
  const fixedFields = [
    [binaryen2.IfId, "If", ["Condition", "IfTrue", "IfFalse"]],
    [binaryen2.LoopId, "Loop", ["Body"]],
    [binaryen2.BreakId, "Break", ["Value", "Condition"]],
    [binaryen2.SwitchId, "Switch", ["Value", "Condition"]],
    [binaryen2.LocalSetId, "LocalSet", ["Value"]],
    [binaryen2.GlobalSetId, "GlobalSet", ["Value"]],
    [binaryen2.LoadId, "Load", ["Ptr"]],
    [binaryen2.StoreId, "Store", ["Ptr", "Value"]],
    [binaryen2.UnaryId, "Unary", ["Value"]],
    [binaryen2.BinaryId, "Binary", ["Left", "Right"]],
    [binaryen2.SelectId, "Select", ["IfTrue", "IfFalse", "Condition"]],
    [binaryen2.DropId, "Drop", ["Value"]],
    [binaryen2.ReturnId, "Return", ["Value"]],
    [binaryen2.MemoryGrowId, "MemoryGrow", ["Delta"]],
    [binaryen2.MemoryCopyId, "MemoryCopy", ["Dest", "Source", "Size"]],
    [binaryen2.MemoryFillId, "MemoryFill", ["Dest", "Value", "Size"]],
    [binaryen2.MemoryInitId, "MemoryInit", ["Dest", "Offset", "Size"]],
    [binaryen2.SIMDExtractId, "SIMDExtract", ["Vec"]],
    [binaryen2.SIMDReplaceId, "SIMDReplace", ["Vec", "Value"]],
    [binaryen2.SIMDShuffleId, "SIMDShuffle", ["Left", "Right"]],
    [binaryen2.SIMDTernaryId, "SIMDTernary", ["A", "B", "C"]],
    [binaryen2.SIMDShiftId, "SIMDShift", ["Vec", "Shift"]],
    [binaryen2.SIMDLoadId, "SIMDLoad", ["Ptr"]],
    [binaryen2.SIMDLoadStoreLaneId, "SIMDLoadStoreLane", ["Ptr", "Vec"]],
    [binaryen2.AtomicRMWId, "AtomicRMW", ["Ptr", "Value"]],
    [binaryen2.AtomicCmpxchgId, "AtomicCmpxchg", ["Ptr", "Expected", "Replacement"]],
    [binaryen2.AtomicWaitId, "AtomicWait", ["Ptr", "Expected", "Timeout"]],
    [binaryen2.AtomicNotifyId, "AtomicNotify", ["Ptr", "NotifyCount"]],
    [binaryen2.RefIsNullId, "RefIsNull", ["Value"]],
    [binaryen2.RefAsId, "RefAs", ["Value"]],
    [binaryen2.TableGetId, "TableGet", ["Index"]],
    [binaryen2.TableSetId, "TableSet", ["Index", "Value"]],
    [binaryen2.TableGrowId, "TableGrow", ["Value", "Delta"]],
    [binaryen2.TupleExtractId, "TupleExtract", ["Tuple"]]
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
    [binaryen2.BlockId, list("Block", "NumChildren", "Child")],
    [binaryen2.CallId, list("Call", "NumOperands", "Operand")],
    // The table index is evaluated after the operands.
    [binaryen2.CallIndirectId, list("CallIndirect", "NumOperands", "Operand", ["Target"])],
    [binaryen2.TupleMakeId, list("TupleMake", "NumOperands", "Operand")]
  ]);
  const leaves = /* @__PURE__ */ new Set([
    binaryen2.NopId,
    binaryen2.ConstId,
    binaryen2.LocalGetId,
    binaryen2.GlobalGetId,
    binaryen2.MemorySizeId,
    binaryen2.UnreachableId,
    binaryen2.RefNullId,
    binaryen2.RefFuncId,
    binaryen2.DataDropId,
    binaryen2.TableSizeId,
    binaryen2.AtomicFenceId
  ]);
  const table = { fixed, listed, leaves };
  slotTables.set(binaryen2, table);
  return table;
}
function analyseFunctions(binaryen2, module, leafMaxCost2) {
  const facts = [];
  for (let i = 0; i < module.getNumFunctions(); i++) {
    const info = binaryen2.getFunctionInfo(module.getFunctionByIndex(i));
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
        const id = binaryen2.getExpressionId(expr);
        fact.ownCost += instructionCost(binaryen2, id);
        if (id === binaryen2.LoopId) fact.hasLoop = true;
        else if (id === binaryen2.CallIndirectId) fact.hasCallIndirect = true;
        else if (id === binaryen2.CallId) fact.callees.push(binaryen2.Call.getTarget(expr));
        else if (isPerByte(binaryen2, id)) fact.hasPerByteCost = true;
        for (const slot of childSlots(binaryen2, expr)) {
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
      if (allLeaves && cost <= leafMaxCost2) {
        leafCost.set(fact.name, cost);
        changed = true;
      }
    }
  }
  return { facts, leafCost };
}
function instructionCost(binaryen2, id) {
  return id === binaryen2.BlockId || id === binaryen2.NopId ? 0 : 1;
}
function isBranchTarget(binaryen2, expr) {
  if (binaryen2.getExpressionId(expr) !== binaryen2.BlockId) return false;
  if (binaryen2.Block.getName(expr)) return true;
  const count = binaryen2.Block.getNumChildren(expr);
  return count > 0 && isBranchTarget(binaryen2, binaryen2.Block.getChildAt(expr, count - 1));
}
function isPerByte(binaryen2, id) {
  return id === binaryen2.MemoryCopyId || id === binaryen2.MemoryFillId || id === binaryen2.MemoryInitId;
}
function instrumentFunctions(binaryen2, module, analysis) {
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
    const info = binaryen2.getFunctionInfo(ref);
    const rewriter = new FunctionRewriter(
      binaryen2,
      module,
      analysis.leafCost,
      importedNames,
      binaryen2.expandType(info.params).length + info.vars.length,
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
  constructor(binaryen2, module, leafCost, importedNames, firstNewLocal, counts) {
    this.binaryen = binaryen2;
    this.module = module;
    this.leafCost = leafCost;
    this.importedNames = importedNames;
    this.firstNewLocal = firstNewLocal;
    this.counts = counts;
    this.#fuel = this.addLocal(binaryen2.i64);
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
    const { binaryen: binaryen2, module } = this;
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    const prologue = [
      module.local.set(
        this.#fuel,
        module.i64.sub(module.global.get(FUEL_GLOBAL, binaryen2.i64), this.i64(region.cost))
      )
    ];
    if (needsEntryCheck) {
      prologue.push(this.check());
      this.counts.entryChecks++;
    }
    const bodyType = binaryen2.getExpressionType(newBody);
    if (bodyType === binaryen2.unreachable) {
      return module.block(null, [...prologue, newBody], results);
    }
    if (results === binaryen2.none) {
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
    const { binaryen: binaryen2 } = this;
    const id = binaryen2.getExpressionId(expr);
    region.cost += instructionCost(binaryen2, id);
    switch (id) {
      case binaryen2.LoopId:
        return this.visitLoop(expr);
      case binaryen2.IfId:
        return this.visitIf(expr, region);
      case binaryen2.CallId: {
        const target = binaryen2.Call.getTarget(expr);
        const leaf = this.leafCost.get(target);
        if (leaf !== void 0 && !this.importedNames.has(target)) {
          region.cost += leaf;
          this.visitChildren(expr, region);
          return expr;
        }
        return this.visitCall(expr, region, binaryen2.Call.isReturn(expr));
      }
      case binaryen2.CallIndirectId:
        return this.visitCall(expr, region, binaryen2.CallIndirect.isReturn(expr));
      case binaryen2.BlockId:
        this.visitBlock(expr, region);
        return expr;
      case binaryen2.ReturnId:
        return this.visitReturn(expr, region);
      case binaryen2.MemoryCopyId:
      case binaryen2.MemoryFillId:
      case binaryen2.MemoryInitId:
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
    const { binaryen: binaryen2 } = this;
    const count = binaryen2.Block.getNumChildren(expr);
    const joins = [];
    let current = region;
    for (let i = 0; i < count; i++) {
      const child = binaryen2.Block.getChildAt(expr, i);
      const replaced = this.visit(child, current);
      if (replaced !== child) binaryen2.Block.setChildAt(expr, i, replaced);
      if (i < count - 1 && isBranchTarget(binaryen2, replaced)) {
        current = { cost: 0 };
        joins.push({ index: i + 1, region: current });
      }
    }
    for (const join of joins.reverse()) {
      if (join.region.cost === 0) continue;
      this.counts.joinCharges++;
      binaryen2.Block.insertChildAt(expr, join.index, this.charge(this.i64(join.region.cost)));
    }
  }
  visitLoop(expr) {
    const { binaryen: binaryen2, module } = this;
    const body = binaryen2.Loop.getBody(expr);
    const region = { cost: 0 };
    const newBody = this.visit(body, region);
    this.counts.loopChecks++;
    binaryen2.Loop.setBody(
      expr,
      module.block(null, [this.charge(this.i64(region.cost)), this.check(), newBody], binaryen2.auto)
    );
    this.#counterWrites++;
    return expr;
  }
  visitIf(expr, region) {
    const { binaryen: binaryen2 } = this;
    const condition = binaryen2.If.getCondition(expr);
    const newCondition = this.visit(condition, region);
    if (newCondition !== condition) binaryen2.If.setCondition(expr, newCondition);
    const ifTrue = binaryen2.If.getIfTrue(expr);
    binaryen2.If.setIfTrue(expr, this.chargedArm(ifTrue));
    const ifFalse = binaryen2.If.getIfFalse(expr);
    if (ifFalse) binaryen2.If.setIfFalse(expr, this.chargedArm(ifFalse));
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
    const { binaryen: binaryen2, module } = this;
    const writesBefore = this.#counterWrites;
    this.visitChildren(expr, region);
    const type = binaryen2.getExpressionType(expr);
    if (type === binaryen2.unreachable && !isTailCall) return expr;
    this.counts.flushedCalls++;
    const prefix = [];
    if (this.#counterWrites !== writesBefore) {
      for (const slot of childSlots(binaryen2, expr)) {
        const operand = slot.get(expr);
        const operandType = binaryen2.getExpressionType(operand);
        const temp = this.addLocal(operandType);
        prefix.push(module.local.set(temp, operand));
        slot.set(expr, module.local.get(temp, operandType));
      }
    }
    prefix.push(this.flush());
    if (isTailCall) return module.block(null, [...prefix, expr], binaryen2.auto);
    if (type === binaryen2.none) {
      return module.block(null, [...prefix, expr, this.reload()], binaryen2.none);
    }
    const result = this.addLocal(type);
    return module.block(
      null,
      [...prefix, module.local.set(result, expr), this.reload(), module.local.get(result, type)],
      type
    );
  }
  visitReturn(expr, region) {
    const { binaryen: binaryen2, module } = this;
    const value = binaryen2.Return.getValue(expr);
    if (!value) return module.block(null, [this.flush(), expr], binaryen2.auto);
    const writesBefore = this.#counterWrites;
    const newValue = this.visit(value, region);
    const valueType = binaryen2.getExpressionType(newValue);
    if (valueType === binaryen2.unreachable) {
      if (newValue !== value) binaryen2.Return.setValue(expr, newValue);
      return expr;
    }
    if (this.#counterWrites === writesBefore) {
      if (newValue !== value) binaryen2.Return.setValue(expr, newValue);
      return module.block(null, [this.flush(), expr], binaryen2.auto);
    }
    const temp = this.addLocal(valueType);
    binaryen2.Return.setValue(expr, module.local.get(temp, valueType));
    return module.block(null, [module.local.set(temp, newValue), this.flush(), expr], binaryen2.auto);
  }
  /** Charges the size operand (evaluated last) one unit per byte, checking before the copy runs. */
  chargePerByte(expr, id) {
    const { binaryen: binaryen2, module } = this;
    const cls = id === binaryen2.MemoryCopyId ? binaryen2.MemoryCopy : id === binaryen2.MemoryFillId ? binaryen2.MemoryFill : binaryen2.MemoryInit;
    const size = cls.getSize(expr);
    const sizeType = binaryen2.getExpressionType(size);
    if (sizeType === binaryen2.unreachable) return expr;
    if (sizeType !== binaryen2.i32) {
      throw new Error("fuel instrumentation supports 32-bit memories only (memory64 size operand)");
    }
    this.counts.perByteCharges++;
    const temp = this.addLocal(binaryen2.i32);
    cls.setSize(
      expr,
      module.block(
        null,
        [
          module.local.set(temp, size),
          this.charge(module.i64.extend_u(module.local.get(temp, binaryen2.i32))),
          this.check(),
          module.local.get(temp, binaryen2.i32)
        ],
        binaryen2.i32
      )
    );
    return expr;
  }
};
function i64Const(module, value) {
  return module.i64.const(value);
}
function setMemoryMinimum(wasm2, minPages) {
  const reader = new ByteReader(wasm2);
  reader.pos = 8;
  const chunks = [wasm2.subarray(0, 8)];
  let patched = false;
  while (reader.pos < wasm2.length) {
    const sectionId = reader.byte();
    const size = reader.u32();
    const start = reader.pos;
    const end = start + size;
    let content = wasm2.subarray(start, end);
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
  const out2 = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out2.set(chunk, offset);
    offset += chunk.length;
  }
  return out2;
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
  const out2 = [];
  let rest = value;
  do {
    let b = rest & 127;
    rest = Math.floor(rest / 128);
    if (rest !== 0) b |= 128;
    out2.push(b);
  } while (rest !== 0);
  return out2;
}

// ../../tmp/variant.ts
var wasm = readFileSync("/work/main/node_modules/@jitl/quickjs-wasmfile-release-sync/dist/emscripten-module.wasm");
var [out, leafMaxCost, optimize] = process.argv.slice(2);
var t = performance.now();
var r = instrumentFuel(binaryen, wasm, { leafMaxCost: Number(leafMaxCost), optimize: optimize !== "noopt" });
writeFileSync(out, r.wasm);
console.log(out, (performance.now() - t).toFixed(0), "ms", JSON.stringify(r.stats));
