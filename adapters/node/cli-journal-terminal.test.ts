// capsule runs and capsule inspect print what tasks wrote (task names, error messages, host
// request URLs) from the journal: no control character of theirs reaches the terminal, in the
// table, the tree or the JSON.
import { describe, expect, it } from "vitest";
import { makeProject, runCapsule, taskSource } from "./test/fixtures.ts";

// ESC [2J clears the screen, OSC 52 writes the clipboard, U+009B is CSI, U+202E reverses text.
const HOSTILE = "\\u001b[2J\\u001b]52;c;cHduZWQ=\\u0007\\u009b31m\\u202egnp.exe";

describe("the run history on a terminal", () => {
  it("shows a task's control characters as escapes in runs and inspect", async () => {
    const project = makeProject();
    try {
      project.write(
        "evil.ts",
        taskSource(`export const sly = task({ name: "sly${HOSTILE}" }, () => { throw new Error("bad${HOSTILE}"); });
export const main = task({ name: "main" }, async () => { await sly(); throw new Error("top${HOSTILE}"); });`),
      );
      const ran = await runCapsule(["run", "evil.ts", "--json"], { cwd: project.dir });
      const runId = JSON.parse(ran.stdout).execution.run_id as string;
      const outputs = [
        await runCapsule(["runs"], { cwd: project.dir }),
        await runCapsule(["runs", "--json"], { cwd: project.dir }),
        await runCapsule(["inspect", runId], { cwd: project.dir }),
        await runCapsule(["inspect", runId, "--json"], { cwd: project.dir }),
      ];
      for (const output of outputs) {
        expect(output.code).toBe(0);
        const raw = ["\u001b", "\u0007", "\u009b", "\u202e"].filter((c) =>
          output.stdout.includes(c),
        );
        expect(raw).toEqual([]);
      }
      const tree = outputs[2]?.stdout ?? "";
      expect(tree).toContain("sly\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07\\x9b31m\\u202egnp.exe");
      expect(tree).toContain("top\\x1b[2J");
      // The JSON still parses to the task's own text.
      const detail = JSON.parse(outputs[3]?.stdout ?? "null");
      expect(detail.error.message).toContain(
        "top\u001b[2J\u001b]52;c;cHduZWQ=\u0007\u009b31m\u202e",
      );
    } finally {
      project.cleanup();
    }
  }, 60_000);
});
