import { describe, expect, it } from "vitest";
import { EXAMPLES } from "./examples.ts";
import {
  allowedDirectories,
  fieldsOf,
  findMainOptions,
  findPythonMainOptions,
  findTaskOptions,
  formatOptions,
  withField,
} from "./options.ts";

const source = `import { task } from "@capsule-run/sdk";
const helper = task({ name: "helper", allowed_files: [{ path: "./in", mode: "ro" }] }, () => 1);
export const main = task(
  {
    name: "main", // the entry
    compute: "LOW",
    ram: '64MB',
    allowedHosts: ["api.x.com", "*.y.com",],
    allowedFiles: ["./out", { path: "./cfg", mode: "read-only" }],
  },
  () => "{ not options }",
);
`;

describe("findMainOptions", () => {
  it("finds and parses the main task's options literal", () => {
    const found = findMainOptions(source);
    expect(found?.value).toEqual({
      name: "main",
      compute: "LOW",
      ram: "64MB",
      allowedHosts: ["api.x.com", "*.y.com"],
      allowedFiles: ["./out", { path: "./cfg", mode: "read-only" }],
    });
    expect(found?.indent).toBe("  ");
    expect(source.slice(found?.start, found?.end)).toMatch(/^\{[\s\S]*\}$/);
  });

  it("reports options that are not plain literals as uneditable", () => {
    const found = findMainOptions(
      `const limits = { compute: "LOW" };\nexport const main = task({ name: "main", ...limits }, () => 1);`,
    );
    expect(found).toBeDefined();
    expect(found?.value).toBeNull();
  });

  it("finds no main task when none is declared", () => {
    expect(findMainOptions(`const x = task({ name: "other" }, () => 1);`)).toBeUndefined();
  });

  it("finds the main options in every example", () => {
    for (const example of EXAMPLES) {
      const options =
        example.language === "py"
          ? findPythonMainOptions(example.code)
          : findMainOptions(example.code)?.value;
      expect(options?.name, example.id).toBe("main");
    }
  });
});

describe("findPythonMainOptions", () => {
  it("reads the main task's keyword arguments as literals", () => {
    const code = `from capsule import task


@task(name="helper", compute="HIGH")
def helper():
    return 1


@task(name="main", compute="LOW", ram='64MB', max_retries=2, allowed_hosts=["api.x.com"], env_variables=None)
def main():
    return helper()
`;
    const options = findPythonMainOptions(code);
    expect(options).toEqual({
      name: "main",
      compute: "LOW",
      ram: "64MB",
      max_retries: 2,
      allowed_hosts: ["api.x.com"],
      env_variables: null,
    });
    expect(fieldsOf(options ?? {})).toMatchObject({ maxRetries: "2", allowedHosts: "api.x.com" });
  });

  it("finds nothing without a literal @task for main", () => {
    expect(findPythonMainOptions("def main():\n    return 1\n")).toBeNull();
    expect(findPythonMainOptions('@task(name="main", compute=LEVEL)\ndef main(): pass')).toBeNull();
  });
});

describe("fields", () => {
  it("shows lists and read-only files as text", () => {
    const value = findMainOptions(source)?.value ?? {};
    expect(fieldsOf(value)).toEqual({
      compute: "LOW",
      ram: "64MB",
      timeout: "",
      maxRetries: "",
      allowedHosts: "api.x.com, *.y.com",
      allowedFiles: "./out, ./cfg:ro",
      envVariables: "",
    });
  });

  it("sets, replaces and removes options, keeping their order and spelling", () => {
    let options = withField({ name: "main", compute: "LOW", max_retries: 1 }, "timeout", "2s");
    options = withField(options, "maxRetries", "3");
    options = withField(options, "compute", "");
    options = withField(options, "allowedFiles", "./data, ./cfg:ro");
    expect(options).toEqual({
      name: "main",
      max_retries: 3,
      timeout: "2s",
      allowedFiles: ["./data", { path: "./cfg", mode: "ro" }],
    });
    expect(withField({ name: "main" }, "compute", "5000000")).toEqual({
      name: "main",
      compute: 5000000,
    });
  });

  it("formats short options on one line and long ones one per line", () => {
    expect(formatOptions({ name: "main", compute: "LOW" }, "")).toBe(
      '{ name: "main", compute: "LOW" }',
    );
    const long = formatOptions(
      { name: "main", allowedHosts: ["a.example.com", "b.example.com", "c.example.com", "d.x"] },
      "  ",
    );
    expect(long).toBe(
      '{\n    name: "main",\n    allowedHosts: ["a.example.com", "b.example.com", "c.example.com", "d.x"],\n  }',
    );
  });

  it("round-trips: formatted options parse back to the same value", () => {
    const value = findMainOptions(source)?.value ?? {};
    const code = `task(${formatOptions(value, "")}, () => 1)`;
    expect(findMainOptions(code)?.value).toEqual(value);
  });
});

describe("allowedDirectories", () => {
  it("lists every task's directories below the app root", () => {
    expect(findTaskOptions(source)).toHaveLength(2);
    expect(allowedDirectories(source)).toEqual(["in", "out", "cfg"]);
    expect(allowedDirectories(`task({ name: "main", allowedFiles: ["../up", "./a/b/"] })`)).toEqual(
      ["a/b"],
    );
  });
});
