import { existsSync } from "node:fs";
import { join } from "node:path";

/** util-linux's setpriv (Linux), which can make the kernel end a process with its parent. */
export function findSetpriv(): string | null {
  if (process.platform !== "linux") return null;
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    const path = join(dir, "setpriv");
    if (existsSync(path)) return path;
  }
  return null;
}

/**
 * setpriv's arguments that end the command it runs when the process that started it ends (the
 * kernel's parent-death signal). A change of user clears the signal: give these after one.
 */
export const DIES_WITH_PARENT = ["--pdeathsig", "KILL"];
