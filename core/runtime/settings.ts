import type { TaskDefaults } from "../config/capsule-toml.ts";
import { ConfigError } from "../errors.ts";

/** Runtime-wide limits, set by whoever embeds the runtime (not by task code). */
export interface RuntimeSettings {
  /** `ram` of a task that sets none. */
  defaultRamBytes: number;
  /** How deep sub-tasks may nest (the entry task is depth 0). */
  maxSubtaskDepth: number;
  /** How many sub-tasks one run may start in all, at any depth. */
  maxSubtasksPerRun: number;
  /** Largest task result, as characters of JSON. */
  maxResultBytes: number;
  /** Console output kept per attempt, in characters; the rest is dropped with a note. */
  maxLogBytes: number;
  /** Limits for evaluating a task file to discover the tasks it declares. */
  discoveryFuel: number;
  discoveryTimeoutMs: number;
  /** Sandboxes each thread prepares ahead of need, so a task skips engine start (0: none). */
  preparedSandboxes: number;
  /**
   * Wall-clock bound of a Python task in a page that sets no `timeout`: its sandbox's Worker is
   * the guest's own realm, so its fuel count cannot end it for sure (other hosts ignore this).
   */
  pythonTimeoutMs: number;
  /**
   * How long a Python sandbox may take to start once its job has a place (a cold process loads
   * the interpreter in seconds, many more on a loaded machine). A task's own `timeout` counts from
   * the hand-over, after this; past it the attempt fails as `internal_error`.
   */
  pythonStartMs: number;
  /** Bytes the tasks of one run may write in all (every task, sub-task and attempt). */
  writeBytes: number;
  /** Files, directories and links the tasks of one run may create in all. */
  writeFiles: number;
  /**
   * Options every task gets unless it sets them (a project's capsule.toml `[tasks]`); set by the
   * host after `resolveSettings`, never through run()'s `limits`.
   */
  taskDefaults?: TaskDefaults;
}

export const DEFAULT_SETTINGS: RuntimeSettings = {
  defaultRamBytes: 256 * 1024 * 1024,
  maxSubtaskDepth: 8,
  maxSubtasksPerRun: 256,
  maxResultBytes: 16 * 1024 * 1024,
  maxLogBytes: 1024 * 1024,
  discoveryFuel: 2e9,
  discoveryTimeoutMs: 10_000,
  preparedSandboxes: 2,
  pythonTimeoutMs: 60_000,
  pythonStartMs: 120_000,
  writeBytes: 64 * 1024 * 1024,
  writeFiles: 10_000,
};

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Merges caller overrides, refusing values that would silently mean "no limit". */
export function resolveSettings(overrides: Partial<RuntimeSettings> = {}): RuntimeSettings {
  const settings = { ...DEFAULT_SETTINGS };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(key in DEFAULT_SETTINGS)) {
      throw new ConfigError(
        `unknown runtime setting ${JSON.stringify(key)}; known settings: ${Object.keys(DEFAULT_SETTINGS).join(", ")}`,
      );
    }
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(
        `runtime setting ${key}: ${JSON.stringify(value)} is not a non-negative integer`,
      );
    }
    // A timer given more than this fires at once (with a warning) on every host.
    if (key.endsWith("Ms") && value > MAX_TIMER_MS) {
      throw new ConfigError(
        `runtime setting ${key}: ${value} ms is more than the longest wait a timer allows, ${MAX_TIMER_MS} ms (about 24.8 days)`,
      );
    }
    settings[key as keyof RuntimeSettings] = value;
  }
  return settings;
}
