import { ConfigError } from "../errors.ts";

/** The `run()` options every adapter shares, as the caller may pass them (unchecked). */
export interface CommonRunOptions {
  code?: unknown;
  language?: unknown;
  args?: unknown;
  task?: unknown;
  onEvent?: unknown;
  onLog?: unknown;
  env?: unknown;
}

/**
 * Checks what every adapter's `run()` accepts alike, so a bad value gets the same error on every
 * host: the option, the value, what is accepted. Adapters check their own options after this.
 */
export function checkCommonRunOptions(
  options: unknown,
  known: ReadonlySet<string>,
  example: string,
  unknownHint: (key: string) => string = () => "",
  languages: readonly string[] = ["ts", "js"],
): asserts options is CommonRunOptions {
  if (typeof options !== "object" || options === null) {
    throw new ConfigError(
      `run(): options must be an object like ${example}, got ${describe(options)}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!known.has(key)) {
      throw new ConfigError(
        `run(): unknown option ${JSON.stringify(key)}${unknownHint(key)}; known options: ${[...known].join(", ")}`,
      );
    }
  }
  const { code, language, args = [], task, env } = options as CommonRunOptions;
  if (code !== undefined && typeof code !== "string") {
    throw new ConfigError(`run(): code must be a string of task source, got ${describe(code)}`);
  }
  if (language !== undefined && !languages.includes(language as string)) {
    const accepted = languages.map((name) => JSON.stringify(name)).join(" or ");
    const python = language === "py" ? " (Python tasks run on Node and in web pages)" : "";
    throw new ConfigError(
      `run(): language ${describe(language)} is not supported here${python}; use ${accepted}`,
    );
  }
  if (!Array.isArray(args) || args.some((a) => typeof a !== "string")) {
    throw new ConfigError(`run(): args must be an array of strings, got ${describe(args)}`);
  }
  if (task !== undefined && (typeof task !== "string" || task === "")) {
    throw new ConfigError(`run(): task must be a task name, got ${describe(task)}`);
  }
  for (const key of ["onEvent", "onLog"] as const) {
    const value = (options as CommonRunOptions)[key];
    if (value !== undefined && typeof value !== "function") {
      throw new ConfigError(`run(): ${key} must be a function, got ${describe(value)}`);
    }
  }
  if (
    env !== undefined &&
    (typeof env !== "object" ||
      env === null ||
      Object.values(env).some((v) => v !== undefined && typeof v !== "string"))
  ) {
    throw new ConfigError(`run(): env must be an object of string variables, got ${describe(env)}`);
  }
}

/** A value as a message shows it: JSON where possible. */
export function describe(value: unknown): string {
  if (typeof value === "function") return "a function";
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
