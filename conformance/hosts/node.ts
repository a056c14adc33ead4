// The Node adapter as a conformance host: each case gets its own project directory in a temp
// folder, next to a directory the tasks must never reach.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { features, type RunOptions, run, shutdown } from "../../adapters/node/index.ts";
import { type ConformanceHost, runRequestOf } from "../case.ts";
import { pathsToRead } from "../suite.ts";
import {
  checkHello,
  checkPrototypes,
  HELLO,
  OUTSIDE_FILE,
  OUTSIDE_TEXT,
  prototypeKeys,
} from "./unharmed.ts";

export async function startNodeHost(): Promise<ConformanceHost> {
  const base = mkdtempSync(join(tmpdir(), "capsule-conformance-"));
  const outside = join(base, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, OUTSIDE_FILE), OUTSIDE_TEXT);
  const cacheDir = join(base, "cache");
  const prototypesBefore = prototypeKeys();
  let count = 0;

  const runIn = async (cwd: string, options: Partial<RunOptions>) =>
    run({ cwd, cacheDir, env: {}, ...options } as RunOptions);

  return {
    features,
    secrets: [base],
    async run(testCase, server) {
      // Case folders sit next to "outside": "../outside/secret.txt" is one step out of the project.
      const cwd = join(base, `case-${count++}`);
      mkdirSync(cwd);
      for (const [path, text] of Object.entries(testCase.files ?? {})) {
        mkdirSync(dirname(join(cwd, path)), { recursive: true });
        writeFileSync(join(cwd, path), text);
      }
      const envelope = await runIn(cwd, runRequestOf(testCase, server));
      const files: Record<string, string | null> = {};
      for (const path of pathsToRead(testCase)) {
        const file = join(cwd, path);
        files[path] = existsSync(file) ? readFileSync(file, "utf8") : null;
      }
      return { kind: "envelope", envelope, files };
    },
    async checkUnharmed() {
      checkPrototypes(prototypesBefore, prototypeKeys());
      if (readFileSync(join(outside, OUTSIDE_FILE), "utf8") !== OUTSIDE_TEXT) {
        throw new Error("a file outside every project was changed");
      }
      if (readdirSync(outside).join() !== OUTSIDE_FILE) {
        throw new Error(`files appeared outside every project: ${readdirSync(outside).join(", ")}`);
      }
      const cwd = join(base, "hello");
      mkdirSync(cwd);
      checkHello(await runIn(cwd, { code: HELLO, language: "ts" }));
    },
    async close() {
      await shutdown();
      rmSync(base, { recursive: true, force: true });
    },
  };
}
