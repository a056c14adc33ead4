import { describe, expect, it } from "vitest";
import { ConfigError } from "../errors.ts";
import { type LimitDefaults, MAX_RETRIES, parseTaskOptions } from "./options.ts";

const MB = 2 ** 20;
const defaults: LimitDefaults = { ramBytes: 256 * MB, minRamBytes: 4 * MB };

function rejection(raw: unknown, limits: LimitDefaults = defaults): string {
  try {
    parseTaskOptions(raw, limits);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`);
}

describe("parseTaskOptions", () => {
  it("fills every default from a bare name", () => {
    expect(parseTaskOptions({ name: "main" }, defaults)).toEqual({
      name: "main",
      fuel: 2e9,
      ramBytes: 256 * MB,
      timeoutMs: null,
      maxRetries: 0,
      allowedFiles: [],
      allowedHosts: [],
      envVariables: [],
    });
  });

  it("takes compute and timeout defaults from the runtime", () => {
    const limits = parseTaskOptions(
      { name: "main" },
      { ...defaults, compute: "HIGH", timeoutMs: 5000 },
    );
    expect(limits.fuel).toBe(5e10);
    expect(limits.timeoutMs).toBe(5000);
  });

  it("reads every option in camelCase", () => {
    expect(
      parseTaskOptions(
        {
          name: "fetcher",
          compute: "LOW",
          ram: "64MB",
          timeout: "1h 30m",
          maxRetries: 3,
          allowedFiles: ["./data", { path: "./cfg", mode: "read-only" }, { path: "./out" }],
          allowedHosts: ["api.example.com", "*.example.org"],
          envVariables: ["API_KEY"],
        },
        defaults,
      ),
    ).toEqual({
      name: "fetcher",
      fuel: 1e8,
      ramBytes: 64 * MB,
      timeoutMs: 5_400_000,
      maxRetries: 3,
      allowedFiles: [
        { path: "./data", mode: "rw" },
        { path: "./cfg", mode: "ro" },
        { path: "./out", mode: "rw" },
      ],
      allowedHosts: ["api.example.com", "*.example.org"],
      envVariables: ["API_KEY"],
    });
  });

  it("reads the snake_case spellings of the Python SDK", () => {
    const limits = parseTaskOptions(
      {
        name: "main",
        max_retries: 2,
        allowed_files: [{ path: "./a", mode: "ro" }],
        allowed_hosts: ["*"],
        env_variables: ["HOME"],
      },
      defaults,
    );
    expect(limits.maxRetries).toBe(2);
    expect(limits.allowedFiles).toEqual([{ path: "./a", mode: "ro" }]);
    expect(limits.allowedHosts).toEqual(["*"]);
    expect(limits.envVariables).toEqual(["HOME"]);
  });

  it("accepts both spellings when they agree", () => {
    const limits = parseTaskOptions(
      {
        name: "main",
        maxRetries: 1,
        max_retries: 1,
        allowedHosts: ["a.b"],
        allowed_hosts: ["a.b"],
      },
      defaults,
    );
    expect(limits.maxRetries).toBe(1);
    expect(limits.allowedHosts).toEqual(["a.b"]);
  });

  it("refuses both spellings with different values", () => {
    expect(rejection({ name: "main", maxRetries: 1, max_retries: 2 })).toBe(
      'task options: "maxRetries" is 1 but "max_retries" is 2; they are two spellings of one option, give only one',
    );
  });

  it("treats undefined and a null timeout as not set", () => {
    const limits = parseTaskOptions(
      { name: "main", ram: undefined, timeout: null, compute: undefined },
      defaults,
    );
    expect(limits.ramBytes).toBe(256 * MB);
    expect(limits.timeoutMs).toBeNull();
    expect(limits.fuel).toBe(2e9);
  });

  it("maps each mode spelling", () => {
    for (const [mode, parsed] of [
      ["ro", "ro"],
      ["read-only", "ro"],
      ["rw", "rw"],
      ["read-write", "rw"],
      ["READ-ONLY", "ro"],
    ]) {
      expect(
        parseTaskOptions({ name: "main", allowedFiles: [{ path: "./d", mode }] }, defaults)
          .allowedFiles,
      ).toEqual([{ path: "./d", mode: parsed }]);
    }
  });

  describe("refuses", () => {
    it.each([
      [null, "task options: null is not an object"],
      ["main", 'task options: "main" is not an object'],
      [[], "task options: [] is not an object"],
      [{}, 'name: missing; every task needs a name, like { name: "main" }'],
      [{ name: "" }, 'name: "" is not a valid task name; use a non-empty string like "main"'],
      [{ name: "  " }, 'name: "  " is not a valid task name'],
      [{ name: 7 }, "name: 7 is not a valid task name"],
      [{ name: "m", compute: "ULTRA" }, 'compute: "ULTRA" is not a known compute level; use "LOW"'],
      [{ name: "m", ram: "1.5GB" }, 'ram: "1.5GB" is not a valid size; fractions are not accepted'],
      [{ name: "m", timeout: "1d" }, 'timeout: "1d" has the unit "d"'],
      [{ name: "m", timeout: 0 }, "timeout: 0 is not a valid duration"],
      [
        { name: "m", maxRetries: -1 },
        "maxRetries: -1 is not a valid retry count; use an integer from 0 to 10",
      ],
      [{ name: "m", max_retries: 1.5 }, "max_retries: 1.5 is not a valid retry count"],
      [{ name: "m", maxRetries: "3" }, 'maxRetries: "3" is not a valid retry count'],
      [
        { name: "m", maxRetries: MAX_RETRIES + 1 },
        "maxRetries: 11 is too many retries; use an integer from 0 to 10 (each retry reruns the whole task in a fresh sandbox)",
      ],
      [
        { name: "m", allowedFiles: "./data" },
        'allowedFiles: "./data" is not a list; wrap it in a list: ["./data"]',
      ],
      [{ name: "m", allowed_files: [""] }, 'allowed_files[0]: "" is not a valid path'],
      [{ name: "m", allowedFiles: ["./a", 5] }, "allowedFiles[1]: 5 is not a valid entry"],
      [
        { name: "m", allowedFiles: [{ mode: "ro" }] },
        "allowedFiles[0].path: undefined is not a valid path",
      ],
      [
        { name: "m", allowedFiles: [{ path: "./a", mode: "readonly" }] },
        'allowedFiles[0].mode: "readonly" is not a valid mode; use "read-only", "ro", "read-write" or "rw"',
      ],
      [
        { name: "m", allowedFiles: [{ path: "./a", mdoe: "ro" }] },
        'allowedFiles[0]: unknown field "mdoe"; an entry has only "path" and "mode"',
      ],
      [
        { name: "m", allowedHosts: "api.x.com" },
        'allowedHosts: "api.x.com" is not a list; wrap it in a list: ["api.x.com"]',
      ],
      [
        { name: "m", allowedHosts: [""] },
        'allowedHosts[0]: "" is not valid; use a host name or pattern',
      ],
      [{ name: "m", allowed_hosts: ["api x.com"] }, 'allowed_hosts[0]: "api x.com" is not valid'],
      [
        { name: "m", envVariables: [42] },
        "envVariables[0]: 42 is not valid; use an environment variable name",
      ],
      [
        { name: "m", env_variables: {} },
        "env_variables: {} is not a list; each entry is an environment variable name",
      ],
    ])("%j", (raw, message) => {
      expect(rejection(raw)).toContain(message);
    });

    it("ram below the engine's floor, naming the floor in MB", () => {
      expect(rejection({ name: "m", ram: "2MB" })).toBe(
        'ram: "2MB" is below the engine\'s floor of 4 MB; use at least "4MB"',
      );
      expect(rejection({ name: "m", ram: "5MB" }, { ...defaults, minRamBytes: 6.5 * MB })).toBe(
        'ram: "5MB" is below the engine\'s floor of 6.50 MB (6815744 bytes); use at least "7MB"',
      );
    });

    it("a small ram at the floor is fine", () => {
      expect(parseTaskOptions({ name: "m", ram: "4MB" }, defaults).ramBytes).toBe(4 * MB);
    });

    it.each([
      ["timout", "timeout"],
      ["max_retry", "max_retries"],
      ["maxretries", "maxRetries"],
      ["Compute", "compute"],
      ["allowedHost", "allowedHosts"],
      ["env_vars", "env_variables"],
      ["memory", undefined],
      ["callback", undefined],
    ])("an unknown key %j, suggesting %j", (key, suggestion) => {
      const message = rejection({ name: "m", [key]: 1 });
      expect(message).toMatch(new RegExp(`^task options: unknown option "${key}"; `));
      expect(message).toContain(
        "known options are name, compute, ram, timeout, maxRetries, allowedFiles, allowedHosts, envVariables (or max_retries, allowed_files, allowed_hosts, env_variables)",
      );
      if (suggestion) expect(message).toContain(`did you mean "${suggestion}"?`);
      else expect(message).not.toContain("did you mean");
    });

    it("a bad runtime default, naming it", () => {
      expect(rejection({ name: "m" }, { ...defaults, compute: "TURBO" })).toMatch(
        /^compute \(runtime default\): "TURBO"/,
      );
    });
  });
});
