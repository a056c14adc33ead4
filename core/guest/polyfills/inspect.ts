import type { ChunkInstaller } from "../chunk.ts";

/**
 * A Node-style value inspector (the shape of `util.inspect` output without colours), plus
 * `util.format` and the table behind `console.table`. Written here rather than taken from a
 * package: the small inspector packages print Maps, Sets, Dates, typed arrays, classes and
 * errors differently from Node and cut depth differently, so nearly every type needed wrapping.
 */

export interface InspectOptions {
  /** Levels of nesting to show; deeper objects print as `[Object]`. Default 2; null = no limit. */
  depth?: number | null;
}

export interface InspectExports {
  inspect(value: unknown, options?: InspectOptions): string;
  format(args: readonly unknown[]): string;
  table(data: object, columns?: readonly string[]): string;
}

const BREAK_LENGTH = 80;
const MAX_ARRAY_LENGTH = 100;
const MAX_STRING_LENGTH = 10000;
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

const { getPrototypeOf, getOwnPropertyNames, getOwnPropertySymbols, getOwnPropertyDescriptor } =
  Object;
const objectToString = Object.prototype.toString;
const isEnumerable = Object.prototype.propertyIsEnumerable;
const functionToString = Function.prototype.toString;
const typedArrayTag = getOwnPropertyDescriptor(
  getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)?.get as (this: unknown) => string | undefined;
const typedArrayLength = getOwnPropertyDescriptor(getPrototypeOf(Uint8Array.prototype), "length")
  ?.get as (this: unknown) => number;
const BUILTIN_TO_STRINGS: unknown[] = [
  Object.prototype.toString,
  Error.prototype.toString,
  Array.prototype.toString,
  Date.prototype.toString,
  RegExp.prototype.toString,
  Function.prototype.toString,
];

interface State {
  seen: object[];
  /** Nesting level of the object whose entries were formatted last (Node's `currentDepth`). */
  currentDepth: number;
  circular: Map<object, number>;
  depth: number;
  indentation: number;
}

function quote(text: string): string {
  let quoteChar = "'";
  if (text.includes("'")) {
    if (!text.includes('"')) quoteChar = '"';
    else if (!text.includes("`") && !text.includes("${")) quoteChar = "`";
  }
  let body = text;
  let trailer = "";
  if (body.length > MAX_STRING_LENGTH) {
    trailer = `... ${body.length - MAX_STRING_LENGTH} more characters`;
    body = body.slice(0, MAX_STRING_LENGTH);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we escape
  body = body.replace(/[\x00-\x1f\x7f\\]/g, (char) => {
    const named: Record<string, string> = {
      "\n": "\\n",
      "\t": "\\t",
      "\r": "\\r",
      "\b": "\\b",
      "\f": "\\f",
      "\v": "\\v",
      "\\": "\\\\",
    };
    return named[char] ?? `\\x${char.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`;
  });
  if (quoteChar === "'") body = body.replaceAll("'", "\\'");
  return `${quoteChar}${body}${quoteChar}${trailer}`;
}

function formatNumber(value: number): string {
  return Object.is(value, -0) ? "-0" : String(value);
}

function formatPrimitive(value: unknown, nested: boolean): string {
  switch (typeof value) {
    case "string":
      return nested ? quote(value) : value;
    case "number":
      return formatNumber(value);
    case "bigint":
      return `${value}n`;
    case "symbol":
      return value.toString();
    default:
      return String(value);
  }
}

function formatKey(key: string | symbol): string {
  if (typeof key === "symbol") return `[${key.toString()}]`;
  return IDENTIFIER.test(key) ? key : quote(key);
}

function constructorName(value: object): string | null {
  let proto: object | null = value;
  try {
    while (proto !== null) {
      const descriptor = getOwnPropertyDescriptor(proto, "constructor");
      const ctor: unknown = descriptor?.value;
      if (typeof ctor === "function" && typeof ctor.name === "string" && ctor.name !== "") {
        return ctor.name;
      }
      proto = getPrototypeOf(proto);
    }
  } catch {
    // A proxy's traps may throw; fall back to the generic name.
  }
  return null;
}

function functionBase(fn: (...args: unknown[]) => unknown): string {
  let source = "";
  try {
    source = functionToString.call(fn);
  } catch {}
  const name = typeof fn.name === "string" && fn.name !== "" ? fn.name : "";
  if (source.startsWith("class") && /^class\b/.test(source)) {
    const parent = getPrototypeOf(fn) as { name?: unknown };
    const extendsName =
      typeof parent === "function" && typeof parent.name === "string" && parent.name !== ""
        ? ` extends ${parent.name}`
        : "";
    return `[class ${name || "(anonymous)"}${extendsName}]`;
  }
  const kind = constructorName(fn) ?? "Function";
  return name ? `[${kind}: ${name}]` : `[${kind} (anonymous)]`;
}

function errorBase(error: Error, state: State): string {
  let name = "Error";
  let message = "";
  let frames = "";
  try {
    name = String(error.name);
    message = String(error.message);
    frames = typeof error.stack === "string" ? error.stack.replace(/\n$/, "") : "";
  } catch {}
  const header = message ? `${name}: ${message}` : name;
  // QuickJS stacks hold only the frames; Node's begin with the "Name: message" line.
  let stack = frames.startsWith(header) ? frames : frames ? `${header}\n${frames}` : `[${header}]`;
  if (state.indentation > 0) {
    stack = stack.replaceAll("\n", `\n${" ".repeat(state.indentation)}`);
  }
  return stack;
}

/** Own enumerable keys (strings, then symbols) that are not array indices. */
function ownKeys(value: object, skipIndices: boolean): (string | symbol)[] {
  const keys: (string | symbol)[] = [];
  for (const key of getOwnPropertyNames(value)) {
    if (skipIndices && /^(0|[1-9]\d*)$/.test(key)) continue;
    if (isEnumerable.call(value, key)) keys.push(key);
  }
  for (const key of getOwnPropertySymbols(value)) {
    if (isEnumerable.call(value, key)) keys.push(key);
  }
  return keys;
}

function formatProperty(value: object, key: string | symbol, state: State): string {
  const descriptor = getOwnPropertyDescriptor(value, key);
  let shown: string;
  if (descriptor === undefined) shown = "undefined";
  else if ("value" in descriptor) shown = formatValue(descriptor.value, state, true);
  else if (descriptor.get) shown = descriptor.set ? "[Getter/Setter]" : "[Getter]";
  else shown = descriptor.set ? "[Setter]" : "undefined";
  return `${formatKey(key)}: ${shown}`;
}

/** Lays out many short array items in aligned columns, as Node does past six items. */
function groupArrayItems(all: string[], state: State, numeric: boolean): string[] {
  // The "... n more items" entry stays out of the columns and goes last.
  const items = all.length > MAX_ARRAY_LENGTH ? all.slice(0, -1) : all;
  const rest = all.length > MAX_ARRAY_LENGTH ? all.slice(-1) : [];
  let total = 0;
  let longest = 0;
  for (const item of items) {
    total += item.length + 2;
    if (item.length > longest) longest = item.length;
  }
  const widest = longest + 2;
  if (widest * 3 + state.indentation >= BREAK_LENGTH || (total / widest <= 5 && longest > 6)) {
    return all;
  }
  const averageBias = Math.sqrt(widest - total / items.length);
  const biasedWidest = Math.max(widest - 3 - averageBias, 1);
  const columns = Math.min(
    Math.round(Math.sqrt(2.5 * biasedWidest * items.length) / biasedWidest),
    Math.floor((BREAK_LENGTH - state.indentation) / widest),
    12,
    15,
  );
  if (columns <= 1) return all;
  const columnWidths: number[] = [];
  for (let column = 0; column < columns; column++) {
    let width = 0;
    for (let i = column; i < items.length; i += columns) {
      width = Math.max(width, (items[i] as string).length + 2);
    }
    columnWidths.push(width);
  }
  const rows: string[] = [];
  for (let start = 0; start < items.length; start += columns) {
    const end = Math.min(start + columns, items.length);
    let row = "";
    for (let i = start; i < end; i++) {
      const isLast = i === end - 1;
      const cell = isLast ? (items[i] as string) : `${items[i]}, `;
      const width = (columnWidths[i - start] as number) - (isLast ? 2 : 0);
      row += numeric ? cell.padStart(width) : isLast ? cell : cell.padEnd(width);
    }
    rows.push(row);
  }
  return rows.concat(rest);
}

function reduceToString(
  prefix: string,
  braces: [string, string],
  items: string[],
  state: State,
  grouped: boolean,
  level = 0,
): string {
  const start = prefix ? `${prefix} ` : "";
  if (items.length === 0) return `${start}${braces[0]}${braces[1]}`;
  // Like Node (compact: 3), only the three innermost levels may share a line.
  if (!grouped && state.currentDepth - level < 3) {
    const length =
      items.reduce((sum, item) => sum + item.length, 0) +
      items.length * 2 +
      state.indentation +
      start.length +
      braces[0].length +
      10;
    if (
      length <= BREAK_LENGTH &&
      !start.includes("\n") &&
      !items.some((item) => item.includes("\n"))
    ) {
      return `${start}${braces[0]} ${items.join(", ")} ${braces[1]}`;
    }
  }
  const indent = `\n${" ".repeat(state.indentation)}`;
  return `${start}${braces[0]}${indent}  ${items.join(`,${indent}  `)}${indent}${braces[1]}`;
}

function formatValue(value: unknown, state: State, nested: boolean): string {
  if (value === null || (typeof value !== "object" && typeof value !== "function")) {
    return formatPrimitive(value, nested);
  }
  const object = value as object;
  if (state.seen.includes(object)) {
    let index = state.circular.get(object);
    if (index === undefined) {
      index = state.circular.size + 1;
      state.circular.set(object, index);
    }
    return `[Circular *${index}]`;
  }
  const text = formatObject(object, state);
  const ref = state.circular.get(object);
  return ref === undefined ? text : `<ref *${ref}> ${text}`;
}

function formatObject(value: object, state: State): string {
  const tag = objectToString.call(value).slice(8, -1);
  const name = constructorName(value);
  const typedTag = typedArrayTag.call(value);
  let keys: (string | symbol)[];
  let prefix = "";
  let braces: [string, string] = ["{", "}"];
  let base = "";
  let entries: (() => string[]) | null = null;
  let numeric = false;
  let isArrayLike = false;
  let isEmpty = false;

  if (Array.isArray(value)) {
    isArrayLike = true;
    keys = ownKeys(value, true);
    prefix = name === "Array" ? "" : `${name ?? "[Array: null prototype]"}(${value.length})`;
    braces = ["[", "]"];
    isEmpty = value.length === 0;
    numeric = value.every((item) => typeof item === "number" || typeof item === "bigint");
    entries = () => formatArrayItems(value, value.length, state, (i) => i in value);
  } else if (typedTag !== undefined) {
    isArrayLike = true;
    numeric = true;
    keys = ownKeys(value, true);
    const length = typedArrayLength.call(value);
    prefix = `${typedTag}(${length})`;
    braces = ["[", "]"];
    isEmpty = length === 0;
    entries = () => formatArrayItems(value as unknown as ArrayLike<unknown>, length, state);
  } else if (value instanceof Map) {
    keys = ownKeys(value, false);
    prefix = `${name ?? "Map"}(${value.size})`;
    isEmpty = value.size === 0;
    entries = () => {
      const items: string[] = [];
      for (const [key, item] of value) {
        items.push(`${formatValue(key, state, true)} => ${formatValue(item, state, true)}`);
      }
      return items;
    };
  } else if (value instanceof Set) {
    keys = ownKeys(value, false);
    prefix = `${name ?? "Set"}(${value.size})`;
    isEmpty = value.size === 0;
    entries = () => [...value].map((item) => formatValue(item, state, true));
  } else if (value instanceof ArrayBuffer || tag === "SharedArrayBuffer") {
    keys = ownKeys(value, false);
    prefix = name ?? tag;
    entries = () => {
      const bytes = new Uint8Array(value as ArrayBuffer);
      let hex = [...bytes.subarray(0, 50)]
        .map((byte) => byte.toString(16).padStart(2, "0"))
        .join(" ");
      if (bytes.length > 50) hex += ` ... ${bytes.length - 50} more bytes`;
      return [`[Uint8Contents]: <${hex}>`, `byteLength: ${bytes.length}`];
    };
  } else {
    keys = ownKeys(value, false);
    if (typeof value === "function") {
      base = functionBase(value as (...args: unknown[]) => unknown);
    } else if (value instanceof Error) {
      base = errorBase(value, state);
      keys = keys.filter((key) => key !== "stack" && key !== "message");
      const cause = getOwnPropertyDescriptor(value, "cause");
      if (cause && !cause.enumerable && "value" in cause) keys.push("cause");
    } else if (value instanceof Date) {
      const time = Date.prototype.getTime.call(value);
      base = Number.isNaN(time) ? "Invalid Date" : Date.prototype.toISOString.call(value);
    } else if (value instanceof RegExp) {
      base = RegExp.prototype.toString.call(value);
    } else if (
      tag === "Number" ||
      tag === "String" ||
      tag === "Boolean" ||
      tag === "BigInt" ||
      tag === "Symbol"
    ) {
      const primitive = (value as { valueOf(): unknown }).valueOf();
      base = `[${tag}: ${formatPrimitive(primitive, true)}]`;
      if (tag === "String") keys = ownKeys(value, true);
    } else if (value instanceof Promise) {
      prefix = "Promise";
      entries = () => ["<unknown>"];
    } else if (value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef) {
      prefix = name ?? tag;
      entries = () => ["<items unknown>"];
    } else {
      if (name === null) prefix = "[Object: null prototype]";
      else if (name !== "Object") prefix = name;
      const ownTag = (value as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag];
      if (typeof ownTag === "string" && ownTag !== "" && ownTag !== name) {
        prefix = `${prefix || "Object"} [${ownTag}]`;
      }
    }
    if (base && keys.length === 0 && entries === null) return base;
  }

  if (keys.length === 0 && (entries === null || isEmpty)) {
    return reduceToString(
      base ? (prefix ? `${prefix} ${base}` : base) : prefix,
      braces,
      [],
      state,
      false,
    );
  }
  if (state.depth !== -1 && state.seen.length > state.depth) {
    return `[${name ?? "Object"}]`;
  }

  const level = state.seen.length;
  state.currentDepth = level;
  state.seen.push(value);
  state.indentation += 2;
  let items: string[];
  try {
    items = entries ? entries() : [];
    for (const key of keys) {
      if (key === "cause" && value instanceof Error && !isEnumerable.call(value, key)) {
        items.push(`[cause]: ${formatValue((value as { cause?: unknown }).cause, state, true)}`);
      } else {
        items.push(formatProperty(value, key, state));
      }
    }
  } finally {
    state.indentation -= 2;
    state.seen.pop();
  }
  let grouped = false;
  if (isArrayLike && items.length > 6) {
    const before = items.length;
    items = groupArrayItems(items, state, numeric && keys.length === 0);
    grouped = items.length !== before;
  }
  if (base) {
    if (prefix === "") prefix = base;
    else prefix = `${prefix} ${base}`;
  }
  return reduceToString(prefix, braces, items, state, grouped, level);
}

function formatArrayItems(
  array: ArrayLike<unknown>,
  length: number,
  state: State,
  has: (index: number) => boolean = () => true,
): string[] {
  const items: string[] = [];
  const shown = Math.min(length, MAX_ARRAY_LENGTH);
  let holes = 0;
  const flushHoles = () => {
    if (holes > 0) items.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`);
    holes = 0;
  };
  for (let i = 0; i < shown; i++) {
    if (!has(i)) {
      holes++;
      continue;
    }
    flushHoles();
    items.push(formatValue(array[i], state, true));
  }
  flushHoles();
  if (length > shown) items.push(`... ${length - shown} more item${length - shown > 1 ? "s" : ""}`);
  return items;
}

export function inspect(value: unknown, options?: InspectOptions): string {
  const depth = options?.depth;
  const state: State = {
    seen: [],
    circular: new Map(),
    depth: depth === null || depth === Number.POSITIVE_INFINITY ? -1 : (depth ?? 2),
    currentDepth: 0,
    indentation: 0,
  };
  return formatValue(value, state, true);
}

function hasBuiltinToString(value: object): boolean {
  try {
    return BUILTIN_TO_STRINGS.includes((value as { toString?: unknown }).toString);
  } catch {
    return true;
  }
}

/** `util.format`: printf-like placeholders in a leading string, the rest joined by spaces. */
export function format(args: readonly unknown[]): string {
  const first = args[0];
  let out = "";
  let next = 0;
  if (typeof first === "string") {
    next = 1;
    if (args.length === 1) return first;
    let last = 0;
    for (let i = 0; i < first.length - 1; i++) {
      if (first.charCodeAt(i) !== 37) continue;
      const code = first[i + 1];
      let replacement: string | undefined;
      if (code === "%") {
        replacement = "%";
      } else if (next < args.length) {
        const arg = args[next];
        switch (code) {
          case "s":
            if (typeof arg === "bigint") replacement = `${arg}n`;
            else if (typeof arg === "number") replacement = formatNumber(arg);
            else if (typeof arg === "symbol") replacement = arg.toString();
            else if (arg !== null && typeof arg === "object" && hasBuiltinToString(arg)) {
              replacement = inspect(arg, { depth: 0 });
            } else replacement = String(arg);
            break;
          case "d":
            if (typeof arg === "bigint") replacement = `${arg}n`;
            else if (typeof arg === "symbol") replacement = "NaN";
            else replacement = formatNumber(Number(arg));
            break;
          case "i":
            if (typeof arg === "bigint") replacement = `${arg}n`;
            else if (typeof arg === "symbol") replacement = "NaN";
            else replacement = formatNumber(Number.parseInt(String(arg), 10));
            break;
          case "f":
            replacement =
              typeof arg === "symbol" ? "NaN" : formatNumber(Number.parseFloat(String(arg)));
            break;
          case "j":
            try {
              replacement = String(JSON.stringify(arg));
            } catch (error) {
              if (!(error instanceof TypeError) || !/circular|cyclic/i.test(error.message))
                throw error;
              replacement = "[Circular]";
            }
            break;
          case "o":
            replacement = inspect(arg, { depth: 4 });
            break;
          case "O":
            replacement = inspect(arg);
            break;
          case "c":
            replacement = "";
            break;
        }
        if (replacement !== undefined) next++;
      }
      if (replacement !== undefined) {
        out += first.slice(last, i) + replacement;
        last = i + 2;
      }
      i++;
    }
    out += first.slice(last);
  }
  for (let i = next; i < args.length; i++) {
    const arg = args[i];
    if (i > 0) out += " ";
    out += typeof arg === "string" ? arg : inspect(arg);
  }
  return out;
}

/** The box-drawn table `console.table` prints (Node's layout, left-aligned cells). */
export function table(data: object, columns?: readonly string[]): string {
  const indexHeader = "(index)";
  const valuesHeader = "Values";
  const rows: [string, Map<string, string>, string | undefined][] = [];
  const headers: string[] = [];
  let hasValues = false;
  const cell = (value: unknown) => inspect(value, { depth: 1 }).replaceAll("\n", " ");
  const pairs: [unknown, unknown][] =
    data instanceof Map
      ? [...data.entries()]
      : data instanceof Set
        ? [...data].map((item, index) => [index, item])
        : Object.keys(data).map((key) => [key, (data as Record<string, unknown>)[key]]);
  for (const [key, row] of pairs) {
    const cells = new Map<string, string>();
    let single: string | undefined;
    if (row !== null && (typeof row === "object" || typeof row === "function")) {
      for (const column of columns ?? Object.keys(row)) {
        if (!headers.includes(column)) headers.push(column);
        if (Object.hasOwn(row, column))
          cells.set(column, cell((row as Record<string, unknown>)[column]));
      }
    } else {
      hasValues = true;
      single = cell(row);
    }
    rows.push([typeof key === "string" ? key : cell(key), cells, single]);
  }
  if (columns) for (const column of columns) if (!headers.includes(column)) headers.push(column);
  const header = [indexHeader, ...headers, ...(hasValues ? [valuesHeader] : [])];
  const body = rows.map(([key, cells, single]) => [
    key,
    ...headers.map((column) => cells.get(column) ?? ""),
    ...(hasValues ? [single ?? ""] : []),
  ]);
  const widths = header.map(
    (title, column) =>
      Math.max(title.length, ...body.map((row) => (row[column] as string).length)) + 2,
  );
  const line = (left: string, fill: string, join: string, right: string) =>
    left + widths.map((width) => fill.repeat(width)).join(join) + right;
  const render = (row: string[]) =>
    `│${row.map((text, column) => ` ${text.padEnd((widths[column] as number) - 1)}`).join("│")}│`;
  return [
    line("┌", "─", "┬", "┐"),
    render(header),
    line("├", "─", "┼", "┤"),
    ...body.map(render),
    line("└", "─", "┴", "┘"),
  ].join("\n");
}

const install: ChunkInstaller<InspectExports> = () => ({ inspect, format, table });
export default install;
