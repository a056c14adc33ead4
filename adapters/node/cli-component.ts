import type { Command } from "commander";
import { asCapsuleError, ConfigError } from "../../core/errors.ts";
import { readArgsFile } from "./args-file.ts";
import { execComponent } from "./component.ts";
import { exportComponent } from "./component-build.ts";

/** Exit codes as the rest of the CLI uses them. */
const EXIT_TASK_FAILED = 1;

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

/**
 * `capsule exec FILE.wasm [ARGS...]` runs a Capsule-built component; `capsule build FILE
 * --export` makes one (ComponentizeJS, an optional dependency).
 */
export function addComponentCommands(program: Command, setExit: (code: number) => void): void {
  program
    .command("exec")
    .description(
      "run a Capsule-built WebAssembly component (made by capsule build --export, or by Capsule)",
    )
    .argument("<file>", "the component (.wasm)")
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
      process.stdout.write(`${JSON.stringify(envelope, null, 2)}\n`);
      setExit(envelope.success ? 0 : EXIT_TASK_FAILED);
    });

  program
    .command("build")
    .description(
      "compile a task file; with --export, into a WebAssembly component Capsule's exec runs",
    )
    .argument("[file]", "the task file", "main.ts")
    .option("--export", "write a WebAssembly component (needs @bytecodealliance/componentize-js)")
    .option("-o, --output <file>", "where to write it (default FILE with .wasm)")
    .action(async (file: string, flags: { export?: boolean; output?: string }) => {
      if (!flags.export) {
        process.stderr.write("error: capsule build writes components only for now: add --export\n");
        setExit(2);
        return;
      }
      try {
        const built = await exportComponent(file, { output: flags.output });
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
