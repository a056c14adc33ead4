import { ConfigError } from "../errors.ts";

/** Shows a rejected value the way the user wrote it: strings JSON-quoted, numbers as JavaScript prints them. */
/** A message's first line (for one-line summaries of multi-line errors). */
export function firstLine(text: string | undefined): string {
  return (text ?? "").split("\n", 1)[0] ?? "";
}

export function formatValue(value: unknown): string {
  if (typeof value === "number" || typeof value === "bigint" || value === undefined) {
    return typeof value === "bigint" ? `${value}n` : String(value);
  }
  if (typeof value === "function") return "a function";
  if (typeof value === "symbol") return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    // JSON.stringify throws on a BigInt inside; String throws on an object without a prototype.
    try {
      return String(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
}

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

/** wasm32 linear memory is addressed by 32 bits: 65536 pages of 64 KiB. */
export const MAX_MEMORY_BYTES = 4 * GIB;

const BYTE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: KIB,
  kib: KIB,
  mb: MIB,
  mib: MIB,
  gb: GIB,
  gib: GIB,
};

const SIZE_HINT =
  'use an integer with a unit like "512MB", "2GB", "64KB" or a number of bytes (units are binary: 1KB = 1024 bytes)';

/** Renders a byte count in the largest unit that divides it exactly, e.g. 1536 MiB -> "1536MB". */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ["GB", GIB],
    ["MB", MIB],
    ["KB", KIB],
  ] as const) {
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}

/**
 * Parses a memory size: "64KB", "512MB", "2GB", "256 MB", "100B" (binary units, case-insensitive)
 * or a number of bytes. Returns whole bytes in 1 .. 4 GiB.
 */
export function parseBytes(value: unknown, option: string): number {
  const shown = formatValue(value);
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value <= 0) {
      throw new ConfigError(`${option}: ${shown} is not a valid size; ${SIZE_HINT}`);
    }
    return checkMemoryCeiling(value, option, shown);
  }
  if (typeof value !== "string") {
    throw new ConfigError(`${option}: ${shown} is not a valid size; ${SIZE_HINT}`);
  }
  const match = /^\s*(-?)(\d+)(?:\.(\d+))?\s*([a-z]*)\s*$/i.exec(value);
  if (!match) {
    throw new ConfigError(`${option}: ${shown} is not a valid size; ${SIZE_HINT}`);
  }
  const [, sign = "", whole = "", fraction, unitText = ""] = match;
  const unit = BYTE_UNITS[unitText.toLowerCase() || "b"];
  if (unit === undefined) {
    throw new ConfigError(
      `${option}: ${shown} has an unknown unit "${unitText}"; use B, KB, MB or GB (binary: 1KB = 1024 bytes)`,
    );
  }
  if (sign) {
    throw new ConfigError(`${option}: ${shown} is negative; ${SIZE_HINT}`);
  }
  if (fraction !== undefined) {
    // Capsule read "1.5GB" as "no limit"; we refuse rather than round a limit the user can't see.
    const exact = fractionTimes(whole, fraction, unit);
    const suggestion = exact === null ? "" : ` (write "${formatBytes(exact)}" instead)`;
    throw new ConfigError(
      `${option}: ${shown} is not a valid size; fractions are not accepted, use a whole number of a smaller unit${suggestion}`,
    );
  }
  const bytes = Number(whole) * unit;
  if (bytes === 0) {
    throw new ConfigError(`${option}: ${shown} is zero; ${SIZE_HINT}`);
  }
  return checkMemoryCeiling(bytes, option, shown);
}

function checkMemoryCeiling(bytes: number, option: string, shown: string): number {
  if (bytes > MAX_MEMORY_BYTES) {
    throw new ConfigError(
      `${option}: ${shown} is above 4GB, the most a wasm32 sandbox can address; use "4GB" or less`,
    );
  }
  return bytes;
}

/** `whole.fraction * unit` as an integer, or null when it is not a whole number. */
function fractionTimes(whole: string, fraction: string, unit: number): number | null {
  if (fraction.length > 9) return null;
  const scale = 10 ** fraction.length;
  const scaled = (Number(whole) * scale + Number(fraction)) * unit;
  return scaled % scale === 0 ? scaled / scale : null;
}

/**
 * Duration units as humantime (the parser Capsule reads `timeout` with) names them, in nanoseconds.
 * `step` is the finest amount a fraction of the unit may come to: humantime keeps nanoseconds for
 * units up to a minute and whole seconds for an hour and up, and refuses a fraction of a nanosecond.
 */
const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;
const DURATION_UNITS: ReadonlyArray<readonly [names: readonly string[], ns: bigint, step: bigint]> =
  [
    [["nanos", "nsec", "ns"], 1n, 0n],
    [["usec", "us", "µs"], 1_000n, 1n],
    [["millis", "msec", "ms"], NS_PER_MS, 1n],
    [["seconds", "second", "secs", "sec", "s"], NS_PER_S, 1n],
    [["minutes", "minute", "min", "mins", "m"], 60n * NS_PER_S, 1n],
    [["hours", "hour", "hr", "hrs", "h"], 3_600n * NS_PER_S, NS_PER_S],
    [["days", "day", "d"], 86_400n * NS_PER_S, NS_PER_S],
    [["weeks", "week", "wk", "wks", "w"], 604_800n * NS_PER_S, NS_PER_S],
    [["months", "month", "M"], 2_630_016n * NS_PER_S, NS_PER_S], // 30.44 days
    [["years", "year", "yr", "yrs", "y"], 31_557_600n * NS_PER_S, NS_PER_S], // 365.25 days
  ];
const UNIT_BY_NAME = new Map(
  DURATION_UNITS.flatMap((unit) => unit[0].map((name) => [name, unit] as const)),
);

/** Looks a unit up as written ("M" is months, "m" minutes), then in lower case ("250MS", "1H"). */
function durationUnit(text: string) {
  return UNIT_BY_NAME.get(text) ?? UNIT_BY_NAME.get(text.toLowerCase());
}

/** Timers clamp longer delays to 1 ms (they fire at once), so a longer timeout would be no timeout. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const DURATION_HINT =
  'use numbers with units, like "100ms", "1.5s", "30s", "5m", "1h 30m" or "2d" (ns, us, ms, s, m, h, d, w and their long forms such as "sec" or "minutes"), or a number of milliseconds';

/**
 * Parses a wall-clock duration the way humantime does (Capsule's parser): spans of a number and a
 * unit, in any order, with or without spaces between them ("1h 30m", "2m30s", "1.8s", "90 sec",
 * "1.5h"), or a number of milliseconds. Spans add up. A fraction must come to whole nanoseconds
 * (whole seconds for hours and longer units), as humantime requires. Returns whole milliseconds
 * in 1 .. 2^31-1, rounding a part of a millisecond up ("500us" is 1 ms).
 *
 * Zero ("0", "0s") is refused: a timeout that has already passed is a mistake, not a limit.
 */
export function parseDuration(value: unknown, option: string): number {
  const shown = formatValue(value);
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value <= 0) {
      throw new ConfigError(
        `${option}: ${shown} is not a valid duration; a number means milliseconds and must be a positive integer`,
      );
    }
    return checkDurationCeiling(value, option, shown);
  }
  if (typeof value !== "string" || value.trim() === "") {
    throw new ConfigError(`${option}: ${shown} is not a valid duration; ${DURATION_HINT}`);
  }
  const parts = [...value.matchAll(/\s*(-?)(\d+)(?:\.(\d+))?\s*([a-zµ]*)\s*/giuy)];
  const consumed = parts.reduce((length, part) => length + part[0].length, 0);
  if (parts.length === 0 || consumed !== value.length) {
    throw new ConfigError(`${option}: ${shown} is not a valid duration; ${DURATION_HINT}`);
  }
  const ceilingNs = BigInt(MAX_DURATION_MS) * NS_PER_MS;
  let totalNs = 0n;
  for (const [, sign, whole = "", fraction, unitText = ""] of parts) {
    const unit = durationUnit(unitText);
    if (unit === undefined) {
      const missing = unitText === "" ? "a number without a unit" : `the unit "${unitText}"`;
      throw new ConfigError(`${option}: ${shown} has ${missing}; ${DURATION_HINT}`);
    }
    if (sign) {
      throw new ConfigError(`${option}: ${shown} is negative; ${DURATION_HINT}`);
    }
    // Past 20 digits the span alone is beyond any ceiling; stop before BigInt does big arithmetic.
    if (whole.replace(/^0+/, "").length > 20) return checkDurationCeiling(Infinity, option, shown);
    const [, unitNs, step] = unit;
    totalNs += BigInt(whole) * unitNs;
    if (fraction !== undefined) {
      const denominator = 10n ** BigInt(Math.min(fraction.length, 40));
      const scaled = BigInt(fraction.slice(0, 40)) * unitNs;
      if (step === 0n || fraction.length > 19 || scaled % (denominator * step) !== 0n) {
        const finest = step === 0n ? "" : step === 1n ? " (1ns)" : " (1s for hours and longer)";
        throw new ConfigError(
          `${option}: ${shown} has a fraction finer than its unit allows${finest}; use fewer decimal places or a smaller unit`,
        );
      }
      totalNs += scaled / denominator;
    }
    if (totalNs > ceilingNs) return checkDurationCeiling(Infinity, option, shown);
  }
  if (totalNs === 0n) {
    throw new ConfigError(
      `${option}: ${shown} is zero; use a positive duration, or leave ${option} out for no limit`,
    );
  }
  return Number((totalNs + NS_PER_MS - 1n) / NS_PER_MS);
}

function checkDurationCeiling(ms: number, option: string, shown: string): number {
  if (ms > MAX_DURATION_MS) {
    throw new ConfigError(
      `${option}: ${shown} is longer than ${MAX_DURATION_MS}ms (about 24.8 days), the longest timer JavaScript can set; use a shorter duration or leave ${option} out for no limit`,
    );
  }
  return ms;
}

/** Fuel per named compute level; fuel is roughly executed wasm instructions. */
export const COMPUTE_LEVELS: Readonly<Record<"LOW" | "MEDIUM" | "HIGH", number>> = {
  LOW: 100_000_000,
  MEDIUM: 2_000_000_000,
  HIGH: 50_000_000_000,
};

const COMPUTE_HINT =
  'use "LOW" (1e8 fuel), "MEDIUM" (2e9), "HIGH" (5e10), or an exact fuel amount as a positive integer or a string of digits like "1000000"';

/** Parses a compute setting into fuel: a level name (case-insensitive) or an exact positive integer. */
export function parseCompute(value: unknown, option = "compute"): number {
  const shown = formatValue(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new ConfigError(`${option}: ${shown} is not a valid fuel amount; ${COMPUTE_HINT}`);
    }
    return value;
  }
  if (typeof value !== "string") {
    throw new ConfigError(`${option}: ${shown} is not a valid compute setting; ${COMPUTE_HINT}`);
  }
  const text = value.trim();
  const levelName = text.toUpperCase();
  if (Object.hasOwn(COMPUTE_LEVELS, levelName)) {
    return COMPUTE_LEVELS[levelName as keyof typeof COMPUTE_LEVELS];
  }
  if (/^\d+$/.test(text)) {
    const fuel = Number(text);
    if (fuel > 0 && Number.isSafeInteger(fuel)) return fuel;
    throw new ConfigError(
      `${option}: ${shown} is not a valid fuel amount; use a positive integer up to ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  if (text.toUpperCase() === "CUSTOM") {
    throw new ConfigError(
      `${option}: "CUSTOM" is not a level; give the exact fuel amount itself, like compute: "1000000"`,
    );
  }
  throw new ConfigError(`${option}: ${shown} is not a known compute level; ${COMPUTE_HINT}`);
}
