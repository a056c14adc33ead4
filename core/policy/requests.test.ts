import { describe, expect, it } from "vitest";
import { ConfigError, PermissionDeniedError } from "../errors.ts";
import {
  NETWORK_DEFAULTS,
  networkLimits,
  redirectedMethod,
  refuseDestination,
} from "./requests.ts";

describe("refuseDestination", () => {
  it("lets a listed https or http host through", () => {
    expect(() => refuseDestination(new URL("https://api.x.com/v1"), ["x.com"])).not.toThrow();
    expect(() => refuseDestination(new URL("http://127.0.0.1:8000/"), ["127.0.0.1"])).not.toThrow();
  });

  it.each([
    ["ftp://x.com/file", ["*"], /only http and https/],
    ["https://evil.test/", ["x.com"], /not in allowedHosts/],
    ["https://evil.test/", [], /allowedHosts is empty/],
    ["http://2130706433/", ["*"], /loopback/],
    ["http://169.254.169.254/", ["*"], /169\.254\.169\.254/],
  ])("refuses %s under %j", (url, allowed, reason) => {
    expect(() => refuseDestination(new URL(url), allowed)).toThrow(PermissionDeniedError);
    expect(() => refuseDestination(new URL(url), allowed)).toThrow(reason);
  });
});

describe("redirectedMethod", () => {
  it.each([
    [303, "POST", "GET"],
    [303, "PUT", "GET"],
    [303, "HEAD", "HEAD"],
    [301, "POST", "GET"],
    [302, "POST", "GET"],
    [301, "PUT", null],
    [307, "POST", null],
    [308, "POST", null],
    [302, "GET", null],
  ])("%i after %s gives %s", (status, method, expected) => {
    expect(redirectedMethod(status, method)).toBe(expected);
  });
});

describe("networkLimits", () => {
  it("fills in the defaults and keeps given values", () => {
    expect(networkLimits({}, "test")).toEqual(NETWORK_DEFAULTS);
    expect(networkLimits({ maxRequests: 3, maxRedirects: undefined }, "test")).toEqual({
      ...NETWORK_DEFAULTS,
      maxRequests: 3,
    });
  });

  it.each([-1, 1.5, Number.NaN])("refuses %s, naming the limit", (value) => {
    expect(() => networkLimits({ requestTimeoutMs: value }, "createX")).toThrow(ConfigError);
    expect(() => networkLimits({ requestTimeoutMs: value }, "createX")).toThrow(
      /createX: requestTimeoutMs/,
    );
  });
});
