// First: a Node line too old gets one clear error, before anything else loads.
import "./supported-node.ts";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { setFlagsFromString } from "node:v8";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import {
  DEFAULT_MAX_CODE_BYTES,
  DEFAULT_MAX_SESSIONS,
  type SessionBudget,
} from "../../core/agent/tools.ts";
import { parseBytes, parseCompute, parseDuration } from "../../core/config/units.ts";
import { ConfigError } from "../../core/errors.ts";
import { parseAllowedHosts } from "../../core/policy/hosts.ts";
import { readArgsFile } from "./args-file.ts";
import { addComponentCommands } from "./cli-component.ts";
import { addJournalCommands } from "./cli-journal.ts";
import { CliOutput, internalErrorText } from "./cli-output.ts";
import { usageProblems } from "./cli-usage.ts";
import { addWorkerCommand } from "./cli-worker.ts";
import { loadDotEnvFiles } from "./env.ts";
import { type RunOptions, run, shutdown } from "./index.ts";
import { packageRoot } from "./paths.ts";
import { loadProjectConfig } from "./project-config.ts";
import { parseMounts } from "./provider.ts";

const DEFAULT_MAX_CLIENTS = 8;

const EXIT_TASK_FAILED = 1;
const EXIT_USAGE = 2;

interface RunFlags {
  mount: string[];
  argsFile?: string;
  json?: boolean;
  verbose?: boolean;
  threads?: number;
  optimize?: boolean;
  task?: string;
  resume?: string;
}

/** `capsule run` with no file: the capsule.toml's entry point, as Capsule does. */
function entrypointOf(cwd: string): string {
  const project = loadProjectConfig(cwd);
  const entrypoint = project?.workflow.entrypoint;
  if (entrypoint === undefined) {
    throw new ConfigError(
      project === null
        ? "give a task file (capsule run <file>), or set [workflow] entrypoint in a capsule.toml here"
        : `give a task file (capsule run <file>), or set [workflow] entrypoint in ${project.file}`,
    );
  }
  return entrypoint;
}

function versionOf(): string {
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

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = new Command()
    .name("capsule")
    .description("Run agent task files in fuel-metered WebAssembly sandboxes.")
    .version(versionOf(), "-V, --version", "print the version")
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
    .argument(
      "[file]",
      "task file (.ts, .js, .mjs or .py); default: capsule.toml's [workflow] entrypoint",
    )
    .argument("[args...]", "arguments passed to main as strings")
    .option("--json", "print only the envelope on stdout (task console output goes to stderr)")
    .option("--verbose", "show live task lifecycle lines on stderr")
    .option("--task <name>", "run this task instead of main")
    .option(
      "--args-file <file>",
      "read main's arguments from a JSON array of strings (instead of the command line)",
    )
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
    .option(
      "--resume <run-id>",
      "run a recorded run again (see capsule runs): same file, task and arguments; its completed sub-task calls return their recorded envelopes",
    )
    .addHelpText("after", RESUME_HELP)
    .allowExcessArguments(false)
    .action(async (given: string | undefined, args: string[], flags: RunFlags) => {
      if (flags.resume !== undefined) {
        exitCode = await resumeRun(given, args, flags);
        return;
      }
      let file: string;
      try {
        file = given ?? entrypointOf(process.cwd());
        if (flags.argsFile !== undefined) {
          if (args.length > 0) {
            throw new ConfigError(
              `--args-file ${flags.argsFile} gives the arguments; leave out the ${args.length} on the command line (${args.map((a) => JSON.stringify(a)).join(" ")})`,
            );
          }
          args = readArgsFile(flags.argsFile, process.cwd());
        }
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        process.stderr.write(`capsule: ${error.message}\n`);
        exitCode = EXIT_USAGE;
        return;
      }
      const path = resolve(file);
      if (!existsSync(path) || !statSync(path).isFile()) {
        const problem = existsSync(path) ? "is not a file" : "does not exist";
        process.stderr.write(
          `capsule: task file ${file} ${problem}; give a .ts, .js, .mjs or .py file\n`,
        );
        exitCode = EXIT_USAGE;
        return;
      }
      const output = new CliOutput({
        stdout: process.stdout,
        stderr: process.stderr,
        consoleOut: flags.json ? process.stderr : process.stdout,
        verbose: flags.verbose === true,
        json: flags.json === true,
        subject: `${flags.task ?? "main"} of ${file}`,
      });
      const options: RunOptions = {
        file,
        args,
        threads: flags.threads ?? 0,
        onLog: output.onLog,
        onEvent: output.onEvent,
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
      // A one-shot process mostly runs short tasks: V8's optimising tier would spend ~0.5 s of CPU
      // compiling the engine's interpreter loop, and the process waits for it before exiting.
      // Fuel counts are the same either way.
      if (!flags.optimize) setFlagsFromString("--liftoff-only");
      let envelope: Awaited<ReturnType<typeof run>>;
      output.start();
      try {
        envelope = await run(options);
      } finally {
        output.stop();
      }
      output.finish(envelope);
      exitCode = envelope.success ? 0 : EXIT_TASK_FAILED;
    });

  addMcpCommand(program, (code) => {
    exitCode = code;
  });
  addWorkerCommand(program, (code) => {
    exitCode = code;
  });
  addComponentCommands(program, (code) => {
    exitCode = code;
  });
  addJournalCommands(program, (code) => {
    exitCode = code;
  });

  const problems = usageProblems(program, argv);
  if (problems.length > 1) {
    // commander would name only the first of them.
    for (const problem of problems) process.stderr.write(`error: ${problem}\n`);
    process.stderr.write(`(see capsule ${argv[0]} --help)\n`);
    return EXIT_USAGE;
  }
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

const RESUME_HELP = `
Resume:
  capsule run --resume <run-id> [--json] [--threads n] [--mount spec]
  runs the entry task of a recorded run again, from the same file with the same task and
  arguments, as a new run that records resumed_from. Each sub-task call that completed in that run
  (matched by its place in its parent's calls, its task name, arguments and options) returns its
  recorded envelope without running again; failed, interrupted and never-started ones run. A
  completed run's resume prints its recorded envelope. If the file changed so that its sub-task
  calls moved, the resume stops with a config_error naming the first call that differs.`;

/** \`capsule run --resume <run-id>\`: a recorded run again (core/journal/resume.ts). */
async function resumeRun(
  given: string | undefined,
  args: string[],
  flags: RunFlags,
): Promise<number> {
  const extra = [
    ...(given === undefined ? [] : [`a task file (${given})`]),
    ...(args.length > 0 ? [`arguments (${args.join(" ")})`] : []),
    ...(flags.task === undefined ? [] : ["--task"]),
    ...(flags.argsFile === undefined ? [] : ["--args-file"]),
  ];
  if (extra.length > 0) {
    process.stderr.write(
      `capsule: --resume ${flags.resume} runs the recorded run's file, task and arguments; leave out ${extra.join(", ")}\n`,
    );
    return EXIT_USAGE;
  }
  if (flags.mount.length > 0) {
    try {
      parseMounts(flags.mount, process.cwd(), "--mount");
    } catch (error) {
      process.stderr.write(`capsule: ${(error as Error).message}\n`);
      return EXIT_USAGE;
    }
  }
  const output = new CliOutput({
    stdout: process.stdout,
    stderr: process.stderr,
    consoleOut: flags.json ? process.stderr : process.stdout,
    verbose: flags.verbose === true,
    json: flags.json === true,
    subject: `the resume of run ${flags.resume}`,
  });
  loadDotEnvFiles(process.cwd(), process.env);
  if (!flags.optimize) setFlagsFromString("--liftoff-only");
  let envelope: Awaited<ReturnType<typeof run>>;
  output.start();
  try {
    envelope = await run({
      resume: flags.resume,
      threads: flags.threads ?? 0,
      onLog: output.onLog,
      onEvent: output.onEvent,
      ...(flags.mount.length > 0 ? { mounts: flags.mount } : {}),
    });
  } finally {
    output.stop();
  }
  output.finish(envelope);
  return envelope.success ? 0 : EXIT_TASK_FAILED;
}

interface McpFlags {
  compute?: string;
  ram?: string;
  timeout?: string;
  allowHost: string[];
  allowFile: string[];
  mount: string[];
  env: string[];
  cwd?: string;
  python: boolean;
  maxSessions?: number;
  sessionIdle?: string;
  maxCodeBytes?: string;
  http?: boolean;
  port?: number;
  maxClients?: number;
  clientIdle?: string;
}

/** A commander argument parser from one of core/config's, its ConfigError as a usage error. */
function checked<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function parseCount(value: string): number {
  if (!/^\d{1,6}$/.test(value)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(value)} is not a whole number from 0 to 999999.`,
    );
  }
  return Number(value);
}

const repeat = (value: string, all: string[]) => [...all, value];

/**
 * `capsule mcp`: an MCP server whose tools run code with the limits and grants its flags set, the
 * same for every call; with no flags nothing is granted (no network, no files, no variables).
 */
function addMcpCommand(program: Command, setExit: (code: number) => void): void {
  program
    .command("mcp")
    .description(
      "serve the tools execute_javascript and execute_python over the Model Context Protocol (stdio, or --http)",
    )
    .option(
      "--compute <level>",
      "fuel per call: LOW (default), MEDIUM, HIGH or a number",
      checked((v) => {
        parseCompute(v, "--compute");
        return v;
      }),
    )
    .option(
      "--ram <size>",
      "memory per call, like 64MB (default 256MB)",
      checked((v) => {
        parseBytes(v, "--ram");
        return v;
      }),
    )
    .option(
      "--timeout <duration>",
      "wall-clock time per call, like 10s (default 30s)",
      checked((v) => {
        parseDuration(v, "--timeout");
        return v;
      }),
    )
    .option(
      "--allow-host <pattern>",
      "let code fetch from this host: api.x.com, *.x.com, api.*, * (repeatable)",
      (value: string, all: string[]) => {
        try {
          parseAllowedHosts([value], "--allow-host");
        } catch (error) {
          throw new InvalidArgumentError((error as Error).message);
        }
        return [...all, value];
      },
      [] as string[],
    )
    .option(
      "--allow-file <dir>",
      "let code use this directory under --cwd: DIR (read-write) or DIR:ro (repeatable)",
      repeat,
      [] as string[],
    )
    .option(
      "--mount <spec>",
      "give code a host directory: HOST_PATH[::GUEST_PATH][:ro|:rw] (repeatable)",
      repeat,
      [] as string[],
    )
    .option(
      "--env <name>",
      "let code read this environment variable (repeatable)",
      repeat,
      [] as string[],
    )
    .option(
      "--cwd <dir>",
      "project root that --allow-file and --mount paths are relative to (default: the current directory)",
    )
    .option("--no-python", "offer execute_javascript only")
    .option(
      "--max-sessions <n>",
      `code sessions alive at once (default ${DEFAULT_MAX_SESSIONS}; 0: no session_id)`,
      parseCount,
    )
    .option(
      "--session-idle <duration>",
      "close a session unused this long (default 10m)",
      checked((v) => {
        parseDuration(v, "--session-idle");
        return v;
      }),
    )
    .option(
      "--max-code-bytes <size>",
      "largest code a call may send (default 1MB)",
      checked((v) => {
        parseBytes(v, "--max-code-bytes");
        return v;
      }),
    )
    .option(
      "--http",
      "serve Streamable HTTP on 127.0.0.1 instead of stdio; needs a bearer token (CAPSULE_MCP_TOKEN, or one is generated and printed on stderr)",
    )
    .option(
      "--port <n>",
      "with --http: the port (default 0: any free port, printed on stderr)",
      checked((v) => {
        if (!/^\d{1,5}$/.test(v) || Number(v) > 65535)
          throw new Error(`--port: ${JSON.stringify(v)} is not a port number from 0 to 65535`);
        return Number(v);
      }),
    )
    .option(
      "--max-clients <n>",
      `with --http: MCP sessions open at once (default ${DEFAULT_MAX_CLIENTS})`,
      parseCount,
    )
    .option(
      "--client-idle <duration>",
      "with --http: close an MCP session unused this long (default 30m)",
      checked((v) => {
        parseDuration(v, "--client-idle");
        return v;
      }),
    )
    .addHelpText(
      "after",
      "\nSession state (each session_id's memory image) is held within one budget per process: 1 GiB,\nor a quarter of the machine's memory where less; CAPSULE_SESSION_MEMORY=\"2GB\" changes it.",
    )
    .allowExcessArguments(false)
    .action(async (flags: McpFlags) => {
      try {
        setExit(await runMcp(flags));
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        process.stderr.write(`capsule mcp: ${error.message}\n`);
        setExit(EXIT_USAGE);
      }
    });
}

async function runMcp(flags: McpFlags): Promise<number> {
  if (!flags.http) {
    for (const [flag, value] of [
      ["--port", flags.port],
      ["--max-clients", flags.maxClients],
      ["--client-idle", flags.clientIdle],
    ] as const) {
      if (value !== undefined)
        throw new ConfigError(`${flag} is for --http; add --http or leave ${flag} out`);
    }
  }
  const cwd = resolve(flags.cwd ?? ".");
  if (!existsSync(cwd) || !statSync(cwd).isDirectory()) {
    throw new ConfigError(`--cwd: ${JSON.stringify(flags.cwd)} is not a directory`);
  }
  const allowedFiles = flags.allowFile.map((spec) => {
    const readOnly = spec.endsWith(":ro");
    const path = readOnly || spec.endsWith(":rw") ? spec.slice(0, -3) : spec;
    const full = resolve(cwd, path);
    if (path === "" || !existsSync(full) || !statSync(full).isDirectory()) {
      throw new ConfigError(
        `--allow-file: ${JSON.stringify(spec)} is not a directory under ${cwd}; give DIR or DIR:ro`,
      );
    }
    return { path, mode: readOnly ? ("read-only" as const) : ("read-write" as const) };
  });
  if (flags.mount.length > 0) parseMounts(flags.mount, cwd, "--mount");
  const env: Record<string, string | undefined> = { ...process.env };
  loadDotEnvFiles(cwd, env);
  for (const name of flags.env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new ConfigError(`--env: ${JSON.stringify(name)} is not an environment variable name`);
    }
  }
  const mcp = await import("./mcp.ts");
  const { capsuleTools } = await import("./tools.ts");
  const version = versionOf();
  const makeTools = (sessionBudget?: SessionBudget) =>
    capsuleTools({
      cwd,
      env,
      ...(flags.compute !== undefined ? { compute: flags.compute } : {}),
      ...(flags.ram !== undefined ? { ram: flags.ram } : {}),
      ...(flags.timeout !== undefined ? { timeout: flags.timeout } : {}),
      allowedHosts: flags.allowHost,
      allowedFiles,
      ...(flags.mount.length > 0 ? { mounts: flags.mount } : {}),
      envVariables: flags.env,
      // Every language this host runs, unless --no-python.
      ...(flags.python ? {} : { languages: ["javascript"] as const }),
      ...(flags.maxSessions !== undefined ? { maxSessions: flags.maxSessions } : {}),
      ...(flags.sessionIdle !== undefined ? { sessionIdle: flags.sessionIdle } : {}),
      ...(flags.maxCodeBytes !== undefined ? { maxCodeBytes: flags.maxCodeBytes } : {}),
      ...(sessionBudget ? { sessionBudget } : {}),
    });
  const maxCodeBytes =
    flags.maxCodeBytes === undefined
      ? DEFAULT_MAX_CODE_BYTES
      : parseBytes(flags.maxCodeBytes, "--max-code-bytes");
  // A code string may grow sixfold as JSON (\u escapes), plus the message around it.
  const maxMessageBytes = maxCodeBytes * 6 + 64 * 1024;
  // Made once up front, so a bad combination fails before the server starts.
  const first = makeTools();
  if (!flags.http) {
    await mcp.serveMcpStdio(first, { version, maxMessageBytes });
    return 0;
  }
  await first.close();
  const fromEnv = process.env.CAPSULE_MCP_TOKEN;
  if (fromEnv !== undefined && fromEnv.length < mcp.MIN_TOKEN_LENGTH) {
    throw new ConfigError(
      `CAPSULE_MCP_TOKEN: a token of ${fromEnv.length} characters is too easy to guess; use at least ${mcp.MIN_TOKEN_LENGTH}`,
    );
  }
  const token = fromEnv ?? mcp.generateToken();
  const server = await mcp.serveMcpHttp({
    createTools: (budget) => makeTools(budget),
    maxSessions: flags.maxSessions ?? DEFAULT_MAX_SESSIONS,
    version,
    port: flags.port ?? 0,
    token,
    ...(flags.maxClients !== undefined ? { maxClients: flags.maxClients } : {}),
    ...(flags.clientIdle !== undefined
      ? { clientIdleMs: parseDuration(flags.clientIdle, "--client-idle") }
      : {}),
    maxBodyBytes: maxMessageBytes,
  });
  process.stderr.write(`capsule mcp: serving ${server.url}\n`);
  if (fromEnv === undefined) {
    process.stderr.write(
      `capsule mcp: bearer token ${token} (set CAPSULE_MCP_TOKEN to choose one)\n`,
    );
  }
  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await server.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(internalErrorText(error));
    process.exitCode = EXIT_TASK_FAILED;
  },
);
