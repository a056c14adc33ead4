import { ConfigError, MemoryExceededError } from "../errors.ts";
import { parseAllowedHosts } from "../policy/hosts.ts";
import { formatValue, parseBytes, parseCompute, parseDuration } from "./units.ts";

export type FileMode = "ro" | "rw";

export interface AllowedFile {
  path: string;
  mode: FileMode;
}

/** A task's options after validation: every field present, in the engine's units. */
export interface TaskLimits {
  name: string;
  /** From `compute`; executed wasm instructions, roughly. */
  fuel: number;
  ramBytes: number;
  /** null means no wall-clock limit. */
  timeoutMs: number | null;
  maxRetries: number;
  allowedFiles: AllowedFile[];
  allowedHosts: string[];
  envVariables: string[];
}

/** What an option left out becomes; set by the runtime (and its own options). */
export interface LimitDefaults {
  ramBytes: number;
  /** A level name or fuel amount, as `compute` accepts; MEDIUM when left out. */
  compute?: string | number;
  timeoutMs?: number | null;
  /** The engine's smallest workable memory; a smaller `ram` is refused, naming this floor. */
  minRamBytes: number;
}

/** Each retry reruns the whole task in a fresh sandbox; more than this hides a broken task. */
export const MAX_RETRIES = 10;

type OptionName =
  | "name"
  | "compute"
  | "ram"
  | "timeout"
  | "maxRetries"
  | "allowedFiles"
  | "allowedHosts"
  | "envVariables";

/** Every accepted key, with the option it sets; snake_case spellings come from the Python SDK. */
export const OPTION_KEYS: Readonly<Record<string, OptionName>> = {
  name: "name",
  compute: "compute",
  ram: "ram",
  timeout: "timeout",
  maxRetries: "maxRetries",
  max_retries: "maxRetries",
  allowedFiles: "allowedFiles",
  allowed_files: "allowedFiles",
  allowedHosts: "allowedHosts",
  allowed_hosts: "allowedHosts",
  envVariables: "envVariables",
  env_variables: "envVariables",
};

const KNOWN_KEYS_TEXT =
  "name, compute, ram, timeout, maxRetries, allowedFiles, allowedHosts, envVariables (or max_retries, allowed_files, allowed_hosts, env_variables)";

/** Validates a task's options and fills in defaults. Throws ConfigError naming the first bad option. */
export function parseTaskOptions(raw: unknown, defaults: LimitDefaults): TaskLimits {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `task options: ${formatValue(raw)} is not an object; pass an object like { name: "main", compute: "MEDIUM" }`,
    );
  }
  const given = collectOptions(raw as Record<string, unknown>);
  const name = parseName(given.get("name"));
  const compute = given.get("compute");
  const ram = given.get("ram");
  const timeout = given.get("timeout");
  const ramBytes = ram ? parseBytes(ram.value, ram.key) : defaults.ramBytes;
  if (ram && ramBytes < defaults.minRamBytes) {
    // A limit the engine cannot start in is memory the task ran out of, as in Capsule, whose own
    // examples ask for "5MB" and expect memory_exceeded; the message says how much it needs.
    const floor = formatMegabytes(defaults.minRamBytes);
    throw new MemoryExceededError(
      `${ram.key}: ${formatValue(ram.value)} is below the engine's floor of ${floor}, so the task ran out of memory before it could start; use at least "${Math.ceil(defaults.minRamBytes / 2 ** 20)}MB"`,
    );
  }
  return {
    name,
    fuel: compute
      ? parseCompute(compute.value, compute.key)
      : parseCompute(defaults.compute ?? "MEDIUM", "compute (runtime default)"),
    ramBytes,
    timeoutMs:
      timeout && timeout.value !== null
        ? parseDuration(timeout.value, timeout.key)
        : (defaults.timeoutMs ?? null),
    maxRetries: parseMaxRetries(given.get("maxRetries")),
    allowedFiles: parseAllowedFiles(given.get("allowedFiles")),
    allowedHosts: checkHostRules(
      parseNameList(
        given.get("allowedHosts"),
        'a host name or pattern like "api.example.com" or "*.example.com"',
      ),
      given.get("allowedHosts")?.key ?? "allowedHosts",
    ),
    envVariables: parseNameList(
      given.get("envVariables"),
      'an environment variable name like "API_KEY"',
    ),
  };
}

/** Every entry must be a rule the matcher understands; nonsense is refused, never ignored. */
function checkHostRules(entries: string[], key: string): string[] {
  parseAllowedHosts(entries, key);
  return entries;
}

interface GivenOption {
  /** The key as the user spelled it, so messages quote their own words back. */
  key: string;
  value: unknown;
}

function collectOptions(raw: Record<string, unknown>): Map<OptionName, GivenOption> {
  const given = new Map<OptionName, GivenOption>();
  for (const [key, value] of Object.entries(raw)) {
    const option = Object.hasOwn(OPTION_KEYS, key) ? OPTION_KEYS[key] : undefined;
    if (option === undefined) {
      const suggestion = closestKey(key);
      const hint = suggestion ? `did you mean "${suggestion}"? ` : "";
      throw new ConfigError(
        `task options: unknown option "${key}"; ${hint}known options are ${KNOWN_KEYS_TEXT}`,
      );
    }
    // `{ timeout: undefined }` is how TypeScript callers often spell "not set".
    if (value === undefined) continue;
    const earlier = given.get(option);
    if (earlier && !sameValue(earlier.value, value)) {
      throw new ConfigError(
        `task options: "${earlier.key}" is ${formatValue(earlier.value)} but "${key}" is ${formatValue(value)}; they are two spellings of one option, give only one`,
      );
    }
    given.set(option, { key, value });
  }
  return given;
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b || formatValue(a) === formatValue(b);
}

function closestKey(key: string): string | undefined {
  const normalize = (text: string) => text.toLowerCase().replaceAll(/[_-]/g, "");
  const wanted = normalize(key);
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  let bestSpellingDistance = Number.POSITIVE_INFINITY;
  for (const candidate of Object.keys(OPTION_KEYS)) {
    const normalized = normalize(candidate);
    // A long shared start ("env_vars" / "env_variables") is as telling as a small edit distance.
    const prefix = commonPrefixLength(wanted, normalized);
    const distance = prefix >= 5 ? 0 : editDistance(wanted, normalized);
    // Ties go to the candidate spelled like the user's key (snake_case for snake_case).
    const spellingDistance = editDistance(key, candidate);
    if (
      distance < bestDistance ||
      (distance === bestDistance && spellingDistance < bestSpellingDistance)
    ) {
      best = candidate;
      bestDistance = distance;
      bestSpellingDistance = spellingDistance;
    }
  }
  // Past a third of the word, the "closest" key is a guess that misleads more than it helps.
  return bestDistance <= Math.max(2, Math.floor(wanted.length / 3)) ? best : undefined;
}

function commonPrefixLength(a: string, b: string): number {
  let length = 0;
  while (length < a.length && a[length] === b[length]) length++;
  return length;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function formatMegabytes(bytes: number): string {
  const megabytes = bytes / 2 ** 20;
  return Number.isInteger(megabytes)
    ? `${megabytes} MB`
    : `${megabytes.toFixed(2)} MB (${bytes} bytes)`;
}

function parseName(option: GivenOption | undefined): string {
  if (option === undefined) {
    throw new ConfigError('name: missing; every task needs a name, like { name: "main" }');
  }
  if (typeof option.value !== "string" || option.value.trim() === "") {
    throw new ConfigError(
      `name: ${formatValue(option.value)} is not a valid task name; use a non-empty string like "main"`,
    );
  }
  return option.value;
}

function parseMaxRetries(option: GivenOption | undefined): number {
  if (option === undefined) return 0;
  const { key, value } = option;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ConfigError(
      `${key}: ${formatValue(value)} is not a valid retry count; use an integer from 0 to ${MAX_RETRIES}`,
    );
  }
  if (value > MAX_RETRIES) {
    throw new ConfigError(
      `${key}: ${value} is too many retries; use an integer from 0 to ${MAX_RETRIES} (each retry reruns the whole task in a fresh sandbox)`,
    );
  }
  return value;
}

const FILE_MODES: Readonly<Record<string, FileMode>> = {
  ro: "ro",
  "read-only": "ro",
  rw: "rw",
  "read-write": "rw",
};

const FILE_ENTRY_HINT =
  'use a directory path like "./data" (read-write) or { path: "./data", mode: "read-only" } (modes: "read-only", "ro", "read-write", "rw")';

function parseAllowedFiles(option: GivenOption | undefined): AllowedFile[] {
  if (option === undefined) return [];
  const { key, value } = option;
  if (!Array.isArray(value)) {
    const wrapped = typeof value === "string" ? `; wrap it in a list: [${formatValue(value)}]` : "";
    throw new ConfigError(
      `${key}: ${formatValue(value)} is not a list${wrapped}; each entry: ${FILE_ENTRY_HINT}`,
    );
  }
  // Array.from visits holes too (map skips them), so a sparse list is refused, not kept.
  return Array.from(value, (entry: unknown, index) => {
    const where = `${key}[${index}]`;
    if (typeof entry === "string") {
      if (entry.trim() === "") {
        throw new ConfigError(`${where}: "" is not a valid path; ${FILE_ENTRY_HINT}`);
      }
      return { path: entry, mode: "rw" };
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new ConfigError(
        `${where}: ${formatValue(entry)} is not a valid entry; ${FILE_ENTRY_HINT}`,
      );
    }
    const fields = entry as Record<string, unknown>;
    const extra = Object.keys(fields).find((field) => field !== "path" && field !== "mode");
    if (extra !== undefined) {
      throw new ConfigError(
        `${where}: unknown field "${extra}"; an entry has only "path" and "mode"`,
      );
    }
    const { path, mode = "read-write" } = fields;
    if (typeof path !== "string" || path.trim() === "") {
      throw new ConfigError(
        `${where}.path: ${formatValue(path)} is not a valid path; ${FILE_ENTRY_HINT}`,
      );
    }
    const parsedMode =
      typeof mode === "string" && Object.hasOwn(FILE_MODES, mode.toLowerCase())
        ? FILE_MODES[mode.toLowerCase()]
        : undefined;
    if (parsedMode === undefined) {
      throw new ConfigError(
        `${where}.mode: ${formatValue(mode)} is not a valid mode; use "read-only", "ro", "read-write" or "rw"`,
      );
    }
    return { path, mode: parsedMode };
  });
}

function parseNameList(option: GivenOption | undefined, what: string): string[] {
  if (option === undefined) return [];
  const { key, value } = option;
  if (!Array.isArray(value)) {
    const wrapped = typeof value === "string" ? `; wrap it in a list: [${formatValue(value)}]` : "";
    throw new ConfigError(
      `${key}: ${formatValue(value)} is not a list${wrapped}; each entry is ${what}`,
    );
  }
  return Array.from(value, (entry: unknown, index) => {
    if (typeof entry !== "string" || entry.trim() === "" || /\s/.test(entry)) {
      throw new ConfigError(
        `${key}[${index}]: ${formatValue(entry)} is not valid; use ${what}, non-empty and without spaces`,
      );
    }
    return entry;
  });
}
