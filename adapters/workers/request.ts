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
}

/** A request the app refuses (HTTP 400); the message names the bad field and value. */
export class BadRequestError extends Error {
  override name = "BadRequestError";
}

const KNOWN_FIELDS = ["code", "language", "args", "files", "env", "task"];

/** Longest value shown in a message; a long one is cut. */
const SHOWN_CHARS = 80;

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
        `unknown field ${JSON.stringify(key)}; known fields: ${KNOWN_FIELDS.join(", ")}`,
      );
    }
  }
  const { code, language = "ts", args = [], task = "main", files = {}, env = {} } = fields;
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
  };
}

function parseEnv(env: unknown): Record<string, string> {
  if (!isPlainObject(env)) {
    throw new BadRequestError(`env: expected an object of string variables, got ${show(env)}`);
  }
  for (const [name, value] of Object.entries(env)) {
    if (typeof value !== "string") {
      throw new BadRequestError(
        `env.${name}: expected a string, got ${show(value)} (every variable is a string)`,
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
  const decoded = new Map<string, Uint8Array>();
  let total = 0;
  const encoder = new TextEncoder();
  for (const [path, content] of Object.entries(files)) {
    checkFilePath(path);
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
  // A path cannot be a file and, for another entry, a directory.
  for (const path of decoded.keys()) {
    const segments = path.split("/");
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join("/");
      if (decoded.has(parent)) {
        throw new BadRequestError(
          `files: ${JSON.stringify(parent)} is a file, so ${JSON.stringify(path)} cannot lie inside it`,
        );
      }
    }
  }
  return decoded;
}

function checkFilePath(path: string): void {
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
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = describe(value);
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS)}...` : text;
}
