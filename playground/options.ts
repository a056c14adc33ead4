/**
 * The option fields edit the options object literal of the `main` task in the code, so what a
 * link shares and what the runtime reads are one and the same text. Only plain literals are
 * understood; the page never evaluates the code it edits.
 */

export type Literal = string | number | boolean | null | Literal[] | { [key: string]: Literal };
export type LiteralObject = { [key: string]: Literal };

export interface MainOptions {
  /** Offsets of the `{ ... }` literal in the code. */
  start: number;
  end: number;
  /** Indentation of the line the literal starts on. */
  indent: string;
  /** null when the literal holds something other than plain values (a variable, a call). */
  value: LiteralObject | null;
}

/** The fields the page shows, as text; an empty string means "left out". */
export interface OptionFields {
  compute: string;
  ram: string;
  timeout: string;
  maxRetries: string;
  allowedHosts: string;
  allowedFiles: string;
  envVariables: string;
}

export const FIELD_NAMES = [
  "compute",
  "ram",
  "timeout",
  "maxRetries",
  "allowedHosts",
  "allowedFiles",
  "envVariables",
] as const satisfies readonly (keyof OptionFields)[];

const SNAKE_CASE: Partial<Record<keyof OptionFields, string>> = {
  maxRetries: "max_retries",
  allowedHosts: "allowed_hosts",
  allowedFiles: "allowed_files",
  envVariables: "env_variables",
};

/** Finds the options literal of `task({ name: "main", ... }, ...)`, or undefined when none. */
export function findMainOptions(code: string): MainOptions | undefined {
  return findTaskOptions(code).find((found) =>
    found.value
      ? found.value.name === "main"
      : /\bname\s*:\s*["'`]main["'`]/.test(code.slice(found.start, found.end)),
  );
}

/**
 * The keyword arguments of `@task(name="main", ...)` in Python code, read as literals (strings,
 * numbers, lists), for showing only: null when there is none or they are not plain literals.
 */
export function findPythonMainOptions(code: string): LiteralObject | null {
  const decorator = /@task\s*\(([^)]*)\)/g;
  for (let match = decorator.exec(code); match !== null; match = decorator.exec(code)) {
    const keywords = (match[1] ?? "")
      .replace(/(^|,)\s*([A-Za-z_]\w*)\s*=(?!=)/g, "$1$2:")
      .replace(/\bTrue\b/g, "true")
      .replace(/\bFalse\b/g, "false")
      .replace(/\bNone\b/g, "null");
    try {
      const parsed = new LiteralParser(`{${keywords}}`).parseWhole();
      if (isObject(parsed) && parsed.name === "main") return parsed;
    } catch {
      // Not plain literals: the code is the only place to read them.
    }
  }
  return null;
}

/** Every `task({ ... }, ...)` options literal in the code, in order. */
export function findTaskOptions(code: string): MainOptions[] {
  const found: MainOptions[] = [];
  const call = /\btask\s*\(\s*\{/g;
  for (let match = call.exec(code); match !== null; match = call.exec(code)) {
    const start = match.index + match[0].length - 1;
    const end = matchingBrace(code, start);
    if (end === undefined) continue;
    let value: LiteralObject | null = null;
    try {
      const parsed = new LiteralParser(code.slice(start, end)).parseWhole();
      if (isObject(parsed)) value = parsed;
    } catch {
      value = null;
    }
    const lineStart = code.lastIndexOf("\n", start) + 1;
    const indent = /^[ \t]*/.exec(code.slice(lineStart))?.[0] ?? "";
    found.push({ start, end, indent, value });
  }
  return found;
}

/** The directories any task in the code lists in allowedFiles, as paths below the app root. */
export function allowedDirectories(code: string): string[] {
  const directories = new Set<string>();
  for (const { value } of findTaskOptions(code)) {
    const files = value?.allowedFiles ?? value?.allowed_files;
    if (!Array.isArray(files)) continue;
    for (const entry of files) {
      const path = typeof entry === "string" ? entry : isObject(entry) ? entry.path : undefined;
      if (typeof path !== "string") continue;
      const segments = path.split("/").filter((s) => s !== "" && s !== ".");
      if (segments.length > 0 && !segments.includes("..")) directories.add(segments.join("/"));
    }
  }
  return [...directories];
}

/** The field texts for an options object. */
export function fieldsOf(options: LiteralObject): OptionFields {
  const get = (field: keyof OptionFields) => {
    const snake = SNAKE_CASE[field];
    return options[field] ?? (snake === undefined ? undefined : options[snake]);
  };
  const list = (value: Literal | undefined) =>
    Array.isArray(value) ? value.map((item) => fileText(item)).join(", ") : textOf(value);
  return {
    compute: textOf(get("compute")),
    ram: textOf(get("ram")),
    timeout: textOf(get("timeout")),
    maxRetries: textOf(get("maxRetries")),
    allowedHosts: list(get("allowedHosts")),
    allowedFiles: list(get("allowedFiles")),
    envVariables: list(get("envVariables")),
  };
}

/** The options object with one field set from its text (removed when the text is empty). */
export function withField(
  options: LiteralObject,
  field: keyof OptionFields,
  text: string,
): LiteralObject {
  const snake = SNAKE_CASE[field];
  const key = snake !== undefined && snake in options && !(field in options) ? snake : field;
  const value = literalOf(field, text.trim());
  const next: LiteralObject = {};
  let placed = false;
  for (const [existing, old] of Object.entries(options)) {
    if (existing !== key) next[existing] = old;
    else if (value !== undefined) {
      next[key] = value;
      placed = true;
    } else placed = true;
  }
  if (!placed && value !== undefined) next[key] = value;
  return next;
}

/** Source text for an options literal: one line when short, else one key per line. */
export function formatOptions(options: LiteralObject, indent: string): string {
  const entries = Object.entries(options).map(
    ([key, value]) => `${keyText(key)}: ${format(value)}`,
  );
  const oneLine = `{ ${entries.join(", ")} }`;
  if (oneLine.length + indent.length <= 90) return oneLine;
  return `{\n${entries.map((entry) => `${indent}  ${entry},`).join("\n")}\n${indent}}`;
}

function literalOf(field: keyof OptionFields, text: string): Literal | undefined {
  if (text === "") return undefined;
  switch (field) {
    case "maxRetries":
      return /^\d+$/.test(text) ? Number(text) : text;
    case "compute":
      return /^\d+(\.\d+)?(e\d+)?$/i.test(text) ? Number(text) : text;
    case "allowedFiles":
      return splitList(text).map((item) => {
        const readOnly = /^(.*?):(ro|read-only)$/.exec(item);
        if (readOnly?.[1]) return { path: readOnly[1], mode: "ro" };
        return item.replace(/:(rw|read-write)$/, "");
      });
    case "allowedHosts":
    case "envVariables":
      return splitList(text);
    default:
      return text;
  }
}

function splitList(text: string): string[] {
  return text
    .split(/[,\s]+/)
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

function textOf(value: Literal | undefined): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string" || typeof value === "number") return String(value);
  return JSON.stringify(value);
}

/** `{ path: "./data", mode: "ro" }` reads as `./data:ro` in the field. */
function fileText(item: Literal): string {
  if (isObject(item) && typeof item.path === "string") {
    const mode = item.mode === "ro" || item.mode === "read-only" ? ":ro" : "";
    return `${item.path}${mode}`;
  }
  return textOf(item);
}

function format(value: Literal): string {
  if (Array.isArray(value)) return `[${value.map(format).join(", ")}]`;
  if (isObject(value)) {
    const entries = Object.entries(value).map(([key, v]) => `${keyText(key)}: ${format(v)}`);
    return `{ ${entries.join(", ")} }`;
  }
  return JSON.stringify(value);
}

function keyText(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? key : JSON.stringify(key);
}

function isObject(value: Literal | undefined): value is LiteralObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Offset just past the `}` that closes the `{` at `open`, skipping strings and comments. */
function matchingBrace(code: string, open: number): number | undefined {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    const char = code[i];
    if (char === '"' || char === "'" || char === "`") {
      i = skipString(code, i);
    } else if (char === "/" && code[i + 1] === "/") {
      i = code.indexOf("\n", i);
      if (i < 0) return undefined;
    } else if (char === "/" && code[i + 1] === "*") {
      i = code.indexOf("*/", i + 2) + 1;
      if (i <= 0) return undefined;
    } else if (char === "{") depth++;
    else if (char === "}" && --depth === 0) return i + 1;
  }
  return undefined;
}

function skipString(code: string, open: number): number {
  const quote = code[open];
  for (let i = open + 1; i < code.length; i++) {
    if (code[i] === "\\") i++;
    else if (code[i] === quote) return i;
  }
  return code.length;
}

/** JSON plus what people write in JavaScript literals: bare keys, single quotes, trailing commas. */
class LiteralParser {
  #at = 0;
  constructor(readonly text: string) {}

  parseWhole(): Literal {
    const value = this.#value();
    this.#space();
    if (this.#at !== this.text.length) this.#fail();
    return value;
  }

  #value(): Literal {
    this.#space();
    const char = this.text[this.#at];
    if (char === "{") return this.#object();
    if (char === "[") return this.#array();
    if (char === '"' || char === "'" || char === "`") return this.#string();
    const word = /^(?:-?[\d_.]+(?:e[+-]?\d+)?|true|false|null)/i.exec(this.text.slice(this.#at));
    if (!word) this.#fail();
    this.#at += word[0].length;
    if (word[0] === "true") return true;
    if (word[0] === "false") return false;
    if (word[0] === "null") return null;
    const number = Number(word[0].replaceAll("_", ""));
    if (Number.isNaN(number)) this.#fail();
    return number;
  }

  #object(): LiteralObject {
    const result: LiteralObject = {};
    this.#at++;
    for (;;) {
      this.#space();
      if (this.#eat("}")) return result;
      const char = this.text[this.#at];
      let key: string;
      if (char === '"' || char === "'") key = this.#string();
      else {
        const name = /^[A-Za-z_$][\w$]*/.exec(this.text.slice(this.#at));
        if (!name) this.#fail();
        key = name[0];
        this.#at += key.length;
      }
      this.#space();
      if (!this.#eat(":")) this.#fail();
      result[key] = this.#value();
      this.#space();
      if (!this.#eat(",")) {
        this.#space();
        if (!this.#eat("}")) this.#fail();
        return result;
      }
    }
  }

  #array(): Literal[] {
    const result: Literal[] = [];
    this.#at++;
    for (;;) {
      this.#space();
      if (this.#eat("]")) return result;
      result.push(this.#value());
      this.#space();
      if (!this.#eat(",")) {
        this.#space();
        if (!this.#eat("]")) this.#fail();
        return result;
      }
    }
  }

  #string(): string {
    const quote = this.text[this.#at];
    const end = skipString(this.text, this.#at);
    const body = this.text.slice(this.#at + 1, end);
    if (end >= this.text.length || (quote === "`" && body.includes("${"))) this.#fail();
    this.#at = end + 1;
    return body.replace(/\\(.)/g, (_, escaped: string) =>
      escaped === "n" ? "\n" : escaped === "t" ? "\t" : escaped,
    );
  }

  #space(): void {
    for (;;) {
      const rest = this.text.slice(this.#at);
      const skipped = /^(?:\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\/)/.exec(rest);
      if (!skipped) return;
      this.#at += skipped[0].length;
    }
  }

  #eat(char: string): boolean {
    if (this.text[this.#at] !== char) return false;
    this.#at++;
    return true;
  }

  #fail(): never {
    throw new SyntaxError(`not a plain literal at offset ${this.#at}`);
  }
}
