// The two tool-calling examples, run as a user runs them: `node examples/agents/<name>.mjs`.
// Each replays a recorded transcript through capsuleTools().handle and exits 1 when a tool result
// differs from the one recorded.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../adapters/node/paths.ts";

const run = (name: string) =>
  promisify(execFile)(process.execPath, [join(packageRoot, "examples/agents", name)], {
    cwd: packageRoot,
    timeout: 60_000,
  });

beforeAll(() => {
  if (!existsSync(join(packageRoot, "dist", "node.mjs"))) {
    throw new Error("dist/node.mjs is missing: run `node scripts/build.mjs` (npm test does) first");
  }
});

describe("examples/agents", () => {
  it("openai.mjs answers the recorded tool_calls, a failed one and a fixed one", async () => {
    const { stdout } = await run("openai.mjs");
    expect(stdout).toContain("tools: execute_javascript");
    expect(stdout).toContain("<- error: task_error: ReferenceError: 'revenu' is not defined");
    expect(stdout).toContain('{"average":16966.67,"largestGrowth":"Apr","growthPercent":33.1}');
    expect(stdout).toContain("7 messages; every tool result matches the recording");
  });

  it("anthropic.mjs answers the recorded tool_use blocks in one session", async () => {
    const { stdout } = await run("anthropic.mjs");
    expect(stdout).toContain("-> execute_javascript (session palindromes)");
    expect(stdout).toContain(
      '{"A man, a plan, a canal: Panama":true,"Never odd or even":true,"Capsule":false}',
    );
    expect(stdout).toContain("6 messages; every tool result matches the recording");
  });
});
