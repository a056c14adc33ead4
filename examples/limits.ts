import { task } from "@capsule-run/sdk";

// A runaway loop under a small fuel budget: fuel ends it deterministically.
export const spin = task({ name: "spin", compute: "LOW" }, () => {
  let count = 0;
  while (count >= 0) count++;
  return count;
});

// A task stuck waiting forever, under a wall-clock limit: the timeout ends it.
export const stuck = task({ name: "stuck", timeout: "200ms" }, async () => {
  await new Promise((resolve) => setTimeout(resolve, 60_000));
});

export const main = task({ name: "main", compute: "LOW" }, async () => {
  const [fuel, timeout] = await Promise.all([spin(), stuck()]);
  return {
    spin: fuel.error?.error_type, // "fuel_exhausted"
    stuck: timeout.error?.error_type, // "timeout"
  };
});
