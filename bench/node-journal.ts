// What the run journal costs on Node (adapters/node/journal.ts): `npm run bench --
// --only=node-journal`. In one process, in a project of its own (its journal under `.capsule/`),
// interleaved rounds of the same runs recorded and not (`journal: false`): hello runs in the
// calling thread, a workflow of 100 sequential sub-tasks, and a task making 20 fetches to a
// server on 127.0.0.1 (each response kept in the journal for resume).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { run, shutdown } from "../adapters/node/index.ts";
import { closeJournals } from "../adapters/node/journal.ts";

const ROUNDS = 5;
const HELLO_RUNS = 40;
const FAN_RUNS = 3;
const FETCH_RUNS = 10;

const TASKS = {
  "hello.ts": `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main" }, () => "hello");`,
  "fan.ts": `import { task } from "@capsule-run/sdk";
export const step = task({ name: "step" }, (n: string) => n);
export const main = task({ name: "main" }, async () => {
  let sum = 0;
  for (let i = 0; i < 100; i++) sum += Number((await step(String(i))).result);
  return sum;
});`,
  "fetches.ts": `import { task } from "@capsule-run/sdk";
export const main = task({ name: "main", allowedHosts: ["127.0.0.1"] }, async (url: string) => {
  let bytes = 0;
  for (let i = 0; i < 20; i++) bytes += (await (await fetch(url + "/" + i)).text()).length;
  return bytes;
});`,
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function timed(times: number, once: () => Promise<unknown>): Promise<number> {
  const spent: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    const envelope = (await once()) as { success: boolean; error: unknown };
    spent.push(performance.now() - started);
    if (!envelope.success) throw new Error(`bench run failed: ${JSON.stringify(envelope.error)}`);
  }
  return median(spent);
}

export async function main(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "capsule-bench-journal-"));
  for (const [name, source] of Object.entries(TASKS)) writeFileSync(join(dir, name), source);
  // 1 KiB answers, as a small JSON API gives.
  const server = createServer((_request, response) => response.end("x".repeat(1024)));
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const load = loadavg()[0]?.toFixed(1);
  const rows: string[] = [];
  try {
    for (const journal of [true, false]) {
      await run({ file: "hello.ts", cwd: dir, threads: 0, journal });
      await run({ file: "fan.ts", cwd: dir, threads: 0, journal });
    }
    for (let round = 1; round <= ROUNDS; round++) {
      const figures: string[] = [];
      for (const journal of [true, false]) {
        const hello = await timed(HELLO_RUNS, () =>
          run({ file: "hello.ts", cwd: dir, threads: 0, journal }),
        );
        const fan = await timed(FAN_RUNS, () =>
          run({ file: "fan.ts", cwd: dir, threads: 0, journal }),
        );
        const fetches = await timed(FETCH_RUNS, () =>
          run({ file: "fetches.ts", args: [url], cwd: dir, threads: 0, journal }),
        );
        figures.push(
          `${journal ? "recorded" : "unrecorded"}: hello ${hello.toFixed(2)} ms, 100 sub-tasks ${fan.toFixed(0)} ms, 20 fetches ${fetches.toFixed(1)} ms`,
        );
      }
      rows.push(`- round ${round}: ${figures.join("; ")}`);
    }
  } finally {
    server.close();
    closeJournals();
    await shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
  return [
    `Run journal on Node (medians per round; hello ${HELLO_RUNS} runs, sub-tasks ${FAN_RUNS}, fetches ${FETCH_RUNS}; load average ${load} at the start):`,
    ...rows,
  ].join("\n");
}
