// A hostile task's output on the terminal: every control character of text a task controls
// (console lines on stdout and stderr, task names, error messages, its result) reaches the
// terminal as a visible escape, from a main task and a sub-task, in JavaScript and Python, on a
// real pseudo-terminal (util-linux `script`) and through pipes; only the CLI's own colours are
// escape sequences. `capsule worker` and `capsule mcp` answer in JSON lines with no raw control.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { internalErrorText, terminalSafeJson, visible } from "./cli-output.ts";
import type { Envelope } from "./index.ts";
import { packageRoot } from "./paths.ts";
import { makeProject, runCapsule } from "./test/fixtures.ts";

const bin = join(packageRoot, "bin", "capsule.mjs");
const ESC = "\u001b";

/** Each kind of sequence a hostile task prints, and how the terminal must show it instead. */
const HOSTILE: [kind: string, raw: string, shown: string][] = [
  ["clear", `${ESC}[2J${ESC}[H`, "\\x1b[2J\\x1b[H"],
  ["overwrite", `${ESC}[1A${ESC}[2K`, "\\x1b[1A\\x1b[2K"],
  ["colour", `${ESC}[32mPASS${ESC}[0m`, "\\x1b[32mPASS\\x1b[0m"],
  ["clipboard", `${ESC}]52;c;cm0gLXJmIH4=\u0007`, "\\x1b]52;c;cm0gLXJmIH4=\\x07"],
  [
    "link",
    `${ESC}]8;;https://evil.example/${ESC}\\docs${ESC}]8;;${ESC}\\`,
    "\\x1b]8;;https://evil.example/\\x1b\\docs\\x1b]8;;\\x1b\\",
  ],
  ["title", `${ESC}]0;owned\u0007`, "\\x1b]0;owned\\x07"],
  ["bell", "\u0007\u0007", "\\x07\\x07"],
  ["return", "success: true\r", "success: true\\r"],
  ["backspace", "ok\b\b", "ok\\x08\\x08"],
  ["c1-csi", "\u009b2J", "\\x9b2J"],
  ["del", "\u007f", "\\x7f"],
  ["bidi", "\u202etxt.exe", "\\u202etxt.exe"],
];

/** A sub-task name that would set the window title. */
const SUB_NAME = `sub${ESC}]0;pwned\u0007`;
const SUB_SHOWN = "sub\\x1b]0;pwned\\x07";
/** A thrown message that erases the line and returns to its start. */
const ERROR_RAW = `boom ${ESC}[2K\rall good`;
const ERROR_SHOWN = "boom \\x1b[2K\\rall good";
/** What main returns: the controls JSON.stringify leaves raw (C1, DEL, bidi), ESC and NUL. */
const RESULT_RAW = `done \u009b2J \u007f \u202e ${ESC}[2J \u0000`;

const lit = (value: string) => JSON.stringify(value);

/** Every HOSTILE sequence printed on `stream`, one line each, marked with where it came from. */
function jsPrints(where: string, stream: "log" | "error"): string {
  return HOSTILE.map(
    ([kind, raw]) => `console.${stream}(${lit(`${where} ${kind}:`)} + ${lit(raw)} + "|end");`,
  ).join("\n  ");
}

const JS_TASK = `import { task } from "@capsule-run/sdk";
export const sub = task({ name: ${lit(SUB_NAME)} }, () => {
  ${jsPrints("sub-out", "log")}
  ${jsPrints("sub-err", "error")}
  throw new Error(${lit(ERROR_RAW)});
});
export const main = task({ name: "main" }, async () => {
  ${jsPrints("main-out", "log")}
  ${jsPrints("main-err", "error")}
  const failed = await sub();
  return { result: ${lit(RESULT_RAW)}, sub: failed.error?.message };
});
`;

/** JSON string literals are Python string literals too (\\u escapes included). */
function pyPrints(where: string, file: string, indent: string): string {
  return HOSTILE.map(
    ([kind, raw]) => `print(${lit(`${where} ${kind}:`)} + ${lit(raw)} + "|end"${file})`,
  ).join(`\n${indent}`);
}

const PY_TASK = `import sys
from capsule import task


@task(name=${lit(SUB_NAME)})
def sub():
    ${pyPrints("sub-out", "", "    ")}
    ${pyPrints("sub-err", ", file=sys.stderr", "    ")}
    raise ValueError(${lit(ERROR_RAW)})


@task(name="main")
async def main():
    ${pyPrints("main-out", "", "    ")}
    ${pyPrints("main-err", ", file=sys.stderr", "    ")}
    failed = sub()
    return {"result": ${lit(RESULT_RAW)}, "sub": failed["error"]["message"]}
`;

/** A task that runs long enough for the status line to show its name. */
const SLOW_TASK = `import { task } from "@capsule-run/sdk";
export const slow = task({ name: ${lit(SUB_NAME)}, timeout: "20s" }, () => new Promise((r) => setTimeout(() => r(1), 1500)));
`;

/** The CLI's own colour codes (SGR). */
const SGR = new RegExp(`${ESC}\\[[0-9;]*m`, "g");

/** Any control character but newline and tab, left once the CLI's own colours are taken out. */
function rawControls(text: string): string[] {
  return [...text.replace(SGR, "").matchAll(/[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu)]
    .map((m) => m[0])
    .filter((c) => c !== "\n" && c !== "\t");
}

function expectNeutralised(text: string, wheres: string[]): void {
  expect(rawControls(text)).toEqual([]);
  for (const where of wheres) {
    for (const [kind, , shown] of HOSTILE) {
      expect(text.replace(SGR, "")).toContain(`${where} ${kind}:${shown}|end`);
    }
  }
}

/** This environment without the colour switches, as a person's terminal has it. */
function terminalEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: "xterm-256color" };
  delete env.NO_COLOR;
  delete env.FORCE_COLOR;
  delete env.CI;
  return env;
}

/** Runs the real CLI on a pseudo-terminal (stdout and stderr both a TTY, merged). */
function onTerminal(
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; output: string }> {
  const command = ["stty", "-onlcr;", "exec", process.execPath, bin, ...args]
    .map((part) => (part.endsWith(";") ? part : `'${part.replaceAll("'", "'\\''")}'`))
    .join(" ");
  return new Promise((resolvePromise, reject) => {
    const child = spawn("script", ["--quiet", "--return", "--command", command, "/dev/null"], {
      cwd,
      env: { ...terminalEnv(), ...env },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
      killSignal: "SIGKILL",
    });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      output += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolvePromise({ code, output }));
  });
}

const project = makeProject();

beforeAll(() => {
  if (!existsSync(join(packageRoot, "dist", "cli.mjs"))) {
    throw new Error("dist/cli.mjs is missing: run `node scripts/build.mjs` (npm test does) first");
  }
  project.write("hostile.ts", JS_TASK);
  project.write("hostile.py", PY_TASK);
  project.write("slow.ts", SLOW_TASK);
});

afterAll(() => project.cleanup());

describe("visible and terminalSafeJson", () => {
  it("show each control character as an escape and keep newlines, tabs and other text", () => {
    for (const [, raw, shown] of HOSTILE) expect(visible(raw)).toBe(shown);
    expect(visible("a\tb\nc ü 😀 \\x1b")).toBe("a\tb\nc ü 😀 \\x1b");
    const json = JSON.stringify({ text: RESULT_RAW }, null, 2);
    const safe = terminalSafeJson(json);
    expect(rawControls(safe)).toEqual([]);
    expect(JSON.parse(safe)).toEqual({ text: RESULT_RAW });
  });

  it("show the CLI's own internal error, stack and all, with the same escapes", () => {
    const error = new Error(`no task "\u001b]52;c;aGk=\u0007" here\r`);
    const text = internalErrorText(error);
    expect(text).toMatch(
      /^capsule: internal error: Error: no task "\\x1b\]52;c;aGk=\\x07" here\\r\n {4}at /,
    );
    expect(rawControls(text.slice(0, -1))).toEqual([]);
    expect(internalErrorText("\u009b2J")).toBe("capsule: internal error: \\x9b2J\n");
  });
});

describe.concurrent("capsule run with a task that prints terminal escape sequences", () => {
  it("on a pseudo-terminal shows every sequence, the sub-task's name and its error as escapes, in colour", async () => {
    // CI keeps the status line off: this output then holds no sequence but the CLI's colours.
    const { code, output } = await onTerminal(["run", "hostile.ts", "--verbose"], project.dir, {
      CI: "1",
    });
    expect(code, output).toBe(0);
    expectNeutralised(output, ["main-out", "main-err", "sub-out", "sub-err"]);
    // Console lines of the sub-task carry its name, shown as escapes too.
    expect(output.replace(SGR, "")).toContain(`[${SUB_SHOWN}] sub-out clear:`);
    expect(output.replace(SGR, "")).toMatch(
      new RegExp(
        `  ${escapeRegExp(SUB_SHOWN)}: failed after \\d+ ms \\(task_error: Error: ${escapeRegExp(ERROR_SHOWN)}\\)`,
      ),
    );
    // The CLI's own colours remain: the envelope's keys, error lines in red.
    expect(output).toContain(`${ESC}[36m"success"${ESC}[39m`);
    expect(output).toContain(`${ESC}[31mmain-err clear:`);
    const plain = output.replace(SGR, "");
    const envelope = JSON.parse(plain.slice(plain.indexOf('{\n  "success"'))) as Envelope;
    expect(envelope.result).toEqual({
      result: RESULT_RAW,
      sub: expect.stringMatching(`^Error: ${escapeRegExp(ERROR_RAW)}\n`),
    });
  });

  it("through pipes (| tee, | less -R) too: stdout and stderr each keep their lines, neutralised", async () => {
    for (const env of [{ FORCE_COLOR: "1" }, {}]) {
      const { code, stdout, stderr } = await runCapsule(["run", "hostile.ts"], {
        cwd: project.dir,
        env: { ...terminalEnv(), ...env },
      });
      expect(code).toBe(0);
      expectNeutralised(stdout, ["main-out", "sub-out"]);
      expectNeutralised(stderr, ["main-err", "sub-err"]);
      expect(stdout).not.toContain("-err ");
      expect(stderr).not.toContain("-out ");
    }
  });

  it("with --json prints an envelope that parses to the exact values, with no raw control character", async () => {
    const { code, stdout, stderr } = await runCapsule(["run", "hostile.ts", "--json"], {
      cwd: project.dir,
      env: { ...terminalEnv(), FORCE_COLOR: "1" },
    });
    expect(code).toBe(0);
    expect(stdout).not.toContain(ESC);
    expect(rawControls(stdout)).toEqual([]);
    // DEL, C1 and bidi controls, which JSON.stringify leaves raw, are \u escapes.
    expect(stdout).toContain("\\u009b2J \\u007f \\u202e \\u001b[2J \\u0000");
    expect((JSON.parse(stdout) as Envelope).result).toEqual({
      result: RESULT_RAW,
      sub: expect.stringMatching(`^Error: ${escapeRegExp(ERROR_RAW)}\n`),
    });
    expectNeutralised(stderr, ["main-out", "main-err", "sub-out", "sub-err"]);
  });

  it("shows a hostile sub-task name in the status line as escapes", async () => {
    const { code, output } = await onTerminal(["run", "slow.ts", "--task", SUB_NAME], project.dir);
    expect(code, output).toBe(0);
    // The status line (its own cursor and erase sequences) names the running sub-task.
    expect(output).toContain(`running ${SUB_SHOWN}`);
    expect(output).not.toContain(`${ESC}]0;pwned`);
    expect(output).not.toContain("\u0007");
  });

  it("does the same for a Python task and its sub-task", async () => {
    const { code, output } = await onTerminal(["run", "hostile.py", "--verbose"], project.dir, {
      CI: "1",
    });
    expect(code, output).toBe(0);
    expectNeutralised(output, ["main-out", "main-err", "sub-out", "sub-err"]);
    const plain = output.replace(SGR, "");
    expect(plain).toContain(`[${SUB_SHOWN}] sub-out clear:`);
    const envelope = JSON.parse(plain.slice(plain.indexOf('{\n  "success"'))) as Envelope;
    expect((envelope.result as { result: string }).result).toBe(RESULT_RAW);
    expect((envelope.result as { sub: string }).sub).toContain(ERROR_RAW);
  }, 90_000);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Lines of a child's stdout, each parsed as JSON, with the raw text kept. */
function jsonLines(child: ChildProcessWithoutNullStreams): {
  raw: () => string;
  next: (test: (message: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
} {
  let raw = "";
  let buffer = "";
  const seen: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    raw += chunk;
    buffer += chunk;
    for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
      seen.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      buffer = buffer.slice(nl + 1);
    }
    for (const wake of waiters) wake();
  });
  const next = (test: (message: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolvePromise, reject) => {
      const check = () => {
        const found = seen.find(test);
        if (found === undefined) return;
        waiters.delete(check);
        resolvePromise(found);
      };
      waiters.add(check);
      child.once("close", () => reject(new Error(`exited without the answer; stdout:\n${raw}`)));
      check();
    });
  return { raw: () => raw, next };
}

describe.concurrent("machine-facing commands answer in JSON, with no raw control character", () => {
  it("capsule worker: JSON lines on stdout, console lines on stderr neutralised", async () => {
    const child = spawn(process.execPath, [bin, "worker"], {
      cwd: project.dir,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const lines = jsonLines(child);
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    child.stdin.write(`${JSON.stringify({ id: `r${ESC}[2J`, file: "hostile.ts" })}\n`);
    const answer = await lines.next((message) => "output" in message || "error" in message);
    child.stdin.end();
    expect(await closed).toBe(0);
    expect((answer.output as Envelope).result).toEqual({
      result: RESULT_RAW,
      sub: expect.stringMatching(`^Error: ${escapeRegExp(ERROR_RAW)}\n`),
    });
    expect(answer.id).toBe(`r${ESC}[2J`);
    expect(rawControls(lines.raw())).toEqual([]);
    expectNeutralised(stderr, ["main-out", "main-err", "sub-out", "sub-err"]);
    expect(stderr).toContain(`[r\\x1b[2J ${SUB_SHOWN}] sub-out clear:`);
  });

  it("capsule mcp: log notifications and results are JSON-RPC lines with the text escaped", async () => {
    const child = spawn(process.execPath, [bin, "mcp", "--no-python"], {
      cwd: project.dir,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const lines = jsonLines(child);
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const send = (message: object) =>
      child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", ...message })}\n`);
    send({
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "terminal-test", version: "1" },
      },
    });
    await lines.next((message) => message.id === 1);
    send({ method: "notifications/initialized" });
    const printed = HOSTILE.map(([kind, raw]) => `${kind}:${raw}|end`);
    const code = printed.map((line) => `console.log(${lit(line)});`).join("\n");
    send({
      id: 2,
      method: "tools/call",
      params: { name: "execute_javascript", arguments: { code: `${code}\n${lit(RESULT_RAW)}` } },
    });
    const result = await lines.next((message) => message.id === 2);
    child.stdin.end();
    expect(await closed).toBe(0);
    expect(stderr).toBe("");
    // JSON escapes every C0 control; stdout is the client's, never a terminal's.
    const raw = lines.raw();
    expect(raw).not.toContain(ESC);
    expect(
      rawControls(raw).filter((c) => c <= "\u001f"),
      "raw C0 controls in the protocol's output",
    ).toEqual([]);
    const logged = raw
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as { method?: string; params?: { data?: string } })
      .filter((message) => message.method === "notifications/message")
      .map((message) => message.params?.data);
    expect(logged).toEqual(printed);
    expect(JSON.stringify(result)).toContain(JSON.stringify(RESULT_RAW).slice(1, -1));
  });
});
