import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { readBuiltBundle } from "../../core/compile/built-bundle.ts";
import { asCapsuleError, ConfigError } from "../../core/errors.ts";
import { readArgsFile } from "./args-file.ts";
import { buildBundle } from "./bundle-build.ts";
import { terminalSafeJson } from "./cli-output.ts";
import { execComponent, prepareComponent } from "./component.ts";
import { exportComponent } from "./component-build.ts";
import { run } from "./index.ts";

/** Exit codes as the rest of the CLI uses them. */
const EXIT_TASK_FAILED = 1;
const EXIT_USAGE = 2;

function collect(value: string, all: string[]): string[] {
  return [...all, value];
}

function parseArg(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** Flags of `capsule exec` that set a component's limits; a bundle carries its own. */
const COMPONENT_LIMITS = [
  ["compute", "--compute"],
  ["ram", "--ram"],
  ["timeout", "--timeout"],
  ["maxRetries", "--max-retries"],
] as const;
const COMPONENT_GRANTS = [
  ["allowHost", "--allow-host"],
  ["allowFile", "--allow-file"],
  ["env", "--env"],
] as const;

/**
 * `capsule exec FILE.wasm [ARGS...]` runs a Capsule-built component, and `capsule exec
 * FILE.capsule.mjs` a bundle `capsule build` wrote; `capsule build FILE` writes that bundle, and
 * with `--export` a component (ComponentizeJS, an optional dependency).
 */
export function addComponentCommands(program: Command, setExit: (code: number) => void): void {
  program
    .command("exec")
    .description(
      "run what capsule build wrote: a bundle (.capsule.mjs), or a WebAssembly component (made by capsule build --export, or by Capsule)",
    )
    .argument("<file>", "the bundle or the component (.wasm)")
    .argument(
      "[args...]",
      "arguments of the task (each parsed as JSON when it is JSON, else a string)",
    )
    .option("--task <name>", "the task to run", "main")
    .option("--compute <level>", "fuel: LOW, MEDIUM (default), HIGH or a number")
    .option("--ram <size>", "memory cap, like 64MB (default 256MB)")
    .option("--timeout <duration>", "wall-clock limit, like 10s")
    .option("--max-retries <n>", "reruns after a failure", (v) => Number(v))
    .option("--allow-host <pattern>", "a host the task may reach (repeatable)", collect, [])
    .option(
      "--allow-file <dir>",
      "a directory the task may use, relative to --cwd (repeatable)",
      collect,
      [],
    )
    .option("--env <name>", "an environment variable the task may read (repeatable)", collect, [])
    .option("--mount <spec>", "HOST_PATH[::GUEST_PATH][:ro|:rw] (repeatable)", collect, [])
    .option("--cwd <dir>", "project root (default the current directory)")
    .option("--cache-dir <dir>", "where transpiled components are kept (default .capsule/cache)")
    .option(
      "--args-file <file>",
      "read the task's arguments from a JSON array of strings (instead of the command line)",
    )
    .action(async (file: string, given: string[], flags: Record<string, unknown>) => {
      let args = given;
      if (typeof flags.argsFile === "string") {
        try {
          if (given.length > 0) {
            throw new ConfigError(
              `--args-file ${flags.argsFile} gives the arguments; leave out the ${given.length} on the command line`,
            );
          }
          args = readArgsFile(flags.argsFile, process.cwd());
        } catch (error) {
          process.stderr.write(`capsule: ${(error as Error).message}\n`);
          setExit(2);
          return;
        }
      }
      if (!file.toLowerCase().endsWith(".wasm")) {
        const code = await execBundle(file, args, flags);
        setExit(code);
        return;
      }
      const envelope = await execComponent(file, {
        task: flags.task as string,
        args: args.map(parseArg),
        compute: flags.compute as string | undefined,
        ram: flags.ram as string | undefined,
        timeout: flags.timeout as string | undefined,
        maxRetries: flags.maxRetries as number | undefined,
        allowedHosts: flags.allowHost as string[],
        allowedFiles: flags.allowFile as string[],
        envVariables: flags.env as string[],
        mounts: flags.mount as string[],
        cwd: flags.cwd as string | undefined,
        cacheDir: flags.cacheDir as string | undefined,
      });
      process.stdout.write(`${terminalSafeJson(JSON.stringify(envelope, null, 2))}\n`);
      setExit(envelope.success ? 0 : EXIT_TASK_FAILED);
    });

  program
    .command("prepare")
    .description(
      "transpile and meter a WebAssembly component into one file a web page runs (execComponent from capsule-portable/browser)",
    )
    .argument("<file>", "the component (.wasm), made by capsule build --export or by Capsule")
    .option("-o, --output <file>", "where to write it (default <file>.prepared.bin)")
    .option("--cwd <dir>", "project root (default the current directory)")
    .option("--cache-dir <dir>", "where transpiled components are kept (default .capsule/cache)")
    .action(async (file: string, flags: Record<string, unknown>) => {
      try {
        const prepared = await prepareComponent(file, {
          output: flags.output as string | undefined,
          cwd: flags.cwd as string | undefined,
          cacheDir: flags.cacheDir as string | undefined,
        });
        process.stdout.write(`${prepared.output} (${prepared.bytes} bytes)\n`);
        setExit(0);
      } catch (error) {
        const failure = asCapsuleError(error);
        process.stderr.write(`capsule: ${failure.errorType}: ${failure.message}\n`);
        setExit(EXIT_TASK_FAILED);
      }
    });

  program
    .command("build")
    .description(
      "compile a task file into a bundle capsule exec runs with no compile step; with --export, into a WebAssembly component Capsule's exec runs",
    )
    .argument("[file]", "the task file", "main.ts")
    .option("--export", "write a WebAssembly component (needs @bytecodealliance/componentize-js)")
    .option(
      "-o, --output <file>",
      "where to write it (default FILE with .capsule.mjs, or .wasm with --export)",
    )
    .action(async (file: string, flags: { export?: boolean; output?: string }) => {
      try {
        const built = flags.export
          ? await exportComponent(file, { output: flags.output })
          : await buildBundle(file, { output: flags.output });
        process.stderr.write(
          `wrote ${built.output} (${built.bytes} bytes) in ${built.durationMs} ms\n`,
        );
        setExit(0);
      } catch (error) {
        const failure = asCapsuleError(error);
        process.stderr.write(`error: ${failure.errorType}: ${failure.message}\n`);
        setExit(EXIT_TASK_FAILED);
      }
    });
}

/** `capsule exec` of a bundle: a usage error for anything but one capsule build wrote. */
async function execBundle(
  file: string,
  args: string[],
  flags: Record<string, unknown>,
): Promise<number> {
  const refuse = (message: string) => {
    process.stderr.write(`capsule: ${message}\n`);
    return EXIT_USAGE;
  };
  const cwd = resolve((flags.cwd as string | undefined) ?? process.cwd());
  let text: string;
  try {
    text = readFileSync(resolve(cwd, file), "utf8");
  } catch (error) {
    return refuse(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  try {
    if ((await readBuiltBundle(text, file)) === null) {
      return refuse(
        `${file} is neither a WebAssembly component (.wasm) nor a bundle capsule build wrote; run a task file with capsule run`,
      );
    }
  } catch (error) {
    return refuse((error as Error).message);
  }
  const given = [...COMPONENT_LIMITS, ...COMPONENT_GRANTS]
    .filter(([key]) => {
      const value = flags[key];
      return Array.isArray(value) ? value.length > 0 : value !== undefined;
    })
    .map(([, flag]) => flag);
  if (given.length > 0) {
    return refuse(
      `${given.join(", ")} set a component's limits and grants; a bundle keeps its tasks' own options (change them in the task file and build again)`,
    );
  }
  const mounts = flags.mount as string[];
  const envelope = await run({
    file,
    cwd,
    // As capsule run passes them: the task reads its arguments as strings.
    args,
    task: flags.task as string,
    ...(mounts.length > 0 && { mounts }),
    ...(typeof flags.cacheDir === "string" && { cacheDir: flags.cacheDir }),
  });
  process.stdout.write(`${terminalSafeJson(JSON.stringify(envelope, null, 2))}\n`);
  return envelope.success ? 0 : EXIT_TASK_FAILED;
}
