import { expect } from "vitest";
import { ConfigError } from "../errors.ts";

/** Runs `run`, expects it to throw a ConfigError, and returns it for checks on the message. */
export function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError, nothing was thrown");
}
