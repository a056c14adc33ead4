// First: a Node line too old gets one clear error, before anything else loads.
import "./supported-node.ts";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { setFlagsFromString } from "node:v8";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import type { LifecycleEvent } from "../../core/runtime/events.ts";
import { loadDotEnvFiles } from "./env.ts";
import { type RunOptions, run, shutdown } from "./index.ts";
import { packageRoot } from "./paths.ts";
import { parseMounts } from "./provider.ts";

const EXIT_TASK_FAILED = 1;
const EXIT_USAGE = 2;

interface RunFlags {
  mount: string[];
  json?: boolean;
  verbose?: boolean;
  threads?: number;
  optimize?: boolean;
  task?: string;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

function parseThreads(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 256) {
    throw new InvalidArgumentError(`${JSON.stringify(value)} is not an integer from 0 to 256.`);
  }
  return n;
}

function describeEvent(event: LifecycleEvent): string {
  const who = `${"  ".repeat(event.depth)}${event.task}`;
  switch (event.type) {
    case "created":
      return `${who}: created`;
    case "running":
      return `${who}: running (attempt ${event.attempt})`;
    case "retrying":
      return `${who}: attempt ${event.attempt} failed (${event.error?.error_type}: ${firstLine(event.error?.message)}), retrying`;
    case "completed":
      return `${who}: completed in ${event.duration_ms} ms, fuel ${event.fuel_consumed}`;
    case "timed_out":
      return `${who}: timed out after ${event.duration_ms} ms`;
    case "failed":
      return `${who}: failed after ${event.duration_ms} ms (${event.error?.error_type}: ${firstLine(event.error?.message)})`;
  }
}

function firstLine(text: string | undefined): string {
  return (text ?? "").split("\n", 1)[0] ?? "";
}

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = new Command()
    .name("capsule")
    .description("Run agent task files in fuel-metered WebAssembly sandboxes.")
    .version(version(), "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
    });

  program
    .command("run")
    .description("run the task named `main` in a task file and print its JSON envelope")
    .argument("<file>", "task file (.ts, .js, .mjs)")
    .argument("[args...]", "arguments passed to main as strings")
    .option("--json", "print only the envelope on stdout (task console output goes to stderr)")
    .option("--verbose", "show live task lifecycle lines on stderr")
    .option("--task <name>", "run this task instead of main")
    .option(
      "--mount <spec>",
      "give the task and its sub-tasks a host directory: HOST_PATH[::GUEST_PATH][:ro|:rw] (repeatable)",
      (spec: string, all: string[]) => [...all, spec],
      [] as string[],
    )
    .option(
      "--threads <n>",
      "worker threads for the task and its sub-tasks (0 = this thread, the default)",
      parseThreads,
    )
    .option(
      "--optimize",
      "let V8 optimise the engine: about 1.7x faster guest compute, ~0.4 s slower start",
    )
    .allowExcessArguments(false)
    .action(async (file: string, args: string[], flags: RunFlags) => {
      const path = resolve(file);
      if (!existsSync(path) || !statSync(path).isFile()) {
        const problem = existsSync(path) ? "is not a file" : "does not exist";
        process.stderr.write(
          `capsule: task file ${file} ${problem}; give a .ts, .js or .mjs file\n`,
        );
        exitCode = EXIT_USAGE;
        return;
      }
      const consoleOut = flags.json ? process.stderr : process.stdout;
      const options: RunOptions = {
        file,
        args,
        threads: flags.threads ?? 0,
        onLog: (level, text) =>
          (level === "error" || level === "warn" ? process.stderr : consoleOut).write(`${text}\n`),
      };
      if (flags.task !== undefined) options.task = flags.task;
      if (flags.mount.length > 0) {
        // A malformed spec is a usage error, reported before anything runs.
        try {
          parseMounts(flags.mount, process.cwd(), "--mount");
        } catch (error) {
          process.stderr.write(`capsule: ${(error as Error).message}\n`);
          exitCode = EXIT_USAGE;
          return;
        }
        options.mounts = flags.mount;
      }
      // As Capsule does: .env and .env.local fill in variables the real environment lacks.
      loadDotEnvFiles(process.cwd(), process.env);
      if (flags.verbose) {
        options.onEvent = (event) => process.stderr.write(`[capsule] ${describeEvent(event)}\n`);
      }
      // A one-shot process mostly runs short tasks: V8's optimising tier would spend ~0.5 s of CPU
      // compiling the engine's interpreter loop, and the process waits for it before exiting.
      // Fuel counts are the same either way.
      if (!flags.optimize) setFlagsFromString("--liftoff-only");
      const envelope = await run(options);
      process.stdout.write(`${JSON.stringify(envelope, null, 2)}\n`);
      exitCode = envelope.success ? 0 : EXIT_TASK_FAILED;
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    if (argv.length === 0) {
      program.outputHelp({ error: true });
      return EXIT_USAGE;
    }
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    throw error;
  } finally {
    await shutdown();
  }
  return exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `capsule: internal error: ${error instanceof Error ? error.stack : error}\n`,
    );
    process.exitCode = EXIT_TASK_FAILED;
  },
);
