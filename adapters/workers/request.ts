/**
 * The body of `POST /run`, checked field by field: a bad request is answered with a 400 that
 * names the field, the value and what is accepted, before anything runs.
 */
import type { TaskLanguage } from "../../core/compile/task-module.ts";
import { describe } from "../../core/runtime/run-options.ts";
import { decodeBase64 } from "./files.ts";

export interface RunRequest {
  /** The task file's source. */
  code: string;
  language: TaskLanguage;
  args: string[];
  /** The task to run; "main" unless given. */
  task: string;
  /** The request's files by canonical path ("data/in.txt"), decoded. */
  files: Map<string, Uint8Array>;
  /** What the task's `envVariables` may read. */
  env: Record<string, string>;
  /** A tighter write quota the caller asks for; the Worker's own limits still apply. */
  limits: { writeBytes?: number; writeFiles?: number };
}

/** A request the app refuses (HTTP 400); the message names the bad field and value. */
export class BadRequestError extends Error {
  override name = "BadRequestError";
}

const KNOWN_FIELDS = ["code", "language", "args", "files", "env", "task", "limits"];

/** Longest value shown in a message; a long one is cut. */
const SHOWN_CHARS = 80;

/**
 * Limits on `files`, checked before anything else is done with an entry, so that everything the
 * Worker does with a request before its task runs takes time in proportion to the body (a path
 * of 80,000 segments once cost 19.5 s of CPU). Names and whole paths match what the shared path
 * policy lets a task create (255 bytes, 4096 characters).
 */
export const REQUEST_FILE_LIMITS = {
  /** Entries in `files`. */
  entries: 10_000,
  /** Segments in one path ("data/in.txt" has 2). */
  depth: 64,
  /** Segments in all paths together: what seeding the request's tree costs is bounded by it. */
  segments: 100_000,
  /** Characters in one path. */
  pathChars: 4096,
  /** UTF-8 bytes in one segment. */
  nameBytes: 255,
} as const;

export function parseRunRequest(body: unknown, maxFileBytes: number): RunRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BadRequestError(
      `the body must be a JSON object like {"code": "...", "language": "ts"}, got ${show(body)}`,
    );
  }
  const fields = body as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!KNOWN_FIELDS.includes(key)) {
      throw new BadRequestError(
        `unknown field ${show(key)}; known fields: ${KNOWN_FIELDS.join(", ")}`,
      );
    }
  }
  const {
    code,
    language = "ts",
    args = [],
    task = "main",
    files = {},
    env = {},
    limits = {},
  } = fields;
  if (typeof code !== "string") {
    throw new BadRequestError(`code: expected the task's source as a string, got ${show(code)}`);
  }
  if (language !== "ts" && language !== "js") {
    const python =
      language === "py" ? " on Workers (Python tasks run on Node and in web pages)" : "";
    throw new BadRequestError(
      `language: ${show(language)} is not supported${python}; use "ts" or "js"`,
    );
  }
  if (!Array.isArray(args) || args.some((arg) => typeof arg !== "string")) {
    throw new BadRequestError(`args: expected an array of strings, got ${show(args)}`);
  }
  if (typeof task !== "string" || task === "") {
    throw new BadRequestError(`task: expected a task name like "main", got ${show(task)}`);
  }
  return {
    code,
    language,
    args,
    task,
    files: parseFiles(files, maxFileBytes),
    env: parseEnv(env),
    limits: parseLimits(limits),
  };
}

/** The limits a request may set: only the write quota, which it can only lower. */
function parseLimits(limits: unknown): RunRequest["limits"] {
  if (!isPlainObject(limits)) {
    throw new BadRequestError(
      `limits: expected an object like {"writeBytes": 1048576}, got ${show(limits)}`,
    );
  }
  const parsed: RunRequest["limits"] = {};
  for (const [key, value] of Object.entries(limits)) {
    if (key !== "writeBytes" && key !== "writeFiles") {
      throw new BadRequestError(
        `limits: unknown limit ${show(key)}; a request may set writeBytes and writeFiles`,
      );
    }
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new BadRequestError(
        `limits.${key}: expected a non-negative integer, got ${show(value)}`,
      );
    }
    parsed[key] = value;
  }
  return parsed;
}

function parseEnv(env: unknown): Record<string, string> {
  if (!isPlainObject(env)) {
    throw new BadRequestError(`env: expected an object of string variables, got ${show(env)}`);
  }
  for (const [name, value] of Object.entries(env)) {
    if (typeof value !== "string") {
      throw new BadRequestError(
        `env.${name.length > SHOWN_CHARS ? `${name.slice(0, SHOWN_CHARS)}...` : name}: expected a string, got ${show(value)} (every variable is a string)`,
      );
    }
  }
  return { ...(env as Record<string, string>) };
}

function parseFiles(files: unknown, maxBytes: number): Map<string, Uint8Array> {
  if (!isPlainObject(files)) {
    throw new BadRequestError(
      `files: expected an object of paths to contents like {"data/in.txt": "text"}, got ${show(files)}`,
    );
  }
  const entries = Object.entries(files);
  if (entries.length > REQUEST_FILE_LIMITS.entries) {
    throw new BadRequestError(
      `files: ${entries.length} entries, over the limit of ${REQUEST_FILE_LIMITS.entries} files per request`,
    );
  }
  const decoded = new Map<string, Uint8Array>();
  // The request's paths as a tree of segments, so "a file cannot hold another entry" is checked
  // once per segment instead of once per parent path (which took time quadratic in the depth).
  const tree: PathTree = new Map();
  let total = 0;
  const encoder = new TextEncoder();
  let segments = 0;
  for (const [path, content] of entries) {
    const pathSegments = checkFilePath(path);
    segments += pathSegments.length;
    if (segments > REQUEST_FILE_LIMITS.segments) {
      throw new BadRequestError(
        `files: more than ${REQUEST_FILE_LIMITS.segments} path segments in all (the limit per request; "data/in.txt" has 2)`,
      );
    }
    placePath(tree, path, pathSegments);
    let data: Uint8Array | null;
    if (typeof content === "string") {
      data = encoder.encode(content);
    } else if (
      isPlainObject(content) &&
      Object.keys(content).length === 1 &&
      typeof content.base64 === "string"
    ) {
      data = decodeBase64(content.base64);
      if (data === null) {
        throw new BadRequestError(
          `files[${JSON.stringify(path)}].base64: ${show(content.base64)} is not base64`,
        );
      }
    } else {
      throw new BadRequestError(
        `files[${JSON.stringify(path)}]: expected text as a string or bytes as {"base64": "..."}, got ${show(content)}`,
      );
    }
    total += data.length;
    if (total > maxBytes) {
      throw new BadRequestError(
        `files: more than ${maxBytes} bytes in all (the limit for a run's files)`,
      );
    }
    decoded.set(path, data);
  }
  return decoded;
}

/** A directory of the request's paths: its entries by name; a file is `null`. */
type PathTree = Map<string, PathTree | null>;

/** Adds a file at `segments`, refusing a path that runs through a file or onto a directory. */
function placePath(tree: PathTree, path: string, segments: readonly string[]): void {
  let directory = tree;
  for (const [index, name] of segments.entries()) {
    const last = index === segments.length - 1;
    const existing = directory.get(name);
    if (existing === null) {
      const file = segments.slice(0, index + 1).join("/");
      throw new BadRequestError(
        `files: ${show(file)} is a file, so ${show(path)} cannot lie inside it`,
      );
    }
    if (last) {
      if (existing !== undefined) {
        throw new BadRequestError(
          `files: ${show(path)} is a file, so ${show(firstFileUnder(existing, path))} cannot lie inside it`,
        );
      }
      directory.set(name, null);
      return;
    }
    let next = existing;
    if (next === undefined) {
      next = new Map();
      directory.set(name, next);
    }
    directory = next;
  }
}

/** Some file below a directory of the request's paths (walked without recursion). */
function firstFileUnder(directory: PathTree, prefix: string): string {
  let path = prefix;
  let node: PathTree = directory;
  for (;;) {
    const [name, child] = node.entries().next().value as [string, PathTree | null];
    path = `${path}/${name}`;
    if (child === null) return path;
    node = child;
  }
}

/** The segments of a request path, after checking its form and the limits on its size. */
function checkFilePath(path: string): string[] {
  const { pathChars, depth, nameBytes } = REQUEST_FILE_LIMITS;
  let separators = 0;
  for (let at = path.indexOf("/"); at !== -1; at = path.indexOf("/", at + 1)) separators++;
  if (separators + 1 > depth) {
    throw new BadRequestError(
      `files: ${show(path)} is ${separators + 1} segments deep, over the limit of ${depth} (the path depth limit)`,
    );
  }
  if (path.length > pathChars) {
    throw new BadRequestError(
      `files: ${show(path)} is ${path.length} characters long, over the limit of ${pathChars} per path`,
    );
  }
  const segments = path.split("/");
  const bad =
    path === "" ||
    /[\\\0]/.test(path) ||
    segments.some((segment) => segment === "" || segment === "." || segment === "..");
  if (bad) {
    throw new BadRequestError(
      `files: ${show(path)} is not a path relative to the project root like "data/in.txt" (no leading "/", no "." or ".." or empty segments, no "\\")`,
    );
  }
  const encoder = new TextEncoder();
  const long = segments.find(
    (segment) => segment.length * 3 > nameBytes && encoder.encode(segment).length > nameBytes,
  );
  if (long !== undefined) {
    throw new BadRequestError(
      `files: ${show(path)} has a name of ${encoder.encode(long).length} bytes, over the limit of ${nameBytes} bytes per name`,
    );
  }
  return segments;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A value as a message shows it: JSON, cut at SHOWN_CHARS. Arrays and objects are shown to a few
 * levels and items only, so a value nested a million deep is described in bounded time and never
 * exhausts the stack.
 */
function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = preview(value, 3);
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS)}...` : text;
}

const PREVIEW_ITEMS = 4;

function preview(value: unknown, levels: number): string {
  if (typeof value === "string") {
    return describe(value.length > SHOWN_CHARS ? value.slice(0, SHOWN_CHARS + 1) : value);
  }
  if (typeof value !== "object" || value === null) return describe(value);
  if (levels === 0) return Array.isArray(value) ? "[...]" : "{...}";
  if (Array.isArray(value)) {
    const items = value.slice(0, PREVIEW_ITEMS).map((item) => preview(item, levels - 1));
    if (value.length > PREVIEW_ITEMS) items.push("...");
    return `[${items.join(",")}]`;
  }
  const keys = Object.keys(value);
  const items = keys
    .slice(0, PREVIEW_ITEMS)
    .map(
      (key) =>
        `${describe(key.length > SHOWN_CHARS ? key.slice(0, SHOWN_CHARS) : key)}:${preview((value as Record<string, unknown>)[key], levels - 1)}`,
    );
  if (keys.length > PREVIEW_ITEMS) items.push("...");
  return `{${items.join(",")}}`;
}
