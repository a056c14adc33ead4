// The README never lies: its code blocks run, its commands succeed, and the names it lists
// (options, flags, envelope keys, error types, events) are the ones the code has.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";
import { afterAll, describe, expect, it } from "vitest";
import { type Envelope, type RunOptions, run, shutdown } from "./adapters/node/index.ts";
import { runCapsule } from "./adapters/node/test/fixtures.ts";
import { CAPSULE_TOML_KEYS, parseCapsuleToml } from "./core/config/capsule-toml.ts";

const repoRoot = dirname(fileURLToPath(import.meta.url));
const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
const packageJson = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  exports: Record<string, unknown>;
};

afterAll(() => shutdown());

interface CodeBlock {
  lang: string;
  body: string;
}

/** The text of the `## title` section, up to the next `## ` heading. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start === -1) throw new Error(`README has no "## ${title}" section`);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

function codeBlocks(markdown: string, lang?: string): CodeBlock[] {
  const blocks = [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({
    lang: m[1] ?? "",
    body: m[2] ?? "",
  }));
  return lang === undefined ? blocks : blocks.filter((block) => block.lang === lang);
}

function onlyBlock(title: string, lang: string): string {
  const blocks = codeBlocks(section(title), lang);
  expect(blocks, `one \`\`\`${lang} block under "## ${title}"`).toHaveLength(1);
  return blocks[0]?.body ?? "";
}

/** Every name written as `name` in a piece of prose. */
function backticked(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? "");
}

/** The members of a string-literal union type, read from its source file. */
function unionMembers(file: string, typeName: string): string[] {
  const source = readFileSync(join(repoRoot, file), "utf8");
  const declaration = source.match(new RegExp(`type ${typeName} =([^;]+);`));
  if (!declaration?.[1]) throw new Error(`no type ${typeName} in ${file}`);
  return [...declaration[1].matchAll(/"([^"]+)"/g)].map((m) => m[1] ?? "");
}

/** Object keys at every depth, as sorted paths: a shape to compare, whatever the values. */
function keyPaths(value: unknown, prefix = ""): string[] {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return [];
  return Object.entries(value)
    .flatMap(([key, inner]) => [`${prefix}${key}`, ...keyPaths(inner, `${prefix}${key}.`)])
    .sort();
}

/** `npx capsule a b  # comment` as the arguments after `capsule`. */
function capsuleArgs(commandLine: string): string[] {
  const words = commandLine.replace(/#.*$/, "").trim().split(/\s+/);
  expect(words.slice(0, 2)).toEqual(["npx", "capsule"]);
  return words.slice(2);
}

function capsule(args: string[]) {
  return runCapsule(args, { cwd: repoRoot });
}

/** Within a factor of two: the README's sample numbers must stay the right size. */
function expectSameScale(shown: number, actual: number, what: string) {
  expect(actual / shown, `${what}: README shows ${shown}, a run gives ${actual}`).toBeGreaterThan(
    0.5,
  );
  expect(actual / shown, `${what}: README shows ${shown}, a run gives ${actual}`).toBeLessThan(2);
}

describe("## A task", () => {
  const taskBlock = onlyBlock("A task", "ts");
  const [commandLine = "", ...shownJson] = onlyBlock("A task", "sh").split("\n");
  const shown = JSON.parse(shownJson.join("\n")) as Envelope;

  it("shows examples/hello.ts, unchanged but for layout", () => {
    const layoutFree = (source: string) => source.replace(/\s+/g, "").replace(/,([)}\]])/g, "$1");
    const hello = readFileSync(join(repoRoot, "examples", "hello.ts"), "utf8");
    expect(commandLine).toBe("$ npx capsule run examples/hello.ts");
    expect(layoutFree(taskBlock)).toBe(layoutFree(hello));
  });

  it("the task block gives the result the README shows", async () => {
    const envelope = await run({ code: taskBlock, language: "ts", cwd: repoRoot, threads: 0 });
    expect({ success: envelope.success, result: envelope.result, error: envelope.error }).toEqual({
      success: shown.success,
      result: shown.result,
      error: shown.error,
    });
  });

  it("the command prints an envelope of the shape and scale shown", async () => {
    const { code, stdout } = await capsule(capsuleArgs(commandLine.replace(/^\$ /, "")));
    expect(code).toBe(0);
    const envelope = JSON.parse(stdout) as Envelope;
    expect(keyPaths(shown)).toEqual(keyPaths(envelope));
    expect(envelope.result).toEqual(shown.result);
    expect(envelope.execution.task_name).toBe(shown.execution.task_name);
    expectSameScale(
      shown.execution.fuel_consumed,
      envelope.execution.fuel_consumed,
      "fuel_consumed",
    );
    expectSameScale(shown.execution.ram_used, envelope.execution.ram_used, "ram_used");
  });
});

describe.concurrent("## Examples: every command succeeds", () => {
  const commands = onlyBlock("Examples", "sh").trim().split("\n");

  it.each(commands)("%s", async (commandLine) => {
    const args = capsuleArgs(commandLine);
    const { code, stdout, stderr } = await capsule(args);
    expect(code, stderr).toBe(0);
    expect((JSON.parse(stdout) as Envelope).success).toBe(true);
    if (args.includes("--verbose"))
      expect(stderr).toMatch(/^\[capsule [\d:.]+\] main: completed in /m);
  });
});

describe("## From code", () => {
  const prose = section("From code");

  it("the run() block's calls work as written", async () => {
    const block = onlyBlock("From code", "ts");
    const importLine = 'import { run } from "capsule-portable/node";';
    expect(block).toContain(importLine);
    expect(packageJson.exports).toHaveProperty("./node");
    const { code } = await transform(block.replace(importLine, ""), { loader: "ts" });
    const declared = [...code.matchAll(/const (\w+) = await run\(/g)].map((m) => m[1]);
    expect(declared).toEqual(["envelope", "fromAgent"]);
    // The README's relative paths are from the project root, where `npm test` runs.
    const runFromRoot = (options: RunOptions) => run({ cwd: repoRoot, ...options });
    const runBlock = new Function(
      "run",
      `return (async () => { ${code}; return [envelope, fromAgent]; })();`,
    );
    const [envelope, fromAgent] = (await runBlock(runFromRoot)) as [Envelope, Envelope];
    expect(envelope).toMatchObject({ success: true, result: "Hello from Capsule!" });
    expect(fromAgent).toMatchObject({ success: true, result: 42 });
  });

  it("names every option run() accepts, and only those", async () => {
    const refusal = await run({ readmeProbe: true } as RunOptions);
    const known = refusal.error?.message.match(/known options: (.+)$/)?.[1]?.split(", ") ?? [];
    expect(known.length).toBeGreaterThan(0);
    const usage = onlyBlock("From code", "ts").replace(/`[^`]*`/g, "");
    const mentioned = new Set([
      ...[...usage.matchAll(/(\w+):/g)].map((m) => m[1] ?? ""),
      ...backticked(prose.replace(/```[\s\S]*?```/g, "")).map((name) => name.replace(/:.*$/, "")),
    ]);
    for (const name of known) expect(mentioned.has(name), `run() option ${name}`).toBe(true);
    const others = prose.match(/Other options: ([\s\S]+?)\.\n/)?.[1] ?? "";
    const listed = backticked(others).filter((name) => /^\w+$/.test(name));
    expect(listed.length).toBeGreaterThan(0);
    for (const name of listed) expect(known, `README option ${name}`).toContain(name);
  });

  it("lists exactly the lifecycle events", () => {
    const listed = prose.match(/onEvent` \(lifecycle: ([^)]+)\)/)?.[1]?.split(/,\s*/);
    expect(listed?.sort()).toEqual(
      unionMembers("core/runtime/events.ts", "LifecycleEventType").sort(),
    );
  });
});

describe("## The envelope", () => {
  const prose = section("The envelope");

  it("lists exactly the envelope's keys", async () => {
    const envelope = await run({ code: "", threads: 0 });
    const listed = backticked(prose.slice(0, prose.indexOf("Error types")));
    const names = new Set(
      listed.flatMap((name) => name.replace(/[{}]/g, "").split(",")).map((n) => n.trim()),
    );
    const real = new Set(
      keyPaths({ ...envelope, error: { error_type: "", message: "" } }).map((p) =>
        p.split(".").at(-1),
      ),
    );
    expect([...names].sort()).toEqual([...real].sort());
  });

  it("lists exactly the error types", () => {
    const listed = backticked(prose.slice(prose.indexOf("Error types")));
    expect(listed.sort()).toEqual(unionMembers("core/runtime/envelope.ts", "ErrorType").sort());
  });
});

describe("## Task options", () => {
  const rows = section("Task options")
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) => line.split("|").map((cell) => cell.trim()));

  // A project holding the directories the table's examples grant.
  const optionsProject = mkdtempSync(join(tmpdir(), "capsule-readme-"));
  mkdirSync(join(optionsProject, "data"));
  afterAll(() => rmSync(optionsProject, { recursive: true, force: true }));
  const runOption = (option: string) =>
    run({
      code: `import { task } from "@capsule-run/sdk";
             export const main = task({ name: "main", ${option} }, () => "ok");`,
      cwd: optionsProject,
      threads: 0,
    });

  it("every documented option and example value is accepted", async () => {
    expect(rows.length).toBeGreaterThan(0);
    for (const [, names = "", accepts = "", byDefault = ""] of rows) {
      const quoted = backticked(accepts).filter((value) => value.startsWith('"'));
      // Rows that show no quoted example are tried with their default.
      const examples = quoted.length > 0 ? quoted : backticked(byDefault);
      for (const name of backticked(names)) {
        if (name === "name") continue;
        for (const value of examples) {
          // The list options take a list of such entries.
          const list = /^(allowed|env)/.test(name) && !value.startsWith("[");
          const envelope = await runOption(`${name}: ${list ? `[${value}]` : value}`);
          // Accepted means anything but a config_error: a tiny fuel budget may run out.
          expect([name, value, envelope.error?.error_type]).not.toContain("config_error");
        }
      }
    }
  });

  it("maxRetries accepts the documented range and refuses beyond it", async () => {
    const range = section("Task options").match(/integer from (\d+) to (\d+)/);
    expect(range).not.toBeNull();
    expect((await runOption(`maxRetries: ${range?.[2]}`)).error).toBeNull();
    const over = await runOption(`maxRetries: ${Number(range?.[2]) + 1}`);
    expect(over.error?.error_type).toBe("config_error");
  });
});

describe("### capsule.toml", () => {
  it("the sample names every key, and is read as it says", () => {
    const sample = onlyBlock("Task options", "toml");
    const config = parseCapsuleToml(sample, "README.md");
    const named = (table: string) =>
      [...((sample.split(`[${table}]`)[1] ?? "").split("\n[")[0] ?? "").matchAll(/^(\w+) =/gm)].map(
        (m) => m[1],
      );
    for (const [table, keys] of Object.entries(CAPSULE_TOML_KEYS)) {
      expect(named(table).sort(), table).toEqual([...keys].sort());
    }
    expect(config.workflow.entrypoint).toBe("src/main.ts");
    expect(config.settings.writeBytes).toBe(64 * 1024 * 1024);
  });
});

describe("## CLI", () => {
  it("the synopsis names exactly the flags `capsule run` has", async () => {
    const synopsis = codeBlocks(section("CLI"))[0]?.body ?? "";
    const documented = [...synopsis.matchAll(/--[\w-]+/g)].map((m) => m[0]).sort();
    const { code, stdout } = await capsule(["run", "--help"]);
    expect(code).toBe(0);
    const real = [...stdout.matchAll(/^\s+(?:-\w, )?(--[\w-]+)/gm)]
      .map((m) => m[1] ?? "")
      .filter((flag) => flag !== "--help")
      .sort();
    expect(documented).toEqual(real);
  });
});

describe("commands the README mentions", () => {
  it("every npm script it names exists", () => {
    const named = [...readme.matchAll(/npm (?:run (\w+)|(test))\b/g)].map(
      (m) => m[1] ?? m[2] ?? "",
    );
    expect(named).toContain("test");
    for (const script of named) {
      expect(packageJson.scripts, `npm script ${script}`).toHaveProperty(script);
    }
  });
});

describe("## Inside the sandbox", () => {
  it("every global it lists is there", async () => {
    // `crypto.getRandomValues`/`randomUUID` lists two members of one global.
    const prose = section("Inside the sandbox").replace(
      /`(\w+)\.(\w+)`\/`(\w+)`/g,
      "`$1.$2` `$1.$3`",
    );
    const names = backticked(prose)
      .flatMap((name) => name.split("/"))
      .map((name) => name.replace(/\.\*$/, ""))
      .filter((name) => /^[\w.]+$/.test(name));
    expect(names.length).toBeGreaterThan(10);
    const envelope = await run({
      code: `import { task } from "@capsule-run/sdk";
             const names: string[] = ${JSON.stringify(names)};
             export const main = task({ name: "main" }, () => names.filter((path) => {
               const [root, member] = path.split(".");
               const value = (globalThis as any)[root!];
               return value === undefined || (member !== undefined && value[member] === undefined);
             }));`,
      cwd: repoRoot,
      threads: 0,
    });
    expect(envelope.error).toBeNull();
    expect(envelope.result, "listed in the README but missing in the sandbox").toEqual([]);
  });
});
