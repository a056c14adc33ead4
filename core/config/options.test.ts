import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError, MemoryExceededError } from "../errors.ts";
import { parseAllowedHosts } from "../policy/hosts.ts";
import { fuzzRuns } from "../testing/fuzz.ts";
import { type LimitDefaults, MAX_RETRIES, parseTaskOptions, type TaskLimits } from "./options.ts";
import { MAX_DURATION_MS, MAX_MEMORY_BYTES } from "./units.ts";

const MB = 2 ** 20;
const defaults: LimitDefaults = { ramBytes: 256 * MB, minRamBytes: 4 * MB };

function rejection(
  raw: unknown,
  limits: LimitDefaults = defaults,
  kind: typeof ConfigError | typeof MemoryExceededError = ConfigError,
): string {
  try {
    parseTaskOptions(raw, limits);
  } catch (error) {
    expect(error).toBeInstanceOf(kind);
    return (error as Error).message;
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
      [{ name: "m", timeout: "1 fortnight" }, 'timeout: "1 fortnight" has the unit "fortnight"'],
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

    it("ram below the engine's floor is memory_exceeded, naming the floor in MB", () => {
      const below = (raw: unknown, limits: LimitDefaults = defaults) =>
        rejection(raw, limits, MemoryExceededError);
      expect(below({ name: "m", ram: "2MB" })).toBe(
        'ram: "2MB" is below the engine\'s floor of 4 MB, so the task ran out of memory before it could start; use at least "4MB"',
      );
      expect(below({ name: "m", ram: "5MB" }, { ...defaults, minRamBytes: 6.5 * MB })).toBe(
        'ram: "5MB" is below the engine\'s floor of 6.50 MB (6815744 bytes), so the task ran out of memory before it could start; use at least "7MB"',
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

describe("parseTaskOptions on any input", () => {
  /** Every spelling the SDKs may use: the public contract, written out here on purpose. */
  const KNOWN_KEYS = [
    "name",
    "compute",
    "ram",
    "timeout",
    "maxRetries",
    "max_retries",
    "allowedFiles",
    "allowed_files",
    "allowedHosts",
    "allowed_hosts",
    "envVariables",
    "env_variables",
  ];

  /** Any value at all, exotic ones (BigInt, Map, boxed, sparse, null-prototype) included. */
  const anything = fc.anything({
    maxDepth: 3,
    stringUnit: "binary",
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
  });
  const text = fc.string({ unit: "binary", maxLength: 12 });
  const number = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -0, 2 ** 53, 2 ** 32));
  const CAMEL_CASE: Readonly<Record<string, string>> = {
    max_retries: "maxRetries",
    allowed_files: "allowedFiles",
    allowed_hosts: "allowedHosts",
    env_variables: "envVariables",
  };
  /** record[key] for its own keys only: "constructor" is no option. */
  const own = <T>(record: Readonly<Record<string, T>>, key: string): T | undefined =>
    Object.hasOwn(record, key) ? record[key] : undefined;

  /** Mostly values of the shape an option accepts (valid or close), sometimes anything at all. */
  const mostly = <T>(valid: fc.Arbitrary<T>, ...near: fc.Arbitrary<unknown>[]) =>
    fc.oneof({ weight: 10, arbitrary: valid }, ...near);
  /** A list as the option expects it, or one with holes, or one bad entry, or no list at all. */
  const listOf = (valid: fc.Arbitrary<unknown>, invalid: fc.Arbitrary<unknown>) =>
    fc.oneof(
      { weight: 6, arbitrary: fc.array(valid, { maxLength: 3 }) },
      fc.array(fc.oneof(valid, invalid), { maxLength: 3 }),
      fc.sparseArray(valid, { maxLength: 3 }),
      valid,
      anything,
    );

  const validDuration = fc
    .tuple(
      fc.subarray(["h", "m", "s", "ms"], { minLength: 1 }),
      fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 4, maxLength: 4 }),
      fc.constantFrom("", " ", "  "),
    )
    .map(([units, counts, gap]) => units.map((unit, i) => `${counts[i]}${unit}`).join(gap));

  /** Per option: values it should accept, values a typo away from one, and anything at all. */
  const optionValue: Record<string, fc.Arbitrary<unknown>> = {
    name: mostly(
      fc.oneof(
        fc.constantFrom("main", "task-2"),
        text.filter((t) => t.trim() !== ""),
      ),
      fc.constantFrom("", " ", "\t"),
      text,
      anything,
    ),
    compute: mostly(
      fc.oneof(
        fc.constantFrom("LOW", "MEDIUM", "HIGH", "low", " High "),
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.stringMatching(/^\s?\d{1,16}\s?$/),
      ),
      fc.constantFrom("CUSTOM", "ULTRA", "1e9", "", "0", "-5", "99999999999999999999"),
      fc.bigInt(),
      number,
      anything,
    ),
    ram: mostly(
      fc
        .tuple(
          fc.integer({ min: 1, max: 4096 }),
          fc.constantFrom("KB", "kib", "MB", " mb", "MiB", "GB"),
        )
        .map(([n, unit]) => `${n}${unit}`),
      fc.constantFrom("5GB", "1.5GB", "0MB", "-1MB", "12 TB", "MB", "1e6"),
      fc
        .tuple(
          fc.integer({ min: -2, max: 5000 }),
          fc.option(fc.stringMatching(/^\d{1,10}$/), { nil: undefined }),
          fc.constantFrom("", "B", "KB", "MB", "GB", "TB", "x"),
        )
        .map(([whole, fraction, unit]) => `${whole}${fraction ? `.${fraction}` : ""}${unit}`),
      number,
      anything,
    ),
    timeout: mostly(
      fc.oneof(validDuration, fc.integer({ min: 1, max: MAX_DURATION_MS }), fc.constant(null)),
      fc.constantFrom("1d", "1.5s", "0s", "600h", "10", "30m 1h", "1h,30m"),
      fc
        .array(
          fc.tuple(
            fc.integer({ min: -1, max: 10_000 }),
            fc.constantFrom("h", "m", "s", "ms", "MS", "d", ""),
          ),
          { minLength: 1, maxLength: 4 },
        )
        .map((parts) => parts.map(([n, unit]) => `${n}${unit}`).join(" ")),
      number,
      anything,
    ),
    maxRetries: mostly(
      fc.integer({ min: 0, max: MAX_RETRIES }),
      fc.integer({ min: -2, max: 12 }),
      fc.constantFrom("3", null, 1.5),
      number,
      anything,
    ),
    allowedFiles: listOf(
      fc.oneof(
        fc.constantFrom("./data", "data/raw", ".", "../x", "/etc"),
        fc.record(
          {
            path: fc.constantFrom("./data", "./cfg", "out"),
            mode: fc.constantFrom("ro", "rw", "read-only", "read-write", "READ-ONLY"),
          },
          { requiredKeys: ["path"] },
        ),
      ),
      fc.oneof(
        fc.constantFrom("", " "),
        text,
        fc.record(
          {
            path: fc.oneof(fc.constantFrom("./data", "", " "), text, anything),
            mode: fc.oneof(fc.constantFrom("ro", "readonly", "x"), anything),
            mdoe: fc.constant("ro"),
          },
          { requiredKeys: [] },
        ),
        anything,
      ),
    ),
    allowedHosts: listOf(
      fc.constantFrom("*", "api.x.com", "*.x.com", "api.*", "10.0.0.1", "[::1]", "bücher.de"),
      fc.oneof(
        fc.constantFrom("x.com:443", "*x.com", "a b", "", "https://x.com", "192.168.*", "*.*"),
        text,
        anything,
      ),
    ),
    envVariables: listOf(
      fc.oneof(fc.constantFrom("API_KEY", "HOME"), fc.stringMatching(/^[A-Za-z_][\w.-]{0,8}$/)),
      fc.oneof(fc.constantFrom("", "A B", "\t"), text, anything),
    ),
  };

  const key = fc.oneof(
    { weight: 30, arbitrary: fc.constantFrom(...KNOWN_KEYS) },
    fc.constantFrom("timout", "maxretries", "Name", "memory", "__proto__", "constructor", ""),
    text,
  );
  /** The value for a key: mostly one meant for its option, sometimes anything, or undefined. */
  const valueFor = (name: string) =>
    fc.oneof(
      {
        weight: 20,
        arbitrary: own(optionValue, own(CAMEL_CASE, name) ?? name) ?? anything,
      },
      anything,
      fc.constant(undefined),
    );

  /** An options object built key by key, "__proto__" included as an own key. */
  const optionsObject = fc
    .tuple(
      fc.option(valueFor("name"), { nil: undefined, freq: 10 }),
      fc.array(
        key.chain((k) => valueFor(k).map((value) => [k, value] as const)),
        {
          maxLength: 4,
        },
      ),
    )
    .map(([name, entries]) => {
      const options: Record<string, unknown> = {};
      const all = name === undefined ? entries : [["name", name] as const, ...entries];
      for (const [k, value] of all) {
        Object.defineProperty(options, k, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return options;
    });

  const anyOptions = fc.oneof({ weight: 19, arbitrary: optionsObject }, anything);

  /** Defaults as the runtime gives them (its own settings are checked where they are read). */
  const runtimeDefaults = fc
    .record({
      minRamBytes: fc.integer({ min: 1, max: 64 * MB }),
      headroom: fc.integer({ min: 0, max: 2 ** 31 }),
      compute: fc.option(
        fc.oneof(fc.constantFrom("LOW", "MEDIUM", "HIGH"), fc.integer({ min: 1, max: 1e12 })),
        { nil: undefined },
      ),
      timeoutMs: fc.option(fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 2 ** 31 - 1 })), {
        nil: undefined,
      }),
    })
    .map(({ minRamBytes, headroom, ...rest }): LimitDefaults => {
      const defaults: LimitDefaults = { minRamBytes, ramBytes: minRamBytes + headroom };
      if (rest.compute !== undefined) defaults.compute = rest.compute;
      if (rest.timeoutMs !== undefined) defaults.timeoutMs = rest.timeoutMs;
      return defaults;
    });

  const isStringList = (list: unknown): boolean =>
    Array.isArray(list) &&
    Array.from({ length: list.length }, (_, i) => i).every(
      (i) => Object.hasOwn(list, i) && typeof list[i] === "string",
    );

  /** The keys the user gave a value for, as they spelled them. */
  const givenKeys = (raw: object) =>
    Object.entries(raw)
      .filter(([, value]) => value !== undefined)
      .map(([k]) => k);

  function expectSoundLimits(limits: TaskLimits, raw: object, defaults: LimitDefaults): void {
    expect(typeof limits.name === "string" && limits.name.trim() !== "").toBe(true);
    expect(Number.isSafeInteger(limits.fuel) && limits.fuel > 0).toBe(true);
    expect(Number.isSafeInteger(limits.ramBytes)).toBe(true);
    expect(limits.ramBytes).toBeGreaterThanOrEqual(defaults.minRamBytes);
    expect(limits.ramBytes).toBeLessThanOrEqual(MAX_MEMORY_BYTES);
    if (limits.timeoutMs !== null) {
      expect(Number.isSafeInteger(limits.timeoutMs) && limits.timeoutMs > 0).toBe(true);
      expect(limits.timeoutMs).toBeLessThanOrEqual(MAX_DURATION_MS);
    }
    expect(Number.isInteger(limits.maxRetries)).toBe(true);
    expect(limits.maxRetries >= 0 && limits.maxRetries <= MAX_RETRIES).toBe(true);
    expect(isStringList(limits.allowedHosts)).toBe(true);
    expect(isStringList(limits.envVariables)).toBe(true);
    for (const entry of [...limits.envVariables, ...limits.allowedHosts]) {
      expect(entry.trim() !== "" && !/\s/.test(entry)).toBe(true);
    }
    // Every host entry is one the matcher understands: nothing is silently ignored later.
    expect(() => parseAllowedHosts(limits.allowedHosts, "allowedHosts")).not.toThrow();
    expect(Array.isArray(limits.allowedFiles)).toBe(true);
    for (let i = 0; i < limits.allowedFiles.length; i++) {
      expect(Object.hasOwn(limits.allowedFiles, i)).toBe(true);
      const entry = limits.allowedFiles[i];
      expect(Object.keys(entry ?? {}).sort()).toEqual(["mode", "path"]);
      expect(typeof entry?.path === "string" && entry.path.trim() !== "").toBe(true);
      expect(["ro", "rw"]).toContain(entry?.mode);
    }
    // What was given is what is used: the name as written, lists entry for entry.
    const given = (camelCase: string, snakeCase = camelCase): unknown => {
      const options = raw as Record<string, unknown>;
      return options[camelCase] !== undefined ? options[camelCase] : options[snakeCase];
    };
    expect(limits.name).toBe(given("name"));
    expect(limits.maxRetries === (given("maxRetries", "max_retries") ?? 0)).toBe(true);
    expect(limits.allowedHosts).toEqual(given("allowedHosts", "allowed_hosts") ?? []);
    expect(limits.envVariables).toEqual(given("envVariables", "env_variables") ?? []);
    // Written back as options, the limits read as themselves.
    const again = parseTaskOptions(
      {
        name: limits.name,
        compute: limits.fuel,
        ram: limits.ramBytes,
        timeout: limits.timeoutMs,
        maxRetries: limits.maxRetries,
        allowedFiles: limits.allowedFiles,
        allowedHosts: limits.allowedHosts,
        envVariables: limits.envVariables,
      },
      defaults,
    );
    expect(again).toEqual(limits);
    expect(Object.keys(raw).every((k) => KNOWN_KEYS.includes(k))).toBe(true);
  }

  /** A refusal names an option the user gave (as spelled), or says the options are no object. */
  function expectNamedRefusal(error: unknown, raw: unknown): void {
    const message = (error as Error).message;
    // Only a ram the engine cannot start in is memory_exceeded; every other refusal is config_error.
    expect(error).toBeInstanceOf(
      / is below the engine's floor of /.test(message) ? MemoryExceededError : ConfigError,
    );
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      expect(message).toMatch(/^task options: .* is not an object; /s);
      return;
    }
    const keys = givenKeys(raw);
    const named = keys.some(
      (k) =>
        KNOWN_KEYS.includes(k) && (message.startsWith(`${k}: `) || message.startsWith(`${k}[`)),
    );
    // An unknown key is refused even when its value is undefined: it is most likely a typo.
    const unknown = Object.keys(raw).some(
      (k) =>
        !KNOWN_KEYS.includes(k) &&
        (message.startsWith(`task options: unknown option "${k}"; `) ||
          message.startsWith(`task options: unknown option ${JSON.stringify(k)}; `)),
    );
    const twoSpellings = keys.some((first) =>
      keys.some(
        (second) =>
          first !== second &&
          message.startsWith(`task options: "${first}" is `) &&
          message.includes(` but "${second}" is `),
      ),
    );
    const nameMissing = !keys.includes("name") && message.startsWith("name: missing; ");
    expect(named || unknown || twoSpellings || nameMissing, message).toBe(true);
  }

  it("returns limits within their bounds or throws a ConfigError naming the option, for any input", () => {
    fc.assert(
      fc.property(anyOptions, runtimeDefaults, (raw, defaults) => {
        let limits: TaskLimits;
        try {
          limits = parseTaskOptions(raw, defaults);
        } catch (error) {
          expectNamedRefusal(error, raw);
          return;
        }
        expectSoundLimits(limits, raw as object, defaults);
      }),
      { numRuns: fuzzRuns(400) },
    );
  });

  it("reads snake_case and camelCase spellings alike", () => {
    const pairs = [
      ["maxRetries", "max_retries"],
      ["allowedFiles", "allowed_files"],
      ["allowedHosts", "allowed_hosts"],
      ["envVariables", "env_variables"],
    ] as const;
    fc.assert(
      fc.property(
        fc.tuple(...pairs.map(([camel]) => valueFor(camel))),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        (values, snake) => {
          const camelCase: Record<string, unknown> = { name: "main" };
          const mixed: Record<string, unknown> = { name: "main" };
          pairs.forEach(([camel, snakeKey], i) => {
            camelCase[camel] = values[i];
            mixed[snake[i] ? snakeKey : camel] = values[i];
          });
          const read = (raw: object) => {
            try {
              return { limits: parseTaskOptions(raw, defaults) };
            } catch (error) {
              // The message quotes the key as written; the rest is the same for both spellings.
              const message = (error as Error).message;
              return {
                refused: pairs.reduce(
                  (text, [camel, snakeKey]) => text.replaceAll(snakeKey, camel),
                  message,
                ),
              };
            }
          };
          expect(read(mixed)).toEqual(read(camelCase));
        },
      ),
      { numRuns: fuzzRuns(200) },
    );
  });
});
