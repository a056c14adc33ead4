import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { configError } from "../testing/config-error.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import {
  COMPUTE_LEVELS,
  formatBytes,
  MAX_DURATION_MS,
  MAX_MEMORY_BYTES,
  parseBytes,
  parseCompute,
  parseDuration,
} from "./units.ts";

const KB = 1024;
const MB = 1024 * KB;
const GB = 1024 * MB;

describe("parseBytes", () => {
  it.each([
    ["64KB", 64 * KB],
    ["512MB", 512 * MB],
    ["2GB", 2 * GB],
    ["256 MB", 256 * MB],
    ["10MB", 10 * MB],
    ["5MB", 5 * MB],
    ["100B", 100],
    ["100", 100],
    ["4GB", 4 * GB],
    ["1gb", GB],
    ["16Mb", 16 * MB],
    ["8MiB", 8 * MB],
    [" 3 kib ", 3 * KB],
    [1048576, MB],
  ])("accepts %j", (input, bytes) => {
    expect(parseBytes(input, "ram")).toBe(bytes);
  });

  it("refuses a fraction, says why and suggests the exact spelling", () => {
    const error = configError(() => parseBytes("1.5GB", "ram"));
    expect(error.message).toBe(
      'ram: "1.5GB" is not a valid size; fractions are not accepted, use a whole number of a smaller unit (write "1536MB" instead)',
    );
    expect(configError(() => parseBytes("0.3KB", "ram")).message).not.toContain("write");
  });

  it.each([
    ["-1MB", "is negative"],
    ["0MB", "is zero"],
    ["", "is not a valid size"],
    ["   ", "is not a valid size"],
    ["MB", "is not a valid size"],
    ["12 TB", 'unknown unit "TB"'],
    ["5 megabytes", 'unknown unit "megabytes"'],
    ["1e6", "is not a valid size"],
    ["5GB", "above 4GB, the most a wasm32 sandbox can address"],
  ])("refuses %j (%s)", (input, reason) => {
    const message = configError(() => parseBytes(input, "ram")).message;
    expect(message).toContain(`ram: ${JSON.stringify(input)}`);
    expect(message).toContain(reason);
  });

  it.each([
    [0, "0 is not a valid size"],
    [-5, "-5 is not a valid size"],
    [1.5, "1.5 is not a valid size"],
    [Number.NaN, "NaN is not a valid size"],
    [Number.POSITIVE_INFINITY, "Infinity is not a valid size"],
    [MAX_MEMORY_BYTES + 1, "4294967297 is above 4GB"],
    [null, "null is not a valid size"],
    [true, "true is not a valid size"],
    [[512], "[512] is not a valid size"],
  ])("refuses the value %s", (input, text) => {
    const message = configError(() => parseBytes(input, "ram")).message;
    expect(message).toContain(`ram: ${text}`);
  });

  it("tells the user what is accepted", () => {
    expect(configError(() => parseBytes("lots", "ram")).message).toBe(
      'ram: "lots" is not a valid size; use an integer with a unit like "512MB", "2GB", "64KB" or a number of bytes (units are binary: 1KB = 1024 bytes)',
    );
  });

  it("reads n MB as n * 2^20 for every n in range", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4096 }),
        fc.constantFrom("MB", "mb", " MB", "MiB"),
        (n, unit) => {
          expect(parseBytes(`${n}${unit}`, "ram")).toBe(n * MB);
        },
      ),
      { numRuns: fuzzRuns(100) },
    );
  });

  it("round-trips through formatBytes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_MEMORY_BYTES }), (bytes) => {
        expect(parseBytes(formatBytes(bytes), "ram")).toBe(bytes);
      }),
      { numRuns: fuzzRuns(100) },
    );
  });
});

describe("parseDuration", () => {
  it.each([
    ["100ms", 100],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1h 30m", 5_400_000],
    ["2m30s", 150_000],
    ["1h 2m 3s 4ms", 3_723_004],
    ["10 s", 10_000],
    ["1H", 3_600_000],
    ["250MS", 250],
    [" 5m ", 300_000],
    // Capsule reads timeouts with humantime: fractions, long unit names, any order, days and weeks.
    ["1.8s", 1_800],
    ["0.5s", 500],
    ["1.5h", 5_400_000],
    ["1.25m", 75_000],
    ["2.5ms", 3],
    ["500us", 1],
    ["1500000ns", 2],
    ["4.20 s", 4_200],
    ["1.50000000000s", 1_500],
    ["2h 37min", 9_420_000],
    ["90 sec", 90_000],
    ["5 minutes", 300_000],
    ["2 hours 1 min", 7_260_000],
    ["1 second", 1_000],
    ["3secs", 3_000],
    ["1hr 2mins", 3_720_000],
    ["30m 1h", 5_400_000],
    ["1m 1m", 120_000],
    ["1d", 86_400_000],
    ["2 days", 172_800_000],
    ["1w", 604_800_000],
    ["3wks", 1_814_400_000],
    ["10µs", 1],
    ["1s500ms", 1_500],
    [1500, 1500],
    [MAX_DURATION_MS, MAX_DURATION_MS],
  ])("accepts %j", (input, ms) => {
    expect(parseDuration(input, "timeout")).toBe(ms);
  });

  it.each([
    ["", "is not a valid duration"],
    ["abc", "is not a valid duration"],
    ["0s", "is zero; use a positive duration, or leave timeout out for no limit"],
    ["-1s", "is negative"],
    ["10", "has a number without a unit"],
    ["1h30", "has a number without a unit"],
    ["5 fortnights", 'has the unit "fortnights"'],
    ["1.5", "has a number without a unit"],
    [".5s", "is not a valid duration"],
    ["1.s", "is not a valid duration"],
    ["1..5s", "is not a valid duration"],
    ["0.5ns", "has a fraction finer than its unit allows;"],
    ["0.0000000001s", "has a fraction finer than its unit allows (1ns)"],
    ["1.0000001h", "has a fraction finer than its unit allows (1s for hours and longer)"],
    ["1.12345678901234567890s", "has a fraction finer than its unit allows"],
    ["0ms 0s", "is zero"],
    ["0.0s", "is zero"],
    ["1M", "longer than 2147483647ms"],
    ["1y", "longer than 2147483647ms"],
    ["25d", "longer than 2147483647ms"],
    ["99999999999999999999999999999999s", "longer than 2147483647ms"],
    ["1h,30m", "is not a valid duration"],
    ["600h", "longer than 2147483647ms (about 24.8 days)"],
  ])("refuses %j (%s)", (input, reason) => {
    const message = configError(() => parseDuration(input, "timeout")).message;
    expect(message).toContain(`timeout: ${JSON.stringify(input)}`);
    expect(message).toContain(reason);
  });

  it.each([
    0,
    -1,
    1.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    null,
    {},
  ])("refuses the value %s", (input) => {
    expect(configError(() => parseDuration(input, "timeout")).message).toMatch(
      /^timeout: .* is not a valid duration/,
    );
  });

  it("lists the accepted units", () => {
    expect(configError(() => parseDuration("soon", "timeout")).message).toBe(
      'timeout: "soon" is not a valid duration; use numbers with units, like "100ms", "1.5s", "30s", "5m", "1h 30m" or "2d" (ns, us, ms, s, m, h, d, w and their long forms such as "sec" or "minutes"), or a number of milliseconds',
    );
  });

  it("adds up composed durations", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 500 }),
        fc.integer({ min: 0, max: 59 }),
        fc.integer({ min: 1, max: 59 }),
        fc.constantFrom("", " ", "  "),
        (h, m, s, gap) => {
          const text = `${h}h${gap}${m}m${gap}${s}s`;
          expect(parseDuration(text, "timeout")).toBe(((h * 60 + m) * 60 + s) * 1000);
        },
      ),
      { numRuns: fuzzRuns(100) },
    );
  });
  it("reads a decimal number of seconds as its milliseconds", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), (ms) => {
        const seconds = `${Math.floor(ms / 1000)}.${String(ms % 1000).padStart(3, "0")}`;
        expect(parseDuration(`${seconds}s`, "timeout")).toBe(ms);
      }),
      { numRuns: fuzzRuns(100) },
    );
  });
});

describe("parseCompute", () => {
  it.each([
    ["LOW", 1e8],
    ["MEDIUM", 2e9],
    ["HIGH", 5e10],
    ["low", 1e8],
    ["Medium", 2e9],
    ["1000000", 1_000_000],
    [" 42 ", 42],
    [1_000_000, 1_000_000],
    [5e10, 5e10],
  ])("accepts %j", (input, fuel) => {
    expect(parseCompute(input)).toBe(fuel);
  });

  it("matches the documented levels", () => {
    expect(COMPUTE_LEVELS).toEqual({ LOW: 1e8, MEDIUM: 2e9, HIGH: 5e10 });
  });

  it("lists the levels for an unknown one", () => {
    expect(configError(() => parseCompute("ULTRA")).message).toBe(
      'compute: "ULTRA" is not a known compute level; use "LOW" (1e8 fuel), "MEDIUM" (2e9), "HIGH" (5e10), or an exact fuel amount as a positive integer or a string of digits like "1000000"',
    );
  });

  it("explains that CUSTOM means giving the number", () => {
    expect(configError(() => parseCompute("CUSTOM")).message).toContain(
      'give the exact fuel amount itself, like compute: "1000000"',
    );
  });

  it.each([
    0,
    -1,
    1.5,
    Number.NaN,
    2 ** 60,
    "0",
    "-5",
    "1e9",
    "",
    "99999999999999999999",
    null,
    10n,
  ])("refuses %s", (input) => {
    const message = configError(() => parseCompute(input)).message;
    expect(message).toMatch(/^compute: /);
  });

  it("names the option it was given", () => {
    expect(configError(() => parseCompute("x", "defaults.compute")).message).toMatch(
      /^defaults\.compute: "x"/,
    );
  });

  it("reads any positive safe integer string as that fuel", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(parseCompute(String(n))).toBe(n);
        expect(parseCompute(n)).toBe(n);
      }),
      { numRuns: fuzzRuns(100) },
    );
  });
});
