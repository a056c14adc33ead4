import { task } from "@capsule-run/sdk";

// One CPU-bound unit of work, about 100 ms of guest compute.
export const crunch = task({ name: "crunch", compute: "HIGH" }, (seed: number) => {
  let x = seed;
  for (let i = 0; i < 600_000; i++) x = (x * 31 + i) % 1_000_003;
  return x;
});

export const main = task({ name: "main", compute: "HIGH" }, async (mode: string) => {
  const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
  const started = Date.now();
  const results: unknown[] = [];
  if (mode === "concurrent") {
    for (const envelope of await Promise.all(seeds.map((seed) => crunch(seed)))) {
      results.push(envelope.result);
    }
  } else {
    for (const seed of seeds) results.push((await crunch(seed)).result);
  }
  return { elapsed: Date.now() - started, results };
});
