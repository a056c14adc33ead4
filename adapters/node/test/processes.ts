import { readdirSync, readFileSync } from "node:fs";

/** Every process under `pid`, from /proc (Linux). */
export function descendants(pid: number): number[] {
  let children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const listed = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (listed !== "") children = children.concat(listed.split(" ").map(Number));
    }
  } catch {
    // Gone meanwhile.
  }
  return children.flatMap((child) => [child, ...descendants(child)]);
}

/** Whether `pid` still runs (a zombie has ended; only its entry waits to be reaped). */
export function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

/** A process's command line, its arguments split (empty once it has ended). */
export function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

/** Waits up to `ms` for every one of `pids` to end; answers those still running. */
export async function stillRunningAfter(pids: number[], ms: number): Promise<number[]> {
  for (let waited = 0; waited < ms && pids.some(running); waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return pids.filter(running);
}
