/**
 * What `bin/capsule.mjs` runs before the CLI itself: on Node lines where V8 no longer takes the
 * baseline-tier flag at run time, `capsule run` starts again with it on the command line.
 */
import { spawn } from "node:child_process";
import { DIES_WITH_PARENT, findSetpriv } from "./setpriv.ts";

const BASELINE_TIER = "--liftoff-only";

/**
 * Whether `capsule <argv>` should start again with V8 on its baseline tier for wasm
 * (docs/design.md, "The CLI starts on V8's baseline tier"). Up to V8 12 (Node 22) the CLI sets
 * the flag itself; from V8 13 (Node 24) a flag set at run time no longer reaches wasm, and a hello
 * took twice as long (0.8-1.4 s against 0.4-0.6 s with the flag given at start).
 */
export function needsBaselineTierRestart(
  argv: readonly string[],
  v8Version = process.versions.v8,
  execArgv: readonly string[] = process.execArgv,
): boolean {
  if (argv[0] !== "run" || argv.includes("--optimize")) return false;
  // Node started with flags of the user's own (the flag itself, --inspect, ...): left as asked.
  if (execArgv.length > 0) return false;
  return Number(v8Version.split(".")[0]) >= 13;
}

/**
 * Runs `entry argv` again in a new node with the flag, and ends this process as that one ends:
 * its exit code, or the signal that ended it. Signals sent to this process are passed on (a
 * terminal's Ctrl-C reaches both). Where util-linux's setpriv is found (Linux), the kernel ends
 * the new process if this one is killed outright, as it ends a Python task's processes.
 */
export function restartOnBaselineTier(entry: string, argv: readonly string[]): void {
  const node = [process.execPath, ...process.execArgv, BASELINE_TIER, entry, ...argv];
  const setpriv = findSetpriv();
  const [command, ...args] = setpriv === null ? node : [setpriv, ...DIES_WITH_PARENT, ...node];
  const child = spawn(command as string, args, { stdio: "inherit" });
  const passOn = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, passOn);
  child.on("error", (error) => {
    process.stderr.write(`capsule: could not start ${command}: ${error.message}\n`);
    process.exitCode = 2;
  });
  child.on("exit", (code, signal) => {
    if (signal === null) {
      process.exitCode = code ?? 2;
      return;
    }
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  });
}
