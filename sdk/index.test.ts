// The guest SDK's exports besides task(), as Capsule's TypeScript SDK has them, inside a real
// sandbox and as a plain module.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run, shutdown } from "../adapters/node/index.ts";
import { makeProject } from "../adapters/node/test/fixtures.ts";
import * as sdk from "./index.ts";

const project = makeProject();
mkdirSync(join(project.dir, "data"));
writeFileSync(join(project.dir, "data", "in.txt"), "granted text");
mkdirSync(join(project.dir, "node_modules", "tiny"), { recursive: true });
writeFileSync(join(project.dir, "node_modules", "tiny", "index.js"), "exports.two = 2;\n");
writeFileSync(
  join(project.dir, "node_modules", "tiny", "package.json"),
  JSON.stringify({ name: "tiny", main: "index.js" }),
);

afterAll(async () => {
  project.cleanup();
  await shutdown();
});

const runTs = (code: string) =>
  run({ code, language: "ts", cwd: project.dir, env: { SHOWN: "yes", HIDDEN: "no" } });

describe("the SDK's other exports inside a sandbox", () => {
  it("gives isWasmMode, os, fs, fsPromises, process, TaskRunner and exports Capsule's meaning", async () => {
    const envelope = await runTs(`
      import { task, TaskRunner, exports, fs, fsPromises, os, process, isWasmMode } from "@capsule-run/sdk";
      const double = task({ name: "double" }, (n: number) => n * 2);
      export const main = task(
        { name: "main", allowedFiles: [{ path: "./data", mode: "read-only" }], envVariables: ["SHOWN"] },
        async () => ({
          wasm: isWasmMode(),
          os: [os.platform(), os.arch(), os.tmpdir(), os.EOL, os.availableParallelism()],
          read: fs.readFileSync("./data/in.txt", "utf8"),
          readAsync: await fsPromises.readFile("./data/in.txt", "utf8"),
          outside: (() => { try { fs.readFileSync("/etc/passwd", "utf8"); return "read"; } catch (e) { return String((e as Error).message).slice(0, 80); } })(),
          env: [process.env.SHOWN ?? null, process.env.HIDDEN ?? null],
          runner: await new TaskRunner().run(JSON.stringify({ task_name: "double", args: [21] })),
          isRunner: exports instanceof TaskRunner,
          bad: await exports.run("not json"),
          sub: (await double(4)).result,
        }),
      );
    `);
    expect(envelope.error).toBeNull();
    const result = envelope.result as Record<string, unknown>;
    expect(result).toMatchObject({
      wasm: true,
      os: ["linux", "wasm32", "/tmp", "\n", 1],
      read: "granted text",
      readAsync: "granted text",
      env: ["yes", null],
      runner: '{"result":42}',
      isRunner: true,
      sub: 8,
    });
    expect(result.outside).not.toBe("read");
    expect(JSON.parse(result.bad as string)).toMatchObject({ error_type: "task_error" });
  });

  it("names a missing export and what the SDK has, without a path on the host", async () => {
    project.write(
      "bundled.ts",
      // A file that imports an npm package is bundled: the same message.
      `import { task, nope } from "@capsule-run/sdk";\nimport { two } from "tiny";\nexport const main = task({ name: "main" }, () => String(nope) + two);`,
    );
    for (const envelope of [
      await runTs(
        `import { task, nope } from "@capsule-run/sdk";\nexport const main = task({ name: "main" }, () => String(nope));`,
      ),
      await run({ file: "bundled.ts", cwd: project.dir }),
    ]) {
      expect(envelope.error?.error_type).toBe("compile_error");
      const message = envelope.error?.message ?? "";
      expect(message).toMatch(/:1:\d+: "nope" is not exported by "@capsule-run\/sdk"; it exports /);
      expect(message).toContain(
        "TaskRunner, exports, fs, fsPromises, isWasmMode, os, process, task",
      );
      expect(message).not.toMatch(/\.\.\/|\/sdk\/index|work\/main/);
    }
  });
});

describe("the SDK as a plain module", () => {
  it("is not in wasm mode; fs and process are Node's", async () => {
    expect(sdk.isWasmMode()).toBe(false);
    expect(sdk.fs.existsSync(join(project.dir, "data", "in.txt"))).toBe(true);
    expect(await sdk.fsPromises.readFile(join(project.dir, "data", "in.txt"), "utf8")).toBe(
      "granted text",
    );
    expect(sdk.process.pid).toBe(process.pid);
    expect(sdk.os.platform()).toBe("linux");
    const triple = sdk.task({ name: "triple" }, (n: number) => n * 3);
    expect((await triple(2)).result).toBe(6);
    expect(await new sdk.TaskRunner().run(JSON.stringify({ task_name: "triple", args: [5] }))).toBe(
      '{"result":15}',
    );
    // With no main, an unknown name runs the first declared task, as in Capsule.
    expect(await sdk.exports.run(JSON.stringify({ task_name: "missing", args: [1] }))).toBe(
      '{"result":3}',
    );
  });
});
