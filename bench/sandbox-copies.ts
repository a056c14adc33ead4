// What sandbox copies save (core/runtime/template.ts): `npm run bench -- --only=sandbox-copies`.
// In one process, interleaved rounds: the CPU and wall time of a sandbox set up from scratch, of a
// copy of the recorded one, and of a copy on the memory of the sandbox before it (each retired as
// an attempt ends), and the fuel of the same code in each (which must be equal); then
// hello through run() on the calling thread (bundle and task list cached, 1 ms idle gap), recorded
// in the journal and not, and hello tasks a second with 16 in flight on the shared pool (both
// cores), recorded and not. The last four go through the public run() as a user meets it: every
// sandbox there is a copy once its thread has made eight.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { loadEngine } from "../adapters/node/engine.ts";
import { run, shutdown } from "../adapters/node/index.ts";
import { closeJournals } from "../adapters/node/journal.ts";
import { memoryShelf } from "../core/engine/memory-shelf.ts";
import { InternalError } from "../core/errors.ts";
import { bridgeFor, prepareSandbox, setUpSandbox } from "../core/runtime/prepared.ts";
import { recordTemplate } from "../core/runtime/template.ts";

const ROUNDS = 5;
const SANDBOXES = 100;
const HELLO_RUNS = 300;
const FLIGHT_TASKS = 1500;
const MB = 1024 * 1024;
const ENDED = new InternalError("bench: the attempt ended");

const HELLO = `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main" }, () => "hello");`;

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] as number;
}

const ms = (n: number) => n.toFixed(3);

/** CPU and wall time per sandbox, and the fuel a small workload costs in the last one. */
async function setUpCost(copies: boolean, reuse = false) {
  const engine = loadEngine();
  memoryShelf.clear();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let last: Awaited<ReturnType<typeof prepareSandbox>> | undefined;
  for (let i = 0; i < SANDBOXES; i++) {
    // As an attempt ends: its sandbox retired, its memory kept for the next one or not.
    last?.sandbox.retire(ENDED, reuse);
    last = await prepareSandbox(engine, 64 * MB, { copies });
  }
  const wall = (performance.now() - started) / SANDBOXES;
  const used = process.cpuUsage(cpu);
  const sandbox = last?.sandbox;
  if (sandbox === undefined) throw new Error("no sandbox");
  sandbox.lease({ fuel: 1e10, clock: { now: () => 0 }, shouldInterrupt: () => false });
  const value = sandbox.metered(() =>
    sandbox.context.unwrapResult(
      sandbox.context.evalCode(
        `JSON.stringify([..."capsule"].sort()) + new URL("https://a.b/c").pathname`,
      ),
    ),
  );
  value.dispose();
  return { wall, cpu: (used.user + used.system) / 1000 / SANDBOXES, fuel: sandbox.fuelConsumed };
}

async function helloLatency(file: string, cwd: string, journal: boolean) {
  const spent: number[] = [];
  for (let i = 0; i < HELLO_RUNS; i++) {
    const started = performance.now();
    const envelope = await run({ file, cwd, threads: 0, journal });
    spent.push(performance.now() - started);
    if (!envelope.success) throw new Error(`bench run failed: ${JSON.stringify(envelope.error)}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return { p50: quantile(spent, 0.5), p90: quantile(spent, 0.9) };
}

async function inFlight(file: string, cwd: string, journal: boolean) {
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < FLIGHT_TASKS) {
      next++;
      const envelope = await run({ file, cwd, journal });
      if (!envelope.success) throw new Error(`bench run failed: ${JSON.stringify(envelope.error)}`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, lane));
  return FLIGHT_TASKS / ((performance.now() - started) / 1000);
}

export async function main(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "capsule-bench-copies-"));
  const file = join(dir, "hello.ts");
  writeFileSync(file, HELLO);
  const lines = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${availableParallelism()} cores, Node ${process.version}, load average ${loadavg()[0]?.toFixed(2)} at start; ${ROUNDS} interleaved rounds.`,
    "",
  ];
  try {
    const recorded = await recordTemplate(loadEngine(), { setUp: setUpSandbox, bridgeFor });
    if (!recorded) throw new Error("the template could not be recorded");
    // Warm-up: the pool's threads record their own templates after eight sandboxes each.
    for (let i = 0; i < 100; i++) await run({ file, cwd: dir, threads: 0, journal: false });
    for (let i = 0; i < 200; i++) await run({ file, cwd: dir, journal: false });
    for (let round = 1; round <= ROUNDS; round++) {
      const fresh = await setUpCost(false);
      const copy = await setUpCost(true);
      const kept = await setUpCost(true, true);
      if (fresh.fuel !== copy.fuel || kept.fuel !== copy.fuel) {
        throw new Error(
          `fuel differs: ${fresh.fuel} fresh, ${copy.fuel} a copy, ${kept.fuel} a copy on a kept memory`,
        );
      }
      const off = await helloLatency(file, dir, false);
      const on = await helloLatency(file, dir, true);
      const perSecondOff = await inFlight(file, dir, false);
      const perSecondOn = await inFlight(file, dir, true);
      lines.push(
        `- round ${round} (load ${loadavg()[0]?.toFixed(2)}): sandbox set-up from scratch ${ms(fresh.cpu)} ms CPU (${ms(fresh.wall)} ms wall), copy ${ms(copy.cpu)} ms CPU (${ms(copy.wall)} ms wall), ${(fresh.cpu / copy.cpu).toFixed(2)}x, copy on a kept memory ${ms(kept.cpu)} ms CPU (${ms(kept.wall)} ms wall), ${(copy.cpu / kept.cpu).toFixed(2)}x less than a copy, fuel equal (${copy.fuel}); hello p50/p90 ${ms(off.p50)}/${ms(off.p90)} ms unrecorded, ${ms(on.p50)}/${ms(on.p90)} ms recorded; 16 in flight ${Math.round(perSecondOff)} tasks/s unrecorded, ${Math.round(perSecondOn)} recorded`,
      );
    }
  } finally {
    await shutdown();
    closeJournals();
    rmSync(dir, { recursive: true, force: true });
  }
  return lines.join("\n");
}
