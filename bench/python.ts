import { join } from "node:path";
import { run, shutdown } from "../adapters/node/index.ts";

export interface PythonReport {
  /** The first run in a process: a discovery process and a run process, both loading Pyodide. */
  coldMs: number;
  /** Later runs, each given time for the pool to refill first. */
  warmP50Ms: number;
  warmP90Ms: number;
}

const WARM_RUNS = 7;
/** Time for the pool to load a replacement process (2-5 s here), so each run finds one ready. */
const REFILL_WAIT_MS = 6_000;

/** Python hello through run(): cold, then through a warm pool. */
export async function benchPython(
  root: string,
  log: (line: string) => void,
): Promise<PythonReport> {
  const hello = () => run({ file: join(root, "examples/hello.py"), cwd: root });
  log("python: cold hello (two interpreters load)");
  let started = performance.now();
  const cold = await hello();
  if (!cold.success) throw new Error(`python hello failed: ${JSON.stringify(cold.error)}`);
  const coldMs = performance.now() - started;
  const warm: number[] = [];
  for (let i = 0; i < WARM_RUNS; i++) {
    await new Promise((resolve) => setTimeout(resolve, REFILL_WAIT_MS));
    started = performance.now();
    const envelope = await hello();
    if (!envelope.success)
      throw new Error(`python hello failed: ${JSON.stringify(envelope.error)}`);
    warm.push(performance.now() - started);
    log(`python: warm hello ${warm.length}/${WARM_RUNS}: ${Math.round(warm.at(-1) ?? 0)} ms`);
  }
  await shutdown();
  warm.sort((a, b) => a - b);
  const at = (q: number) =>
    Math.round(warm[Math.min(warm.length - 1, Math.floor(q * warm.length))] ?? 0);
  return {
    coldMs: Math.round(coldMs),
    warmP50Ms: at(0.5),
    warmP90Ms: at(0.9),
  };
}
