import { describe, expect, it } from "vitest";
import { ConfigError } from "../errors.ts";
import { parseCapsuleToml, withTaskDefaults } from "./capsule-toml.ts";
import { parseTaskOptions } from "./options.ts";

const FILE = "/project/capsule.toml";

function refusal(text: string): string {
  try {
    parseCapsuleToml(text, FILE);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("the file was accepted");
}

describe("capsule.toml", () => {
  it("reads Capsule's [workflow] and [tasks] keys and our [portable] table", () => {
    const config = parseCapsuleToml(
      `[workflow]
name = "dialogue-evaluator"
version = "0.1.0"
entrypoint = "main.ts"

[tasks]
default_compute = "LOW"
default_ram = "256MB"
default_timeout = "1.5s"
default_max_retries = 2
default_allowed_files = ["./data", "./out"]
default_allowed_hosts = ["api.example.com"]
default_env_variables = ["API_KEY"]

[portable]
write_bytes = "8MB"
write_files = 100
max_subtask_depth = 2
max_subtasks_per_run = 16
`,
      FILE,
    );
    expect(config.workflow).toEqual({
      name: "dialogue-evaluator",
      version: "0.1.0",
      entrypoint: "main.ts",
    });
    expect(config.taskDefaults).toEqual({
      compute: "LOW",
      ram: "256MB",
      timeout: "1.5s",
      maxRetries: 2,
      allowedFiles: ["./data", "./out"],
      allowedHosts: ["api.example.com"],
      envVariables: ["API_KEY"],
    });
    expect(config.settings).toEqual({
      writeBytes: 8 * 1024 * 1024,
      writeFiles: 100,
      maxSubtaskDepth: 2,
      maxSubtasksPerRun: 16,
    });
  });

  it("an empty file sets nothing", () => {
    expect(parseCapsuleToml("", FILE)).toEqual({
      file: FILE,
      workflow: {},
      taskDefaults: {},
      settings: {},
    });
  });

  it.each([
    [
      '[tasks]\ndefault_ram = "lots"\n',
      /capsule\.toml: \[tasks\] default_ram: "lots" is not a valid size/,
    ],
    ['[tasks]\ndefault_compute = "ULTRA"\n', /\[tasks\] default_compute: .*"ULTRA"/],
    ['[tasks]\ndefault_timeout = "soon"\n', /\[tasks\] default_timeout: .*"soon"/],
    [
      "[tasks]\ndefault_max_retries = 99\n",
      /\[tasks\] default_max_retries: .*99 is too many retries/,
    ],
    ['[tasks]\ndefault_allowed_hosts = ["http://x"]\n', /\[tasks\] default_allowed_hosts/],
    [
      '[tasks]\ndefault_rma = "64MB"\n',
      /unknown key "default_rma" in \[tasks\]; its keys are default_compute, default_ram/,
    ],
    ['[workflow]\nentry = "main.ts"\n', /unknown key "entry" in \[workflow\]/],
    ["[workflow]\nentrypoint = 3\n", /\[workflow\] entrypoint must be a non-empty string, got 3/],
    [
      "[runtime]\nx = 1\n",
      /unknown table "runtime"; capsule\.toml has the tables \[workflow\], \[tasks\] and \[portable\]/,
    ],
    ["tasks = 1\n", /tasks must be a table/],
    [
      "[portable]\nwrite_bytes = -1\n",
      /\[portable\] write_bytes: -1 is not a non-negative integer or a size/,
    ],
    ["[portable]\nmax_subtasks = 3\n", /unknown key "max_subtasks" in \[portable\]/],
    ["[tasks\ndefault_ram = 1\n", /capsule\.toml: not valid TOML \(line 1, column \d+: /],
  ])("refuses %j naming the key and the file", (text, message) => {
    const error = refusal(text);
    expect(error).toContain(FILE);
    expect(error).toMatch(message);
  });

  it("fills in only the options a task leaves out, under either spelling", () => {
    const defaults = { ram: "64MB", maxRetries: 3, allowedHosts: ["a.example"] };
    expect(withTaskDefaults({ name: "t", ram: "128MB" }, defaults)).toEqual({
      name: "t",
      ram: "128MB",
      maxRetries: 3,
      allowedHosts: ["a.example"],
    });
    // A Python task spells them its way; the default must not become a second spelling.
    const python = withTaskDefaults({ name: "t", max_retries: 0, allowed_hosts: [] }, defaults);
    expect(python).toEqual({ name: "t", max_retries: 0, allowed_hosts: [], ram: "64MB" });
    const limits = parseTaskOptions(python, { ramBytes: 1, minRamBytes: 0 });
    expect(limits).toMatchObject({ maxRetries: 0, allowedHosts: [], ramBytes: 64 * 1024 * 1024 });
    // What is not an options object stays as it is, for the options' own check to refuse.
    expect(withTaskDefaults("nope", defaults)).toBe("nope");
    expect(withTaskDefaults({ name: "t" }, undefined)).toEqual({ name: "t" });
  });
});
