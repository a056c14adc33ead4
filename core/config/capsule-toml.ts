/**
 * A project's `capsule.toml`, as Capsule reads it: `[workflow]` (name, version, entrypoint) and
 * `[tasks]` (defaults every task of the project gets for the options it leaves out), plus a
 * `[portable]` table of our own for limits Capsule lacks (the run's write quota, sub-task limits,
 * result size). Capsule ignores keys it does not know; here a misspelt key is a config_error
 * naming the key and the file, since a silently ignored `default_rma` is a limit that never held.
 * Parsed with smol-toml.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { ConfigError } from "../errors.ts";
import type { RuntimeSettings } from "../runtime/settings.ts";
import { OPTION_KEYS, parseTaskOptions } from "./options.ts";
import { firstLine, formatValue, parseBytes } from "./units.ts";

/** The file names Capsule looks for in the working directory, in its order. */
export const CAPSULE_TOML_NAMES = ["capsule.toml", "Capsule.toml"] as const;

export interface ProjectConfig {
  /** The file it came from, as given (for messages). */
  file: string;
  workflow: { name?: string; version?: string; entrypoint?: string };
  /** Task options every task gets unless it sets them, by the SDK's option names. */
  taskDefaults: TaskDefaults;
  /** Runtime limits from `[portable]`; run()'s own `limits` win over them. */
  settings: Partial<RuntimeSettings>;
}

export type TaskDefaults = Partial<
  Record<
    "compute" | "ram" | "timeout" | "maxRetries" | "allowedFiles" | "allowedHosts" | "envVariables",
    unknown
  >
>;

/** `[tasks]` keys and the task option each one is the default of. */
const TASK_DEFAULT_KEYS: Readonly<Record<string, keyof TaskDefaults>> = {
  default_compute: "compute",
  default_ram: "ram",
  default_timeout: "timeout",
  default_max_retries: "maxRetries",
  default_allowed_files: "allowedFiles",
  default_allowed_hosts: "allowedHosts",
  default_env_variables: "envVariables",
};

/** `[portable]` keys and the runtime setting each one sets; sizes may be written "64MB". */
const PORTABLE_KEYS: Readonly<Record<string, { setting: keyof RuntimeSettings; size: boolean }>> = {
  write_bytes: { setting: "writeBytes", size: true },
  write_files: { setting: "writeFiles", size: false },
  max_subtask_depth: { setting: "maxSubtaskDepth", size: false },
  max_subtasks_per_run: { setting: "maxSubtasksPerRun", size: false },
  max_result_bytes: { setting: "maxResultBytes", size: true },
  max_log_bytes: { setting: "maxLogBytes", size: true },
};

const WORKFLOW_KEYS = ["name", "version", "entrypoint"] as const;

/** Every key each table takes (for documentation that must name them all). */
export const CAPSULE_TOML_KEYS: Readonly<Record<"workflow" | "tasks" | "portable", string[]>> = {
  workflow: [...WORKFLOW_KEYS],
  tasks: Object.keys(TASK_DEFAULT_KEYS),
  portable: Object.keys(PORTABLE_KEYS),
};

/** Parses and checks a capsule.toml's text; throws ConfigError naming the file and the key. */
export function parseCapsuleToml(text: string, file: string): ProjectConfig {
  let document: Record<string, unknown>;
  try {
    document = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    const detail = error instanceof TomlError ? `line ${error.line}, column ${error.column}: ` : "";
    throw new ConfigError(
      `${file}: not valid TOML (${detail}${firstLine((error as Error).message)})`,
    );
  }
  const tables = { workflow: {}, tasks: {}, portable: {} } as Record<
    string,
    Record<string, unknown>
  >;
  for (const [name, value] of Object.entries(document)) {
    if (!Object.hasOwn(tables, name)) {
      throw new ConfigError(
        `${file}: unknown ${isTable(value) ? "table" : "key"} ${JSON.stringify(name)}; capsule.toml has the tables [workflow], [tasks] and [portable]`,
      );
    }
    if (!isTable(value)) {
      throw new ConfigError(
        `${file}: ${name} must be a table ([${name}]), got ${formatValue(value)}`,
      );
    }
    tables[name] = value;
  }
  return {
    file,
    workflow: parseWorkflow(tables.workflow ?? {}, file),
    taskDefaults: parseTaskDefaults(tables.tasks ?? {}, file),
    settings: parsePortable(tables.portable ?? {}, file),
  };
}

/**
 * A task's declared options with the project's defaults filled in for the options it leaves out
 * (under any spelling). Anything but a plain object is returned as it is, for the task options'
 * own check to refuse.
 */
export function withTaskDefaults(options: unknown, defaults: TaskDefaults | undefined): unknown {
  if (defaults === undefined || options === null || typeof options !== "object") return options;
  if (Array.isArray(options)) return options;
  const given = options as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...given };
  for (const [option, value] of Object.entries(defaults) as [keyof TaskDefaults, unknown][]) {
    if (value === undefined) continue;
    const set = Object.entries(OPTION_KEYS).some(
      ([key, name]) => name === option && given[key] !== undefined,
    );
    if (!set) merged[option] = value;
  }
  return merged;
}

function parseWorkflow(table: Record<string, unknown>, file: string): ProjectConfig["workflow"] {
  const workflow: ProjectConfig["workflow"] = {};
  for (const [key, value] of Object.entries(table)) {
    if (!(WORKFLOW_KEYS as readonly string[]).includes(key)) {
      throw unknownKey(file, "workflow", key, WORKFLOW_KEYS);
    }
    if (typeof value !== "string" || value.trim() === "") {
      throw new ConfigError(
        `${file}: [workflow] ${key} must be a non-empty string, got ${formatValue(value)}`,
      );
    }
    workflow[key as (typeof WORKFLOW_KEYS)[number]] = value;
  }
  return workflow;
}

function parseTaskDefaults(table: Record<string, unknown>, file: string): TaskDefaults {
  const defaults: TaskDefaults = {};
  for (const [key, value] of Object.entries(table)) {
    const option = Object.hasOwn(TASK_DEFAULT_KEYS, key) ? TASK_DEFAULT_KEYS[key] : undefined;
    if (option === undefined) throw unknownKey(file, "tasks", key, Object.keys(TASK_DEFAULT_KEYS));
    // The same checks a task's own option gets, one key at a time so the message names it.
    try {
      parseTaskOptions({ name: "defaults", [option]: value }, { ramBytes: 1, minRamBytes: 0 });
    } catch (error) {
      const message = (error as Error).message.replace(new RegExp(`^${option}\\b:?\\s*`), "");
      throw new ConfigError(`${file}: [tasks] ${key}: ${message}`);
    }
    defaults[option] = value;
  }
  return defaults;
}

function parsePortable(table: Record<string, unknown>, file: string): Partial<RuntimeSettings> {
  const settings: Partial<RuntimeSettings> = {};
  for (const [key, value] of Object.entries(table)) {
    const known = Object.hasOwn(PORTABLE_KEYS, key) ? PORTABLE_KEYS[key] : undefined;
    if (known === undefined) throw unknownKey(file, "portable", key, Object.keys(PORTABLE_KEYS));
    const label = `${file}: [portable] ${key}`;
    if (known.size && typeof value === "string") {
      settings[known.setting] = parseBytes(value, label);
      continue;
    }
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(
        `${label}: ${formatValue(value)} is not a non-negative integer${known.size ? ' or a size like "64MB"' : ""}`,
      );
    }
    settings[known.setting] = value;
  }
  return settings;
}

function unknownKey(
  file: string,
  table: string,
  key: string,
  known: readonly string[],
): ConfigError {
  return new ConfigError(
    `${file}: unknown key ${JSON.stringify(key)} in [${table}]; its keys are ${known.join(", ")}`,
  );
}

function isTable(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
  );
}
