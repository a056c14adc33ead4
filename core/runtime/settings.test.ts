import { describe, expect, it } from "vitest";
import { ConfigError } from "../errors.ts";
import { DEFAULT_SETTINGS, resolveSettings } from "./settings.ts";

describe("resolveSettings", () => {
  it("keeps the defaults a caller leaves out, and takes the ones it sets", () => {
    expect(resolveSettings()).toEqual(DEFAULT_SETTINGS);
    expect(resolveSettings({ pythonStartMs: 5_000, maxSubtaskDepth: undefined })).toEqual({
      ...DEFAULT_SETTINGS,
      pythonStartMs: 5_000,
    });
  });

  it.each([
    [{ pythonStartMs: -1 }, "runtime setting pythonStartMs: -1 is not a non-negative integer"],
    [{ writeBytes: 1.5 }, "runtime setting writeBytes: 1.5 is not a non-negative integer"],
    [{ maxLogBytes: "10" }, 'runtime setting maxLogBytes: "10" is not a non-negative integer'],
    [
      { pythonTimeoutMs: 2 ** 31 },
      "runtime setting pythonTimeoutMs: 2147483648 ms is more than the longest wait a timer allows, 2147483647 ms",
    ],
    [{ pythonStart: 10 }, 'unknown runtime setting "pythonStart"; known settings: defaultRamBytes'],
  ])("refuses %j, naming the setting and the value", (overrides, message) => {
    const attempt = () => resolveSettings(overrides as never);
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(message);
  });
});
