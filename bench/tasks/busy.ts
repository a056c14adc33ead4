import { task } from "@capsule-run/sdk";

// A CPU-bound loop with no await in it: the caller's event loop must stay free while it runs.
export const main = task({ name: "main", compute: "HIGH" }, () => {
  let x = 0;
  for (let i = 0; i < 3_000_000; i++) x = (x + i * 7) % 1_000_003;
  return x;
});
